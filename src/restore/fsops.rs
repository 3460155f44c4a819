//! Filesystem operations relative to directory file descriptors. Nothing here takes a path with
//! more than one component, and nothing follows a symlink: every directory is opened with
//! `O_DIRECTORY | O_NOFOLLOW`, every new file with `O_EXCL | O_NOFOLLOW`, and metadata is set
//! through a descriptor or with `AT_SYMLINK_NOFOLLOW`. A symlink, whether restored from the
//! session or already present in a non-empty target, is therefore never traversed.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use crate::format::manifest::Meta;

/// Flags for opening a directory we will create entries in.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Mode of a directory while it is being filled: ours alone, so that a restrictive mode from
/// the session (applied when we leave it) cannot lock us out.
const FILLING_DIR_MODE: u32 = 0o700;

/// Check that `name` is a single, ordinary path component. The manifest reader already refuses
/// bad paths; this is the last line of defence before a syscall.
pub(super) fn check_component(name: &[u8]) -> io::Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the manifest names an invalid path component",
        ));
    }
    Ok(())
}

/// Open the existing directory `name` in `dir`; a symlink or a non-directory is an error
/// (ELOOP / ENOTDIR), never followed.
pub(super) fn open_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    check_component(name)?;
    Ok(fs::openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// What is at `name` in `dir`, without following a symlink; `None` if nothing.
fn kind_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<FileType>> {
    match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Make room for a new non-directory entry `name` after `create` failed with EEXIST: a
/// pre-existing file, symlink or special file (in a non-empty target) is unlinked, which never
/// follows it; a directory in the way is an error.
fn clear_for_replace(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match kind_at(dir, name)? {
        Some(FileType::Directory) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory already exists there in the target",
        )),
        Some(_) => Ok(fs::unlinkat(dir, name, AtFlags::empty())?),
        None => Ok(()),
    }
}

/// Run `create`; if the name exists (non-empty target), remove what is there and retry once.
fn create_replacing(
    dir: BorrowedFd<'_>,
    name: &[u8],
    mut create: impl FnMut() -> rustix::io::Result<()>,
) -> io::Result<()> {
    check_component(name)?;
    match create() {
        Err(Errno::EXIST) => {
            clear_for_replace(dir, name)?;
            Ok(create()?)
        }
        other => Ok(other?),
    }
}

/// Create the directory `name` in `dir` (or reuse an existing real directory) and open it.
/// A non-directory in the way (a symlink in a non-empty target, say) is unlinked first.
pub(super) fn make_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    check_component(name)?;
    let mode = Mode::from_raw_mode(FILLING_DIR_MODE);
    match fs::mkdirat(dir, name, mode) {
        Ok(()) => {}
        Err(Errno::EXIST) => match kind_at(dir, name)? {
            Some(FileType::Directory) | None => {}
            Some(_) => {
                fs::unlinkat(dir, name, AtFlags::empty())?;
                fs::mkdirat(dir, name, mode)?;
            }
        },
        Err(e) => return Err(e.into()),
    }
    open_dir(dir, name)
}

/// Create a new regular file `name` in `dir` for writing (`O_EXCL`, so never an existing file
/// or a symlink's target).
pub(super) fn create_file(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = None;
    create_replacing(dir, name, || {
        fd = Some(fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?);
        Ok(())
    })?;
    Ok(File::from(fd.expect("openat succeeded")))
}

/// Create the symlink `name -> target` in `dir`. The target is stored as is and never followed.
pub(super) fn make_symlink(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<()> {
    if target.is_empty() || target.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the manifest gives the symlink an empty or NUL-containing target",
        ));
    }
    create_replacing(dir, name, || fs::symlinkat(target, dir, name))
}

/// Create the hard link `name` in `dir` to `old_name` in `old_dir` (no follow: `linkat`
/// without `AT_SYMLINK_FOLLOW` links a symlink itself, not its target).
pub(super) fn make_link(
    old_dir: BorrowedFd<'_>,
    old_name: &[u8],
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> io::Result<()> {
    check_component(old_name)?;
    create_replacing(dir, name, || {
        fs::linkat(old_dir, old_name, dir, name, AtFlags::empty())
    })
}

/// Create a device, fifo or socket node.
pub(super) fn make_node(
    dir: BorrowedFd<'_>,
    name: &[u8],
    kind: FileType,
    rdev: u64,
) -> io::Result<()> {
    create_replacing(dir, name, || {
        fs::mknodat(dir, name, kind, Mode::from_raw_mode(0o600), rdev)
    })
}

fn times(meta: &Meta) -> Timestamps {
    let t = Timespec {
        tv_sec: meta.mtime_sec,
        tv_nsec: meta.mtime_nsec.into(),
    };
    // The manifest has no atime; the mtime is the most meaningful value to give it.
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// An error with what step failed, for the path error message.
fn step(what: &str, err: impl Into<io::Error>) -> io::Error {
    let err = err.into();
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Apply metadata through an open descriptor (regular files, directories), in the order that
/// keeps every bit: owner first (chown clears setuid/setgid), then mode, then xattrs, and the
/// mtime last (so nothing after it touches it). `set_mtime` is false for a file whose content
/// could not be fully restored, so that it does not look untouched.
pub(super) fn apply_meta_fd(
    fd: BorrowedFd<'_>,
    meta: &Meta,
    restore_owner: bool,
    set_mtime: bool,
) -> io::Result<()> {
    if restore_owner {
        fs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| step("setting owner", e))?;
    }
    fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777)).map_err(|e| step("setting mode", e))?;
    for (name, value) in &meta.xattrs {
        fs::fsetxattr(fd, name.as_slice(), value, fs::XattrFlags::empty()).map_err(|e| {
            step(
                &format!("setting xattr {}", String::from_utf8_lossy(name)),
                e,
            )
        })?;
    }
    if set_mtime {
        fs::futimens(fd, &times(meta)).map_err(|e| step("setting mtime", e))?;
    }
    Ok(())
}

/// Apply metadata to a symlink, device, fifo or socket `name` in `dir`, without following it.
/// Mode and xattrs go through an `O_PATH | O_NOFOLLOW` descriptor of the node itself (via its
/// `/proc/self/fd` link), since `fchmodat` cannot refuse to follow a symlink on Linux and opening
/// a device could have side effects. Symlinks have no mode of their own.
pub(super) fn apply_meta_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    meta: &Meta,
    restore_owner: bool,
    is_symlink: bool,
) -> io::Result<()> {
    if restore_owner {
        fs::chownat(
            dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| step("setting owner", e))?;
    }
    if !is_symlink || !meta.xattrs.is_empty() {
        let node = fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| step("opening the node to set its mode", e))?;
        let proc_path = format!("/proc/self/fd/{}", node.as_fd().as_raw_fd());
        if !is_symlink {
            match fs::chmod(proc_path.as_str(), Mode::from_raw_mode(meta.mode & 0o7777)) {
                Ok(()) => {}
                // No /proc: the node was created by us an instant ago, in a directory we hold.
                Err(Errno::NOENT) => fs::chmodat(
                    dir,
                    name,
                    Mode::from_raw_mode(meta.mode & 0o7777),
                    AtFlags::empty(),
                )
                .map_err(|e| step("setting mode", e))?,
                Err(e) => return Err(step("setting mode", e)),
            }
        }
        for (xname, value) in &meta.xattrs {
            fs::setxattr(
                proc_path.as_str(),
                xname.as_slice(),
                value,
                fs::XattrFlags::empty(),
            )
            .map_err(|e| {
                step(
                    &format!("setting xattr {}", String::from_utf8_lossy(xname)),
                    e,
                )
            })?;
        }
    }
    fs::utimensat(dir, name, &times(meta), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| step("setting mtime", e))?;
    Ok(())
}

/// The file type for a special node's mknod.
pub(super) fn node_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::Char => FileType::CharacterDevice,
        NodeKind::Block => FileType::BlockDevice,
        NodeKind::Fifo => FileType::Fifo,
        NodeKind::Socket => FileType::Socket,
    }
}

/// Special node kinds created with `mknodat`.
#[derive(Debug, Clone, Copy)]
pub(super) enum NodeKind {
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
    /// Unix socket (just the node; nothing listens on it).
    Socket,
}
