//! `stats`: what the repository holds, per client and in total, and how it grew.
//!
//! The index keeps the stored (compressed, encrypted) size of each chunk but not its plaintext
//! size, so deduplication and compression are reported together: `reduction` is the logical
//! bytes of the sessions over the stored bytes they reach. `new_bytes_30d` is what the sessions
//! of the last 30 days added (before any roll-off).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::index::{Index, StoreTotals};

/// One client's share.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientStats {
    /// The client.
    pub client: String,
    /// Visible sessions.
    pub sessions: u64,
    /// Logical bytes of its newest session.
    pub latest_bytes: u64,
    /// Logical bytes of all its sessions together.
    pub logical_bytes: u64,
    /// Distinct chunks its sessions reach.
    pub chunks: u64,
    /// Their stored bytes (chunks shared with other clients count here too).
    pub stored_bytes: u64,
    /// `logical_bytes / stored_bytes` (dedup and compression together); 0 when nothing stored.
    pub reduction: f64,
    /// Bytes its sessions of the last 30 days added to the store.
    pub new_bytes_30d: u64,
}

/// The repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepoStats {
    /// Per client, by name.
    pub clients: Vec<ClientStats>,
    /// Visible sessions.
    pub sessions: u64,
    /// Logical bytes of every visible session.
    pub logical_bytes: u64,
    /// Chunks and packs.
    #[serde(flatten)]
    pub store: StoreTotals,
    /// `logical_bytes / chunk_bytes`.
    pub reduction: f64,
    /// Bytes of `index.db` and its write-ahead log.
    pub index_bytes: u64,
    /// Bytes added per day over the last 30 days, oldest first.
    pub growth_30d: Vec<u64>,
}

fn ratio(logical: u64, stored: u64) -> f64 {
    if stored == 0 {
        0.0
    } else {
        ((logical as f64 / stored as f64) * 100.0).round() / 100.0
    }
}

/// Gather the statistics at `now` (Unix seconds), of one client or all; `index_path` is the
/// index's file, for its size.
pub fn repo_stats(
    index: &Index,
    index_path: &Path,
    client: Option<&str>,
    now: i64,
) -> Result<RepoStats> {
    const DAY: i64 = 86_400;
    let sessions = index.sessions(client)?;
    let mut per: BTreeMap<&str, ClientStats> = BTreeMap::new();
    let mut growth = vec![0u64; 30];
    for s in &sessions {
        let c = per.entry(s.client.as_str()).or_default();
        c.sessions += 1;
        c.logical_bytes += s.stats.bytes;
        c.latest_bytes = s.stats.bytes;
        let ago = (now - s.finished.unwrap_or(s.started)).div_euclid(DAY);
        if (0..30).contains(&ago) {
            c.new_bytes_30d += s.stats.new_bytes;
            growth[(29 - ago) as usize] += s.stats.new_bytes;
        }
    }
    let mut clients = Vec::new();
    for (name, mut c) in per {
        let reached = index.client_chunks(name)?;
        c.client = name.to_owned();
        c.chunks = reached.chunks;
        c.stored_bytes = reached.stored_bytes;
        c.reduction = ratio(c.logical_bytes, c.stored_bytes);
        clients.push(c);
    }
    let store = index.store_totals()?;
    let logical_bytes = sessions.iter().map(|s| s.stats.bytes).sum();
    let mut wal = index_path.as_os_str().to_owned();
    wal.push("-wal");
    let index_bytes = [index_path, Path::new(&wal)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok(RepoStats {
        clients,
        sessions: sessions.len() as u64,
        logical_bytes,
        reduction: ratio(logical_bytes, store.chunk_bytes),
        store,
        index_bytes,
        growth_30d: growth,
    })
}
