//! Ingest: walk a staged tree, chunk, deduplicate, compress, seal and store it as a new session
//! (the server's `complete` step).

use std::path::PathBuf;

use crate::error::Result;
use crate::ids::SessionId;
use crate::index::SessionState;
use crate::repo::Repo;

/// What to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Client name (validated: `[a-z0-9][a-z0-9._-]{0,63}`).
    pub client: String,
    /// The staged tree.
    pub source: PathBuf,
    /// Worker threads (default: a few more than cores, to overlap I/O).
    pub threads: Option<usize>,
    /// Use and write the files cache.
    pub files_cache: bool,
}

/// A path that could not be backed up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathError {
    /// Path relative to the source (lossy UTF-8 for display).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The result of an ingest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestReport {
    /// The new session.
    pub session: i64,
    /// Complete or incomplete.
    pub state: SessionState,
    /// Entries in the manifest.
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
    /// Files read (not proven unchanged by the files cache).
    pub files_read: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Chunks added to the store.
    pub new_chunks: u64,
    /// Plaintext bytes of the chunks added.
    pub new_plain_bytes: u64,
    /// Record bytes added to packs.
    pub new_stored_bytes: u64,
    /// Paths that could not be read.
    pub errors: Vec<PathError>,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl IngestReport {
    /// The session id.
    pub fn session_id(&self) -> SessionId {
        SessionId(self.session)
    }
}

/// Ingest `opts.source` into `repo` as a new session of `opts.client`.
pub fn ingest(repo: &Repo, opts: &IngestOptions) -> Result<IngestReport> {
    let _ = (repo, opts);
    todo!()
}

/// Check a client name: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn validate_client_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(format!(
            "client name {name:?} is invalid: use 1-64 of a-z 0-9 . _ -, starting with a letter or digit"
        )))
    }
}
