//! The per-client files cache (format-spec/files-cache.md): proves a file unchanged by size,
//! mtime, ctime, inode and device, so an unchanged tree ingests at the cost of a walk.
//!
//! The cache is an optimization only. A missing, foreign or corrupt cache is treated as empty
//! (the files are read again); nothing here may ever make an ingest fail.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::{RepoSecret, context};
use crate::error::{Error, Result};
use crate::format::manifest::{Extent, decode_extents, encode_extents};

/// Magic at the start of a files cache.
pub const CACHE_MAGIC: &[u8; 8] = b"RSBFILES";
/// Version of the files-cache format written and read.
pub const CACHE_VERSION: u32 = 3;
/// `PRAGMA application_id` of a version 1 or 2 cache (SQLite, `'RSBC'`), removed once a
/// version 3 cache of the same client lands.
const LEGACY_APPLICATION_ID: u32 = 1_381_188_163;

const HEADER_LEN: u64 = 16;
const TRAILER_LEN: u64 = 64;
const INDEX_ENTRY_LEN: u64 = 24;
/// Fixed part of a row: hash, size, mtime, ctime, ino, dev, flags, extents length.
const ROW_FIXED: usize = 61;
/// A writer ends a block once it holds this many bytes.
const BLOCK_TARGET: usize = 2048;
/// Bytes of encoded rows a writer keeps in memory before it sorts them into a run on disk
/// (about 80,000 files; with their sort keys about 10 MiB of the ingest's memory at most).
const RUN_BYTES: usize = 8 << 20;

/// Files whose mtime is this close to (or after) the ingest start are not cached: they may
/// still change within the timestamp resolution.
pub const RECENT_MTIME_NS: i64 = 2_000_000_000;

/// Appended to a client's name for the cache of its own dedup scope
/// (`cache/<client>+scoped.files`): `+` is in no client name, so it is never another client's.
pub const SCOPED_CACHE_SUFFIX: &str = "+scoped";

/// `cache/<client>.files` under the repository root.
pub fn cache_path(root: &Path, client: &str) -> PathBuf {
    root.join("cache").join(format!("{client}.files"))
}

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Hashes relative paths with the files-cache path key, so the cache names no path.
#[derive(Clone)]
pub struct PathHasher(Zeroizing<[u8; 32]>);

impl PathHasher {
    /// The hasher for a repository secret.
    pub fn new(secret: &RepoSecret) -> Self {
        PathHasher(secret.derive(context::FILES_CACHE_PATH))
    }

    /// First 16 bytes of `BLAKE3-keyed(path key, path)`.
    pub fn hash(&self, path: &[u8]) -> [u8; 16] {
        let full = blake3::keyed_hash(&self.0, path);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full.as_bytes()[..16]);
        out
    }
}

impl std::fmt::Debug for PathHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PathHasher(..)")
    }
}

/// What the cache knows about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// Size in bytes.
    pub size: u64,
    /// mtime in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// ctime in nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
    /// The file had extended attributes (any, before staging decoding). A hit without them
    /// needs no `listxattr`: an xattr change moves the ctime.
    pub has_xattrs: bool,
    /// The file's extents as ingested.
    pub extents: Vec<Extent>,
}

impl CachedFile {
    /// True when the identifying fields (everything but the extents) are equal.
    pub fn same_file(&self, other: &CachedFile) -> bool {
        self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.ino == other.ino
            && self.dev == other.dev
    }
}

/// A read-only view of an existing cache, shared by all probe threads: the block index in
/// memory, one `pread` of a block (about 2 KiB) per lookup.
pub struct CacheReader {
    file: File,
    gc_generation: i64,
    /// First path hash and offset of each block.
    blocks: Vec<([u8; 16], u64)>,
    index_offset: u64,
}

impl CacheReader {
    /// Open `path`. `None` when it is missing, not a files cache of this version, or fails any
    /// check of format-spec/files-cache.md "Reading": the caller then reads every file.
    pub fn open(path: &Path) -> Option<CacheReader> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        if len < HEADER_LEN + TRAILER_LEN {
            return None;
        }
        // The checksum covers the whole file: one sequential read, which also leaves the
        // blocks in the page cache for the lookups that follow.
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut rest = len - 32;
        let mut reader = (&file).take(rest);
        while rest > 0 {
            let n = reader.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            hasher.update(&buf[..n]);
            rest -= n as u64;
        }
        let mut trailer = [0u8; TRAILER_LEN as usize];
        file.read_exact_at(&mut trailer, len - TRAILER_LEN).ok()?;
        if hasher.finalize().as_bytes() != &trailer[32..] {
            return None;
        }
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).ok()?;
        if &header[..8] != CACHE_MAGIC
            || u32_at(&header, 8) != CACHE_VERSION
            || u32_at(&header, 12) != 0
        {
            return None;
        }
        let gc_generation = u64_at(&trailer, 0) as i64;
        let block_count = u64_at(&trailer, 16);
        let index_offset = u64_at(&trailer, 24);
        let index_len = block_count.checked_mul(INDEX_ENTRY_LEN)?;
        if index_offset
            .checked_add(index_len)?
            .checked_add(TRAILER_LEN)?
            != len
            || index_offset < HEADER_LEN
        {
            return None;
        }
        let mut index = vec![0u8; usize::try_from(index_len).ok()?];
        file.read_exact_at(&mut index, index_offset).ok()?;
        let blocks: Vec<([u8; 16], u64)> = index
            .chunks_exact(INDEX_ENTRY_LEN as usize)
            .map(|e| (e[..16].try_into().expect("16 bytes"), u64_at(e, 16)))
            .collect();
        let first = blocks.first().map_or(index_offset, |b| b.1);
        let ordered = blocks
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        let last_in_bounds = blocks.last().is_none_or(|b| b.1 < index_offset);
        if first != HEADER_LEN || !ordered || !last_in_bounds {
            return None;
        }
        Some(CacheReader {
            file,
            gc_generation,
            blocks,
            index_offset,
        })
    }

    /// The index gc generation recorded when the cache was written.
    pub fn gc_generation(&self) -> i64 {
        self.gc_generation
    }

    /// The row for a path hash. A row that does not decode is reported as absent.
    pub fn get(&self, path_hash: &[u8; 16]) -> Option<CachedFile> {
        let b = self.blocks.partition_point(|(first, _)| first <= path_hash);
        let (first, start) = *self.blocks.get(b.checked_sub(1)?)?;
        let end = self.blocks.get(b).map_or(self.index_offset, |next| next.1);
        let mut block = vec![0u8; usize::try_from(end - start).ok()?];
        self.file.read_exact_at(&mut block, start).ok()?;
        let mut pos = 0;
        let mut prev: Option<&[u8]> = None;
        while pos < block.len() {
            let row = Row::parse(&block[pos..])?;
            let ascending = match prev {
                None => row.hash == first,
                Some(p) => p < row.hash,
            };
            if !ascending {
                return None;
            }
            match row.hash.cmp(&path_hash[..]) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return row.decode(),
                std::cmp::Ordering::Greater => return None,
            }
            prev = Some(row.hash);
            pos += row.len;
        }
        None
    }
}

/// One encoded row (format-spec/files-cache.md), borrowed from a block or a run.
struct Row<'a> {
    hash: &'a [u8],
    fixed: &'a [u8],
    extents: &'a [u8],
    /// Length of the whole row in bytes.
    len: usize,
}

impl<'a> Row<'a> {
    /// The row at the start of `bytes`; `None` when it runs past the end.
    fn parse(bytes: &'a [u8]) -> Option<Row<'a>> {
        let fixed = bytes.get(..ROW_FIXED)?;
        let ext_len = usize::try_from(u32_at(fixed, 57)).ok()?;
        let len = ROW_FIXED.checked_add(ext_len)?;
        let extents = bytes.get(ROW_FIXED..len)?;
        Some(Row {
            hash: &fixed[..16],
            fixed,
            extents,
            len,
        })
    }

    /// The row as a [`CachedFile`]; `None` for an unknown flag or extents that do not decode.
    fn decode(&self) -> Option<CachedFile> {
        let flags = self.fixed[56];
        if flags & !1 != 0 {
            return None;
        }
        Some(CachedFile {
            size: u64_at(self.fixed, 16),
            mtime_ns: u64_at(self.fixed, 24) as i64,
            ctime_ns: u64_at(self.fixed, 32) as i64,
            ino: u64_at(self.fixed, 40),
            dev: u64_at(self.fixed, 48),
            has_xattrs: flags & 1 != 0,
            extents: decode_extents(self.extents).ok()?,
        })
    }
}

/// Append the encoded row of `file` to `out`.
fn encode_row(path_hash: &[u8; 16], file: &CachedFile, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(path_hash);
    out.extend_from_slice(&file.size.to_le_bytes());
    out.extend_from_slice(&file.mtime_ns.to_le_bytes());
    out.extend_from_slice(&file.ctime_ns.to_le_bytes());
    out.extend_from_slice(&file.ino.to_le_bytes());
    out.extend_from_slice(&file.dev.to_le_bytes());
    out.push(u8::from(file.has_xattrs));
    out.extend_from_slice(&[0; 4]);
    encode_extents(&file.extents, out);
    let ext_len = u32::try_from(out.len() - start - ROW_FIXED)
        .map_err(|_| Error::invalid("files cache row: extent list over 4 GiB"))?;
    out[start + 57..start + ROW_FIXED].copy_from_slice(&ext_len.to_le_bytes());
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Writes the next cache: `cache/<client>.files.new`, renamed over `cache/<client>.files` by
/// [`CacheWriter::commit`].
///
/// Rows arrive in walk order, which is random order for path hashes. They are kept encoded in
/// memory (up to `RUN_BYTES`) and written sorted when the ingest ends; a bigger tree's rows are
/// sorted in runs appended to `cache/<client>.files.new.runs` and merged at the end, so memory
/// stays bounded whatever the number of files.
pub struct CacheWriter {
    /// `cache/<client>.files.new`, locked (flock) for the writer's life so that a second ingest
    /// of the same client cannot truncate a cache this one is writing. The cache is written
    /// through this handle.
    file: File,
    state: WriterState,
    new_path: PathBuf,
    final_path: PathBuf,
    runs_path: PathBuf,
    gc_generation: i64,
    block_target: usize,
    run_bytes: usize,
    /// Encoded rows not yet in a run, back to back, and (hash, offset) of each in arrival order.
    arena: Vec<u8>,
    rows: Vec<([u8; 16], usize)>,
    /// Runs already sorted to disk: (offset, length) in `runs_file`.
    runs_file: Option<File>,
    runs: Vec<(u64, u64)>,
}

impl CacheWriter {
    /// Start a new cache for `final_path` recording `gc_generation`. `Ok(None)` when another
    /// ingest of the same client is writing it right now.
    pub fn create(final_path: &Path, gc_generation: i64) -> Result<Option<CacheWriter>> {
        let dir = final_path
            .parent()
            .ok_or_else(|| Error::invalid("files cache path has no directory"))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let new_path = suffixed(final_path, ".new");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&new_path)
            .map_err(|e| Error::io(format!("creating {}", new_path.display()), e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("locking {}", new_path.display()),
                    e.into(),
                ));
            }
        }
        // A leftover from a crashed run: start from nothing.
        file.set_len(0)
            .map_err(|e| Error::io(format!("truncating {}", new_path.display()), e))?;
        let runs_path = suffixed(&new_path, ".runs");
        let _ = std::fs::remove_file(&runs_path);
        Ok(Some(CacheWriter {
            file,
            state: WriterState::Open,
            new_path,
            final_path: final_path.to_path_buf(),
            runs_path,
            gc_generation,
            block_target: BLOCK_TARGET,
            run_bytes: RUN_BYTES,
            arena: Vec::new(),
            rows: Vec::new(),
            runs_file: None,
            runs: Vec::new(),
        }))
    }

    /// Add (or replace) the row of one file.
    pub fn insert(&mut self, path_hash: &[u8; 16], file: &CachedFile) -> Result<()> {
        if self.state != WriterState::Open {
            return Err(closed());
        }
        let at = self.arena.len();
        encode_row(path_hash, file, &mut self.arena)?;
        self.rows.push((*path_hash, at));
        if self.arena.len() >= self.run_bytes {
            self.spill()?;
        }
        Ok(())
    }

    /// Sort the rows in memory by hash (stable: equal hashes keep their arrival order) and hand
    /// each to `emit`, only the last given of equal hashes.
    fn drain_sorted(
        &mut self,
        mut emit: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.rows.sort_by_key(|row| row.0);
        for (i, &(hash, at)) in self.rows.iter().enumerate() {
            if self.rows.get(i + 1).is_some_and(|next| next.0 == hash) {
                continue;
            }
            let len = Row::parse(&self.arena[at..])
                .expect("rows in the arena are whole")
                .len;
            emit(&self.arena[at..at + len])?;
        }
        self.rows.clear();
        self.arena.clear();
        Ok(())
    }

    /// Sort the rows in memory into a new run at the end of the runs file.
    fn spill(&mut self) -> Result<()> {
        let io = |e| Error::io(format!("writing {}", self.runs_path.display()), e);
        let file = match self.runs_file.take() {
            Some(f) => f,
            None => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.runs_path)
                .map_err(io)?,
        };
        let start = self.runs.last().map_or(0, |r| r.0 + r.1);
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut len = 0u64;
        let written = self
            .drain_sorted(|row| {
                len += row.len() as u64;
                out.write_all(row)
            })
            .and_then(|()| out.flush());
        drop(out);
        self.runs_file = Some(file);
        written.map_err(|e| Error::io(format!("writing {}", self.runs_path.display()), e))?;
        self.runs.push((start, len));
        Ok(())
    }

    /// Write the whole cache (sorting or merging what was inserted) and make it durable,
    /// without renaming it into place yet (that waits for the session; see
    /// [`CacheWriter::commit`]). Lets the ingest do this while its last pack is still being
    /// synced. Idempotent once it succeeded; after a failure the writer only refuses (a half
    /// written file is never renamed into place).
    pub fn prepare(&mut self) -> Result<()> {
        match self.state {
            WriterState::Prepared => return Ok(()),
            WriterState::Failed => return Err(closed()),
            WriterState::Open => {}
        }
        self.state = WriterState::Failed;
        let written = self.write_cache();
        self.runs_file = None;
        let _ = std::fs::remove_file(&self.runs_path);
        written?;
        self.file
            .sync_all()
            .map_err(|e| Error::io(format!("syncing {}", self.new_path.display()), e))?;
        self.state = WriterState::Prepared;
        Ok(())
    }

    fn write_cache(&mut self) -> Result<()> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io(format!("writing {}", self.new_path.display()), e))?;
        let mut out = BlockWriter::new(&file, self.block_target)
            .map_err(|e| Error::io(format!("writing {}", self.new_path.display()), e))?;
        let written = if self.runs.is_empty() {
            self.drain_sorted(|row| out.row(row))
        } else {
            if !self.rows.is_empty() {
                self.spill()?;
            }
            let runs_file = self.runs_file.as_ref().expect("runs were spilled");
            merge_runs(runs_file, &self.runs, |row| out.row(row))
        };
        written
            .and_then(|()| out.finish(self.gc_generation))
            .map_err(|e| Error::io(format!("writing {}", self.new_path.display()), e))
    }

    /// Write and sync the cache, rename it over the old one, and remove a version 1 or 2 cache
    /// of the same client.
    pub fn commit(mut self) -> Result<()> {
        self.prepare()?;
        std::fs::rename(&self.new_path, &self.final_path).map_err(|e| {
            Error::io(
                format!(
                    "renaming {} to {}",
                    self.new_path.display(),
                    self.final_path.display()
                ),
                e,
            )
        })?;
        if let Some(dir) = self.final_path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        remove_legacy(&self.final_path);
        Ok(())
    }

    /// Give up: remove the unfinished file.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.runs_path);
        let _ = std::fs::remove_file(&self.new_path);
    }
}

/// Where a [`CacheWriter`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Taking rows.
    Open,
    /// Written and synced: ready to be renamed into place.
    Prepared,
    /// Writing failed (or is under way): never renamed.
    Failed,
}

/// Remove `cache/<client>.db` (and a leftover `.db.new`) when it is a version 1 or 2 files cache
/// (a SQLite database with the files cache's application id): `<client>.db` of a client whose
/// name ends in `.placeholders` is another client's placeholder table.
fn remove_legacy(final_path: &Path) {
    let Some(stem) = final_path.as_os_str().as_bytes().strip_suffix(b".files") else {
        return;
    };
    let legacy = suffixed(Path::new(std::ffi::OsStr::from_bytes(stem)), ".db");
    for path in [suffixed(&legacy, ".new"), legacy] {
        let mut header = [0u8; 72];
        let is_cache = File::open(&path)
            .and_then(|f| f.read_exact_at(&mut header, 0))
            .is_ok()
            && header.starts_with(b"SQLite format 3\0")
            && u32::from_be_bytes(header[68..72].try_into().expect("4 bytes"))
                == LEGACY_APPLICATION_ID;
        if is_cache {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Writes sorted rows into blocks, then the block index and the trailer, hashing every byte
/// before the checksum.
struct BlockWriter<'f> {
    out: BufWriter<&'f File>,
    hasher: blake3::Hasher,
    pos: u64,
    target: usize,
    /// Bytes in the current block; `None` before the first row.
    block_len: Option<usize>,
    blocks: Vec<([u8; 16], u64)>,
    rows: u64,
}

impl<'f> BlockWriter<'f> {
    /// Start the file: its header.
    fn new(file: &'f File, target: usize) -> std::io::Result<BlockWriter<'f>> {
        let mut w = BlockWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            pos: 0,
            target,
            block_len: None,
            blocks: Vec::new(),
            rows: 0,
        };
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(CACHE_MAGIC);
        header[8..12].copy_from_slice(&CACHE_VERSION.to_le_bytes());
        w.put(&header)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.pos += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Append one encoded row; rows must come in strictly increasing hash order.
    fn row(&mut self, row: &[u8]) -> std::io::Result<()> {
        let len = match self.block_len {
            Some(len) if len < self.target => len,
            _ => {
                let hash = row[..16].try_into().expect("a row starts with its hash");
                self.blocks.push((hash, self.pos));
                0
            }
        };
        self.block_len = Some(len + row.len());
        self.rows += 1;
        self.put(row)
    }

    /// Write the block index and the trailer, and flush.
    fn finish(mut self, gc_generation: i64) -> std::io::Result<()> {
        let index_offset = self.pos;
        let blocks = std::mem::take(&mut self.blocks);
        for (hash, offset) in &blocks {
            self.put(hash)?;
            self.put(&offset.to_le_bytes())?;
        }
        self.put(&gc_generation.to_le_bytes())?;
        self.put(&self.rows.to_le_bytes())?;
        self.put(&(blocks.len() as u64).to_le_bytes())?;
        self.put(&index_offset.to_le_bytes())?;
        let checksum = self.hasher.finalize();
        self.out.write_all(checksum.as_bytes())?;
        self.out.flush()
    }
}

/// Merge sorted runs of `file` ((offset, length) each) into one sorted stream of rows for
/// `emit`. Of equal hashes, the one from the latest run wins (within a run they are unique).
fn merge_runs(
    file: &File,
    runs: &[(u64, u64)],
    mut emit: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut readers: Vec<RunReader<'_>> = runs
        .iter()
        .map(|&(offset, len)| RunReader::new(file, offset, len))
        .collect();
    // (hash, run): equal hashes pop in run order, so the last popped is the latest run's.
    let mut heap = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some(hash) = r.advance()? {
            heap.push(Reverse((hash, i)));
        }
    }
    let mut pending: Option<([u8; 16], Vec<u8>)> = None;
    while let Some(Reverse((hash, i))) = heap.pop() {
        match &mut pending {
            Some((h, row)) if *h == hash => {
                row.clear();
                row.extend_from_slice(readers[i].current());
            }
            _ => {
                if let Some((_, row)) = &pending {
                    emit(row)?;
                }
                pending = Some((hash, readers[i].current().to_vec()));
            }
        }
        if let Some(next) = readers[i].advance()? {
            heap.push(Reverse((next, i)));
        }
    }
    if let Some((_, row)) = &pending {
        emit(row)?;
    }
    Ok(())
}

/// Reads the rows of one run through a small buffer.
struct RunReader<'f> {
    file: &'f File,
    /// File offset of the next byte to buffer, and end of the run.
    next: u64,
    end: u64,
    buf: Vec<u8>,
    /// The current row is `buf[start..start + len]`; unread bytes follow up to `filled`.
    start: usize,
    len: usize,
    filled: usize,
}

impl<'f> RunReader<'f> {
    fn new(file: &'f File, offset: u64, len: u64) -> RunReader<'f> {
        RunReader {
            file,
            next: offset,
            end: offset + len,
            buf: vec![0; 64 << 10],
            start: 0,
            len: 0,
            filled: 0,
        }
    }

    /// Make at least `need` bytes available from `self.start`; false at the end of the run.
    fn fill(&mut self, need: usize) -> std::io::Result<bool> {
        while self.filled - self.start < need {
            if self.next == self.end {
                return Ok(false);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.filled, 0);
                self.filled -= self.start;
                self.start = 0;
            }
            if self.buf.len() < need {
                self.buf.resize(need, 0);
            }
            let room = (self.buf.len() - self.filled).min((self.end - self.next) as usize);
            let n = self
                .file
                .read_at(&mut self.buf[self.filled..self.filled + room], self.next)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.filled += n;
            self.next += n as u64;
        }
        Ok(true)
    }

    /// Move to the next row and return its hash; `None` at the end of the run.
    fn advance(&mut self) -> std::io::Result<Option<[u8; 16]>> {
        self.start += self.len;
        self.len = 0;
        if !self.fill(ROW_FIXED)? {
            return if self.start == self.filled {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        let len = ROW_FIXED + u32_at(&self.buf[self.start..], 57) as usize;
        if !self.fill(len)? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.len = len;
        Ok(Some(
            self.buf[self.start..self.start + 16]
                .try_into()
                .expect("16 bytes"),
        ))
    }

    /// The current row.
    fn current(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

fn closed() -> Error {
    Error::new(
        crate::error::ErrorKind::Internal,
        "files cache writer used after it was written or failed",
    )
}

#[cfg(test)]
mod tests;
