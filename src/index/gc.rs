//! The index's side of roll-off and garbage collection (src/gc/): the `gc-pending` flag,
//! forgetting sessions, pinning, the live set, and the row changes of emptying and repacking
//! packs. Each write is one `BEGIN IMMEDIATE` transaction; the order of rows and files around
//! them is the caller's (format-spec/index.md "Garbage collection").

use rusqlite::{Connection, OptionalExtension, params};

use super::{Index, SessionInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ChunkId, PackName, SessionId};

/// A sealed pack and how much of it is live.
#[derive(Debug, Clone)]
pub struct PackUse {
    /// Pack row id.
    pub row: i64,
    /// Pack name.
    pub name: PackName,
    /// Pack file size recorded when sealed.
    pub size: u64,
    /// Bytes of the records that chunk rows still name.
    pub live_bytes: u64,
    /// Chunk rows that still name it.
    pub live_chunks: u64,
}

/// What deleting the chunks no session uses did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadChunks {
    /// Chunks still used by a kept session.
    pub live: u64,
    /// Chunk rows deleted.
    pub deleted: u64,
    /// Data keys deleted (no chunk row uses them any more).
    pub keys_deleted: u64,
}

/// A chunk row a repack moves to a new pack.
#[derive(Debug, Clone)]
pub struct MovedChunk {
    /// The chunk.
    pub id: ChunkId,
    /// Pack row it is in now.
    pub old_pack: i64,
    /// Its record's offset there.
    pub old_offset: u64,
    /// Its record's offset in the new pack.
    pub new_offset: u64,
}

/// Set `meta.gc-pending` inside the caller's transaction.
pub(super) fn set_gc_pending(conn: &Connection, pending: bool) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('gc-pending', ?1) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [i64::from(pending)],
    )?;
    Ok(())
}

impl Index {
    /// Whether a collect is owed (`meta.gc-pending`; missing means no).
    pub fn gc_pending(&self) -> Result<bool> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'gc-pending'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e, "reading gc-pending"))?;
        Ok(v.unwrap_or(0) != 0)
    }

    /// Record whether a collect is owed.
    pub fn set_gc_pending(&self, pending: bool) -> Result<()> {
        let what = if pending {
            "recording that a collect is owed"
        } else {
            "clearing gc-pending"
        };
        self.write_tx(what, |conn| Ok(set_gc_pending(conn, pending)?))
    }

    /// Clients that have visible (not `running`) sessions.
    pub fn clients_with_sessions(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT client FROM sessions WHERE state != 'running' ORDER BY client",
            )
            .map_err(|e| self.err(e, "listing clients"))?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "listing clients"))
    }

    /// Forget sessions of `client`, in one write transaction: `decide` gets the client's
    /// visible sessions as they are inside the transaction (so a `pin` or a finishing ingest
    /// cannot slip in between reading the list and deleting from it) and returns its result
    /// and the sessions to delete. `gc-pending` is set in the same transaction when any row
    /// goes. Returns `decide`'s result and how many sessions were deleted.
    pub fn forget_sessions<T>(
        &self,
        client: &str,
        decide: impl FnOnce(Vec<SessionInfo>) -> Result<(T, Vec<SessionId>)>,
    ) -> Result<(T, usize)> {
        self.write_tx(&format!("forgetting sessions of {client}"), |conn| {
            let (out, doomed) = decide(self.sessions(Some(client))?)?;
            let mut del_root =
                conn.prepare_cached("DELETE FROM session_manifest WHERE session = ?1")?;
            let mut del_session =
                conn.prepare_cached("DELETE FROM sessions WHERE id = ?1 AND state != 'running'")?;
            let mut removed = 0;
            for id in doomed {
                del_root.execute([id.0])?;
                removed += del_session.execute([id.0])?;
            }
            if removed > 0 {
                set_gc_pending(conn, true)?;
            }
            Ok((out, removed))
        })
    }

    /// Pin or unpin a visible session; `false` when there is no such visible session.
    pub fn set_pinned(&self, session: SessionId, pinned: bool) -> Result<bool> {
        self.write_tx(&format!("pinning session {session}"), |conn| {
            let n = conn.execute(
                "UPDATE sessions SET pinned = ?1 WHERE id = ?2 AND state != 'running'",
                params![i64::from(pinned), session.0],
            )?;
            Ok(n == 1)
        })
    }

    /// Delete every chunk row no session uses (directly or through a manifest chunk's
    /// references), the references of dead manifest chunks, and the data keys no chunk row
    /// uses any more; bump `gc-generation` when a chunk went. The live set is a TEMP table on
    /// disk, never in memory: its size grows with the repository. Keys are deleted only here,
    /// under the exclusive repository lock the caller holds: an ingest's fresh key has no
    /// chunks yet, and no ingest runs now.
    pub fn delete_dead_chunks(&self) -> Result<DeadChunks> {
        self.conn
            .execute_batch(
                "PRAGMA temp_store = FILE; \
                 DROP TABLE IF EXISTS temp.live; \
                 CREATE TEMP TABLE live (num INTEGER PRIMARY KEY);",
            )
            .map_err(|e| self.err(e, "creating the live set"))?;
        let result = self.write_tx("deleting chunks no session uses", |conn| {
            conn.execute_batch(
                "INSERT OR IGNORE INTO temp.live SELECT chunk FROM session_manifest; \
                 INSERT OR IGNORE INTO temp.live SELECT r.child FROM chunk_refs r \
                   WHERE r.parent IN (SELECT chunk FROM session_manifest);",
            )?;
            let live: i64 = conn.query_row("SELECT COUNT(*) FROM temp.live", [], |r| r.get(0))?;
            // References of dead manifest chunks first: the foreign keys refuse to delete a
            // chunk row that a reference still names.
            conn.execute(
                "DELETE FROM chunk_refs WHERE parent NOT IN (SELECT num FROM temp.live)",
                [],
            )?;
            let deleted = conn.execute(
                "DELETE FROM chunks WHERE num NOT IN (SELECT num FROM temp.live)",
                [],
            )?;
            if deleted > 0 {
                // Files caches written before this generation re-verify every chunk they reuse.
                conn.execute(
                    "UPDATE meta SET value = value + 1 WHERE key = 'gc-generation'",
                    [],
                )?;
            }
            let keys_deleted = conn.execute(
                "DELETE FROM data_keys WHERE id NOT IN (SELECT DISTINCT key_id FROM chunks)",
                [],
            )?;
            Ok(DeadChunks {
                live: live.max(0) as u64,
                deleted: deleted as u64,
                keys_deleted: keys_deleted as u64,
            })
        });
        let _ = self.conn.execute_batch("DROP TABLE IF EXISTS temp.live");
        result
    }

    /// Every sealed pack with its live bytes (one row per pack, not per chunk).
    pub fn pack_use(&self) -> Result<Vec<PackUse>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.id, p.name, p.size, COALESCE(SUM(c.length), 0), COUNT(c.id) \
                 FROM packs p LEFT JOIN chunks c ON c.pack = p.id \
                 WHERE p.state = 'sealed' GROUP BY p.id ORDER BY p.id",
            )
            .map_err(|e| self.err(e, "measuring packs"))?;
        stmt.query_map([], |r| {
            Ok(PackUse {
                row: r.get(0)?,
                name: PackName(r.get(1)?),
                size: r.get::<_, i64>(2)?.max(0) as u64,
                live_bytes: r.get::<_, i64>(3)?.max(0) as u64,
                live_chunks: r.get::<_, i64>(4)?.max(0) as u64,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e, "measuring packs"))
    }

    /// Delete the rows of sealed packs that no chunk row names, in one transaction; an error
    /// (nothing deleted) if any of them is not such a pack.
    pub fn delete_empty_packs(&self, packs: &[PackUse]) -> Result<()> {
        self.write_tx("deleting packs with no live chunk", |conn| {
            let mut del = conn.prepare_cached(
                "DELETE FROM packs WHERE id = ?1 AND state = 'sealed' \
                 AND NOT EXISTS (SELECT 1 FROM chunks WHERE pack = ?1)",
            )?;
            for p in packs {
                if del.execute(params![p.row])? != 1 {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        format!("pack {} is not an empty sealed pack", p.name),
                    ));
                }
            }
            Ok(())
        })
    }

    /// Whether a pack row of that name exists (any state).
    pub fn has_pack(&self, name: &PackName) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM packs WHERE name = ?1")
            .map_err(|e| self.err(e, "looking up a pack"))?;
        stmt.exists([&name.0])
            .map_err(|e| self.err(e, format_args!("looking up pack {name}")))
    }

    /// A repack's one transaction: point the moved chunk rows at the new pack (each must still
    /// be where the repack read it), seal the new pack (`new_pack`: its row, being written, and
    /// its size), and delete the rows of the old packs, which must hold no chunk any more.
    pub fn commit_repack(
        &self,
        new_pack: Option<(i64, u64)>,
        moved: &[MovedChunk],
        old: &[PackUse],
    ) -> Result<()> {
        let row = new_pack.map(|(row, _)| row);
        self.write_tx("moving repacked chunks", |conn| {
            let mut mv = conn.prepare_cached(
                "UPDATE chunks SET pack = ?1, offset = ?2 \
                 WHERE id = ?3 AND pack = ?4 AND offset = ?5",
            )?;
            for m in moved {
                let n = mv.execute(params![
                    row,
                    super::to_i64(m.new_offset, "offset")?,
                    &m.id.0,
                    m.old_pack,
                    super::to_i64(m.old_offset, "offset")?,
                ])?;
                if n != 1 {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        format!("chunk {} moved while it was being repacked", m.id),
                    ));
                }
            }
            if let Some((row, size)) = new_pack {
                let sealed = conn.execute(
                    "UPDATE packs SET state = 'sealed', size = ?1, writer = NULL \
                     WHERE id = ?2 AND state = 'writing'",
                    params![super::to_i64(size, "pack size")?, row],
                )?;
                if sealed != 1 {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        format!("repacked pack row {row} is not a pack being written"),
                    ));
                }
            }
            let mut del = conn.prepare_cached(
                "DELETE FROM packs WHERE id = ?1 AND NOT EXISTS \
                 (SELECT 1 FROM chunks WHERE pack = ?1)",
            )?;
            for p in old {
                if del.execute([p.row])? != 1 {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        format!("pack {} still holds chunks after repacking", p.name),
                    ));
                }
            }
            Ok(())
        })
    }
}
