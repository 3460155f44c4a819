//! Read-only queries for watching the fleet (`status`, `watch`, `stats`): refusals per client,
//! when each mirror target was last brought up to date, and what the store holds.

use rusqlite::params;

use super::Index;
use crate::error::{Error, Result};

/// One refused request from the audit table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusalRow {
    /// Server time.
    pub time: i64,
    /// The client the key belongs to (as the forced command named it).
    pub client: String,
    /// Source address.
    pub ip: String,
    /// Why it was refused.
    pub reason: String,
}

/// A mirror target's last successful run: the `meta` rows `mirror-synced:NAME` and
/// `mirror-unsent:NAME` (format-spec/index.md, "Mirror state").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorMark {
    /// The target's name.
    pub name: String,
    /// When the last run that ended well read the session list it sent (server time).
    pub synced: i64,
    /// The sessions that were running then (not in that list, whenever they ended).
    pub unsent: Vec<i64>,
}

impl MirrorMark {
    /// Whether the session that ended at `finished` is on the target.
    pub fn holds(&self, id: i64, finished: i64) -> bool {
        finished <= self.synced && !self.unsent.contains(&id)
    }
}

/// The prefixes of the `meta` keys that hold [`MirrorMark`]s.
const MIRROR_SYNCED: &str = "mirror-synced:";
const MIRROR_UNSENT: &str = "mirror-unsent:";

/// What the store holds, from `chunks` and `packs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreTotals {
    /// Chunks in the index.
    pub chunks: u64,
    /// Their stored (compressed, encrypted) bytes.
    pub chunk_bytes: u64,
    /// Sealed packs.
    pub packs: u64,
    /// Bytes of the sealed packs (including space not yet collected).
    pub pack_bytes: u64,
}

/// The chunks one client's visible sessions reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientChunks {
    /// Distinct chunks.
    pub chunks: u64,
    /// Their stored bytes (shared chunks count for every client that reaches them).
    pub stored_bytes: u64,
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Index {
    /// Refusals per client since `since` (server time), by client name.
    pub fn refusal_counts(&self, since: i64) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT client, COUNT(*) FROM audit WHERE decision = 'refuse' AND time >= ?1 \
                 GROUP BY client ORDER BY client",
            )
            .map_err(|e| self.err(e, "counting refusals"))?;
        stmt.query_map([since], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map(|rows| rows.into_iter().map(|(c, n)| (c, count(n))).collect())
        .map_err(|e| self.err(e, "counting refusals"))
    }

    /// Refusals from `since` to before `until` (server time), oldest first, at most `limit`.
    pub fn refusals_between(&self, since: i64, until: i64, limit: u32) -> Result<Vec<RefusalRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT time, client, ip, reason FROM audit WHERE decision = 'refuse' \
                 AND time >= ?1 AND time < ?2 ORDER BY time, id LIMIT ?3",
            )
            .map_err(|e| self.err(e, "listing refusals"))?;
        stmt.query_map(params![since, until, limit], |r| {
            Ok(RefusalRow {
                time: r.get(0)?,
                client: r.get(1)?,
                ip: r.get(2)?,
                reason: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| self.err(e, "listing refusals"))
    }

    /// Every mirror target a run has completed to, by name.
    pub fn mirror_marks(&self) -> Result<Vec<MirrorMark>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT substr(s.key, ?2), s.value, u.value FROM meta s \
                 LEFT JOIN meta u ON u.key = ?4 || substr(s.key, ?2) \
                 WHERE substr(s.key, 1, ?1) = ?3 AND typeof(s.value) = 'integer' ORDER BY s.key",
            )
            .map_err(|e| self.err(e, "reading mirror marks"))?;
        let prefix = MIRROR_SYNCED.len() as i64;
        let rows = stmt
            .query_map(
                params![prefix, prefix + 1, MIRROR_SYNCED, MIRROR_UNSENT],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e, "reading mirror marks"))?;
        rows.into_iter()
            .map(|(name, synced, unsent)| {
                let unsent = unsent
                    .unwrap_or_default()
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(|t| {
                        t.parse().map_err(|_| {
                            Error::corrupt(format!(
                                "index: meta {MIRROR_UNSENT}{name} holds {t:?}, not a session id"
                            ))
                        })
                    })
                    .collect::<Result<Vec<i64>>>()?;
                Ok(MirrorMark {
                    name,
                    synced,
                    unsent,
                })
            })
            .collect()
    }

    /// Ids of the sessions running now (a mirror run reads them before its session list).
    pub fn running_session_ids(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM sessions WHERE state = 'running' ORDER BY id")
            .map_err(|e| self.err(e, "listing running sessions"))?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<i64>>>())
            .map_err(|e| self.err(e, "listing running sessions"))
    }

    /// A run to mirror target `name` ended well: `mark` says which sessions it sent.
    pub fn set_mirror_mark(&self, mark: &MirrorMark) -> Result<()> {
        let unsent: Vec<String> = mark.unsent.iter().map(i64::to_string).collect();
        self.write_tx(
            &format!("recording the run to mirror {}", mark.name),
            |conn| {
                let put = "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                       ON CONFLICT(key) DO UPDATE SET value = excluded.value";
                conn.execute(
                    put,
                    params![format!("{MIRROR_SYNCED}{}", mark.name), mark.synced],
                )?;
                conn.execute(
                    put,
                    params![format!("{MIRROR_UNSENT}{}", mark.name), unsent.join(",")],
                )?;
                Ok(())
            },
        )
    }

    /// Chunk and pack totals.
    pub fn store_totals(&self) -> Result<StoreTotals> {
        let (chunks, chunk_bytes): (i64, i64) = self
            .conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(length), 0) FROM chunks",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e, "counting chunks"))?;
        let (packs, pack_bytes): (i64, i64) = self
            .conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM packs WHERE state = 'sealed'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e, "counting packs"))?;
        Ok(StoreTotals {
            chunks: count(chunks),
            chunk_bytes: count(chunk_bytes),
            packs: count(packs),
            pack_bytes: count(pack_bytes),
        })
    }

    /// The distinct chunks `client`'s visible sessions reach: their manifest chunks and,
    /// through `chunk_refs`, everything those name.
    pub fn client_chunks(&self, client: &str) -> Result<ClientChunks> {
        let (chunks, bytes): (i64, i64) = self
            .conn
            .query_row(
                "WITH RECURSIVE reached(num) AS ( \
                   SELECT m.chunk FROM session_manifest m JOIN sessions s ON s.id = m.session \
                   WHERE s.client = ?1 AND s.state != 'running' \
                   UNION \
                   SELECT r.child FROM chunk_refs r JOIN reached ON r.parent = reached.num) \
                 SELECT COUNT(*), COALESCE(SUM(c.length), 0) FROM chunks c \
                 JOIN reached ON c.num = reached.num",
                [client],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e, format_args!("counting the chunks of client {client}")))?;
        Ok(ClientChunks {
            chunks: count(chunks),
            stored_bytes: count(bytes),
        })
    }
}
