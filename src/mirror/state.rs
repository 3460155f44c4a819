//! The primary's memory of each mirror target (`mirror_targets`, format-spec/wire.md): a pack
//! watermark and the count and digest of the chunks the mirror confirmed holding.

use rusqlite::{Connection, OptionalExtension, params};

use super::ChunkSetDigest;
use crate::error::{Error, Result};

/// What the primary remembers of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TargetState {
    /// Every chunk in a pack with a row id at or below this is on the mirror.
    pub watermark: i64,
    /// The mirror's chunk set as it last reported it.
    pub set: ChunkSetDigest,
}

/// The remembered state of `name`, if any.
pub(super) fn load(conn: &Connection, name: &str) -> Result<Option<TargetState>> {
    let row: Option<(i64, Vec<u8>, i64)> = conn
        .query_row(
            "SELECT watermark, digest, chunks FROM mirror_targets WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((watermark, digest, chunks)) = row else {
        return Ok(None);
    };
    let digest: [u8; 32] = digest.as_slice().try_into().map_err(|_| {
        Error::corrupt(format!(
            "index: mirror_targets row {name:?} has a digest of {} bytes instead of 32",
            digest.len()
        ))
    })?;
    let count = u64::try_from(chunks).map_err(|_| {
        Error::corrupt(format!(
            "index: mirror_targets row {name:?} has a negative chunk count"
        ))
    })?;
    Ok(Some(TargetState {
        watermark,
        set: ChunkSetDigest { count, digest },
    }))
}

/// Remember `state` for `name` (one statement: atomic on its own).
pub(super) fn save(conn: &Connection, name: &str, state: &TargetState, now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO mirror_targets (name, watermark, digest, chunks, updated) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(name) DO UPDATE SET watermark = excluded.watermark, \
           digest = excluded.digest, chunks = excluded.chunks, updated = excluded.updated",
        params![
            name,
            state.watermark,
            &state.set.digest[..],
            i64::try_from(state.set.count).unwrap_or(i64::MAX),
            now
        ],
    )?;
    Ok(())
}
