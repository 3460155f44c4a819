//! Workers: one regular file at a time. A file the files cache proves unchanged reuses its
//! extents; any other file is opened relative to its directory (never through a symlink),
//! checked to be the file the walker saw, split into data segments around its holes, chunked,
//! hashed, deduplicated, sealed and handed to the pack writer.
//!
//! A big file is read in windows of about one maximum chunk size: while the rayon pool seals
//! one window's chunks in parallel, this thread reads the next, so one huge file does not
//! serialise the machine, and at most two windows per worker are in memory.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;
use rustix::fs::{FileType, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use super::walk::FileJob;
use super::writer::{WriteMsg, WriteQueue};
use super::{Done, Shared};
use crate::chunking::Chunker;
use crate::error::{Error, ErrorKind, Result};
use crate::files_cache::{CacheReader, CachedFile};
use crate::format::manifest::{Body, Extent};
use crate::index::ChunkKind;
use crate::store::PendingChunk;

use super::meta::FileStat;

/// Why a file could not be ingested: the path's problem (the run goes on) or the run's.
enum Fail {
    Path(String),
    Fatal(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Fatal(e)
    }
}

/// A worker thread: read jobs until the walker is done. Every job gets exactly one answer on
/// `results` (`None` once the run is aborting) so that the consumer's order never stalls.
pub(super) fn worker(
    sh: &Shared<'_>,
    jobs: Receiver<(u64, FileJob)>,
    results: Sender<super::Results>,
    tx: WriteQueue,
) {
    for (seq, job) in jobs {
        let out = if sh.abort.is_set() {
            None
        } else {
            match process_file(sh, &tx, job) {
                Ok(done) => Some(done),
                Err(e) => {
                    sh.abort.fail(e);
                    None
                }
            }
        };
        if results.send(vec![(seq, out)]).is_err() {
            return;
        }
    }
}

/// The files cache's row for a regular file, when it proves the file unchanged (same size,
/// mtime, ctime, inode and device) and its extents can be reused. Called by the walker's probe
/// threads; the worker reads every file they did not find.
pub(super) fn cached_file(
    sh: &Shared<'_>,
    cache: &CacheReader,
    hash: &[u8; 16],
    st: &FileStat,
) -> Result<Option<CachedFile>> {
    match cache.get(hash) {
        Some(hit)
            if hit.same_file(&CachedFile::of_stat(st, hit.has_xattrs))
                && cached_extents_usable(sh, &hit)? =>
        {
            Ok(Some(hit))
        }
        _ => Ok(None),
    }
}

fn process_file(sh: &Shared<'_>, tx: &WriteQueue, job: FileJob) -> Result<Done> {
    let st = job.st;
    let hash = sh.hasher.hash(&job.path);
    match read_file(sh, tx, &job) {
        Ok((extents, bytes_read)) => {
            sh.progress.advance(bytes_read);
            let mut row = CachedFile::of_stat(&st, job.has_xattrs);
            row.extents = extents.clone();
            let body = Body::File {
                size: st.size,
                extents,
            };
            let mut done = Done::entry(job.path, job.meta, body);
            done.link_target = job.link_target;
            done.bytes_read = Some(bytes_read);
            // The files cache is not encrypted: a file kept inline gets no row and is read
            // again next time (a few hundred bytes, cheaper than a row that could prove it).
            if !row.extents.iter().any(Extent::is_inline) {
                done.cache = Some((hash, row));
            }
            Ok(done)
        }
        Err(Fail::Path(msg)) => {
            let mut done = Done::unreadable(job.path, job.meta, msg);
            done.link_target = job.link_target;
            done.bytes_read = Some(0);
            Ok(done)
        }
        Err(Fail::Fatal(e)) => Err(e),
    }
}

/// A cache row's extents may be reused when they add up to the size, respect the chunker's
/// limit, and (if a garbage collection ran since the cache was written) every chunk still
/// exists.
fn cached_extents_usable(sh: &Shared<'_>, hit: &CachedFile) -> Result<bool> {
    let max = u64::from(sh.params.max_size);
    let mut total = 0u64;
    for e in &hit.extents {
        let len = e.len();
        // The cache never holds content (it is not encrypted): an inline extent there is bad.
        if len == 0 || matches!(e, Extent::Chunk { .. }) && len > max || e.is_inline() {
            return Ok(false);
        }
        total = total.saturating_add(len);
    }
    if total != hit.size {
        return Ok(false);
    }
    if sh.cache_trusted {
        return Ok(true);
    }
    let index = sh.indexes.get()?;
    for e in &hit.extents {
        if let Extent::Chunk { id, .. } = e
            && !index.has_chunk(id)?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn read_file(
    sh: &Shared<'_>,
    tx: &WriteQueue,
    job: &FileJob,
) -> std::result::Result<(Vec<Extent>, u64), Fail> {
    if let Some(hook) = &sh.hooks.before_open {
        hook(&job.path);
    }
    let file = open_file(job)?;
    let size = job.st.size;
    // A file no longer than the chunker's minimum is one chunk: read it in one go into a
    // buffer of its size (most files on a file server), without the chunker's window.
    if size <= u64::from(sh.params.min_size) && !job.st.maybe_sparse() {
        return read_small(sh, tx, &file, size);
    }
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
    let mut extents = Vec::new();
    let mut bytes_read = 0u64;
    let mut pos = 0u64;
    let sparse = job.st.maybe_sparse();
    while pos < size {
        let end = if sparse {
            let data = match rustix::fs::seek(&file, SeekFrom::Data(pos)) {
                Ok(d) => d.min(size),
                // No data past `pos`: the rest is a hole.
                Err(Errno::NXIO) => size,
                Err(e) => return Err(Fail::Path(format!("cannot find holes: {e}"))),
            };
            if data > pos {
                extents.push(Extent::Hole { len: data - pos });
                pos = data;
                if pos >= size {
                    break;
                }
            }
            match rustix::fs::seek(&file, SeekFrom::Hole(pos)) {
                Ok(h) => h.min(size),
                Err(Errno::NXIO) => size,
                Err(e) => return Err(Fail::Path(format!("cannot find holes: {e}"))),
            }
        } else {
            size
        };
        let got = chunk_range(sh, tx, &file, pos, end, &mut extents)?;
        bytes_read += got;
        if got != end - pos {
            return Err(Fail::Path(format!(
                "file shrank while being read (expected {size} bytes, ended at {})",
                pos + got
            )));
        }
        pos = end;
    }
    same_size_after_reading(&file, size)?;
    Ok((extents, bytes_read))
}

/// A file that grew or shrank while it was read is not backed up as it was read.
fn same_size_after_reading(file: &File, size: u64) -> std::result::Result<(), Fail> {
    let now = rustix::fs::fstat(file)
        .map_err(|e| Fail::Path(format!("cannot stat after reading: {e}")))?;
    let now = FileStat::from_stat(&now);
    if now.size != size {
        return Err(Fail::Path(format!(
            "size changed while being read (from {size} to {} bytes)",
            now.size
        )));
    }
    Ok(())
}

/// [`read_file`] for a file that is a single chunk.
fn read_small(
    sh: &Shared<'_>,
    tx: &WriteQueue,
    file: &File,
    size: u64,
) -> std::result::Result<(Vec<Extent>, u64), Fail> {
    let len = usize::try_from(size).map_err(|_| Fail::Path("file too large".into()))?;
    let mut buf = vec![0u8; len];
    let mut got = 0usize;
    while got < len {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => {
                return Err(Fail::Path(format!(
                    "file shrank while being read (expected {size} bytes, ended at {got})"
                )));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Fail::Path(format!("read error: {e}"))),
        }
    }
    same_size_after_reading(file, size)?;
    let extent = if size > 0 && size <= sh.inline_max {
        Extent::Inline { data: buf }
    } else {
        seal_chunk(sh, tx, &buf)?
    };
    Ok((vec![extent], size))
}

/// Open the job's file read-only without following symlinks or blocking on a fifo swapped in,
/// and check it is still the regular file the walker saw.
fn open_file(job: &FileJob) -> std::result::Result<File, Fail> {
    let base = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    // O_NOATIME keeps backups from touching atimes; it needs ownership or CAP_FOWNER.
    let fd = match rustix::fs::openat(&*job.dir, &job.name, base | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(&*job.dir, &job.name, base, Mode::empty()),
        other => other,
    };
    let fd = fd.map_err(|e| match e {
        Errno::NOENT => Fail::Path("vanished before it could be read".into()),
        Errno::LOOP => Fail::Path("was replaced by a symlink while being backed up".into()),
        e => Fail::Path(format!("cannot open: {e}")),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Fail::Path(format!("cannot stat: {e}")))?;
    let st = FileStat::from_stat(&st);
    if st.file_type() != FileType::RegularFile || (st.dev, st.ino) != (job.st.dev, job.st.ino) {
        return Err(Fail::Path("was replaced while being backed up".into()));
    }
    Ok(File::from(fd))
}

/// Reads `[pos, end)` of a file with `pread`, so the file offset (used by SEEK_DATA) is free.
struct RangeReader<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.end.saturating_sub(self.pos))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        loop {
            match self.file.read_at(&mut buf[..want], self.pos) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Chunk `[start, end)` into `extents`; returns the bytes read.
fn chunk_range(
    sh: &Shared<'_>,
    tx: &WriteQueue,
    file: &File,
    start: u64,
    end: u64,
    extents: &mut Vec<Extent>,
) -> std::result::Result<u64, Fail> {
    let reader = RangeReader {
        file,
        pos: start,
        end,
    };
    let mut chunker = Chunker::new(reader, sh.params, &sh.gear);
    let limit = sh.params.max_size as usize;
    let mut total = 0u64;
    let (mut window, mut eof) = read_window(&mut chunker, limit)?;
    loop {
        if sh.abort.is_set() {
            return Err(Fail::Fatal(aborted()));
        }
        total += window.iter().map(|c| c.len() as u64).sum::<u64>();
        if eof {
            extents.extend(seal_window(sh, tx, &window)?);
            return Ok(total);
        }
        let mut sealed = None;
        let mut next = None;
        sh.pool.in_place_scope(|s| {
            s.spawn(|_| sealed = Some(seal_window(sh, tx, &window)));
            next = Some(read_window(&mut chunker, limit));
        });
        let sealed = sealed.ok_or_else(|| Fail::Fatal(aborted()))?;
        extents.extend(sealed?);
        (window, eof) = next.ok_or_else(|| Fail::Fatal(aborted()))??;
    }
}

/// Chunks until at least `limit` bytes or the end; true when the end was reached.
fn read_window<R: Read>(
    chunker: &mut Chunker<'_, R>,
    limit: usize,
) -> std::result::Result<(Vec<Vec<u8>>, bool), Fail> {
    let mut window = Vec::new();
    let mut total = 0usize;
    while total < limit {
        match chunker.next_chunk() {
            Ok(Some(chunk)) => {
                total += chunk.len();
                window.push(chunk);
            }
            Ok(None) => return Ok((window, true)),
            Err(e) => return Err(Fail::Path(format!("read error: {e}"))),
        }
    }
    Ok((window, false))
}

fn seal_window(sh: &Shared<'_>, tx: &WriteQueue, window: &[Vec<u8>]) -> Result<Vec<Extent>> {
    if window.len() <= 1 {
        return window.iter().map(|c| seal_chunk(sh, tx, c)).collect();
    }
    sh.pool
        .install(|| window.par_iter().map(|c| seal_chunk(sh, tx, c)).collect())
}

/// Name a chunk; unless this run or the index already has it, seal it and hand it to the
/// writer.
fn seal_chunk(sh: &Shared<'_>, tx: &WriteQueue, plaintext: &[u8]) -> Result<Extent> {
    let id = sh.id_key.chunk_id(plaintext);
    if let Some(claim) = sh.inflight.claim(id) {
        let stored = sh.indexes.get()?.has_chunk(&id)?;
        if !stored {
            let (envelope, key_id) = sh.seal_new(&id, plaintext)?;
            let chunk = PendingChunk {
                id,
                kind: ChunkKind::Data,
                key_id,
                envelope,
                refs: Vec::new(),
            };
            let msg = WriteMsg::new(chunk, plaintext.len() as u64)?;
            tx.send(msg).map_err(|_| aborted())?;
            claim.submitted();
        }
        // Dropping an unsubmitted claim withdraws it: the chunk is in the index already.
    }
    Ok(Extent::Chunk {
        len: plaintext.len() as u32,
        id,
    })
}

pub(super) fn aborted() -> Error {
    Error::new(ErrorKind::Internal, "ingest aborted by an earlier error")
}
