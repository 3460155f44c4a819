//! The SQLite index (format-spec/index.md): schema, version check, and the queries the
//! operations need. Each `Index` is one connection; open one per thread.
//!
//! Every write runs in its own `BEGIN IMMEDIATE` transaction: taking the write lock up front
//! means a busy database waits in the busy handler instead of failing half way through when a
//! read transaction would have to be upgraded.

mod audit;
mod client_scope;
mod damaged;
mod fleet;
mod gc;
mod invariants;
mod keys;
mod mirror;
mod open;
mod rebuild;
mod rows;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ChunkId, KeyId, PackName, SessionId, WriterId};
use crate::store::space as store_space;

pub use audit::AuditRow;
pub use fleet::{ClientChunks, MirrorMark, RefusalRow, StoreTotals};
pub use gc::{DeadChunks, MovedChunk, PackUse};
pub use invariants::{MisplacedChunk, MissingChild, MissingRoot};
pub use mirror::{MirrorTargetRow, MirroredSession, RepairedChunk};
pub use rebuild::{FoundChunk, IndexBuilder};
pub use rows::{
    ChunkKind, ChunkLocation, PackInfo, SealedChunk, SessionInfo, SessionState, SessionStats,
};
use rows::{
    finish_session_row, location_from_row, location_select, session_columns, session_from_row,
    to_i64, to_u64,
};
pub use schema::{APPLICATION_ID, INDEX_VERSION};

/// How long a connection waits for another writer before reporting `Locked`. Ingests hold the
/// write lock only for short transactions, so a minute means something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest `sessions.reason` stored, in bytes (format-spec/index.md).
pub const MAX_REASON_BYTES: usize = 4096;

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary, as `sessions.reason` and the
/// session record hold it.
pub fn cut_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// One connection to `index.db`.
pub struct Index {
    conn: Connection,
    path: PathBuf,
    /// The schema version: [`INDEX_VERSION`], or 1 for an old index opened read-only (which
    /// cannot be migrated; its sessions have no `reason`).
    version: i32,
    /// Opened read-only because the disk was full: every write fails, and says why.
    on_full_disk: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({})", self.path.display())
    }
}

impl Index {
    /// Create a new index with the current schema.
    pub fn create(path: &Path, repository_id: &str) -> Result<Index> {
        let conn = create_new_database(path)?;
        let index = Index {
            conn,
            path: path.to_path_buf(),
            version: INDEX_VERSION,
            on_full_disk: false,
        };
        index.configure()?;
        index.write_tx("creating the schema", |conn| {
            schema::create(conn, repository_id)
        })?;
        Ok(index)
    }

    /// Per-connection settings (format-spec/index.md): WAL, full sync, foreign keys, busy wait.
    fn configure(&self) -> Result<()> {
        let ctx = |e: rusqlite::Error| {
            Error::from(e).context(format!("configuring index {}", self.path.display()))
        };
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(ctx)?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(ctx)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "index {}: cannot switch to WAL journal mode (got {mode:?})",
                    self.path.display()
                ),
            ));
        }
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(ctx)?;
        Ok(())
    }

    /// Run `f` in a `BEGIN IMMEDIATE` transaction; roll back on error.
    fn write_tx<T>(&self, what: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let ctx = |e: rusqlite::Error| {
            self.explain(Error::from(e).context(format!("index {}: {what}", self.path.display())))
        };
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(ctx)?;
        match f(&self.conn) {
            Ok(v) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(ctx(e))
                }
            },
            Err(e) => {
                // The error from `f` is the one worth reporting; a failed rollback leaves the
                // transaction to be rolled back when the connection closes.
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(self.explain(e.context(format!("index {}: {what}", self.path.display()))))
            }
        }
    }

    /// A database error with what was being done, and which index.
    fn err(&self, e: rusqlite::Error, what: impl std::fmt::Display) -> Error {
        self.explain(Error::from(e).context(format!("index {}: {what}", self.path.display())))
    }

    /// Say "the repository's disk is full" when that is why an I/O error happened.
    fn explain(&self, e: Error) -> Error {
        let root = open::repository_dir(&self.path);
        if self.on_full_disk && e.kind() == ErrorKind::Io {
            return store_space::disk_full(
                root,
                format_args!("index {} was opened read-only: {e}", self.path.display()),
            );
        }
        store_space::explain(root, e)
    }

    /// Whether the index was opened read-only because its disk was full.
    pub fn opened_on_full_disk(&self) -> bool {
        self.on_full_disk
    }

    /// The raw connection, for tests that damage or inspect rows; everything else goes
    /// through the queries here, the one place that knows the schema.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    /// The repository id recorded at creation (`meta.repository-id`).
    pub fn repository_id(&self) -> Result<String> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'repository-id'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e, "reading the repository id"))?
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "index {} has no repository-id",
                    self.path.display()
                ))
            })
    }

    /// Where a chunk is, if stored.
    pub fn lookup_chunk(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        let mut stmt = self
            .conn
            .prepare_cached(location_select!("WHERE c.id = ?1"))
            .map_err(|e| self.err(e, "looking up a chunk"))?;
        stmt.query_row([&id.0], location_from_row)
            .optional()
            .map_err(|e| self.err(e, format_args!("looking up chunk {id}")))
    }

    /// Start a read transaction: the reads that follow see the index as of the first one, and
    /// do not each take and drop the database's shared lock. Only for a connection that
    /// nothing writes through until [`Index::end_read`].
    pub fn begin_read(&self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.err(e, "starting a read transaction"))
    }

    /// Bound this connection's page cache to about `kib` KiB (SQLite's default is 2 MiB per
    /// connection, and an ingest keeps one connection per thread that looks chunks up).
    pub fn limit_page_cache(&self, kib: u32) -> Result<()> {
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = -{kib}"))
            .map_err(|e| self.err(e, "setting the page cache size"))
    }

    /// End a read transaction started by [`Index::begin_read`].
    pub fn end_read(&self) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.err(e, "ending a read transaction"))
    }

    /// Whether a chunk is stored (cheaper than [`Index::lookup_chunk`]).
    pub fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM chunks WHERE id = ?1")
            .map_err(|e| self.err(e, "looking up a chunk"))?;
        stmt.exists([&id.0])
            .map_err(|e| self.err(e, format_args!("looking up chunk {id}")))
    }

    /// Commit a wrapped data key; returns its id.
    pub fn insert_data_key(&self, wrapped: &[u8], now: i64) -> Result<KeyId> {
        self.write_tx("recording a data key", |conn| {
            conn.execute(
                "INSERT INTO data_keys (wrapped, created) VALUES (?1, ?2)",
                params![wrapped, now],
            )?;
            Ok(KeyId(to_u64(conn.last_insert_rowid(), "key id")?))
        })
    }

    /// The wrapped data key `id`.
    pub fn data_key(&self, id: KeyId) -> Result<Vec<u8>> {
        let row = to_i64(id.0, "key id")?;
        self.conn
            .prepare_cached("SELECT wrapped FROM data_keys WHERE id = ?1")
            .and_then(|mut s| s.query_row([row], |r| r.get(0)).optional())
            .map_err(|e| self.err(e, format_args!("reading data key {}", id.0)))?
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "index {}: data key {} is missing",
                    self.path.display(),
                    id.0
                ))
            })
    }

    /// Commit a pack row in state `writing`; returns its row id.
    pub fn begin_pack(&self, name: &PackName, writer: &WriterId, now: i64) -> Result<i64> {
        self.write_tx(&format!("starting pack {name}"), |conn| {
            conn.execute(
                "INSERT INTO packs (name, state, writer, size, created) \
                 VALUES (?1, 'writing', ?2, 0, ?3)",
                params![&name.0, &writer.0, now],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// In one transaction: insert the chunks (and manifest refs), mark the pack sealed.
    /// A chunk already present is left as it is (first copy wins). A manifest chunk naming a
    /// chunk that is not stored is refused (`Internal`): it would break invariant 2.
    ///
    /// References are stored by chunk number (`chunks.num`), which exists only once the chunk's
    /// row does: the chunk rows go in first, so a manifest chunk may name a chunk sealed
    /// earlier or in this same pack, never one that is not in the index.
    pub fn seal_pack(&self, pack_row: i64, size: u64, chunks: &[SealedChunk]) -> Result<()> {
        let size = to_i64(size, "pack size")?;
        self.write_tx(&format!("sealing pack row {pack_row}"), |conn| {
            let mut insert_chunk = conn.prepare_cached(
                "INSERT OR IGNORE INTO chunks (id, kind, pack, offset, length, key_id, stored_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for c in chunks {
                insert_chunk.execute(params![
                    &c.id.0,
                    c.kind as i64,
                    pack_row,
                    to_i64(c.offset, "record offset")?,
                    i64::from(c.length),
                    to_i64(c.key_id.0, "key id")?,
                    &c.stored_hash,
                ])?;
            }
            let mut insert_ref = conn.prepare_cached(
                "INSERT OR IGNORE INTO chunk_refs (parent, child) VALUES (?1, ?2)",
            )?;
            for c in chunks.iter().filter(|c| c.kind == ChunkKind::Manifest) {
                let parent = chunk_num(conn, &c.id)?.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("manifest chunk {} has no row after its insert", c.id),
                    )
                })?;
                for child in &c.refs {
                    let Some(child) = chunk_num(conn, child)? else {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            format!(
                                "manifest chunk {} names chunk {child}, which is not stored",
                                c.id
                            ),
                        ));
                    };
                    insert_ref.execute([parent, child])?;
                }
            }
            let updated = conn.execute(
                "UPDATE packs SET state = 'sealed', size = ?1, writer = NULL \
                 WHERE id = ?2 AND state = 'writing'",
                params![size, pack_row],
            )?;
            if updated != 1 {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("pack row {pack_row} is not a pack being written"),
                ));
            }
            Ok(())
        })
    }

    /// Commit a session in state `running`.
    pub fn create_session(
        &self,
        client: &str,
        writer: &WriterId,
        started: i64,
    ) -> Result<SessionId> {
        self.write_tx(&format!("starting a session of {client}"), |conn| {
            conn.execute(
                "INSERT INTO sessions (client, state, writer, started) \
                 VALUES (?1, 'running', ?2, ?3)",
                params![client, &writer.0, started],
            )?;
            Ok(SessionId(conn.last_insert_rowid()))
        })
    }

    /// In one transaction: store the root and make the session visible. Every root chunk must
    /// be stored (invariant 3), else `Internal`.
    pub fn finish_session(
        &self,
        id: SessionId,
        state: SessionState,
        finished: i64,
        stats: &SessionStats,
        root: &[ChunkId],
    ) -> Result<()> {
        self.finish_session_with_reason(id, state, finished, stats, root, None)
    }

    /// [`Index::finish_session`], recording why the session is `partial` (`reason`, at most
    /// [`MAX_REASON_BYTES`], cut at a character boundary beyond that).
    pub fn finish_session_with_reason(
        &self,
        id: SessionId,
        state: SessionState,
        finished: i64,
        stats: &SessionStats,
        root: &[ChunkId],
        reason: Option<&str>,
    ) -> Result<()> {
        let reason = reason.map(cut_reason);
        if state == SessionState::Running {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("session {id} cannot be finished in state running"),
            ));
        }
        self.write_tx(&format!("finishing session {id}"), |conn| {
            let current: Option<String> = conn
                .query_row("SELECT state FROM sessions WHERE id = ?1", [id.0], |r| {
                    r.get(0)
                })
                .optional()?;
            if current.as_deref() != Some("running") {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("session {id} is not a running session"),
                ));
            }
            let mut rows = Vec::with_capacity(root.len());
            for (seq, chunk) in root.iter().enumerate() {
                let Some(num) = chunk_num(conn, chunk)? else {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        format!("root chunk {chunk} of session {id} is not stored"),
                    ));
                };
                rows.push((num, seq as i64));
            }
            insert_root(conn, id, rows)?;
            let updated = conn.execute(
                "UPDATE sessions SET state = ?1, finished = ?2, files = ?3, bytes = ?4, \
                 errors = ?5, new_chunks = ?6, new_bytes = ?7, writer = NULL, reason = ?9 \
                 WHERE id = ?8 AND state = 'running'",
                params![
                    state.as_sql(),
                    finished,
                    to_i64(stats.files, "file count")?,
                    to_i64(stats.bytes, "byte count")?,
                    to_i64(stats.errors, "error count")?,
                    to_i64(stats.new_chunks, "chunk count")?,
                    to_i64(stats.new_bytes, "byte count")?,
                    id.0,
                    reason,
                ],
            )?;
            if updated != 1 {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("session {id} is not a running session"),
                ));
            }
            Ok(())
        })
    }

    /// Visible sessions, oldest first, optionally of one client.
    pub fn sessions(&self, client: Option<&str>) -> Result<Vec<SessionInfo>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{} WHERE state != 'running' AND (?1 IS NULL OR client = ?1) \
                 ORDER BY started, id",
                session_columns(self.version)
            ))
            .map_err(|e| self.err(e, "listing sessions"))?;
        let rows = stmt
            .query_map([client], session_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e, "listing sessions"))?;
        rows.into_iter().map(finish_session_row).collect()
    }

    /// One visible session; `NotFound` otherwise.
    pub fn session(&self, id: SessionId) -> Result<SessionInfo> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "{} WHERE id = ?1 AND state != 'running'",
                session_columns(self.version)
            ))
            .and_then(|mut s| s.query_row([id.0], session_from_row).optional())
            .map_err(|e| self.err(e, format_args!("reading session {id}")))?;
        match row {
            Some(row) => finish_session_row(row),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("session {id} does not exist"),
            )),
        }
    }

    /// The session's manifest chunk ids, in order; `NotFound` for a session that is not visible.
    pub fn session_root(&self, id: SessionId) -> Result<Vec<ChunkId>> {
        self.session(id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.id FROM session_manifest m JOIN chunks c ON c.num = m.chunk \
                 WHERE m.session = ?1 ORDER BY m.seq",
            )
            .map_err(|e| self.err(e, format_args!("reading the root of session {id}")))?;
        stmt.query_map([id.0], |r| Ok(ChunkId(r.get(0)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, format_args!("reading the root of session {id}")))
    }

    /// The current gc generation.
    pub fn gc_generation(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'gc-generation'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e, "reading the gc generation"))?
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "index {} has no gc-generation",
                    self.path.display()
                ))
            })
    }

    /// All pack rows, by row id.
    pub fn packs(&self) -> Result<Vec<PackInfo>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, state, writer, size FROM packs ORDER BY id")
            .map_err(|e| self.err(e, "listing packs"))?;
        stmt.query_map([], |r| {
            Ok(PackInfo {
                row: r.get(0)?,
                name: PackName(r.get(1)?),
                sealed: r.get::<_, String>(2)? == "sealed",
                writer: r.get(3)?,
                size: to_u64(r.get(4)?, "pack size")?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e, "listing packs"))
    }

    /// Chunks stored in one pack, by offset.
    pub fn chunks_in_pack(&self, pack_row: i64) -> Result<Vec<ChunkLocation>> {
        let mut stmt = self
            .conn
            .prepare_cached(location_select!("WHERE c.pack = ?1 ORDER BY c.offset"))
            .map_err(|e| self.err(e, "listing the chunks of a pack"))?;
        stmt.query_map([pack_row], location_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, format_args!("listing the chunks of pack row {pack_row}")))
    }

    /// The chunks a manifest chunk names (its `chunk_refs`), by id; empty for a data chunk or
    /// a chunk that is not stored.
    pub fn chunk_refs(&self, id: &ChunkId) -> Result<Vec<ChunkId>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.id FROM chunks p JOIN chunk_refs r ON r.parent = p.num \
                 JOIN chunks c ON c.num = r.child WHERE p.id = ?1 ORDER BY c.id",
            )
            .map_err(|e| self.err(e, "reading the references of a chunk"))?;
        stmt.query_map([&id.0], |r| Ok(ChunkId(r.get(0)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, format_args!("reading the references of chunk {id}")))
    }

    /// Visible sessions whose root or whose manifest chunks' references include `id`.
    pub fn sessions_using_chunk(&self, id: &ChunkId) -> Result<Vec<SessionId>> {
        let mut stmt = self
            .conn
            .prepare_cached(concat!(
                "SELECT s.id FROM sessions s, chunks c WHERE c.id = ?1 \
                   AND s.state != 'running' AND ",
                rows::session_holds_chunk!(),
                " ORDER BY s.id"
            ))
            .map_err(|e| self.err(e, "finding sessions using a chunk"))?;
        stmt.query_map([&id.0], |r| Ok(SessionId(r.get(0)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, format_args!("finding sessions using chunk {id}")))
    }

    /// Writer ids that own `writing` packs or `running` sessions.
    pub fn writers_with_leftovers(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT writer FROM packs WHERE state = 'writing' AND writer IS NOT NULL \
                 UNION \
                 SELECT writer FROM sessions WHERE state = 'running' AND writer IS NOT NULL",
            )
            .map_err(|e| self.err(e, "listing writers"))?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "listing writers"))
    }

    /// The names of a writer's packs in state `writing`: the files the caller deletes before
    /// [`Index::forget_writer`].
    pub fn writing_packs_of(&self, writer: &str) -> Result<Vec<PackName>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM packs WHERE state = 'writing' AND writer = ?1")
            .map_err(|e| self.err(e, "listing packs being written"))?;
        stmt.query_map([writer], |r| Ok(PackName(r.get(0)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, format_args!("listing the packs of writer {writer}")))
    }

    /// Delete the rows of a dead writer, in one transaction (after its pack files are gone):
    /// its `writing` packs, its `running` sessions and their roots.
    pub fn forget_writer(&self, writer: &str) -> Result<()> {
        self.write_tx(&format!("forgetting writer {writer}"), |conn| {
            conn.execute(
                "DELETE FROM session_manifest WHERE session IN \
                 (SELECT id FROM sessions WHERE state = 'running' AND writer = ?1)",
                [writer],
            )?;
            let sessions = conn.execute(
                "DELETE FROM sessions WHERE state = 'running' AND writer = ?1",
                [writer],
            )?;
            conn.execute(
                "DELETE FROM packs WHERE state = 'writing' AND writer = ?1",
                [writer],
            )?;
            if sessions > 0 {
                // The dead ingest may have sealed packs whose chunks no session names: only a
                // collect removes them, so one is owed, whoever cleans up (an ingest or prune).
                gc::set_gc_pending(conn, true)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod tests;

/// A new, empty SQLite file at `path`, which must not exist (`Index::create` and the rebuild's
/// `IndexBuilder::create`).
pub(crate) fn create_new_database(path: &Path) -> Result<Connection> {
    if path.exists() {
        return Err(Error::invalid(format!(
            "cannot create index {}: it already exists",
            path.display()
        )));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .map_err(|e| Error::from(e).context(format!("creating index {}", path.display())))
}

/// Insert the root of `session`: (chunk number, seq) pairs, written in key order (session,
/// chunk, seq) so that the table's pages fill as they would by appending.
pub(crate) fn insert_root(
    conn: &Connection,
    session: SessionId,
    mut rows: Vec<(i64, i64)>,
) -> rusqlite::Result<()> {
    rows.sort_unstable();
    let mut insert = conn
        .prepare_cached("INSERT INTO session_manifest (session, chunk, seq) VALUES (?1, ?2, ?3)")?;
    for (num, seq) in rows {
        insert.execute(params![session.0, num, seq])?;
    }
    Ok(())
}

/// The number (`chunks.num`) of a stored chunk, or `None`. Numbers are local to one index and
/// never leave it: everything outside names a chunk by its id.
pub(crate) fn chunk_num(conn: &Connection, id: &ChunkId) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT num FROM chunks WHERE id = ?1")?
        .query_row([&id.0], |r| r.get(0))
        .optional()
}
