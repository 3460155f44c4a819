//! The collector's own writer lock (format-spec/repository.md "Locks").
//!
//! `Repo::start_writer` takes the repository lock *shared*, which would wait forever on our own
//! exclusive lock; collect needs only the writer id and its lock file, so that packs it leaves in
//! state `writing` after a crash are recognised as a dead writer's and cleaned up.

use std::fs::File;
use std::path::PathBuf;

use crate::error::Result;
use crate::ids::WriterId;
use crate::repo::{Operation, Repo};

/// A held writer lock; the lock file is removed on drop, while still locked.
pub(crate) struct GcWriter {
    pub id: WriterId,
    _file: File,
    path: PathBuf,
}

impl Drop for GcWriter {
    fn drop(&mut self) {
        // While still locked, so that no sweep takes us for dead; a failure leaves a stale file
        // that the next cleanup removes.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Create and lock `locks/<id>.lock` for `op`: a repack (the only step of collect that writes
/// packs) or a repair; see [`Repo::create_writer_lock`].
pub(crate) fn start(repo: &Repo, op: Operation) -> Result<GcWriter> {
    let (file, path, id) = repo.create_writer_lock(op)?;
    Ok(GcWriter {
        id,
        _file: file,
        path,
    })
}
