//! The `damaged_chunks` table: chunks `check --read-data` found damaged (format-spec/index.md).

use rusqlite::params;

use super::Index;
use super::mirror::chunk_id;
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

    /// Record chunks that `check --read-data` found damaged, for the next mirror run.
    pub fn record_damaged(&self, ids: &[ChunkId], now: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write_tx("recording damaged chunks", |conn| {
            let mut stmt = conn.prepare_cached(
                "INSERT OR IGNORE INTO damaged_chunks (id, found) VALUES (?1, ?2)",
            )?;
            for id in ids {
                stmt.execute(params![&id.0, now])?;
            }
            Ok(())
        })
    }

    /// How many chunks are recorded damaged.
    pub fn damaged_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM damaged_chunks", [], |r| r.get(0))
            .map_err(|e| self.err(e, "counting damaged chunks"))?;
        Ok(n.max(0) as u64)
    }

    /// The chunks recorded damaged, in id order, at most `limit`.
    pub fn damaged_chunks(&self, limit: u32) -> Result<Vec<ChunkId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM damaged_chunks ORDER BY id LIMIT ?1")
            .map_err(|e| self.err(e, "listing damaged chunks"))?;
        let rows: Vec<Vec<u8>> = stmt
            .query_map([i64::from(limit)], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e, "listing damaged chunks"))?;
        rows.into_iter().map(chunk_id).collect()
    }
}
