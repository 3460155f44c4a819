//! `rsbackup mount`: a read-only FUSE view of a repository's sessions,
//! `/<client>/<session id>-<start time>/...` plus `/<client>/latest`, a symlink to the newest
//! session's directory.
//!
//! Files show their recorded size, mode, owner, mtime (also given as atime and ctime),
//! symlink targets, hard links (one inode, with its link count), devices, xattrs and ACLs (the
//! `system.posix_acl_*` xattrs as recorded). Nothing is read before it is asked for:
//! a session's manifest is read once when the session is first entered, keeping only one head
//! per manifest chunk ([`tree`]); listings and lookups decode manifest chunks through a cache of
//! at most [`MANIFEST_CACHE_BYTES`]; file contents are read chunk by chunk, each verified by the
//! reader, through a cache of [`MountOptions::cache_bytes`]. A chunk that cannot be read fails
//! that read with EIO and is reported through [`MountOptions::warn`]; the mount goes on.
//!
//! The library mounts and serves; the binary waits for a signal and unmounts.

mod cache;
mod fs;
#[cfg(test)]
mod tests;
mod tree;
mod view;

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::index::SessionInfo;
use crate::reader::SessionReader;

pub use view::MANIFEST_CACHE_BYTES;

/// Where the mount reports problems it does not fail on (a damaged chunk, a lost manifest
/// chunk): one line each.
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// Default bound of the data chunk cache: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// How to mount.
#[derive(Clone)]
pub struct MountOptions {
    /// Bytes of opened data chunks kept for further reads.
    pub cache_bytes: u64,
    /// Where problems are reported.
    pub warn: Warn,
}

/// A mounted view, served by a background thread until [`Mounted::unmount`] or until it is
/// unmounted from outside (`fusermount3 -u`, `umount`).
pub struct Mounted {
    session: fuser::BackgroundSession,
    mountpoint: std::path::PathBuf,
}

/// How [`Mounted::unmount`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// Unmounted (or it already was, from outside).
    Clean,
    /// Something still had a file or directory open in the mount: it was detached from the
    /// filesystem tree at once (lazy unmount); those open files fail once the process ends.
    Detached,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted").finish_non_exhaustive()
    }
}

impl Mounted {
    /// Whether the filesystem stopped being served (it was unmounted from outside).
    pub fn is_finished(&self) -> bool {
        self.session.guard.is_finished()
    }

    /// Unmount (unless already unmounted from outside) and wait for the serving thread. A
    /// mount still in use is detached instead ([`Unmounted::Detached`]): the serving thread
    /// then ends with the process.
    pub fn unmount(self) -> Result<Unmounted> {
        if self.is_finished() {
            // Unmounted from outside: unmounting again would fail (EINVAL).
            self.session
                .join()
                .map_err(|e| Error::io("serving the mount", e))?;
            return Ok(Unmounted::Clean);
        }
        let Mounted {
            session,
            mountpoint,
        } = self;
        match session.umount_and_join() {
            Ok(()) => Ok(Unmounted::Clean),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                detach(&mountpoint)?;
                Ok(Unmounted::Detached)
            }
            Err(e) => Err(Error::io(format!("unmounting {}", mountpoint.display()), e)),
        }
    }
}

/// Lazy unmount of a busy mount: directly as root, else through `fusermount3 -u -z`.
fn detach(mountpoint: &Path) -> Result<()> {
    let shown = mountpoint.display();
    match rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::PERM) => {
            let status = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(mountpoint)
                .status()
                .map_err(|e| Error::io(format!("running fusermount3 -u -z {shown}"), e))?;
            if status.success() {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorKind::Io,
                    format!("fusermount3 -u -z {shown} failed ({status})"),
                ))
            }
        }
        Err(e) => Err(Error::io(format!("detaching {shown}"), e.into())),
    }
}

/// Check that `mountpoint` is an empty directory.
pub fn check_mountpoint(mountpoint: &Path) -> Result<()> {
    let shown = mountpoint.display();
    let meta =
        std::fs::metadata(mountpoint).map_err(|e| Error::io(format!("mountpoint {shown}"), e))?;
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorKind::TargetNotDirectory,
            format!("mountpoint {shown} is not a directory"),
        ));
    }
    let mut entries = std::fs::read_dir(mountpoint)
        .map_err(|e| Error::io(format!("listing mountpoint {shown}"), e))?;
    if entries.next().is_some() {
        return Err(Error::new(
            ErrorKind::TargetNotEmpty,
            format!("mountpoint {shown} is not empty: mount needs an empty directory"),
        ));
    }
    Ok(())
}

/// Mount `sessions` (visible sessions, oldest first; those of one client or all) read-only at
/// `mountpoint`, an empty directory, and serve them in the background.
pub fn mount(
    reader: SessionReader,
    sessions: Vec<SessionInfo>,
    mountpoint: &Path,
    options: MountOptions,
) -> Result<Mounted> {
    check_mountpoint(mountpoint)?;
    let canonical = mountpoint
        .canonicalize()
        .map_err(|e| Error::io(format!("mountpoint {}", mountpoint.display()), e))?;
    let view = view::View::new(reader, sessions, &options)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("rsbackup".into()),
        fuser::MountOption::Subtype("rsbackup".into()),
        // The kernel checks recorded modes and owners; a backup view grants no setuid, no
        // device access.
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoExec,
    ];
    let session = fuser::spawn_mount(fs::MountFs::new(view), mountpoint, &config).map_err(|e| {
        Error::io(
            format!(
                "mounting at {} (FUSE needs /dev/fuse, and fusermount3 from the fuse3 package \
                 when not run as root)",
                mountpoint.display()
            ),
            e,
        )
    })?;
    Ok(Mounted {
        session,
        mountpoint: canonical,
    })
}
