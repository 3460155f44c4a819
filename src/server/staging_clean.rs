//! Keeping staging what the server says it is: what an upload stopped half-way left behind is
//! removed ([`remove_unfinished_updates`]), and before every upload the `user.rsync.*` names
//! that stand for privileged attributes are taken off ([`strip_transport_xattrs`]), so that
//! every such name in staging after the upload was made by this upload's receiver.

use std::ffi::CString;
use std::path::Path;

use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::ingest::staging::FAKE_SUPER_PREFIX;
use crate::server::staging_state::Tally;

/// After an upload stopped half-way: remove what rsync's delayed updates had not yet put in
/// place: every `.~tmp~` directory (`--delay-updates`), and every regular file named like an
/// rsync temporary file (`.NAME.XXXXXX`) whose inode is newer than `started`. Symlinks are
/// removed, never followed.
pub fn remove_unfinished_updates(dir: &Path, started: std::time::SystemTime) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("cleaning {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cleaning {}", dir.display()), e))?;
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_dir() {
            if name == crate::server::rsync_argv::DELAY_DIR {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            } else {
                remove_unfinished_updates(&path, started)?;
            }
        } else if kind.is_file() && looks_like_rsync_temp(name.as_encoded_bytes()) {
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| Error::io(format!("cleaning {}", path.display()), e))?;
            let born = meta.created().or_else(|_| {
                use std::os::unix::fs::MetadataExt;
                let secs = u64::try_from(meta.ctime()).unwrap_or(0);
                let nanos = u32::try_from(meta.ctime_nsec()).unwrap_or(0);
                Ok::<_, std::io::Error>(
                    std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos),
                )
            });
            if born.is_ok_and(|t| t >= started) {
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            }
        }
    }
    Ok(())
}

/// rsync's temporary names: `.` + the file's name + `.` + six letters or digits.
fn looks_like_rsync_temp(name: &[u8]) -> bool {
    name.len() >= 9
        && name[0] == b'.'
        && name[name.len() - 7] == b'.'
        && name[name.len() - 6..].iter().all(u8::is_ascii_alphanumeric)
}

/// What the walk before an upload did and found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadScan {
    /// `user.rsync.*` names taken off.
    pub removed: u64,
    /// Allocated bytes of everything below staging (as [`crate::server::staging::staging_usage`]
    /// counts them): the base of the upload's quota watch, so that the upload walks staging
    /// once, not once to strip and again to measure.
    pub allocated: u64,
    /// Apparent bytes of the regular files below staging.
    pub apparent: u64,
}

/// Take every `user.rsync.NAME` xattr whose NAME does not start with `%` off every entry of
/// `dir` (recursively, never following a symlink), measuring the allocated bytes on the way.
///
/// The receiver (`fake super`) stores a client's privileged attribute `security.X` as
/// `user.rsync.security.X`, and the server's daemon refuses every `user.rsync.*` name from the
/// wire, so after an upload such a name can only be the receiver's. Before it, one may be older:
/// forged by a client before the filter existed, or left by the filter itself, which also keeps
/// rsync from removing a name the client no longer sends (a capability taken off an unchanged
/// file). rsync sets again, on unchanged files too, every attribute the client still has.
/// `user.rsync.%stat`, `%aacl` and `%dacl` are rsync's own bookkeeping and stay.
pub fn strip_transport_xattrs(dir: &Path) -> Result<UploadScan> {
    let mut tally = Tally::default();
    tally.strip(dir);
    crate::server::staging::walk_tree(dir, b"", &mut |_, path, stx| tally.visit(path, stx))
        .map_err(|e| Error::io(format!("reading staging {}", dir.display()), e))?;
    match tally.failed {
        Some(e) => Err(e),
        None => Ok(UploadScan {
            removed: tally.removed,
            allocated: tally.allocated,
            apparent: tally.apparent,
        }),
    }
}

/// The bytes an entry takes on disk (`statx` counts blocks of 512 bytes).
pub(crate) fn allocated_bytes(stx: &rustix::fs::Statx) -> u64 {
    stx.stx_blocks.saturating_mul(512)
}

/// Take the privileged `user.rsync.*` names off one entry (`buf`: a buffer for the name list).
pub(crate) fn strip_one(path: &Path, buf: &mut Vec<u8>, removed: &mut u64) -> Result<()> {
    let fail = |e: Errno| Error::io(format!("xattrs of staged {}", path.display()), e.into());
    let len = loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let need = rustix::fs::llistxattr_query(path).map_err(fail)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(fail(e)),
        }
    };
    let doomed: Vec<Vec<u8>> = buf[..len]
        .split(|b| *b == 0)
        .filter(|n| {
            n.starts_with(FAKE_SUPER_PREFIX) && n.get(FAKE_SUPER_PREFIX.len()) != Some(&b'%')
        })
        .map(<[u8]>::to_vec)
        .collect();
    for name in doomed {
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        match rustix::fs::lremovexattr(path, cname.as_c_str()) {
            Ok(()) => *removed += 1,
            Err(Errno::NODATA) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_temporary_names() {
        for yes in [&b".big.D2PeXQ"[..], b".a.b.c.123456", b".z.zzzzzz"] {
            assert!(looks_like_rsync_temp(yes), "{yes:?}");
        }
        for no in [
            &b"big.D2PeXQ"[..],
            b".big.D2PeX",
            b".big-D2PeXQ",
            b".big.D2Pe-Q",
            b".x",
        ] {
            assert!(!looks_like_rsync_temp(no), "{no:?}");
        }
    }

    #[test]
    fn unfinished_updates_go_and_the_rest_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("sub/.~tmp~")).unwrap();
        std::fs::write(dir.join("sub/.~tmp~/new"), b"x").unwrap();
        // A client file that looks like a temporary name but is older than the run stays.
        std::fs::write(dir.join(".old.abcdef"), b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let started = std::time::SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join("sub/.big.D2PeXQ"), b"x").unwrap();
        std::fs::write(dir.join("sub/kept"), b"x").unwrap();
        remove_unfinished_updates(dir, started).unwrap();
        assert!(!dir.join("sub/.~tmp~").exists());
        assert!(!dir.join("sub/.big.D2PeXQ").exists());
        assert!(dir.join("sub/kept").exists());
        assert!(dir.join(".old.abcdef").exists());
    }

    #[test]
    fn transport_names_are_stripped_and_bookkeeping_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("d/f");
        std::fs::create_dir_all(tmp.path().join("d")).unwrap();
        std::fs::write(&f, b"x").unwrap();
        let set =
            |name: &str| rustix::fs::lsetxattr(&f, name, b"v", rustix::fs::XattrFlags::empty());
        if set("user.test").is_err() {
            // No user xattrs on this filesystem: nothing to strip, nothing to test.
            return;
        }
        for name in [
            "user.rsync.security.capability",
            "user.rsync.trusted.x",
            "user.rsync.%stat",
        ] {
            set(name).unwrap();
        }
        let scan = strip_transport_xattrs(tmp.path()).unwrap();
        assert_eq!(scan.removed, 2);
        assert_eq!(
            scan.allocated,
            crate::server::staging::staging_usage(tmp.path()).unwrap().1,
            "the strip walk measures staging as staging_usage does"
        );
        let mut buf = vec![0u8; 1024];
        let n = rustix::fs::llistxattr(&f, &mut buf[..]).unwrap();
        let mut names: Vec<&[u8]> = buf[..n]
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        assert_eq!(names, [&b"user.rsync.%stat"[..], b"user.test"]);
    }
}
