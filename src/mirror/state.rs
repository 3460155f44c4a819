//! The primary's memory of each mirror target (`mirror_targets`, format-spec/wire.md): a pack
//! watermark and the count and digest of the chunks the mirror confirmed holding.

use super::ChunkSetDigest;
use crate::error::Result;
use crate::index::{Index, MirrorTargetRow};

/// What the primary remembers of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TargetState {
    /// Every chunk in a pack with a row id at or below this is on the mirror.
    pub watermark: i64,
    /// The mirror's chunk set as it last reported it.
    pub set: ChunkSetDigest,
}

/// The remembered state of `name`, if any.
pub(super) fn load(index: &Index, name: &str) -> Result<Option<TargetState>> {
    Ok(index.mirror_target(name)?.map(|row| TargetState {
        watermark: row.watermark,
        set: ChunkSetDigest {
            count: row.chunks,
            digest: row.digest,
        },
    }))
}

/// Remember `state` for `name` (one statement: atomic on its own).
pub(super) fn save(index: &Index, name: &str, state: &TargetState, now: i64) -> Result<()> {
    index.save_mirror_target(
        name,
        &MirrorTargetRow {
            watermark: state.watermark,
            digest: state.set.digest,
            chunks: state.set.count,
        },
        now,
    )
}
