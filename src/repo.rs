//! The repository: layout, `init`, `open`, locks and cleanup after dead writers
//! (format-spec/repository.md).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::crypto::RepoSecret;
use crate::crypto::wrap::{Identities, Recipients};
use crate::error::Result;
use crate::format::repository::RepoConfig;
use crate::ids::WriterId;
use crate::index::Index;

/// An opened repository.
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
    config: RepoConfig,
}

/// A held repository lock (shared or exclusive); released on drop.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

/// A live writer: holds the shared repository lock and its own writer lock.
#[derive(Debug)]
pub struct Writer {
    /// This writer's id.
    pub id: WriterId,
    _repo_lock: RepoLock,
    _writer_lock: File,
}

impl Repo {
    /// Create a repository at `root` (missing or empty directory) for `recipients`.
    pub fn init(root: &Path, recipients: &[String]) -> Result<Repo> {
        let _ = (root, recipients);
        todo!()
    }

    /// Open a repository: `NotARepository` without `repository.toml`, `UnsupportedVersion`
    /// for an unknown version.
    pub fn open(root: &Path) -> Result<Repo> {
        let _ = root;
        todo!()
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// A new connection to the index.
    pub fn index(&self) -> Result<Index> {
        todo!()
    }

    /// The recipients from the configuration.
    pub fn recipients(&self) -> Result<Recipients> {
        todo!()
    }

    /// The server-side secret (`keys/secret`), checked against `secret-check`.
    pub fn load_secret(&self) -> Result<RepoSecret> {
        todo!()
    }

    /// The secret unwrapped from `keys/secret.age` with an identity; `WrongIdentity` if none fits.
    pub fn unlock_secret(&self, identities: &Identities) -> Result<RepoSecret> {
        let _ = identities;
        todo!()
    }

    /// Take the repository lock shared (blocking).
    pub fn lock_shared(&self) -> Result<RepoLock> {
        todo!()
    }

    /// Take the repository lock exclusively; `Locked` if `wait` is false and it is held.
    pub fn lock_exclusive(&self, wait: bool) -> Result<RepoLock> {
        let _ = wait;
        todo!()
    }

    /// Start a writer: shared repository lock, own writer lock, then clean up dead writers.
    pub fn start_writer(&self) -> Result<Writer> {
        todo!()
    }

    /// Remove what dead writers left (format-spec/index.md "Cleanup"); returns how many
    /// writers were cleaned up.
    pub fn cleanup_dead_writers(&self, index: &Index) -> Result<usize> {
        let _ = index;
        todo!()
    }
}
