//! The FUSE side: kernel requests answered from the [`View`], errors turned into errno values
//! (a damaged chunk is EIO and one warning line, never a crash).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyXattr, Request,
};

use super::view::{Node, View};
use crate::error::{Error, ErrorKind};
use crate::format::manifest::{Body, Entry};

/// How long the kernel may keep names and attributes: a session never changes.
const TTL: Duration = Duration::from_secs(3600);

/// The filesystem handed to fuser.
pub(super) struct MountFs {
    view: Mutex<View>,
}

impl MountFs {
    pub(super) fn new(view: View) -> Self {
        MountFs {
            view: Mutex::new(view),
        }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The errno for an error; damage and unexpected failures are told on the warning channel.
fn errno(view: &View, what: &str, e: &Error) -> Errno {
    match e.kind() {
        ErrorKind::NotFound => Errno::ENOENT,
        ErrorKind::InvalidInput => Errno::EINVAL,
        _ => {
            view.warn(&format!("{what}: {e}"));
            Errno::EIO
        }
    }
}

fn time(sec: i64, nsec: u32) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(u64::from(nsec))
    }
}

/// A device number as FUSE carries it (the kernel's `new_encode_dev`).
fn fuse_rdev(rdev: u64) -> u32 {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn kind(node: &Node) -> FileType {
    match node {
        Node::Root | Node::Client(_) => FileType::Directory,
        Node::Latest(_) => FileType::Symlink,
        Node::Entry { entry, .. } => match entry.body {
            Body::Dir => FileType::Directory,
            Body::Symlink { .. } => FileType::Symlink,
            Body::CharDev { .. } => FileType::CharDevice,
            Body::BlockDev { .. } => FileType::BlockDevice,
            Body::Fifo => FileType::NamedPipe,
            Body::Socket => FileType::Socket,
            Body::File { .. } | Body::Hardlink { .. } | Body::Unreadable { .. } => {
                FileType::RegularFile
            }
        },
    }
}

fn attr(view: &mut View, ino: u64, node: &Node) -> FileAttr {
    let nlink = view.nlink(node);
    let mut a = FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: kind(node),
        perm: 0o555,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    };
    let mtime = match node {
        Node::Root => 0,
        Node::Client(c) => view.client_time(*c),
        Node::Latest(c) => {
            a.perm = 0o777;
            a.size = view.latest_target(*c).map_or(0, |t| t.len() as u64);
            view.client_time(*c)
        }
        Node::Entry { entry, .. } => return entry_attr(a, entry),
    };
    a.mtime = time(mtime, 0);
    (a.atime, a.ctime, a.crtime) = (a.mtime, a.mtime, a.mtime);
    a
}

fn entry_attr(mut a: FileAttr, entry: &Entry) -> FileAttr {
    let m = &entry.meta;
    a.perm = m.mode as u16;
    (a.uid, a.gid) = (m.uid, m.gid);
    a.mtime = time(m.mtime_sec, m.mtime_nsec);
    (a.atime, a.ctime, a.crtime) = (a.mtime, a.mtime, a.mtime);
    match &entry.body {
        Body::File { size, extents } => {
            a.size = *size;
            // Blocks of stored data (holes take none), as far as this entry's extents tell.
            let stored: u64 = extents
                .iter()
                .map(|e| match e {
                    crate::format::manifest::Extent::Chunk { len, .. } => u64::from(*len),
                    crate::format::manifest::Extent::Hole { .. } => 0,
                    crate::format::manifest::Extent::Inline { data } => data.len() as u64,
                })
                .sum();
            a.blocks = stored.div_ceil(512);
        }
        Body::Symlink { target } => a.size = target.len() as u64,
        Body::CharDev { rdev } | Body::BlockDev { rdev } => a.rdev = fuse_rdev(*rdev),
        _ => {}
    }
    a
}

/// Answer an xattr request: the size when asked for it, ERANGE when too small.
fn reply_xattr(value: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl Filesystem for MountFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut view = self.view();
        match view.lookup(parent.0, name.as_bytes()) {
            Ok((ino, node)) => {
                let a = attr(&mut view, ino, &node);
                reply.entry(&TTL, &a, Generation(0));
            }
            Err(e) => reply.error(errno(&view, "lookup", &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut view = self.view();
        match view.node(ino.0) {
            Ok(node) => {
                let a = attr(&mut view, ino.0, &node);
                reply.attr(&TTL, &a);
            }
            Err(e) => reply.error(errno(&view, "getattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let mut view = self.view();
        match view.node(ino.0) {
            Ok(Node::Latest(c)) => match view.latest_target(c) {
                Some(target) => reply.data(target.as_bytes()),
                None => reply.error(Errno::ENOENT),
            },
            Ok(Node::Entry {
                entry:
                    Entry {
                        body: Body::Symlink { target },
                        ..
                    },
                ..
            }) => reply.data(&target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(errno(&view, "readlink", &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        let mut view = self.view();
        match view.open(ino.0) {
            // Contents never change: the kernel may keep what it read across opens.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&view, "open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut view = self.view();
        match view.read(fh.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(&view, "read", &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.view().release(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // Offsets: 1 after ".", 2 after "..", then 2 + what the view gives.
        if offset == 0 && reply.add(ino, 1, FileType::Directory, ".") {
            return reply.ok();
        }
        if offset <= 1 && reply.add(INodeNo(super::view::ROOT), 2, FileType::Directory, "..") {
            return reply.ok();
        }
        let mut view = self.view();
        let result = view.list(
            ino.0,
            offset.saturating_sub(2),
            &mut |ino, node, name, next| {
                !reply.add(INodeNo(ino), next + 2, kind(node), OsStr::from_bytes(name))
            },
        );
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&view, "readdir", &e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let mut view = self.view();
        match view.node(ino.0) {
            Ok(Node::Entry { entry, .. }) => {
                match entry.meta.xattrs.iter().find(|(n, _)| n == name.as_bytes()) {
                    Some((_, value)) => reply_xattr(value, size, reply),
                    None => reply.error(Errno::ENODATA),
                }
            }
            Ok(_) => reply.error(Errno::ENODATA),
            Err(e) => reply.error(errno(&view, "getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut view = self.view();
        match view.node(ino.0) {
            Ok(node) => {
                let mut names = Vec::new();
                if let Node::Entry { entry, .. } = &node {
                    for (name, _) in &entry.meta.xattrs {
                        names.extend_from_slice(name);
                        names.push(0);
                    }
                }
                reply_xattr(&names, size, reply);
            }
            Err(e) => reply.error(errno(&view, "listxattr", &e)),
        }
    }
}
