//! The index's side of mirroring (src/mirror/, format-spec/wire.md): the primary's memory of
//! each target (`mirror_targets`), the chunks `check --read-data` found damaged
//! (`damaged_chunks`), and the rows a mirror writes when it takes keys, sessions and repaired
//! chunks from its primary. Each write is one `BEGIN IMMEDIATE` transaction.

use rusqlite::{OptionalExtension, params};

use super::{ChunkKind, Index, chunk_num, to_i64};
use crate::error::{Error, Result};
use crate::ids::{ChunkId, KeyId, SessionId};

/// What the primary remembers of one mirror target (`mirror_targets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorTargetRow {
    /// Every chunk in a pack with a row id at or below this is on the mirror.
    pub watermark: i64,
    /// XOR of BLAKE3(chunk id) of the chunks the mirror reported holding.
    pub digest: [u8; 32],
    /// How many chunks the mirror reported holding.
    pub chunks: u64,
}

/// A session a mirror takes from its primary: its row, with the root by chunk id.
#[derive(Debug, Clone)]
pub struct MirroredSession<'a> {
    /// The primary's session id, kept on the mirror.
    pub id: SessionId,
    /// Client name (validated by the caller).
    pub client: &'a str,
    /// `true` for complete, `false` for partial.
    pub complete: bool,
    /// Server time at start.
    pub started: i64,
    /// Server time at end.
    pub finished: Option<i64>,
    /// files, bytes, errors, new chunks, new bytes.
    pub stats: [u64; 5],
    /// Pinned against roll-off.
    pub pinned: bool,
    /// Manifest chunk ids, in order.
    pub root: &'a [ChunkId],
}

/// A chunk row a mirror's repair points at a good copy in a new pack.
#[derive(Debug, Clone)]
pub struct RepairedChunk {
    /// The chunk.
    pub id: ChunkId,
    /// Its record's offset in the new pack.
    pub offset: u64,
    /// Its record's length.
    pub length: u64,
    /// BLAKE3 of the record.
    pub stored_hash: [u8; 32],
    /// The pack row holding the damaged copy.
    pub old_pack: i64,
}

pub(super) fn chunk_id(blob: Vec<u8>) -> Result<ChunkId> {
    let id: [u8; 32] = blob.as_slice().try_into().map_err(|_| {
        Error::corrupt(format!(
            "index: a chunk id of {} bytes instead of 32",
            blob.len()
        ))
    })?;
    Ok(ChunkId(id))
}

impl Index {
    /// Call `f` with the id of every chunk row (a scan: about a second per million).
    pub fn for_each_chunk_id(&self, mut f: impl FnMut(&ChunkId)) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM chunks")
            .map_err(|e| self.err(e, "listing chunks"))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e, "listing chunks"))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e, "listing chunks"))? {
            let blob: Vec<u8> = row.get(0).map_err(|e| self.err(e, "listing chunks"))?;
            f(&chunk_id(blob)?);
        }
        Ok(())
    }

    /// Ids of sealed chunks of `kind` in packs with a row id in `(after_pack, up_to_pack]`,
    /// with their pack row, in id order after `after_id`, at most `limit`.
    pub fn sealed_chunks_page(
        &self,
        after_pack: i64,
        up_to_pack: i64,
        kind: ChunkKind,
        after_id: Option<&ChunkId>,
        limit: u32,
    ) -> Result<Vec<(ChunkId, i64)>> {
        let after: &[u8] = after_id.map(|id| &id.0[..]).unwrap_or(&[]);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.id, c.pack FROM chunks c JOIN packs p ON p.id = c.pack \
                 WHERE p.state = 'sealed' AND c.pack > ?1 AND c.pack <= ?2 AND c.kind = ?3 \
                 AND c.id > ?4 ORDER BY c.id LIMIT ?5",
            )
            .map_err(|e| self.err(e, "listing chunks to mirror"))?;
        let rows: Vec<(Vec<u8>, i64)> = stmt
            .query_map(
                params![after_pack, up_to_pack, kind as i64, after, i64::from(limit)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "listing chunks to mirror"))?;
        rows.into_iter()
            .map(|(b, pack)| Ok((chunk_id(b)?, pack)))
            .collect()
    }

    /// When data key `id` was created, if it exists.
    pub fn data_key_created(&self, id: KeyId) -> Result<Option<i64>> {
        let row = to_i64(id.0, "key id")?;
        self.conn
            .prepare_cached("SELECT created FROM data_keys WHERE id = ?1")
            .and_then(|mut s| s.query_row([row], |r| r.get(0)).optional())
            .map_err(|e| self.err(e, format_args!("reading data key {}", id.0)))
    }

    /// Whether data key `id` exists.
    pub fn has_data_key(&self, id: KeyId) -> Result<bool> {
        Ok(self.data_key_created(id)?.is_some())
    }

    /// Store data keys with the primary's ids, in one transaction: `before_insert` runs for
    /// each new key before its row (it writes the key's record), a key already held with the
    /// same wrapped bytes is skipped, and one held with other bytes is `on_conflict`'s error
    /// (nothing stored). Returns how many were stored.
    pub fn put_data_keys(
        &self,
        keys: &[(KeyId, &[u8], i64)],
        mut before_insert: impl FnMut(KeyId, &[u8]) -> Result<()>,
        on_conflict: impl Fn(KeyId) -> Error,
    ) -> Result<u32> {
        self.write_tx("storing data keys", |conn| {
            let mut stored = 0;
            for &(id, wrapped, created) in keys {
                let row = to_i64(id.0, "key id")?;
                let existing: Option<Vec<u8>> = conn
                    .query_row("SELECT wrapped FROM data_keys WHERE id = ?1", [row], |r| {
                        r.get(0)
                    })
                    .optional()?;
                match existing {
                    Some(w) if w == wrapped => {}
                    Some(_) => return Err(on_conflict(id)),
                    None => {
                        before_insert(id, wrapped)?;
                        conn.execute(
                            "INSERT INTO data_keys (id, wrapped, created) VALUES (?1, ?2, ?3)",
                            params![row, wrapped, created],
                        )?;
                        stored += 1;
                    }
                }
            }
            Ok(stored)
        })
    }

    /// Whether a session row (any state) exists.
    pub fn has_session(&self, id: SessionId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")
            .map_err(|e| self.err(e, "looking up a session"))?;
        stmt.exists([id.0])
            .map_err(|e| self.err(e, format_args!("looking up session {id}")))
    }

    /// Ids of visible sessions, in order, at most `limit`.
    pub fn visible_session_ids(&self, limit: u32) -> Result<Vec<SessionId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM sessions WHERE state != 'running' ORDER BY id LIMIT ?1")
            .map_err(|e| self.err(e, "listing sessions"))?;
        stmt.query_map([i64::from(limit)], |r| Ok(SessionId(r.get(0)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "listing sessions"))
    }

    /// Make a session taken from the primary visible, in one transaction: `false` if a session
    /// with that id is already held (left as it is). Every root chunk must be held, or `missing`
    /// makes the error (nothing inserted, `before_insert` not run); then `before_insert` runs
    /// before the row (it writes the session record).
    pub fn put_mirrored_session(
        &self,
        s: &MirroredSession<'_>,
        before_insert: impl FnOnce() -> Result<()>,
        missing: impl Fn(&ChunkId) -> Error,
    ) -> Result<bool> {
        self.write_tx(&format!("recording session {}", s.id), |conn| {
            if conn
                .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
                .exists([s.id.0])?
            {
                return Ok(false);
            }
            // The root is stored by this index's chunk numbers; the caller names chunks by id.
            // Resolved before the record is written, so that a session refused for a missing
            // chunk leaves no record behind.
            let mut root = Vec::with_capacity(s.root.len());
            for chunk in s.root {
                match chunk_num(conn, chunk)? {
                    Some(num) => root.push(num),
                    None => return Err(missing(chunk)),
                }
            }
            before_insert()?;
            let state = if s.complete { "complete" } else { "partial" };
            let stat = |i: usize| to_i64(s.stats[i], "session statistic");
            conn.execute(
                "INSERT INTO sessions (id, client, state, writer, started, finished, files, bytes, \
                 errors, new_chunks, new_bytes, pinned) \
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    s.id.0,
                    s.client,
                    state,
                    s.started,
                    s.finished,
                    stat(0)?,
                    stat(1)?,
                    stat(2)?,
                    stat(3)?,
                    stat(4)?,
                    i64::from(s.pinned)
                ],
            )?;
            let rows = root.iter().enumerate().map(|(seq, &num)| (num, seq as i64));
            super::insert_root(conn, s.id, rows.collect())?;
            Ok(true)
        })
    }

    /// Delete visible sessions by id, with `gc-pending` set, in one transaction; returns how
    /// many went.
    pub fn forget_sessions_by_id(&self, ids: &[SessionId]) -> Result<u32> {
        self.write_tx("forgetting sessions", |conn| {
            let mut n = 0;
            for id in ids {
                conn.execute("DELETE FROM session_manifest WHERE session = ?1", [id.0])?;
                n += conn.execute(
                    "DELETE FROM sessions WHERE id = ?1 AND state != 'running'",
                    [id.0],
                )? as u32;
            }
            super::gc::set_gc_pending(conn, true)?;
            Ok(n)
        })
    }

    /// The remembered state of mirror target `name`, if any.
    pub fn mirror_target(&self, name: &str) -> Result<Option<MirrorTargetRow>> {
        let row: Option<(i64, Vec<u8>, i64)> = self
            .conn
            .query_row(
                "SELECT watermark, digest, chunks FROM mirror_targets WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e, format_args!("reading mirror target {name}")))?;
        let Some((watermark, digest, chunks)) = row else {
            return Ok(None);
        };
        let digest: [u8; 32] = digest.as_slice().try_into().map_err(|_| {
            Error::corrupt(format!(
                "index: mirror_targets row {name:?} has a digest of {} bytes instead of 32",
                digest.len()
            ))
        })?;
        let chunks = u64::try_from(chunks).map_err(|_| {
            Error::corrupt(format!(
                "index: mirror_targets row {name:?} has a negative chunk count"
            ))
        })?;
        Ok(Some(MirrorTargetRow {
            watermark,
            digest,
            chunks,
        }))
    }

    /// Remember `row` for mirror target `name` (one statement: atomic on its own).
    pub fn save_mirror_target(&self, name: &str, row: &MirrorTargetRow, now: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO mirror_targets (name, watermark, digest, chunks, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(name) DO UPDATE SET watermark = excluded.watermark, \
                   digest = excluded.digest, chunks = excluded.chunks, updated = excluded.updated",
                params![
                    name,
                    row.watermark,
                    &row.digest[..],
                    i64::try_from(row.chunks).unwrap_or(i64::MAX),
                    now
                ],
            )
            .map_err(|e| self.err(e, format_args!("saving mirror target {name}")))?;
        Ok(())
    }

    /// A chunk's key, kind and pack row, if it has a row.
    pub fn chunk_key_kind_pack(&self, id: &ChunkId) -> Result<Option<(KeyId, i64, i64)>> {
        self.conn
            .prepare_cached("SELECT key_id, kind, pack FROM chunks WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([&id.0], |row| {
                    Ok((
                        KeyId(row.get::<_, i64>(0)?.max(0) as u64),
                        row.get(1)?,
                        row.get(2)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.err(e, format_args!("looking up chunk {id}")))
    }

    /// A mirror's repair, in one transaction: point each repaired chunk row at the new pack
    /// (`pack_row`, being written, `size` bytes) and take it off `damaged_chunks`, seal the new
    /// pack, and delete the rows of `vanished` packs (whose file is gone) that no chunk names
    /// any more.
    pub fn commit_mirror_repair(
        &self,
        pack_row: i64,
        size: u64,
        repaired: &[RepairedChunk],
        vanished: &[i64],
    ) -> Result<()> {
        self.write_tx("repairing chunks", |conn| {
            for m in repaired {
                conn.execute(
                    "UPDATE chunks SET pack = ?1, offset = ?2, length = ?3, stored_hash = ?4 \
                     WHERE id = ?5",
                    params![
                        pack_row,
                        to_i64(m.offset, "offset")?,
                        to_i64(m.length, "length")?,
                        &m.stored_hash,
                        &m.id.0
                    ],
                )?;
                conn.execute("DELETE FROM damaged_chunks WHERE id = ?1", [&m.id.0])?;
            }
            conn.execute(
                "UPDATE packs SET state = 'sealed', size = ?1, writer = NULL WHERE id = ?2",
                params![to_i64(size, "pack size")?, pack_row],
            )?;
            for row in vanished {
                conn.execute(
                    "DELETE FROM packs WHERE id = ?1 \
                     AND NOT EXISTS (SELECT 1 FROM chunks WHERE pack = ?1)",
                    [row],
                )?;
            }
            Ok(())
        })
    }
}
