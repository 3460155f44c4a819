//! Check a repository: the index against the packs; with `read_data` every record's hash; with
//! an identity every chunk's authentication and id. Names each damaged chunk and what depends on it.

use crate::crypto::wrap::Identities;
use crate::error::Result;
use crate::repo::Repo;

/// What to check.
#[derive(Default)]
pub struct CheckOptions {
    /// Read every record and compare its BLAKE3 with the index.
    pub read_data: bool,
    /// Also decrypt every chunk and verify its id (implies reading).
    pub identities: Option<Identities>,
}

/// One problem found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// What is wrong, in words.
    pub what: String,
    /// The damaged chunk, if one.
    pub chunk: Option<String>,
    /// The pack concerned, if one.
    pub pack: Option<String>,
    /// Sessions that depend on it.
    pub sessions: Vec<i64>,
    /// Paths that depend on it (needs an identity), as "session:path".
    pub paths: Vec<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Packs examined.
    pub packs: u64,
    /// Chunks examined.
    pub chunks: u64,
    /// Bytes read from packs.
    pub bytes_read: u64,
    /// Problems found; empty means the repository is sound.
    pub problems: Vec<Problem>,
}

/// Run a check.
pub fn check(repo: &Repo, opts: &CheckOptions) -> Result<CheckReport> {
    let _ = (repo, opts);
    todo!()
}
