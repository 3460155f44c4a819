//! The client lock: two cron runs of the same configuration never overlap.
//!
//! `flock(LOCK_EX | LOCK_NB)` on a lock file (by default `/run/rsbackup/client-NAME.lock`). The
//! kernel drops the lock when the last descriptor of it closes, so a crashed run leaves nothing
//! to clean up. rsync is started with an inherited copy of the descriptor: if the run is killed
//! while rsync still transfers, the lock stays held until that rsync (and its ssh) are gone, so
//! the next run cannot start a second transfer into the same staging area beside it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, ErrorKind, Result};

/// A held client lock; released on drop.
#[derive(Debug)]
pub struct ClientLock {
    file: File,
    path: PathBuf,
}

impl ClientLock {
    /// Take the lock at `path`, creating the file (and its directory, mode 0700) if needed.
    /// Another holder gives an error of kind [`ErrorKind::Locked`].
    pub fn acquire(path: &Path) -> Result<ClientLock> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("creating lock directory {}", dir.display()), e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                let holder = holder.trim();
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "another rsbackup run of this configuration is still running (lock file {} \
                         is held{}); this run did nothing. If no run is in progress, an rsync left \
                         by a killed run may still be finishing",
                        path.display(),
                        if holder.is_empty() {
                            String::new()
                        } else {
                            format!(" by process {holder}")
                        }
                    ),
                ));
            }
            Err(e) => {
                return Err(Error::io(
                    format!("locking {}", path.display()),
                    std::io::Error::from(e),
                ));
            }
        }
        // For whoever finds the lock held: which process took it.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(ClientLock {
            file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of the locked descriptor that a child process inherits (not close-on-exec): the
    /// lock is then held until the child is gone too.
    pub fn inheritable(&self) -> Result<OwnedFd> {
        rustix::io::dup(&self.file).map_err(|e| {
            Error::io(
                format!("duplicating lock file {}", self.path.display()),
                std::io::Error::from(e),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Take the lock once it is free. Other tests of this binary fork child processes on other
    /// threads; between fork and exec a child holds a copy of every descriptor, our lock file's
    /// included, so a lock just released can stay held for a moment (seen once in CI).
    fn acquire_once_free(path: &Path) -> ClientLock {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match ClientLock::acquire(path) {
                Ok(lock) => return lock,
                Err(e) if e.kind() == ErrorKind::Locked && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn second_holder_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/client-web1.lock");
        let first = ClientLock::acquire(&path).unwrap();
        assert_eq!(first.path(), path);
        let err = ClientLock::acquire(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(err.message().contains("still running"), "{err}");
        assert!(
            err.message().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        acquire_once_free(&path);
    }

    #[test]
    fn an_inherited_copy_keeps_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.lock");
        let lock = ClientLock::acquire(&path).unwrap();
        let copy = lock.inheritable().unwrap();
        drop(lock);
        assert_eq!(
            ClientLock::acquire(&path).unwrap_err().kind(),
            ErrorKind::Locked
        );
        drop(copy);
        acquire_once_free(&path);
    }

    #[test]
    fn unusable_path_is_an_error() {
        let err = ClientLock::acquire(Path::new("/proc/version/x.lock")).unwrap_err();
        assert_ne!(err.kind(), ErrorKind::Locked);
        assert!(err.message().contains("/proc/version"), "{err}");
    }
}
