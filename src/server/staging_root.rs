//! Who may reach staging: the server owns the staging root and every client's staging
//! directory, and sets their modes itself, whatever a client's rsync sends.
//!
//! The receiver (`fake super`) gives every received file and directory the client's
//! permission bits with the owner's added (a directory `rwx`, a file `rw`) and no setuid,
//! setgid or sticky bit; the client's full mode, owner and group go to the
//! `user.rsync.%stat` xattr when they differ from that. So a client's 0777 directory is a 0777
//! directory in staging, and the client's root lands on `STAGING-ROOT/NAME` itself. Two rules
//! keep other local users of the server out of every client's staging at every instant:
//!
//! * the staging root is owned by the account `serve` runs as and is mode 0700, checked (and
//!   set back) on every request before anything else ([`secure_staging_root`]): nothing below
//!   it can be reached by another user, whatever the modes down there, even while an upload
//!   runs;
//! * `STAGING-ROOT/NAME` is set back to 0700 at `prepare`, `complete` and after every upload
//!   ([`own_client_staging`]), the client's mode kept in `user.rsync.%stat` first so that the
//!   session still records it.
//!
//! The server's own directories beside the clients' (`.leases`, `.machines`) are made 0700 and
//! their files 0600 ([`server_dir`]), not left to the umask.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// The only mode the staging root, a client's staging directory and the server's own
/// directories under the staging root may have.
pub const OWNER_ONLY: u32 = 0o700;

/// The staging root must exist, be a directory owned by this process's user, and is set to
/// 0700 when it grants anything to group or others. Anything else is an error naming it.
pub fn secure_staging_root(root: &Path) -> Result<()> {
    let meta = std::fs::metadata(root)
        .map_err(|e| Error::io(format!("staging root {}", root.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("staging root {} is not a directory", root.display()),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "staging root {} is owned by uid {}, not by the account rsbackup serve runs as \
                 (uid {me}): chown it to that account (mode 0700)",
                root.display(),
                meta.uid()
            ),
        ));
    }
    restrict(root, meta.mode())
}

/// Create `dir` (0700) if it is missing, or set it back to 0700: a directory of the server's
/// own under the staging root (`.leases`, `.machines`).
pub fn server_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(OWNER_ONLY).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            if !meta.is_dir() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{} is not a directory (a symlink?)", dir.display()),
                ));
            }
            restrict(dir, meta.mode())
        }
        Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
    }
}

/// Write `bytes` to `path` in one of the server's own directories: to a temporary file (0600)
/// beside it, then renamed into place, so that a reader sees the old file or the new one.
pub fn replace_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.new", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Set a client's staging directory back to 0700. When the receiver gave it another mode
/// (the client's root, sent with a trailing slash or as `/`) and recorded none in
/// `user.rsync.%stat`, that mode, owner and group are recorded there first, as the receiver
/// itself would have: the session keeps the client's root mode.
pub fn own_client_staging(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("client staging {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "client staging {} is not a directory (a symlink?)",
            dir.display()
        )));
    }
    if meta.mode() & 0o7777 == OWNER_ONLY {
        return Ok(());
    }
    let name = crate::ingest::staging::FAKE_SUPER_STAT;
    let shown = String::from_utf8_lossy(name);
    let mut buf = [0u8; 256];
    match rustix::fs::lgetxattr(dir, name, &mut buf[..]) {
        Ok(_) => {}
        Err(rustix::io::Errno::NODATA) => {
            let value = format!("{:o} 0,0 {}:{}", meta.mode(), meta.uid(), meta.gid());
            rustix::fs::lsetxattr(dir, name, value.as_bytes(), rustix::fs::XattrFlags::CREATE)
                .map_err(|e| {
                    Error::io(
                        format!(
                            "recording the client's mode of staging {} in {shown}",
                            dir.display()
                        ),
                        e.into(),
                    )
                })?;
        }
        Err(e) => {
            return Err(Error::io(
                format!("reading {shown} of staging {}", dir.display()),
                e.into(),
            ));
        }
    }
    set_mode(dir, OWNER_ONLY)
}

/// 0700 when `mode` grants group or others anything (or is not owner rwx).
fn restrict(path: &Path, mode: u32) -> Result<()> {
    if mode & 0o7777 == OWNER_ONLY {
        return Ok(());
    }
    set_mode(path, OWNER_ONLY)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("setting {} to mode {mode:o}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_staging_root_is_made_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("staging");
        std::fs::create_dir(&root).unwrap();
        set_mode(&root, 0o777).unwrap();
        secure_staging_root(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        let missing = secure_staging_root(&tmp.path().join("none")).unwrap_err();
        assert!(missing.to_string().contains("none"), "{missing}");
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        let file = secure_staging_root(&tmp.path().join("file")).unwrap_err();
        assert!(file.to_string().contains("not a directory"), "{file}");
    }

    #[test]
    fn a_staging_root_of_another_user_is_refused() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("staging");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::chown(&root, Some(65534), None).unwrap();
        let e = secure_staging_root(&root).unwrap_err();
        assert!(
            e.to_string().contains("owned by uid 65534") && e.to_string().contains("staging"),
            "{e}"
        );
    }

    #[test]
    fn server_dirs_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(".leases");
        server_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        set_mode(&d, 0o755).unwrap();
        server_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        std::os::unix::fs::symlink(&d, tmp.path().join("link")).unwrap();
        assert!(server_dir(&tmp.path().join("link")).is_err());
    }

    #[test]
    fn client_staging_keeps_the_clients_mode_in_fake_super_stat() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("web1");
        std::fs::create_dir(&d).unwrap();
        set_mode(&d, 0o777).unwrap();
        let name = crate::ingest::staging::FAKE_SUPER_STAT;
        let mut buf = [0u8; 64];
        // No user xattrs on this filesystem: the receiver could not run here either.
        if rustix::fs::lsetxattr(&d, "user.probe", b"1", rustix::fs::XattrFlags::empty()).is_err() {
            return;
        }
        own_client_staging(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        let n = rustix::fs::lgetxattr(&d, name, &mut buf[..]).unwrap();
        let meta = std::fs::metadata(&d).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("40777 0,0 {}:{}", meta.uid(), meta.gid())
        );
        // A recorded mode (the receiver's own) is kept as it is.
        rustix::fs::lsetxattr(
            &d,
            name,
            b"40750 0,0 1000:1000",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        set_mode(&d, 0o750).unwrap();
        own_client_staging(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        let n = rustix::fs::lgetxattr(&d, name, &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"40750 0,0 1000:1000");
    }
}
