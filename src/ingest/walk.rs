//! The walker: one directory at a time, names sorted bytewise, each entry `lstat`-ed once,
//! emitting entries in manifest order (depth-first pre-order). Symlinks are never followed:
//! directories are opened relative to their parent's descriptor with `O_NOFOLLOW`, so a
//! directory swapped for a symlink mid-run cannot lead the walk outside the source.
//!
//! The `lstat` and extended-attribute calls, which on a cold inode cache wait on the disk for
//! every few entries, run ahead of the walker on a few probe threads: each open directory keeps
//! up to [`PROBE_AHEAD`] batches of [`PROBE_BATCH`] names in flight, and the walker takes the
//! answers in order. An unchanged tree then ingests at the speed of parallel `lstat`s rather
//! than serial ones.
//!
//! Memory: the names of every directory on the current path from the root are held (one
//! sorted list per open directory, plus at most `PROBE_AHEAD * PROBE_BATCH` probed entries
//! each), and the (device, inode) of hard-linked files whose other links have not all been
//! seen yet. Nothing else grows with the tree.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{Receiver, Sender};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::meta::{FileStat, Xattrs, read_xattrs};
use super::staging;
use super::{Done, Shared};
use crate::error::{Error, Result};
use crate::files_cache::CachedFile;
use crate::format::manifest::{Body, Meta};

/// Longest path the manifest allows (format-spec/manifest.md "Paths").
const MAX_PATH_LEN: usize = 65_536;
/// Names probed together by one probe thread.
const PROBE_BATCH: usize = 8;
/// Batches in flight per open directory.
const PROBE_AHEAD: usize = 8;
/// Threads that `lstat` and list extended attributes ahead of the walker (each waits on one
/// inode read at a time on a cold cache).
const PROBE_THREADS: usize = 8;

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
    /// It has extended attributes on disk (before staging decoding), for the files cache.
    pub has_xattrs: bool,
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

/// One directory entry as the probe threads found it: its `lstat`, (when that worked) its
/// extended attributes, and for a regular file the files-cache row that proves it unchanged.
struct Probed {
    name: CString,
    st: std::result::Result<FileStat, Errno>,
    xattrs: std::result::Result<Xattrs, Errno>,
    /// Path hash and row of a files-cache hit.
    cached: Option<([u8; 16], CachedFile)>,
}

/// Names of one directory for a probe thread; the answers go back on `reply`, in order.
struct ProbeJob {
    dir: Arc<OwnedFd>,
    dir_path: Arc<Vec<u8>>,
    names: Vec<CString>,
    reply: Sender<Vec<Probed>>,
}

/// The probe threads' queue. A mutex and a condition variable rather than a channel: an idle
/// probe thread then sleeps at once instead of spinning for the next batch, which on two cores
/// took the CPU the busy ones needed.
#[derive(Default)]
struct ProbeQueue {
    jobs: Mutex<ProbeJobs>,
    ready: Condvar,
}

#[derive(Default)]
struct ProbeJobs {
    queue: VecDeque<ProbeJob>,
    closed: bool,
    /// Probe threads waiting for a job: a push wakes one only if there is one (a wake-up is a
    /// system call, and the walker pushes a few thousand batches per 100,000 files).
    idle: usize,
}

impl ProbeQueue {
    fn push(&self, job: ProbeJob) {
        let mut q = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        q.queue.push_back(job);
        let wake = q.idle > 0;
        drop(q);
        if wake {
            self.ready.notify_one();
        }
    }

    /// The next job; `None` once closed and drained.
    fn pop(&self) -> Option<ProbeJob> {
        let mut q = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(job) = q.queue.pop_front() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q.idle += 1;
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            q.idle -= 1;
        }
    }

    fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }
}

/// Closes the queue when the walker returns, however it returns, so the probe threads end.
struct CloseOnDrop<'q>(&'q ProbeQueue);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A probe thread. Files-cache lookups happen here too, so that a file the cache proves
/// unchanged never travels to a worker.
fn probe_thread(sh: &Shared<'_>, jobs: &ProbeQueue, proc_fd: bool, source: &Path) {
    let mut xbuf = Vec::new();
    let mut path = Vec::new();
    while let Some(job) = jobs.pop() {
        let out = job
            .names
            .into_iter()
            .map(|name| {
                let st = rustix::fs::statat(&*job.dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileStat::from_stat(&st));
                let cached = match (&sh.cache, &st) {
                    (Some(cache), Ok(st))
                        if st.file_type() == FileType::RegularFile && st.size > 0 =>
                    {
                        path.clear();
                        path.extend_from_slice(&job.dir_path);
                        if !path.is_empty() {
                            path.push(b'/');
                        }
                        path.extend_from_slice(name.as_bytes());
                        let hash = sh.hasher.hash(&path);
                        match super::read::cached_file(sh, cache, &hash, st) {
                            Ok(hit) => hit.map(|row| (hash, row)),
                            Err(e) => {
                                sh.abort.fail(e);
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let xattrs = match st {
                    // The cache proves the file unchanged since it had no extended attributes:
                    // setting or removing one would have moved the ctime.
                    Ok(_) if cached.as_ref().is_some_and(|(_, row)| !row.has_xattrs) => {
                        Ok(Vec::new())
                    }
                    Ok(_) => {
                        let xpath = xattr_path(proc_fd, &job.dir, source, &job.dir_path, &name);
                        read_xattrs(&xpath, &mut xbuf)
                    }
                    Err(e) => Err(e),
                };
                Probed {
                    name,
                    st,
                    xattrs,
                    cached,
                }
            })
            .collect();
        // The walker may have stopped (abort); the answer is then not needed.
        let _ = job.reply.send(out);
    }
}

struct Frame {
    fd: Arc<OwnedFd>,
    path: Arc<Vec<u8>>,
    /// Names not yet handed to a probe thread.
    names: std::vec::IntoIter<CString>,
    /// Batches handed out, oldest first.
    pending: VecDeque<Receiver<Vec<Probed>>>,
    /// The batch being walked.
    current: std::vec::IntoIter<Probed>,
}

impl Frame {
    fn new(fd: OwnedFd, path: Vec<u8>, names: Vec<CString>, probes: &ProbeQueue) -> Frame {
        let mut frame = Frame {
            fd: Arc::new(fd),
            path: Arc::new(path),
            names: names.into_iter(),
            pending: VecDeque::new(),
            current: Vec::new().into_iter(),
        };
        frame.refill(probes);
        frame
    }

    /// Keep [`PROBE_AHEAD`] batches in flight while names remain.
    fn refill(&mut self, probes: &ProbeQueue) {
        while self.pending.len() < PROBE_AHEAD {
            let names: Vec<CString> = self.names.by_ref().take(PROBE_BATCH).collect();
            if names.is_empty() {
                return;
            }
            let (reply, rx) = crossbeam_channel::bounded(1);
            let job = ProbeJob {
                dir: Arc::clone(&self.fd),
                dir_path: Arc::clone(&self.path),
                names,
                reply,
            };
            probes.push(job);
            self.pending.push_back(rx);
        }
    }

    /// The next entry in name order, or `None` when the directory is done.
    fn next(&mut self, probes: &ProbeQueue) -> Option<Probed> {
        loop {
            if let Some(p) = self.current.next() {
                return Some(p);
            }
            let rx = self.pending.pop_front()?;
            self.refill(probes);
            // A probe thread always answers unless it panicked; then the directory ends here
            // and the entry count check fails the run loudly.
            self.current = rx.recv().ok()?.into_iter();
        }
    }
}

struct LinkSeen {
    path: Vec<u8>,
    meta: Meta,
    remaining: u64,
}

/// Walk `source` (already opened as `root`), calling `emit` for every path in manifest order.
/// Stops early, without error, when the run aborts.
pub(super) fn walk(
    root: OwnedFd,
    source: &Path,
    sh: &Shared<'_>,
    emit: &mut dyn FnMut(Item),
) -> Result<()> {
    let proc_fd = Path::new("/proc/self/fd").is_dir();
    let queue = ProbeQueue::default();
    std::thread::scope(|s| {
        let _close = CloseOnDrop(&queue);
        for i in 0..PROBE_THREADS {
            let jobs = &queue;
            std::thread::Builder::new()
                .name(format!("rsbackup-probe-{i}"))
                .spawn_scoped(s, move || probe_thread(sh, jobs, proc_fd, source))
                .map_err(|e| Error::io("starting the walker's threads", e))?;
        }
        walk_tree(root, source, sh, emit, &queue)
    })
}

fn walk_tree(
    root: OwnedFd,
    source: &Path,
    sh: &Shared<'_>,
    emit: &mut dyn FnMut(Item),
    probes: &ProbeQueue,
) -> Result<()> {
    let (abort, decode) = (&sh.abort.flag, sh.decode);
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
    let mut names = list_dir(&root)
        .map_err(|e| Error::io(format!("reading directory {}", source.display()), e))?;
    staging::drop_left_out(decode, b"", &mut names);
    emit(Item::Done(Done::entry(
        Vec::new(),
        st.meta(xattrs),
        Body::Dir,
    )));
    let mut stack = vec![Frame::new(root, Vec::new(), names, probes)];
    let mut links: HashMap<(u64, u64), LinkSeen> = HashMap::new();

    while let Some(frame) = stack.last_mut() {
        if abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(Probed {
            name,
            st,
            xattrs,
            cached,
        }) = frame.next(probes)
        else {
            stack.pop();
            continue;
        };
        let mut path = frame.path.to_vec();
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
        let st = match st {
            Ok(st) => st,
            Err(e) => {
                let msg = format!("cannot stat: {e}");
                emit(Item::Done(Done::unreadable(path, Meta::default(), msg)));
                continue;
            }
        };
        let on_disk = st.file_type();
        let has_xattrs = xattrs.as_ref().is_ok_and(|x| !x.is_empty());
        let (st, meta) = match xattrs {
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
            FileType::Directory => {
                if let Some(hook) = &sh.hooks.before_open_dir {
                    hook(&path);
                }
                match open_dir(&dir, &name, &st) {
                    Ok((fd, mut names)) => {
                        staging::drop_left_out(decode, &path, &mut names);
                        emit(Item::Done(Done::entry(path.clone(), meta, Body::Dir)));
                        stack.push(Frame::new(fd, path, names, probes));
                        continue;
                    }
                    Err(msg) => {
                        emit(Item::Done(Done::unreadable(path, meta, msg)));
                        continue;
                    }
                }
            }
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
                } else if let Some((hash, mut row)) = cached
                    && row.same_file(&CachedFile::of_stat(&st, has_xattrs))
                {
                    row.has_xattrs = has_xattrs;
                    let body = Body::File {
                        size: st.size,
                        extents: row.extents.clone(),
                    };
                    let mut done = Done::entry(path, meta, body);
                    done.link_target = link_target;
                    done.cache = Some((hash, row));
                    emit(Item::Done(done));
                } else {
                    emit(Item::File(FileJob {
                        dir,
                        name,
                        path,
                        st,
                        meta,
                        link_target,
                        has_xattrs,
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
fn xattr_path(
    proc_fd: bool,
    dir: &OwnedFd,
    source: &Path,
    dir_path: &[u8],
    name: &CString,
) -> CString {
    let bytes = if proc_fd {
        let mut b = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        b.extend_from_slice(name.as_bytes());
        b
    } else {
        let mut b = source.as_os_str().as_bytes().to_vec();
        b.push(b'/');
        if !dir_path.is_empty() {
            b.extend_from_slice(dir_path);
            b.push(b'/');
        }
        b.extend_from_slice(name.as_bytes());
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
