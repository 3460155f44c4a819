//! Restore a session (or some of its paths) into a target directory, byte for byte with its
//! metadata, never writing outside the target.

use std::path::PathBuf;

use crate::error::Result;
use crate::ids::SessionId;
use crate::ingest::PathError;
use crate::reader::SessionReader;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The target directory (created if missing).
    pub target: PathBuf,
    /// Restore only these paths (and what is below them); empty means everything.
    pub paths: Vec<Vec<u8>>,
    /// Allow a non-empty target.
    pub allow_non_empty: bool,
    /// Restore numeric ownership (the binary sets this when running as root).
    pub restore_owner: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Entries restored.
    pub entries: u64,
    /// Regular files restored.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Paths that failed, with why.
    pub errors: Vec<PathError>,
}

/// Restore `session` as `opts` says. Fails outright for a bad target; a damaged file is listed in
/// `errors` and the rest is still restored.
pub fn restore(
    reader: &SessionReader,
    session: SessionId,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let _ = (reader, session, opts);
    todo!()
}

/// Write the content of the regular file `path` of `session` to `out`.
pub fn cat(
    reader: &SessionReader,
    session: SessionId,
    path: &[u8],
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let _ = (reader, session, path, out);
    todo!()
}
