//! The collector's own writer lock (format-spec/repository.md "Locks").
//!
//! `Repo::start_writer` takes the repository lock *shared*, which would wait forever on our own
//! exclusive lock; collect needs only the writer id and its lock file, so that packs it leaves in
//! state `writing` after a crash are recognised as a dead writer's and cleaned up.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, ErrorKind, Result};
use crate::ids::WriterId;
use crate::repo::Repo;

/// A held writer lock; the lock file is removed on drop, while still locked.
pub(super) struct GcWriter {
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

/// Create and lock `locks/<id>.lock`; start over with a new id if a sweep removed the file
/// between creating and locking it.
pub(super) fn start(repo: &Repo) -> Result<GcWriter> {
    let dir = repo.root().join("locks");
    for _ in 0..5 {
        let id = WriterId::random();
        let path = dir.join(format!("{id}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format_args!("creating {}", path.display()), e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(_) => continue,
        }
        let ours = file
            .metadata()
            .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
        match std::fs::metadata(&path) {
            Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                return Ok(GcWriter {
                    id,
                    _file: file,
                    path,
                });
            }
            _ => continue,
        }
    }
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "could not create a writer lock in {}: lock files keep disappearing",
            dir.display()
        ),
    ))
}
