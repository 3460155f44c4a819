//! The walker: follows the manifest in pre-order with a stack of open directories, creates each
//! entry relative to its parent's descriptor, hands regular files to worker threads, and applies
//! a directory's metadata when it leaves the directory (after all its entries are created, so
//! that creating them does not disturb its mtime, and a read-only mode does not lock us out).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Sender;

use crate::error::Result;
use crate::format::manifest::{Body, Entry, Extent, Meta};
use crate::ids::SessionId;
use crate::ingest::PathError;
use crate::reader::{ChunkSource, walk_source};
use crate::restore::files::{self, FileJob};
use crate::restore::fsops::{self, NodeKind};
use crate::restore::gaps::Gaps;
use crate::restore::{
    RestoreOptions, RestoreReport, Selection, TargetRoot, display, is_under, kind_name,
};

/// Files queued for the workers at most: bounds memory and open descriptors.
const QUEUE: usize = 64;

/// A directory on the walker's stack.
struct OpenDir {
    /// Its session path ("" for the target root).
    path: Vec<u8>,
    fd: OwnedFd,
    /// Metadata to apply when leaving it; `None` for a directory created only to reach a path.
    meta: Option<Meta>,
}

struct Walker<'a> {
    selection: &'a Selection,
    restore_owner: bool,
    /// Open directories from the target root down to the current one.
    stack: Vec<OpenDir>,
    apply_root_meta: bool,
    /// A directory that could not be created: everything below it is skipped (one error).
    failed_dir: Option<Vec<u8>>,
    /// Subset restore: hard-link targets outside the subset whose content a link needs.
    wanted: HashSet<Vec<u8>>,
    /// Their content, held from their entry until the first selected link to them.
    held: HashMap<Vec<u8>, (u64, Vec<Extent>)>,
    /// Link target -> path where its content was restored instead (subset restore).
    link_to: HashMap<Vec<u8>, Vec<u8>>,
    jobs: Sender<FileJob>,
    report: RestoreReport,
    /// The target's file system is full (set here or by a worker).
    full: &'a AtomicBool,
}

/// Restore with `root` opened; see [`crate::restore::restore`].
pub(super) fn run(
    reader: &dyn ChunkSource,
    session: SessionId,
    opts: &RestoreOptions,
    selection: &Selection,
    wanted: HashSet<Vec<u8>>,
    root: TargetRoot,
    progress: &dyn crate::progress::Progress,
) -> Result<RestoreReport> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        // A few more than cores: workers wait on pack reads as well as compute.
        .saturating_add(2)
        .min(16);
    let (tx, rx) = crossbeam_channel::bounded::<FileJob>(QUEUE);
    let worker_errors = Mutex::new(Vec::new());
    // Set when the target's file system is full: the walk stops (every further entry would
    // fail the same way).
    let full = AtomicBool::new(false);
    // Files the workers could not write (emptied): not counted as restored.
    let unwritten = Mutex::new((0u64, 0u64));
    let restore_owner = opts.restore_owner;
    let (walked, mut report) = std::thread::scope(|scope| {
        for _ in 0..workers {
            let rx = rx.clone();
            let worker_errors = &worker_errors;
            let (full, unwritten) = (&full, &unwritten);
            scope.spawn(move || {
                for job in rx {
                    let path = display(&job.path);
                    let size = job.size;
                    let outcome = files::fill(reader, job, restore_owner, progress);
                    if outcome.disk_full {
                        full.store(true, Ordering::Relaxed);
                    }
                    if outcome.not_written {
                        let mut n = unwritten.lock().unwrap_or_else(|p| p.into_inner());
                        n.0 += 1;
                        n.1 += size;
                    }
                    if !outcome.problems.is_empty() {
                        worker_errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(PathError {
                                path,
                                message: outcome.problems.join("; "),
                            });
                    }
                }
            });
        }
        drop(rx);
        let mut walker = Walker {
            selection,
            restore_owner,
            stack: vec![OpenDir {
                path: Vec::new(),
                fd: root.fd,
                meta: None,
            }],
            apply_root_meta: root.fresh && selection.is_all(),
            failed_dir: None,
            wanted,
            held: HashMap::new(),
            link_to: HashMap::new(),
            jobs: tx,
            report: RestoreReport::default(),
            full: &full,
        };
        // A damaged manifest chunk loses only its own entries: the walk goes on with the next.
        let gaps = std::cell::RefCell::new(Gaps::default());
        let walked = walk_source(
            reader,
            session,
            &mut |entry| {
                if full.load(Ordering::Relaxed) {
                    return Ok(ControlFlow::Break(()));
                }
                gaps.borrow_mut().entry(&entry.path);
                walker.visit(entry);
                Ok(ControlFlow::Continue(()))
            },
            Some(&mut |lost| {
                gaps.borrow_mut().lost(lost);
                Ok(())
            }),
        );
        // Closes the queue (the workers finish what is queued, then stop) and leaves every
        // directory still open, applying its metadata.
        let mut report = walker.finish();
        let mut gaps = gaps.into_inner();
        gaps.finish();
        report.lost_manifest_chunks = gaps.chunks;
        report.errors.extend(gaps.errors);
        (walked, report)
    });
    walked?;
    report.errors.extend(
        worker_errors
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let (files, bytes) = unwritten.into_inner().unwrap_or_else(|p| p.into_inner());
    report.entries -= files.min(report.entries);
    report.files -= files.min(report.files);
    report.bytes -= bytes.min(report.bytes);
    if full.into_inner() {
        report.disk_full = Some(format!(
            "the target's file system is full (no space left on device, or over quota): the \
             restore stopped there; {} entries were restored, the files being written were \
             left empty (named above), and the rest of the session was not restored. Free \
             space and restore again (into the same target with --force)",
            report.entries
        ));
    }
    report.errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

impl Walker<'_> {
    fn error(&mut self, path: &[u8], message: impl Into<String>) {
        self.report.errors.push(PathError {
            path: display(path),
            message: message.into(),
        });
    }

    fn visit(&mut self, entry: Entry) {
        if entry.path.is_empty() {
            if self.apply_root_meta {
                self.stack[0].meta = Some(entry.meta);
            }
            self.report.entries += 1;
            return;
        }
        if let Some(failed) = &self.failed_dir {
            if is_under(&entry.path, failed) {
                return;
            }
            self.failed_dir = None;
        }
        if !self.selection.selects(&entry.path) {
            match &entry.body {
                Body::Dir if self.selection.is_ancestor(&entry.path) => {}
                Body::File { size, extents } if self.wanted.contains(&entry.path) => {
                    self.held
                        .insert(entry.path.clone(), (*size, extents.clone()));
                    return;
                }
                _ => return,
            }
        }
        let path = entry.path.clone();
        match self.restore_entry(entry) {
            Ok(()) => self.report.entries += 1,
            Err(message) => self.error(&path, message),
        }
    }

    /// Create one entry. Returns the message of a failure.
    fn restore_entry(&mut self, entry: Entry) -> Result<(), String> {
        let Entry { path, meta, body } = entry;
        let (parent, name) = split(&path);
        let name = name.to_vec();
        let name = name.as_slice();
        self.enter(parent)?;
        let dir = self
            .stack
            .last()
            .expect("the root is never popped")
            .fd
            .as_fd();
        let kind = kind_name(&body);
        let full = self.full;
        let fail = |e: std::io::Error| format!("restoring the {kind}: {}", noted(full, e));
        match body {
            Body::Dir => match fsops::make_dir(dir, name) {
                Ok(fd) => self.stack.push(OpenDir {
                    path,
                    fd,
                    meta: Some(meta),
                }),
                Err(e) => {
                    self.failed_dir = Some(path);
                    return Err(format!(
                        "restoring the directory: {} (nothing below it was restored)",
                        noted(full, e)
                    ));
                }
            },
            Body::File { size, extents } => {
                let file = fsops::create_file(dir, name).map_err(fail)?;
                self.queue(path, file, size, extents, meta)?;
            }
            Body::Symlink { target } => {
                fsops::make_symlink(dir, name, &target).map_err(fail)?;
                fsops::apply_meta_at(dir, name, &meta, self.restore_owner, true).map_err(fail)?;
            }
            Body::Hardlink { target } => self.link(&path, name, &target, meta)?,
            Body::CharDev { rdev } => self.node(name, NodeKind::Char, rdev, &meta, kind)?,
            Body::BlockDev { rdev } => self.node(name, NodeKind::Block, rdev, &meta, kind)?,
            Body::Fifo => self.node(name, NodeKind::Fifo, 0, &meta, kind)?,
            Body::Socket => self.node(name, NodeKind::Socket, 0, &meta, kind)?,
            Body::Unreadable { message } => {
                return Err(format!("was not backed up: {message}"));
            }
        }
        Ok(())
    }

    fn node(
        &mut self,
        name: &[u8],
        kind: NodeKind,
        rdev: u64,
        meta: &Meta,
        kind_name: &str,
    ) -> Result<(), String> {
        let dir = self.stack.last().expect("root").fd.as_fd();
        let full = self.full;
        let fail = |e: std::io::Error| format!("restoring the {kind_name}: {}", noted(full, e));
        fsops::make_node(dir, name, fsops::node_type(kind), rdev).map_err(fail)?;
        fsops::apply_meta_at(dir, name, meta, self.restore_owner, false).map_err(fail)
    }

    /// Hand a new, empty regular file to the workers.
    fn queue(
        &mut self,
        path: Vec<u8>,
        file: std::fs::File,
        size: u64,
        extents: Vec<Extent>,
        meta: Meta,
    ) -> Result<(), String> {
        self.report.files += 1;
        self.report.bytes += size;
        let job = FileJob {
            path,
            file,
            size,
            extents,
            meta,
        };
        self.jobs
            .send(job)
            .map_err(|_| "the restore workers stopped unexpectedly".to_string())
    }

    /// A hard link: to the restored path of its group, or, in a subset restore where the file
    /// it links to is not selected, the content itself at the first selected link.
    fn link(&mut self, path: &[u8], name: &[u8], target: &[u8], meta: Meta) -> Result<(), String> {
        let source = if let Some(first) = self.link_to.get(target) {
            first.clone()
        } else if self.selection.selects(target) {
            target.to_vec()
        } else if let Some((size, extents)) = self.held.remove(target) {
            let dir = self.stack.last().expect("root").fd.as_fd();
            let file = fsops::create_file(dir, name)
                .map_err(|e| format!("restoring the hard-linked file: {}", noted(self.full, e)))?;
            self.link_to.insert(target.to_vec(), path.to_vec());
            return self.queue(path.to_vec(), file, size, extents, meta);
        } else {
            return Err(format!(
                "the file it is a hard link to, {}, was not restored",
                display(target)
            ));
        };
        let (source_parent, source_name) = split(&source);
        let source_dir = self
            .open_existing(source_parent)
            .map_err(|e| format!("opening the directory of {}: {e}", display(&source)))?;
        let dir = self.stack.last().expect("root").fd.as_fd();
        fsops::make_link(source_dir.as_fd(), source_name, dir, name)
            .map_err(|e| format!("linking to {}: {}", display(&source), noted(self.full, e)))
    }

    /// Open an already restored directory by its session path, from the deepest open directory
    /// above it, never following a symlink.
    fn open_existing(&self, path: &[u8]) -> std::io::Result<OwnedFd> {
        let base = self
            .stack
            .iter()
            .rev()
            .find(|d| is_under(path, &d.path))
            .expect("the root holds every path");
        let mut fd = base.fd.try_clone()?;
        for component in rest_of(path, &base.path) {
            fd = fsops::open_dir(fd.as_fd(), component)?;
        }
        Ok(fd)
    }

    /// Make the directory `parent` the top of the stack: leave directories that are not above
    /// it, then open (or, if missing, create) the ones on the way down.
    fn enter(&mut self, parent: &[u8]) -> Result<(), String> {
        while self.stack.len() > 1 && !is_under(parent, &self.stack.last().expect("root").path) {
            self.leave();
        }
        let below: Vec<Vec<u8>> = {
            let top = &self.stack.last().expect("root").path;
            rest_of(parent, top).map(<[u8]>::to_vec).collect()
        };
        for component in below {
            let top = self.stack.last().expect("root");
            let fd = match fsops::open_dir(top.fd.as_fd(), &component) {
                Ok(fd) => fd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fsops::make_dir(top.fd.as_fd(), &component).map_err(|e| {
                        format!("creating its parent directory: {}", noted(self.full, e))
                    })?
                }
                Err(e) => {
                    return Err(format!(
                        "opening its parent directory {}: {e}",
                        display(&join(&top.path, &component))
                    ));
                }
            };
            let path = join(&top.path, &component);
            self.stack.push(OpenDir {
                path,
                fd,
                meta: None,
            });
        }
        Ok(())
    }

    /// Leave the top directory, applying its metadata now that its entries exist.
    fn leave(&mut self) {
        let dir = self.stack.pop().expect("a directory to leave");
        if let Some(meta) = &dir.meta
            && let Err(e) = fsops::apply_meta_fd(dir.fd.as_fd(), meta, self.restore_owner, true)
        {
            self.error(
                &dir.path,
                format!("restoring the directory's metadata: {e}"),
            );
        }
    }

    fn finish(mut self) -> RestoreReport {
        while !self.stack.is_empty() {
            self.leave();
        }
        self.report
    }
}

/// `e`, noting in `full` when it says the file system is full.
fn noted(full: &AtomicBool, e: std::io::Error) -> std::io::Error {
    if files::is_disk_full(&e) {
        full.store(true, Ordering::Relaxed);
    }
    e
}

/// Split a non-empty session path into its parent ("" for the root) and last component.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// The components of `path` below its ancestor `base`.
fn rest_of<'p>(path: &'p [u8], base: &[u8]) -> impl Iterator<Item = &'p [u8]> {
    let rest = if base.is_empty() {
        path
    } else {
        path.get(base.len() + 1..).unwrap_or(&[])
    };
    rest.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Run the walker alone over `entries` into `target` (regular files are created but not
/// filled): lets tests feed manifests that the manifest reader would refuse.
#[cfg(test)]
pub(super) fn walk_entries_for_test(
    target: &std::path::Path,
    entries: Vec<Entry>,
) -> RestoreReport {
    let (tx, _rx) = crossbeam_channel::unbounded();
    let fd = rustix::fs::open(
        target,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let selection = Selection { roots: Vec::new() };
    let mut walker = Walker {
        selection: &selection,
        restore_owner: false,
        stack: vec![OpenDir {
            path: Vec::new(),
            fd,
            meta: None,
        }],
        apply_root_meta: false,
        failed_dir: None,
        wanted: HashSet::new(),
        held: HashMap::new(),
        link_to: HashMap::new(),
        jobs: tx,
        report: RestoreReport::default(),
        full: &AtomicBool::new(false),
    };
    for entry in entries {
        walker.visit(entry);
    }
    walker.finish()
}
