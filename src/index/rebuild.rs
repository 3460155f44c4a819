//! The queries that keep the files beside the packs in step with the index
//! (format-spec/records.md), and [`IndexBuilder`], which writes a new index from those files
//! and the packs for `rsbackup repair index`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use super::rows::to_i64;
use super::{Index, chunk_num, schema};
use crate::error::{Error, ErrorKind, Result};
use crate::format::records::{RecordState, SessionRecord};
use crate::ids::{ChunkId, KeyId, PackName, SessionId};

impl Index {
    /// Ids of every session row, visible or running.
    pub fn all_session_ids(&self) -> Result<Vec<SessionId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM sessions ORDER BY id")
            .map_err(|e| self.err(e, "listing session ids"))?;
        stmt.query_map([], |r| Ok(SessionId(r.get(0)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "listing session ids"))
    }

    /// Ids of every data key.
    pub fn data_key_ids(&self) -> Result<Vec<KeyId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM data_keys ORDER BY id")
            .map_err(|e| self.err(e, "listing data keys"))?;
        stmt.query_map([], |r| Ok(KeyId(r.get::<_, i64>(0)?.max(0) as u64)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "listing data keys"))
    }

    /// The `running` sessions of a writer: their records (if written) go before their rows.
    pub fn running_sessions_of(&self, writer: &str) -> Result<Vec<SessionId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM sessions WHERE state = 'running' AND writer = ?1")
            .map_err(|e| self.err(e, "listing running sessions"))?;
        stmt.query_map([writer], |r| Ok(SessionId(r.get(0)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, format_args!("listing the sessions of writer {writer}")))
    }
}

/// A chunk found in a pack, for [`IndexBuilder::add_pack`].
#[derive(Debug, Clone)]
pub struct FoundChunk {
    /// The chunk.
    pub id: ChunkId,
    /// True for a manifest chunk.
    pub manifest: bool,
    /// Record offset.
    pub offset: u64,
    /// Record length.
    pub length: u32,
    /// Data key id from the record header.
    pub key_id: KeyId,
    /// BLAKE3 of the record.
    pub stored_hash: [u8; 32],
}

/// A new index being written in one transaction, from nothing: keys, packs, chunks,
/// references and sessions keep the ids the files name. Dropped without
/// [`IndexBuilder::finish`], the file holds nothing usable; the caller deletes it.
pub struct IndexBuilder {
    conn: Connection,
    path: PathBuf,
}

impl IndexBuilder {
    /// Create `path` (which must not exist) with the current schema and start the transaction.
    pub fn create(path: &Path, repository_id: &str) -> Result<IndexBuilder> {
        let conn = super::create_new_database(path)?;
        let b = IndexBuilder {
            conn,
            path: path.to_path_buf(),
        };
        // No journal: a build killed half way is thrown away and started again, never resumed.
        b.conn
            .execute_batch(
                "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON; \
                 BEGIN IMMEDIATE;",
            )
            .map_err(|e| b.err(e, "configuring"))?;
        schema::create(&b.conn, repository_id)
            .map_err(|e| e.context(format!("index {}: creating the schema", path.display())))?;
        Ok(b)
    }

    fn err(&self, e: rusqlite::Error, what: impl std::fmt::Display) -> Error {
        Error::from(e).context(format!("index {}: {what}", self.path.display()))
    }

    /// A wrapped data key under its id.
    pub fn add_key(&self, id: KeyId, wrapped: &[u8], created: i64) -> Result<()> {
        let row = to_i64(id.0, "key id")?;
        self.conn
            .prepare_cached("INSERT INTO data_keys (id, wrapped, created) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![row, wrapped, created]))
            .map_err(|e| self.err(e, format_args!("adding data key {}", id.0)))?;
        Ok(())
    }

    /// A sealed pack and its chunks; a chunk already added from another pack keeps its first
    /// copy. Returns how many of `chunks` were new.
    pub fn add_pack(
        &self,
        name: &PackName,
        size: u64,
        created: i64,
        chunks: &[FoundChunk],
    ) -> Result<u64> {
        let ctx = |e| self.err(e, format_args!("adding pack {name}"));
        let size = to_i64(size, "pack size")?;
        self.conn
            .prepare_cached(
                "INSERT INTO packs (name, state, writer, size, created) \
                 VALUES (?1, 'sealed', NULL, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![&name.0, size, created]))
            .map_err(ctx)?;
        let row = self.conn.last_insert_rowid();
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO chunks (id, kind, pack, offset, length, key_id, stored_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(ctx)?;
        let mut new = 0;
        for c in chunks {
            new += insert
                .execute(params![
                    &c.id.0,
                    i64::from(c.manifest),
                    row,
                    to_i64(c.offset, "record offset")?,
                    i64::from(c.length),
                    to_i64(c.key_id.0, "key id")?,
                    &c.stored_hash,
                ])
                .map_err(ctx)? as u64;
        }
        Ok(new)
    }

    /// Whether a chunk has been added.
    pub fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        chunk_num(&self.conn, id)
            .map(|n| n.is_some())
            .map_err(|e| self.err(e, format_args!("looking up chunk {id}")))
    }

    /// The references of a manifest chunk; children not added are skipped and returned.
    pub fn add_refs(&self, parent: &ChunkId, children: &[ChunkId]) -> Result<Vec<ChunkId>> {
        let ctx = |e| self.err(e, format_args!("adding the references of chunk {parent}"));
        let Some(p) = chunk_num(&self.conn, parent).map_err(ctx)? else {
            return Ok(children.to_vec());
        };
        let mut insert = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO chunk_refs (parent, child) VALUES (?1, ?2)")
            .map_err(ctx)?;
        let mut missing = Vec::new();
        for child in children {
            match chunk_num(&self.conn, child).map_err(ctx)? {
                Some(c) => {
                    insert.execute([p, c]).map_err(ctx)?;
                }
                None => missing.push(*child),
            }
        }
        Ok(missing)
    }

    /// A visible session with its root; `Corrupt` naming the first root chunk not added
    /// (nothing is inserted then).
    pub fn add_session(&self, s: &SessionRecord) -> Result<()> {
        let ctx = |e| self.err(e, format_args!("adding session {}", s.id));
        let mut nums = Vec::with_capacity(s.root.len());
        for id in &s.root {
            match chunk_num(&self.conn, id).map_err(ctx)? {
                Some(n) => nums.push(n),
                None => {
                    return Err(Error::corrupt(format!(
                        "session {} of client {}: its manifest chunk {id} is in no readable pack",
                        s.id, s.client
                    )));
                }
            }
        }
        let state = match s.state {
            RecordState::Complete => "complete",
            RecordState::Incomplete => "partial",
        };
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (id, client, state, writer, started, finished, files, \
                 bytes, errors, new_chunks, new_bytes, pinned, reason) \
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    &s.client,
                    state,
                    s.started,
                    s.finished,
                    to_i64(s.files, "file count").unwrap_or(i64::MAX),
                    to_i64(s.bytes, "byte count").unwrap_or(i64::MAX),
                    to_i64(s.errors, "error count").unwrap_or(i64::MAX),
                    to_i64(s.new_chunks, "chunk count").unwrap_or(i64::MAX),
                    to_i64(s.new_bytes, "byte count").unwrap_or(i64::MAX),
                    i64::from(s.pinned),
                    s.reason.as_deref(),
                ])
            })
            .map_err(ctx)?;
        let rows = nums.iter().enumerate().map(|(seq, &n)| (n, seq as i64));
        super::insert_root(&self.conn, SessionId(s.id), rows.collect()).map_err(ctx)?;
        Ok(())
    }

    /// Never hand out a data key id up to `max`: a record in a pack may still carry it (a chunk
    /// collected from a pack not yet repacked), and a later rebuild must not pair that record
    /// with a new key of the same id.
    pub fn reserve_key_ids(&self, max: u64) -> Result<()> {
        self.reserve_ids("data_keys", to_i64(max, "key id")?)
    }

    /// Never hand out a session id up to `max`: a session forgotten before the rebuild had it
    /// (`sessions/last-id`, format-spec/records.md), and an id names one session for ever.
    pub fn reserve_session_ids(&self, max: i64) -> Result<()> {
        self.reserve_ids("sessions", max)
    }

    /// Raise the `AUTOINCREMENT` sequence of `table` to at least `max`.
    fn reserve_ids(&self, table: &str, max: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO sqlite_sequence (name, seq) SELECT ?1, ?2 \
                 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)",
                params![table, max],
            )
            .and_then(|_| {
                self.conn.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1",
                    params![table, max],
                )
            })
            .map_err(|e| self.err(e, format_args!("reserving the ids of {table}")))?;
        Ok(())
    }

    /// Set the gc generation (so that no files cache is trusted blindly) and mark a collect
    /// owed (to sweep whatever the rebuild found but left out), check the foreign keys, commit,
    /// and make the file durable.
    pub fn finish(self, gc_generation: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'gc-generation'",
                [gc_generation],
            )
            .and_then(|_| {
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('gc-pending', 1) \
                     ON CONFLICT(key) DO UPDATE SET value = 1",
                    [],
                )
            })
            .map_err(|e| self.err(e, "writing meta"))?;
        let violations: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e, "checking foreign keys"))?;
        if violations != 0 {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "index {}: the rebuilt index has {violations} broken references (a bug)",
                    self.path.display()
                ),
            ));
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.err(e, "committing"))?;
        let path = self.path.clone();
        drop(self.conn);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format_args!("syncing {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests;
