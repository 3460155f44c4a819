//! The index's row types and their conversion from SQLite rows. SQLite stores signed
//! integers; the format's unsigned fields are converted here, and a value out of range is
//! reported as corruption rather than wrapped.

use rusqlite::Row;

use crate::error::{Error, Result};
use crate::ids::{ChunkId, KeyId, PackName};

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// File content.
    Data = 0,
    /// A manifest chunk.
    Manifest = 1,
}

/// Where a chunk's record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLocation {
    /// The chunk.
    pub id: ChunkId,
    /// Data or manifest.
    pub kind: ChunkKind,
    /// Pack row id.
    pub pack_row: i64,
    /// Pack name (file name).
    pub pack: PackName,
    /// Record offset in the pack.
    pub offset: u64,
    /// Record length (header + envelope).
    pub length: u32,
    /// Data key id.
    pub key_id: KeyId,
    /// BLAKE3 of the record.
    pub stored_hash: [u8; 32],
}

/// A chunk to record when its pack is sealed.
#[derive(Debug, Clone)]
pub struct SealedChunk {
    /// The chunk.
    pub id: ChunkId,
    /// Data or manifest.
    pub kind: ChunkKind,
    /// Record offset.
    pub offset: u64,
    /// Record length.
    pub length: u32,
    /// Data key id.
    pub key_id: KeyId,
    /// BLAKE3 of the record.
    pub stored_hash: [u8; 32],
    /// For manifest chunks: the data chunks it names.
    pub refs: Vec<ChunkId>,
}

/// Session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Being written; invisible.
    Running,
    /// Everything went in.
    Complete,
    /// Committed, but not everything the client has is in it: some paths could not be read, or
    /// the transfer did not end cleanly (`reason` says why). Stored as `partial` (schema
    /// version 1 said `incomplete`, read as this).
    Partial,
}

impl SessionState {
    pub(super) fn as_sql(self) -> &'static str {
        match self {
            SessionState::Running => "running",
            SessionState::Complete => "complete",
            SessionState::Partial => "partial",
        }
    }

    fn from_sql(s: &str) -> Result<Self> {
        match s {
            "running" => Ok(SessionState::Running),
            "complete" => Ok(SessionState::Complete),
            // Schema version 1's word, seen only in an old index opened read-only.
            "partial" | "incomplete" => Ok(SessionState::Partial),
            other => Err(Error::corrupt(format!(
                "index: unknown session state {other:?}"
            ))),
        }
    }
}

/// Statistics stored with a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionStats {
    /// Paths in the manifest.
    pub files: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
    /// Unreadable paths.
    pub errors: u64,
    /// Chunks added.
    pub new_chunks: u64,
    /// Record bytes added to packs.
    pub new_bytes: u64,
}

/// A session as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Id.
    pub id: i64,
    /// Client name.
    pub client: String,
    /// State.
    pub state: SessionState,
    /// Server time at start.
    pub started: i64,
    /// Server time at end.
    pub finished: Option<i64>,
    /// Statistics.
    #[serde(flatten)]
    pub stats: SessionStats,
    /// Pinned against roll-off.
    pub pinned: bool,
    /// Why the session is `partial` (none for a complete one, nor for a partial one recorded
    /// by schema version 1, which kept no reason).
    pub reason: Option<String>,
}

/// A pack row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// Row id.
    pub row: i64,
    /// Name.
    pub name: PackName,
    /// True once sealed.
    pub sealed: bool,
    /// Writer id while writing.
    pub writer: Option<String>,
    /// Size once sealed.
    pub size: u64,
}

/// SQLite stores signed integers; these convert the unsigned fields of the format.
pub(super) fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(format!("{what} {v} is too large for the index")))
}

pub(super) fn to_u64(v: i64, what: &str) -> rusqlite::Result<u64> {
    u64::try_from(v).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            format!("negative {what} {v}").into(),
        )
    })
}

fn kind_from_sql(v: i64) -> rusqlite::Result<ChunkKind> {
    match v {
        0 => Ok(ChunkKind::Data),
        1 => Ok(ChunkKind::Manifest),
        _ => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            format!("unknown chunk kind {v}").into(),
        )),
    }
}

/// `SELECT` of a chunk location followed by `$rest` (a literal, so that the hot lookups need
/// no formatting). Columns: c.id, c.kind, c.pack, p.name, c.offset, c.length, c.key_id,
/// c.stored_hash.
macro_rules! location_select {
    ($($rest:expr),+ $(,)?) => {
        concat!(
            "SELECT c.id, c.kind, c.pack, p.name, c.offset, c.length, c.key_id, c.stored_hash \
             FROM chunks c JOIN packs p ON p.id = c.pack ",
            $($rest),+
        )
    };
}
pub(super) use location_select;

/// SQL: session `s` holds chunk `c` (in its root, or named by a manifest chunk of its root).
/// `session_manifest` is keyed by (session, chunk) with no index by chunk alone
/// (format-spec/index.md "The session root"), so this is a key lookup for the chunk and one per
/// parent of it; CROSS JOIN keeps SQLite from walking the whole root instead.
macro_rules! session_holds_chunk {
    () => {
        "(EXISTS (SELECT 1 FROM session_manifest m WHERE m.session = s.id AND m.chunk = c.num) \
          OR EXISTS (SELECT 1 FROM chunk_refs r CROSS JOIN session_manifest m \
                     ON m.session = s.id AND m.chunk = r.parent WHERE r.child = c.num))"
    };
}
pub(super) use session_holds_chunk;

pub(super) fn location_from_row(row: &Row<'_>) -> rusqlite::Result<ChunkLocation> {
    let length: i64 = row.get(5)?;
    Ok(ChunkLocation {
        id: ChunkId(row.get(0)?),
        kind: kind_from_sql(row.get(1)?)?,
        pack_row: row.get(2)?,
        pack: PackName(row.get(3)?),
        offset: to_u64(row.get(4)?, "record offset")?,
        length: u32::try_from(length).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Integer,
                format!("record length {length} out of range").into(),
            )
        })?,
        key_id: KeyId(to_u64(row.get(6)?, "key id")?),
        stored_hash: row.get(7)?,
    })
}

/// Columns: id, client, state, started, finished, files, bytes, errors, new_chunks,
/// new_bytes, pinned, reason (NULL in a schema version 1 index, which has no such column).
pub(super) fn session_columns(version: i32) -> &'static str {
    if version == 1 {
        "SELECT id, client, state, started, finished, files, bytes, errors, new_chunks, \
         new_bytes, pinned, NULL FROM sessions"
    } else {
        "SELECT id, client, state, started, finished, files, bytes, errors, new_chunks, \
         new_bytes, pinned, reason FROM sessions"
    }
}

pub(super) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<(SessionInfo, String)> {
    let state: String = row.get(2)?;
    Ok((
        SessionInfo {
            id: row.get(0)?,
            client: row.get(1)?,
            state: SessionState::Running, // replaced by the caller from the raw state
            started: row.get(3)?,
            finished: row.get(4)?,
            stats: SessionStats {
                files: to_u64(row.get(5)?, "file count")?,
                bytes: to_u64(row.get(6)?, "byte count")?,
                errors: to_u64(row.get(7)?, "error count")?,
                new_chunks: to_u64(row.get(8)?, "chunk count")?,
                new_bytes: to_u64(row.get(9)?, "byte count")?,
            },
            pinned: row.get::<_, i64>(10)? != 0,
            reason: row.get(11)?,
        },
        state,
    ))
}

pub(super) fn finish_session_row((mut info, state): (SessionInfo, String)) -> Result<SessionInfo> {
    info.state = SessionState::from_sql(&state)?;
    Ok(info)
}
