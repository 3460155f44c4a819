//! The `damaged_chunks` table: chunks `check --read-data` found damaged (format-spec/index.md).

use super::Index;
use crate::error::Result;
use crate::ids::ChunkId;

impl Index {
    /// Forget that these chunks were damaged (a repair moved them to good copies).
    pub fn clear_damaged(&self, ids: &[ChunkId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write_tx("clearing repaired chunks from damaged_chunks", |conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM damaged_chunks WHERE id = ?1")?;
            for id in ids {
                stmt.execute([&id.0])?;
            }
            Ok(())
        })
    }
}
