//! `rsbackup watch`, run from a timer every few minutes: it mails the administrator once when a
//! client becomes overdue and once when it recovers (likewise for a mirror target that lags),
//! sends the refusal alerts whose coalescing window has passed, and mails a daily digest.
//!
//! Which clients are alerted overdue, and the day of the last digest, live in a small JSON file
//! ([`WatchState`], `[watch] state`), rewritten atomically (temporary file, fsync, rename).
//! A run holds an exclusive `flock` on `STATE.lock` from reading the state to writing it, mails
//! included, so two runs at once never both mail: the second finds the lock taken and leaves.
//! A mail that cannot be sent leaves the state as it was, so the next run tries again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::config::ServerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::index::Index;
use crate::report::Mailer;
use crate::status::fmt::{span, time};
use crate::status::{FleetStatus, fleet_status};

/// Version of the watch state file this build writes and reads.
pub const WATCH_STATE_VERSION: u32 = 1;

/// What `watch` remembers between runs (format-spec/watch-state.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchState {
    /// [`WATCH_STATE_VERSION`].
    pub version: u32,
    /// Clients alerted overdue, with when the alert went out (Unix seconds).
    #[serde(default)]
    pub overdue: BTreeMap<String, i64>,
    /// Mirror targets alerted lagging, with when.
    #[serde(default)]
    pub lagging: BTreeMap<String, i64>,
    /// The local date (`YYYY-MM-DD` in `[watch] timezone`) of the last digest sent.
    #[serde(default)]
    pub last_digest: Option<String>,
}

/// A mail `watch` sends, and the change to the state once it is out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A client became overdue.
    Overdue(String),
    /// An overdue client has a counted session again.
    Recovered(String),
    /// A mirror target lags.
    MirrorLagging(String),
    /// A lagging mirror target caught up.
    MirrorRecovered(String),
    /// The daily digest of the given local date.
    Digest(String),
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WatchReport {
    /// Subjects of the mails sent.
    pub sent: Vec<String>,
    /// Mails that could not be sent (tried again next run), with why.
    pub failed: Vec<String>,
    /// Another run held the lock: this one did nothing.
    pub busy: bool,
}

/// The notices due, given the remembered state, the fleet, and when the digest goes out
/// (`[watch] digest`, minutes after midnight in `tz`).
pub fn due(
    state: &WatchState,
    fleet: &FleetStatus,
    digest: Option<u16>,
    tz: &TimeZone,
) -> Vec<Notice> {
    let mut out = Vec::new();
    for c in &fleet.clients {
        match (c.overdue, state.overdue.contains_key(&c.client)) {
            (true, false) => out.push(Notice::Overdue(c.client.clone())),
            (false, true) => out.push(Notice::Recovered(c.client.clone())),
            _ => {}
        }
    }
    for m in &fleet.mirrors {
        match (m.lagging, state.lagging.contains_key(&m.mirror)) {
            (true, false) => out.push(Notice::MirrorLagging(m.mirror.clone())),
            (false, true) => out.push(Notice::MirrorRecovered(m.mirror.clone())),
            _ => {}
        }
    }
    if let Some(at) = digest
        && let Ok(now) = Timestamp::from_second(fleet.now)
    {
        let local = now.to_zoned(tz.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let today = local.date().to_string();
        if minute >= at && state.last_digest.as_deref() != Some(today.as_str()) {
            out.push(Notice::Digest(today));
        }
    }
    out
}

impl WatchState {
    /// Record that `notice` went out at `now`.
    pub fn apply(&mut self, notice: &Notice, now: i64) {
        match notice {
            Notice::Overdue(c) => {
                self.overdue.insert(c.clone(), now);
            }
            Notice::Recovered(c) => {
                self.overdue.remove(c);
            }
            Notice::MirrorLagging(m) => {
                self.lagging.insert(m.clone(), now);
            }
            Notice::MirrorRecovered(m) => {
                self.lagging.remove(m);
            }
            Notice::Digest(day) => self.last_digest = Some(day.clone()),
        }
    }

    /// Drop clients and mirrors the configuration no longer has.
    pub fn forget_unconfigured(&mut self, fleet: &FleetStatus) {
        self.overdue
            .retain(|c, _| fleet.clients.iter().any(|s| &s.client == c));
        self.lagging
            .retain(|m, _| fleet.mirrors.iter().any(|s| &s.mirror == m));
    }
}

/// Subject and body of `notice`'s mail.
pub fn render(
    notice: &Notice,
    fleet: &FleetStatus,
    index: &Index,
    config: &ServerConfig,
    host: &str,
) -> Result<(String, String)> {
    let tz = &config.watch.timezone;
    let client = |name: &str| fleet.clients.iter().find(|c| c.client == name);
    let mirror = |name: &str| fleet.mirrors.iter().find(|m| m.mirror == name);
    Ok(match notice {
        Notice::Overdue(name) => {
            let c = client(name);
            let since = match c.and_then(|c| c.last_good.as_ref()) {
                Some(s) => format!(
                    "its newest {} session is {} from {} ({} ago)",
                    c.map_or("complete", |c| c.expect_state.name()),
                    s.id,
                    time(s.finished, tz),
                    span(fleet.now - s.finished)
                ),
                None => "it has never had one".into(),
            };
            (
                format!("[rsbackup] {host}: client {name} is overdue"),
                format!(
                    "Client {name} has not backed up within its expect-every of {}: {since}.\n\n\
                     You get one mail now and one when it backs up again.\n\n{}",
                    span(c.map_or(0, |c| c.expect_every_seconds as i64)),
                    crate::status::text::render(fleet, tz)
                ),
            )
        }
        Notice::Recovered(name) => {
            let good = client(name).and_then(|c| c.last_good.as_ref());
            (
                format!("[rsbackup] {host}: client {name} has recovered"),
                format!(
                    "Client {name} backed up again: session {} at {}.\n\n{}",
                    good.map_or("-".into(), |s| s.id.to_string()),
                    good.map_or("-".into(), |s| time(s.finished, tz)),
                    crate::status::text::render(fleet, tz)
                ),
            )
        }
        Notice::MirrorLagging(name) => {
            let m = mirror(name);
            (
                format!("[rsbackup] {host}: mirror {name} lags"),
                format!(
                    "Mirror target {name} has {} sessions it has not received, the oldest {} old \
                     (expect-every {}); last brought up to date {}.\n",
                    m.map_or(0, |m| m.unmirrored_sessions),
                    m.and_then(|m| m.oldest_unmirrored_age_seconds)
                        .map_or("-".into(), span),
                    span(m.map_or(0, |m| m.expect_every_seconds as i64)),
                    m.and_then(|m| m.updated)
                        .map_or("never".into(), |u| time(u, tz)),
                ),
            )
        }
        Notice::MirrorRecovered(name) => (
            format!("[rsbackup] {host}: mirror {name} caught up"),
            format!("Mirror target {name} is up to date again.\n"),
        ),
        Notice::Digest(day) => {
            let refusals = index.refusals_between(fleet.now - 86_400, fleet.now + 1, 500)?;
            (
                format!("[rsbackup] {host}: daily digest {day}"),
                crate::status::text::digest(fleet, &refusals, tz),
            )
        }
    })
}

/// The state file's lock: `STATE.lock`, taken without waiting; `None` when another run holds it.
fn try_lock(state: &Path) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (create its directory, writable by the user watch runs as, or set [watch] state)"
            } else {
                ""
            };
            Error::io(
                format!("opening the watch lock {}{hint}", path.display()),
                e,
            )
        })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(Error::io(format!("locking {}", path.display()), e.into())),
    }
}

/// Read the state; a missing file is the empty state. A damaged file is an error (a silent
/// fresh start would mail every overdue client again).
pub fn load_state(path: &Path) -> Result<WatchState> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(WatchState {
                version: WATCH_STATE_VERSION,
                ..WatchState::default()
            });
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    decode_state(&bytes, path)
}

/// Decode a state file's bytes; `path` is named in errors. A file of another version is
/// `UnsupportedVersion`, anything else that does not parse `Corrupt`.
pub fn decode_state(bytes: &[u8], path: &Path) -> Result<WatchState> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    if let Ok(v) = serde_json::from_slice::<VersionOnly>(bytes)
        && v.version != WATCH_STATE_VERSION
    {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "watch state {}: version {} is not {WATCH_STATE_VERSION} (written by another \
                 rsbackup)",
                path.display(),
                v.version
            ),
        ));
    }
    let state: WatchState = serde_json::from_slice(bytes).map_err(|e| {
        Error::corrupt(format!(
            "watch state {}: {e}; remove it to start afresh (overdue clients are then mailed \
             about again)",
            path.display()
        ))
    })?;
    Ok(state)
}

fn save_state(path: &Path, state: &WatchState) -> Result<()> {
    let json = serde_json::to_string_pretty(state)
        .map_err(|e| Error::new(ErrorKind::Internal, "encoding the watch state").with_source(e))?;
    crate::store::durable::write_atomic(path, (json + "\n").as_bytes(), 0o600)
}

/// One `watch` run at `now`: flush due refusal alerts, mail what changed, write the state,
/// then rewrite the status page and the metrics file if configured. Returns the fleet status
/// too, for the caller's exit code.
pub fn run(
    config: &ServerConfig,
    index: &Index,
    now: Timestamp,
    host: &str,
) -> Result<(WatchReport, FleetStatus)> {
    let fleet = fleet_status(config, index, now)?;
    let mut report = WatchReport::default();
    let Some(_lock) = try_lock(&config.watch.state)? else {
        report.busy = true;
        return Ok((report, fleet));
    };
    crate::server::alerts::notify(config, host, now, None);
    let mut state = load_state(&config.watch.state)?;
    state.forget_unconfigured(&fleet);
    let notices = due(&state, &fleet, config.watch.digest, &config.watch.timezone);
    if !notices.is_empty() {
        let mailer = Mailer::from_config(&config.mail)?;
        for notice in &notices {
            let (subject, body) = render(notice, &fleet, index, config, host)?;
            match mailer.send(&config.admin, &subject, &body) {
                Ok(()) => {
                    state.apply(notice, fleet.now);
                    report.sent.push(subject);
                }
                Err(e) => report.failed.push(format!("{subject}: {e}")),
            }
        }
    }
    save_state(&config.watch.state, &state)?;
    if let Some(path) = &config.watch.html {
        let page = crate::status::html::render(&fleet, host, &config.watch.timezone);
        crate::store::durable::write_atomic(path, page.as_bytes(), 0o644)?;
    }
    if let Some(path) = &config.watch.prometheus {
        crate::store::durable::write_atomic(
            path,
            crate::status::prometheus::render(&fleet).as_bytes(),
            0o644,
        )?;
    }
    Ok((report, fleet))
}

#[cfg(test)]
mod tests;
