//! The per-client files cache (format-spec/files-cache.md): proves a file unchanged by size,
//! mtime, ctime, inode and device, so an unchanged tree ingests at the cost of a walk.
//!
//! The cache is an optimization only. A missing, foreign or corrupt cache is treated as empty
//! (the files are read again); nothing here may ever make an ingest fail.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use zeroize::Zeroizing;

use crate::crypto::{RepoSecret, context};
use crate::error::{Error, Result};
use crate::format::manifest::{Extent, decode_extents, encode_extents};

/// `PRAGMA application_id` of a files cache (`'RSBC'`).
pub const CACHE_APPLICATION_ID: i32 = 1_381_188_163;
/// `PRAGMA user_version` of a files cache.
pub const CACHE_VERSION: i32 = 2;

/// Files whose mtime is this close to (or after) the ingest start are not cached: they may
/// still change within the timestamp resolution.
pub const RECENT_MTIME_NS: i64 = 2_000_000_000;

/// `cache/<client>.db` under the repository root.
pub fn cache_path(root: &Path, client: &str) -> PathBuf {
    root.join("cache").join(format!("{client}.db"))
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

/// A read-only view of an existing cache. One per thread (a connection is not `Sync`).
pub struct CacheReader {
    conn: Connection,
    gc_generation: Option<i64>,
}

impl CacheReader {
    /// Open `path` read-only. `None` when it is missing, not a files cache of this version, or
    /// unreadable: the caller then reads every file.
    pub fn open(path: &Path) -> Option<CacheReader> {
        if !path.is_file() {
            return None;
        }
        // Lookups go by path hash, so they touch the file's pages in random order: ask for the
        // whole file at once (one sequential read on a cold cache instead of a seek per file).
        if let Ok(f) = File::open(path) {
            let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ok()?;
        // Every worker has its own connection: map the file rather than copy each page into
        // each connection's page cache. Shared, read-only, bounded by the file.
        let _ = conn.pragma_update(None, "mmap_size", 256i64 << 20);
        // One read transaction for the reader's life: otherwise every lookup takes and drops
        // the shared lock (fcntl) and re-validates the page cache, which cost more than the
        // lookup itself. Nothing writes this file in place (the next cache is renamed over it).
        conn.execute_batch("BEGIN").ok()?;
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .ok()?;
        let version: i32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .ok()?;
        if app != CACHE_APPLICATION_ID || version != CACHE_VERSION {
            return None;
        }
        let gc_generation = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'gc-generation'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .ok();
        Some(CacheReader {
            conn,
            gc_generation,
        })
    }

    /// The index gc generation recorded when the cache was written.
    pub fn gc_generation(&self) -> Option<i64> {
        self.gc_generation
    }

    /// The row for a path hash. A row that does not decode is reported as absent.
    pub fn get(&self, path_hash: &[u8; 16]) -> Option<CachedFile> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT size, mtime_ns, ctime_ns, ino, dev, has_xattrs, extents FROM files \
                 WHERE path_hash = ?1",
            )
            .ok()?;
        let row = stmt
            .query_row([&path_hash[..]], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Vec<u8>>(6)?,
                ))
            })
            .optional()
            .ok()??;
        let extents = decode_extents(&row.6).ok()?;
        // Integers are stored as their two's-complement bit patterns (SQLite has no u64).
        Some(CachedFile {
            size: row.0 as u64,
            mtime_ns: row.1,
            ctime_ns: row.2,
            ino: row.3 as u64,
            dev: row.4 as u64,
            has_xattrs: row.5 != 0,
            extents,
        })
    }
}

/// Rows buffered by [`CacheWriter`] before they are inserted, sorted by path hash.
const INSERT_BATCH: usize = 16_384;
/// Page cache of the connection that builds a cache, in KiB (SQLite's default is 2 MiB, less
/// than the B-tree of a few hundred thousand files, so inserts spilled pages mid-build).
const WRITER_CACHE_KIB: i64 = 32 << 10;

/// Writes the next cache: `cache/<client>.db.new`, renamed over `cache/<client>.db` by
/// [`CacheWriter::commit`]. All rows go in one transaction.
///
/// Rows arrive in walk order, which is random order for path hashes; they are buffered
/// (`INSERT_BATCH` at most) and inserted sorted, so each batch walks the B-tree once from
/// left to right instead of splitting pages all over it.
pub struct CacheWriter {
    conn: Option<Connection>,
    new_path: PathBuf,
    final_path: PathBuf,
    // Held (flock) for the writer's life so that a second ingest of the same client cannot
    // truncate a cache this one is writing.
    _lock: File,
    batch: Vec<([u8; 16], CachedFile)>,
    buf: Vec<u8>,
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
        let mut name = final_path.as_os_str().to_owned();
        name.push(".new");
        let new_path = PathBuf::from(name);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&new_path)
            .map_err(|e| Error::io(format!("creating {}", new_path.display()), e))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
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
        lock.set_len(0)
            .map_err(|e| Error::io(format!("truncating {}", new_path.display()), e))?;
        let _ = std::fs::remove_file(journal_of(&new_path));
        let conn = Connection::open(&new_path)?;
        // No journal and no syncs while building: the file is fsynced once before the rename,
        // and a torn .new file is never renamed into place.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA cache_size = -{WRITER_CACHE_KIB};
             PRAGMA application_id = {CACHE_APPLICATION_ID};
             PRAGMA user_version = {CACHE_VERSION};
             CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
             CREATE TABLE files (
               path_hash BLOB PRIMARY KEY,
               size      INTEGER NOT NULL,
               mtime_ns  INTEGER NOT NULL,
               ctime_ns  INTEGER NOT NULL,
               ino       INTEGER NOT NULL,
               dev       INTEGER NOT NULL,
               has_xattrs INTEGER NOT NULL,
               extents   BLOB NOT NULL
             ) WITHOUT ROWID;
             BEGIN;"
        ))?;
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('gc-generation', ?1)",
            [gc_generation],
        )?;
        Ok(Some(CacheWriter {
            conn: Some(conn),
            new_path,
            final_path: final_path.to_path_buf(),
            _lock: lock,
            batch: Vec::new(),
            buf: Vec::new(),
        }))
    }

    /// Add (or replace) the row of one file.
    pub fn insert(&mut self, path_hash: &[u8; 16], file: &CachedFile) -> Result<()> {
        if self.conn.is_none() {
            return Err(closed());
        }
        self.batch.push((*path_hash, file.clone()));
        if self.batch.len() >= INSERT_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Insert the buffered rows, sorted by path hash. Equal hashes keep their arrival order,
    /// so the last one wins, as it would have inserted one by one.
    fn flush(&mut self) -> Result<()> {
        let conn = self.conn.as_ref().ok_or_else(closed)?;
        self.batch.sort_by_key(|row| row.0);
        let mut stmt = conn.prepare_cached(
            "INSERT OR REPLACE INTO files
               (path_hash, size, mtime_ns, ctime_ns, ino, dev, has_xattrs, extents)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (path_hash, file) in self.batch.drain(..) {
            self.buf.clear();
            encode_extents(&file.extents, &mut self.buf);
            stmt.execute(params![
                &path_hash[..],
                file.size as i64,
                file.mtime_ns,
                file.ctime_ns,
                file.ino as i64,
                file.dev as i64,
                i64::from(file.has_xattrs),
                &self.buf,
            ])?;
        }
        Ok(())
    }

    /// Insert what is buffered, commit, and make the file durable, without renaming it into
    /// place yet (that waits for the session; see [`CacheWriter::commit`]). Lets the ingest do
    /// this while its last pack is still being synced. Idempotent.
    pub fn prepare(&mut self) -> Result<()> {
        if self.conn.is_none() {
            return Ok(());
        }
        self.flush()?;
        let conn = self.conn.take().ok_or_else(closed)?;
        conn.execute_batch("COMMIT")?;
        conn.close().map_err(|(_, e)| Error::from(e))?;
        let file = File::open(&self.new_path)
            .map_err(|e| Error::io(format!("opening {}", self.new_path.display()), e))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", self.new_path.display()), e))?;
        Ok(())
    }

    /// Commit, make the file durable and rename it over the old cache.
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
        Ok(())
    }

    /// Give up: remove the unfinished file.
    pub fn abandon(mut self) {
        drop(self.conn.take());
        let _ = std::fs::remove_file(&self.new_path);
    }
}

fn journal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-journal");
    PathBuf::from(name)
}

fn closed() -> Error {
    Error::new(
        crate::error::ErrorKind::Internal,
        "files cache writer used after commit",
    )
}

#[cfg(test)]
mod tests;
