//! The fleet as the server sees it: per client the newest session that counts for its
//! expectation (`expect-every`, `expect-state`), the newest session of any state, refusals,
//! whether a run holds its lease, and whether it is overdue; per mirror target how many sessions
//! it has not received yet; and what the store holds.
//!
//! [`fleet_status`] reads the index, the lease files and the configuration, with `now` given by
//! the caller (the binary, or a test moving time). Views of it: [`text`] (the table of `status`
//! and the digest mail), [`html`] (the status page), [`prometheus`] (node_exporter's textfile).
//! `stats` is [`stats`].

pub mod fmt;
pub mod html;
pub mod prometheus;
pub mod stats;
pub mod text;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::config::ServerConfig;
use crate::config::watch::ExpectState;
use crate::error::Result;
use crate::index::{Index, MirrorMark, SessionInfo, SessionState, StoreTotals};
use crate::server::lock::LeaseFile;

/// Refusals are counted over this many days.
pub const REFUSAL_DAYS: i64 = 7;
/// The status page and metrics look back this many days.
pub const HISTORY_DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// One session, as the fleet views show it (sizes and times only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionBrief {
    /// Session id.
    pub id: i64,
    /// `complete` or `partial`.
    pub state: SessionState,
    /// Server time at start.
    pub started: i64,
    /// Server time at end (the start when the index has none).
    pub finished: i64,
    /// Seconds from start to end.
    pub duration_seconds: i64,
    /// Logical bytes of its regular files.
    pub bytes: u64,
    /// Bytes it added to the store.
    pub new_bytes: u64,
    /// Paths in its manifest.
    pub files: u64,
    /// Paths it could not read.
    pub errors: u64,
}

impl SessionBrief {
    fn of(s: &SessionInfo) -> SessionBrief {
        let finished = s.finished.unwrap_or(s.started);
        SessionBrief {
            id: s.id,
            state: s.state,
            started: s.started,
            finished,
            duration_seconds: (finished - s.started).max(0),
            bytes: s.stats.bytes,
            new_bytes: s.stats.new_bytes,
            files: s.stats.files,
            errors: s.stats.errors,
        }
    }
}

/// Red, amber or green.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// All well.
    Green,
    /// Backed up, but worth a look: the newest run was partial, or requests were refused.
    Amber,
    /// Overdue.
    Red,
}

impl Health {
    /// `green`, `amber`, `red`.
    pub fn name(self) -> &'static str {
        match self {
            Health::Green => "green",
            Health::Amber => "amber",
            Health::Red => "red",
        }
    }
}

/// One client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientStatus {
    /// The client's name.
    pub client: String,
    /// `expect-every`, in seconds.
    pub expect_every_seconds: u64,
    /// `expect-state`.
    pub expect_state: ExpectState,
    /// The newest session that counts for the expectation.
    pub last_good: Option<SessionBrief>,
    /// Its age at `now`, in seconds.
    pub last_good_age_seconds: Option<i64>,
    /// The newest session of any state.
    pub latest: Option<SessionBrief>,
    /// Refusals in the last [`REFUSAL_DAYS`] days.
    pub refusals_7d: u64,
    /// A run holds the client's lease now (between prepare and complete).
    pub lease_held: bool,
    /// No counted session within `expect-every`.
    pub overdue: bool,
    /// Red (overdue), amber (partial newest run, refusals) or green.
    pub health: Health,
    /// Visible sessions in the last [`HISTORY_DAYS`] days, oldest first.
    pub history: Vec<SessionBrief>,
}

/// One mirror target of `[mirrors.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorStatus {
    /// The target's name.
    pub mirror: String,
    /// When the last run that ended well read its session list; `None`: never.
    pub updated: Option<i64>,
    /// Visible sessions that ended since (not yet on the mirror).
    pub unmirrored_sessions: u64,
    /// Age of the oldest of them, in seconds.
    pub oldest_unmirrored_age_seconds: Option<i64>,
    /// Its `expect-every`, in seconds.
    pub expect_every_seconds: u64,
    /// A session older than `expect-every` is not on the mirror yet.
    pub lagging: bool,
}

/// The whole fleet at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetStatus {
    /// The instant (server time, Unix seconds).
    pub now: i64,
    /// Configured clients, by name.
    pub clients: Vec<ClientStatus>,
    /// Configured mirror targets, by name.
    pub mirrors: Vec<MirrorStatus>,
    /// What the store holds.
    pub store: StoreTotals,
    /// Logical bytes of every visible session.
    pub logical_bytes: u64,
    /// Bytes added to the store per day over the last [`HISTORY_DAYS`] days, oldest first (the
    /// last entry is the day ending at `now`).
    pub growth: Vec<u64>,
}

impl FleetStatus {
    /// Names of the overdue clients.
    pub fn overdue(&self) -> impl Iterator<Item = &ClientStatus> {
        self.clients.iter().filter(|c| c.overdue)
    }

    /// Whether anything needs the administrator: a client overdue or a mirror lagging.
    pub fn alarm(&self) -> bool {
        self.clients.iter().any(|c| c.overdue) || self.mirrors.iter().any(|m| m.lagging)
    }
}

/// Read the fleet's status at `now` from `index` and the configuration's lease files.
pub fn fleet_status(config: &ServerConfig, index: &Index, now: Timestamp) -> Result<FleetStatus> {
    let now = now.as_second();
    let sessions = index.sessions(None)?;
    let mut by_client: BTreeMap<&str, Vec<&SessionInfo>> = BTreeMap::new();
    for s in &sessions {
        by_client.entry(s.client.as_str()).or_default().push(s);
    }
    let refusals: BTreeMap<String, u64> = index
        .refusal_counts(now - REFUSAL_DAYS * DAY)?
        .into_iter()
        .collect();
    let mut clients = Vec::new();
    for (name, policy) in &config.clients {
        let own = by_client.get(name.as_str()).cloned().unwrap_or_default();
        let counts = |s: &SessionInfo| match policy.expect.state {
            ExpectState::Complete => s.state == SessionState::Complete,
            ExpectState::Partial => s.state != SessionState::Running,
        };
        let newest = |list: &mut dyn Iterator<Item = &SessionInfo>| {
            list.max_by_key(|s| (s.finished.unwrap_or(s.started), s.id))
                .map(SessionBrief::of)
        };
        let last_good = newest(&mut own.iter().copied().filter(|s| counts(s)));
        let latest = newest(&mut own.iter().copied());
        let age = last_good.as_ref().map(|s| now - s.finished);
        let every = policy.expect.every.as_secs();
        let overdue = age.is_none_or(|a| a > every as i64);
        let refusals_7d = refusals.get(name.as_str()).copied().unwrap_or(0);
        let lease = LeaseFile::new(&config.staging_root, name, policy.lease_timeout);
        // A lease file that cannot be read is not a reason to fail the whole view.
        let lease_held = lease.path().exists() && matches!(lease.held(now), Ok(Some(_)));
        let health = if overdue {
            Health::Red
        } else if refusals_7d > 0
            || latest
                .as_ref()
                .is_some_and(|l| l.state != SessionState::Complete)
        {
            Health::Amber
        } else {
            Health::Green
        };
        clients.push(ClientStatus {
            client: name.as_str().to_owned(),
            expect_every_seconds: every,
            expect_state: policy.expect.state,
            last_good_age_seconds: age,
            last_good,
            latest,
            refusals_7d,
            lease_held,
            overdue,
            health,
            history: own
                .iter()
                .filter(|s| s.finished.unwrap_or(s.started) > now - HISTORY_DAYS * DAY)
                .map(|s| SessionBrief::of(s))
                .collect(),
        });
    }
    let marks: BTreeMap<String, MirrorMark> = index
        .mirror_marks()?
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect();
    let mut mirrors = Vec::new();
    for (name, target) in &config.mirrors.targets {
        let mark = marks.get(name.as_str());
        let behind: Vec<i64> = sessions
            .iter()
            .filter(|s| mark.is_none_or(|m| !m.holds(s.id, s.finished.unwrap_or(s.started))))
            .map(|s| s.finished.unwrap_or(s.started))
            .collect();
        let oldest = behind.iter().min().map(|f| now - f);
        let every = target.expect_every.as_secs();
        mirrors.push(MirrorStatus {
            mirror: name.as_str().to_owned(),
            updated: mark.map(|m| m.synced),
            unmirrored_sessions: behind.len() as u64,
            oldest_unmirrored_age_seconds: oldest,
            expect_every_seconds: every,
            lagging: oldest.is_some_and(|a| a > every as i64),
        });
    }
    let mut growth = vec![0u64; HISTORY_DAYS as usize];
    for s in &sessions {
        let ago = (now - s.finished.unwrap_or(s.started)).div_euclid(DAY);
        if (0..HISTORY_DAYS).contains(&ago) {
            growth[(HISTORY_DAYS - 1 - ago) as usize] += s.stats.new_bytes;
        }
    }
    Ok(FleetStatus {
        now,
        clients,
        mirrors,
        store: index.store_totals()?,
        logical_bytes: sessions.iter().map(|s| s.stats.bytes).sum(),
        growth,
    })
}

#[cfg(test)]
mod tests;
