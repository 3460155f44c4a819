//! The index's own consistency, for `check` (format-spec/index.md "Invariants"): SQLite's
//! quick check, and rows that name what is not there. Roots and references name chunks by
//! number (`chunks.num`); a number without a row has lost its chunk id with the row, so these
//! report the number. The foreign keys make such rows impossible through rsbackup: they appear
//! only when the index was edited without them, or damaged.

use super::Index;
use crate::error::{Error, Result};
use crate::ids::{ChunkId, KeyId, PackName, SessionId};

/// A session root entry whose manifest chunk has no row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRoot {
    /// The session that cannot be read.
    pub session: SessionId,
    /// The entry's position in the session's root.
    pub seq: i64,
    /// The chunk number the entry names.
    pub num: i64,
}

/// A manifest chunk's reference to a chunk number without a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingChild {
    /// The manifest chunk's number.
    pub parent_num: i64,
    /// The manifest chunk's id, when it has a row itself.
    pub parent: Option<ChunkId>,
    /// The missing chunk's number.
    pub child: i64,
    /// Visible sessions whose root holds the manifest chunk.
    pub sessions: Vec<SessionId>,
}

/// A chunk row whose pack row is missing or not sealed, or whose data key is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisplacedChunk {
    /// The chunk.
    pub id: ChunkId,
    /// The data key it was sealed with.
    pub key_id: KeyId,
    /// The pack row it names.
    pub pack_row: i64,
    /// That pack's state, if the row exists.
    pub pack_state: Option<String>,
    /// That pack's name, if the row exists.
    pub pack: Option<PackName>,
}

fn chunk_from_blob(blob: Vec<u8>) -> Result<ChunkId> {
    let bytes: [u8; 32] = blob.as_slice().try_into().map_err(|_| {
        Error::corrupt(format!(
            "the index holds a chunk id of {} bytes instead of 32",
            blob.len()
        ))
    })?;
    Ok(ChunkId(bytes))
}

/// Session ids from SQLite's `group_concat` (comma separated).
fn session_list(list: Option<&str>) -> Result<Vec<SessionId>> {
    list.unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map(SessionId)
                .map_err(|_| Error::corrupt(format!("the index holds a session id {s:?}")))
        })
        .collect()
}

impl Index {
    /// SQLite's `PRAGMA quick_check`: the lines that are not "ok".
    pub fn quick_check(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA quick_check")
            .map_err(|e| self.err(e, "checking the database"))?;
        let lines: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "checking the database"))?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }

    /// Root entries of visible sessions whose manifest chunk has no row.
    pub fn missing_roots(&self) -> Result<Vec<MissingRoot>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sm.session, sm.seq, sm.chunk FROM session_manifest sm \
                 JOIN sessions s ON s.id = sm.session \
                 WHERE s.state != 'running' \
                   AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.num = sm.chunk) \
                 ORDER BY sm.session, sm.seq",
            )
            .map_err(|e| self.err(e, "checking session roots"))?;
        stmt.query_map([], |r| {
            Ok(MissingRoot {
                session: SessionId(r.get(0)?),
                seq: r.get(1)?,
                num: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e, "checking session roots"))
    }

    /// References to chunk numbers without a row, with the sessions that lose them.
    pub fn missing_children(&self) -> Result<Vec<MissingChild>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.parent, p.id, r.child, \
                   (SELECT group_concat(DISTINCT m.session) FROM session_manifest m \
                      JOIN sessions s ON s.id = m.session \
                      WHERE m.chunk = r.parent AND s.state != 'running') \
                 FROM chunk_refs r LEFT JOIN chunks p ON p.num = r.parent \
                 WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.num = r.child) \
                 ORDER BY r.child, r.parent",
            )
            .map_err(|e| self.err(e, "checking references"))?;
        type Row = (i64, Option<Vec<u8>>, i64, Option<String>);
        let rows: Vec<Row> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "checking references"))?;
        rows.into_iter()
            .map(|(parent_num, parent, child, sessions)| {
                Ok(MissingChild {
                    parent_num,
                    parent: parent.map(chunk_from_blob).transpose()?,
                    child,
                    sessions: session_list(sessions.as_deref())?,
                })
            })
            .collect()
    }

    /// References whose manifest chunk has no row: (its number, how many references).
    pub fn orphan_references(&self) -> Result<Vec<(i64, u64)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.parent, count(*) FROM chunk_refs r \
                 WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.num = r.parent) \
                 GROUP BY r.parent ORDER BY r.parent",
            )
            .map_err(|e| self.err(e, "checking references"))?;
        stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e, "checking references"))
    }

    /// Chunk rows whose pack row is missing or not sealed, or whose data key is missing.
    pub fn misplaced_chunks(&self) -> Result<Vec<MisplacedChunk>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.id, c.key_id, c.pack, p.state, p.name FROM chunks c \
                 LEFT JOIN packs p ON p.id = c.pack \
                 WHERE p.id IS NULL OR p.state != 'sealed' \
                    OR NOT EXISTS (SELECT 1 FROM data_keys k WHERE k.id = c.key_id)",
            )
            .map_err(|e| self.err(e, "checking chunk rows"))?;
        type Row = (Vec<u8>, i64, i64, Option<String>, Option<Vec<u8>>);
        let rows: Vec<Row> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "checking chunk rows"))?;
        rows.into_iter()
            .map(|(id, key_id, pack_row, pack_state, name)| {
                let pack = match name {
                    Some(n) => Some(PackName(n.as_slice().try_into().map_err(|_| {
                        Error::corrupt(format!(
                            "the index holds a pack name of {} bytes instead of 16",
                            n.len()
                        ))
                    })?)),
                    None => None,
                };
                Ok(MisplacedChunk {
                    id: chunk_from_blob(id)?,
                    key_id: KeyId(key_id.max(0) as u64),
                    pack_row,
                    pack_state,
                    pack,
                })
            })
            .collect()
    }
}
