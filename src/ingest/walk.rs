//! The walker: one directory at a time, names sorted bytewise, each entry `lstat`-ed once,
//! emitting entries in manifest order (depth-first pre-order). Symlinks are never followed:
//! directories are opened relative to their parent's descriptor with `O_NOFOLLOW`, so a
//! directory swapped for a symlink mid-run cannot lead the walk outside the source.
//!
//! Memory: the names of every directory on the current path from the root are held (one
//! sorted list per open directory), plus the (device, inode) of hard-linked files whose
//! other links have not all been seen yet. Nothing else grows with the tree.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::Done;
use super::meta::{FileStat, read_xattrs};
use super::staging::{self, StagingDecode};
use crate::error::{Error, Result};
use crate::format::manifest::{Body, Meta};

/// Longest path the manifest allows (format-spec/manifest.md "Paths").
const MAX_PATH_LEN: usize = 65_536;

/// A regular file for a worker to read.
pub(super) struct FileJob {
    /// Its directory, open.
    pub dir: Arc<OwnedFd>,
    /// Its name in that directory.
    pub name: CString,
    /// Its manifest path.
    pub path: Vec<u8>,
    /// `lstat` at walk time.
    pub st: FileStat,
    /// Metadata for the entry.
    pub meta: Meta,
    /// Later paths are hard links to this one.
    pub link_target: bool,
}

/// What the walker produces, in manifest order.
pub(super) enum Item {
    /// Nothing left to do for this path.
    Done(Done),
    /// A regular file with content to read.
    File(FileJob),
}

/// Open the source directory; `InvalidInput` naming it when missing or not a directory.
pub(super) fn open_root(source: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::open(source, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::NOENT => Error::invalid(format!(
            "source {} does not exist: nothing to ingest",
            source.display()
        )),
        rustix::io::Errno::NOTDIR => Error::invalid(format!(
            "source {} is not a directory: ingest takes the staged directory",
            source.display()
        )),
        e => Error::io(format!("opening source {}", source.display()), e.into()),
    })
}

struct Frame {
    fd: Arc<OwnedFd>,
    path: Vec<u8>,
    names: std::vec::IntoIter<CString>,
}

struct LinkSeen {
    path: Vec<u8>,
    meta: Meta,
    remaining: u64,
}

/// Walk `source` (already opened as `root`), calling `emit` for every path in manifest order.
/// Stops early, without error, when `abort` is raised.
pub(super) fn walk(
    root: OwnedFd,
    source: &Path,
    abort: &AtomicBool,
    decode: &StagingDecode,
    emit: &mut dyn FnMut(Item),
) -> Result<()> {
    let proc_fd = Path::new("/proc/self/fd").is_dir();
    let mut xbuf = Vec::new();
    let st = FileStat::from_stat(
        &rustix::fs::fstat(&root)
            .map_err(|e| Error::io(format!("reading {}", source.display()), e.into()))?,
    );
    let src_c = CString::new(source.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("source path contains a NUL byte"))?;
    let xattrs = read_xattrs(&src_c, &mut xbuf).map_err(|e| {
        Error::io(
            format!("reading extended attributes of {}", source.display()),
            e.into(),
        )
    })?;
    let (st, xattrs) = staging::decode_meta(decode, st, xattrs);
    let names = list_dir(&root)
        .map_err(|e| Error::io(format!("reading directory {}", source.display()), e))?;
    emit(Item::Done(Done::entry(
        Vec::new(),
        st.meta(xattrs),
        Body::Dir,
    )));
    let mut stack = vec![Frame {
        fd: Arc::new(root),
        path: Vec::new(),
        names: names.into_iter(),
    }];
    let mut links: HashMap<(u64, u64), LinkSeen> = HashMap::new();

    while let Some(frame) = stack.last_mut() {
        if abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(name) = frame.names.next() else {
            stack.pop();
            continue;
        };
        let mut path = frame.path.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        if path.len() > MAX_PATH_LEN {
            emit(Item::Done(Done::skipped(
                path,
                format!("path is longer than {MAX_PATH_LEN} bytes; not backed up"),
            )));
            continue;
        }
        let dir = Arc::clone(&frame.fd);
        let st = match rustix::fs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => FileStat::from_stat(&st),
            Err(e) => {
                let msg = format!("cannot stat: {e}");
                emit(Item::Done(Done::unreadable(path, Meta::default(), msg)));
                continue;
            }
        };
        let xpath = xattr_path(proc_fd, &dir, source, &path, &name);
        let on_disk = st.file_type();
        let (st, meta) = match read_xattrs(&xpath, &mut xbuf) {
            Ok(x) => {
                let (st, x) = staging::decode_meta(decode, st, x);
                (st, st.meta(x))
            }
            Err(e) => {
                let msg = format!("cannot read extended attributes: {e}");
                emit(Item::Done(Done::unreadable(path, st.meta(Vec::new()), msg)));
                continue;
            }
        };
        if let Some(body) = staging::fake_super_body(decode, on_disk, &st, &dir, &name) {
            emit(Item::Done(match body {
                Ok(body) => Done::entry(path, meta, body),
                Err(msg) => Done::unreadable(path, meta, msg),
            }));
            continue;
        }
        let body = match on_disk {
            FileType::Directory => match open_dir(&dir, &name, &st) {
                Ok((fd, names)) => {
                    emit(Item::Done(Done::entry(path.clone(), meta, Body::Dir)));
                    stack.push(Frame {
                        fd: Arc::new(fd),
                        path,
                        names: names.into_iter(),
                    });
                    continue;
                }
                Err(msg) => {
                    emit(Item::Done(Done::unreadable(path, meta, msg)));
                    continue;
                }
            },
            FileType::RegularFile => {
                let mut link_target = false;
                if st.nlink > 1 {
                    let key = (st.dev, st.ino);
                    if let Some(seen) = links.get_mut(&key) {
                        let done = Done::entry(
                            path,
                            seen.meta.clone(),
                            Body::Hardlink {
                                target: seen.path.clone(),
                            },
                        );
                        seen.remaining -= 1;
                        if seen.remaining == 0 {
                            links.remove(&key);
                        }
                        emit(Item::Done(done));
                        continue;
                    }
                    let seen = LinkSeen {
                        path: path.clone(),
                        meta: meta.clone(),
                        remaining: st.nlink - 1,
                    };
                    links.insert(key, seen);
                    link_target = true;
                }
                if let Some(mut done) =
                    staging::placeholder_check(decode, &dir, &name, &path, &st, &meta)
                {
                    done.link_target = link_target;
                    emit(Item::Done(done));
                    continue;
                }
                if st.size == 0 {
                    let mut done = Done::entry(
                        path,
                        meta,
                        Body::File {
                            size: 0,
                            extents: Vec::new(),
                        },
                    );
                    done.link_target = link_target;
                    emit(Item::Done(done));
                } else {
                    emit(Item::File(FileJob {
                        dir,
                        name,
                        path,
                        st,
                        meta,
                        link_target,
                    }));
                }
                continue;
            }
            FileType::Symlink => match rustix::fs::readlinkat(&*dir, &name, Vec::new()) {
                Ok(target) => Body::Symlink {
                    target: staging::link_target(decode, target.into_bytes()),
                },
                Err(e) => {
                    let msg = format!("cannot read symlink: {e}");
                    emit(Item::Done(Done::unreadable(path, meta, msg)));
                    continue;
                }
            },
            FileType::CharacterDevice => Body::CharDev { rdev: st.rdev },
            FileType::BlockDevice => Body::BlockDev { rdev: st.rdev },
            FileType::Fifo => Body::Fifo,
            FileType::Socket => Body::Socket,
            FileType::Unknown => {
                let msg = format!("unknown file type (mode {:o})", st.mode);
                emit(Item::Done(Done::unreadable(path, meta, msg)));
                continue;
            }
        };
        emit(Item::Done(Done::entry(path, meta, body)));
    }
    Ok(())
}

/// The path to give the `l*xattr` calls. Through `/proc/self/fd/N/name` when available, so the
/// lookup starts at the already-open directory (no path race); else the full path.
fn xattr_path(proc_fd: bool, dir: &OwnedFd, source: &Path, path: &[u8], name: &CString) -> CString {
    let bytes = if proc_fd {
        let mut b = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        b.extend_from_slice(name.as_bytes());
        b
    } else {
        let mut b = source.as_os_str().as_bytes().to_vec();
        b.push(b'/');
        b.extend_from_slice(path);
        b
    };
    // Names from readdir never hold a NUL; the source was checked at the start.
    CString::new(bytes).unwrap_or_default()
}

/// Open a subdirectory without following symlinks, check it is the one `lstat` saw, and list
/// it. The error is a message for the unreadable entry.
fn open_dir(
    parent: &OwnedFd,
    name: &CString,
    st: &FileStat,
) -> std::result::Result<(OwnedFd, Vec<CString>), String> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(parent, name, flags, Mode::empty())
        .map_err(|e| format!("cannot open directory: {e}"))?;
    let now = rustix::fs::fstat(&fd).map_err(|e| format!("cannot stat directory: {e}"))?;
    let now = FileStat::from_stat(&now);
    if (now.dev, now.ino) != (st.dev, st.ino) {
        return Err("directory was replaced while being backed up".into());
    }
    let names = list_dir(&fd).map_err(|e| format!("cannot list directory: {e}"))?;
    Ok((fd, names))
}

/// The names in a directory (without `.` and `..`), sorted bytewise.
fn list_dir(fd: &OwnedFd) -> std::io::Result<Vec<CString>> {
    let mut dir = rustix::fs::Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        names.push(name.to_owned());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}
