//! Refusal alerts, coalesced: the first refusal is mailed at once; refusals within the
//! configured interval after a mail wait, and go out together in the next mail, so that a
//! misconfigured cron job or a scan cannot flood the administrator.
//!
//! The state (when the last alert went out, what waits) lives in a small JSON file, locked with
//! `flock` while it is read and rewritten, because every ssh request is its own process. A
//! waiting batch goes out with the next refusal after the interval, or when anything calls
//! [`flush_due`] (the `serve` and `mirror-serve` entry points do on every request, through
//! [`notify`]; a cron job may too). The audit log always has every refusal, whatever happens to
//! the mail.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::{MailTransport, ServerConfig};
use crate::error::{Error, Result};
use crate::report::{Mailer, RefusalAlert};
use crate::server::audit::AuditRecord;

/// Most refusals kept waiting; more are only counted.
pub const MAX_PENDING_ALERTS: usize = 200;

/// Longest an alert mail may take from a forced command (SMTP connect and each command).
pub const ALERT_MAIL_TIMEOUT: Duration = Duration::from_secs(5);

/// The coalescing state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// When the last alert mail went out (Unix seconds).
    pub last_sent: Option<i64>,
    /// Refusals (audit lines) waiting for the next mail.
    pub pending: Vec<String>,
    /// Refusals beyond [`MAX_PENDING_ALERTS`], counted only.
    pub dropped: u64,
    /// Why the last alert mail could not be sent, if it failed (cleared by the next success).
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Refusals to mail now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertBatch {
    /// The refusals, oldest first.
    pub refusals: Vec<String>,
    /// How many more were not kept.
    pub dropped: u64,
}

impl AlertState {
    /// Queue a refusal; returns the batch to mail now, if the interval has passed.
    pub fn push(
        &mut self,
        refusal: String,
        now: Timestamp,
        interval: Duration,
    ) -> Option<AlertBatch> {
        if self.pending.len() < MAX_PENDING_ALERTS {
            self.pending.push(refusal);
        } else {
            self.dropped += 1;
        }
        self.flush_due(now, interval)
    }

    /// Take the waiting batch if there is one and the interval since the last mail has passed.
    pub fn flush_due(&mut self, now: Timestamp, interval: Duration) -> Option<AlertBatch> {
        if self.pending.is_empty() && self.dropped == 0 {
            return None;
        }
        let due = match self.last_sent {
            None => true,
            // A clock that went backwards must not silence alerts until it catches up.
            Some(last) => {
                let elapsed = now.as_second() - last;
                elapsed < 0 || elapsed as u64 >= interval.as_secs()
            }
        };
        if !due {
            return None;
        }
        self.last_sent = Some(now.as_second());
        Some(AlertBatch {
            refusals: std::mem::take(&mut self.pending),
            dropped: std::mem::take(&mut self.dropped),
        })
    }
}

/// Record a refusal in the state file at `path`; returns the batch to mail now, if any.
pub fn record_refusal(
    path: &Path,
    refusal: &str,
    now: Timestamp,
    interval: Duration,
) -> Result<Option<AlertBatch>> {
    with_state(path, |state| state.push(refusal.to_owned(), now, interval))
}

/// Take a waiting batch from the state file at `path` if it is due.
pub fn flush_due(path: &Path, now: Timestamp, interval: Duration) -> Result<Option<AlertBatch>> {
    with_state(path, |state| state.flush_due(now, interval))
}

/// An alert mail could not be sent: put its refusals back in front of the waiting ones (they go
/// out with the next attempt after the interval) and record why.
pub fn requeue_failed(path: &Path, batch: AlertBatch, error: &str) -> Result<()> {
    with_state(path, |state| {
        let mut refusals = batch.refusals;
        refusals.append(&mut state.pending);
        let keep = refusals.len().min(MAX_PENDING_ALERTS);
        state.dropped += batch.dropped + (refusals.len() - keep) as u64;
        refusals.truncate(keep);
        state.pending = refusals;
        state.last_error = Some(error.to_owned());
    })
}

/// The last alert mail went out: forget an earlier failure.
pub fn record_sent(path: &Path) -> Result<()> {
    with_state(path, |state| state.last_error = None)
}

/// Queue `refusal` (if any) in `config.alert_state` and mail to `config.admin` what is due,
/// naming `host` as the server. Never fails the request: a mail that cannot be sent within
/// [`ALERT_MAIL_TIMEOUT`] is queued again with the reason; without a usable state file the
/// refusal is mailed at once, uncoalesced.
pub fn notify(config: &ServerConfig, host: &str, now: Timestamp, refusal: Option<&AuditRecord>) {
    let state = &config.alert_state;
    let batch = match refusal {
        Some(r) => record_refusal(state, &r.to_line(), now, config.alert_coalesce),
        None => flush_due(state, now, config.alert_coalesce),
    };
    let batch = match batch {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            // No state: still tell the administrator about this refusal, uncoalesced.
            let Some(r) = refusal else { return };
            let b = AlertBatch {
                refusals: vec![r.to_line(), format!("(alert state unusable: {e})")],
                dropped: 0,
            };
            let _ = send(config, host, &b);
            return;
        }
    };
    match send(config, host, &batch) {
        Ok(()) => {
            let _ = record_sent(state);
        }
        Err(e) => {
            let _ = requeue_failed(state, batch, &e.to_string());
        }
    }
}

/// Mail the administrator at once (not coalesced) about an allowed request that needs their
/// attention, such as a client's key used from a new machine under `on-new-machine = "alert"`:
/// `line` is the request's audit line. Bounded by [`ALERT_MAIL_TIMEOUT`].
pub fn send_notice(config: &ServerConfig, host: &str, client: &str, line: &str) -> Result<()> {
    let mut mail = config.mail.clone();
    if let MailTransport::Smtp { timeout, .. } = &mut mail.transport {
        *timeout = (*timeout).min(ALERT_MAIL_TIMEOUT);
    }
    let subject = format!(
        "[rsbackup] {}: client {} used from a new machine",
        crate::server::audit::escape_for_log(host, 80),
        crate::server::audit::escape_for_log(client, 80)
    );
    let body = format!(
        "The rsbackup server on {host} allowed a request of client {client} from a machine not \
         recorded for it (on-new-machine = \"alert\"), and has recorded that machine:\n\n{line}\n\n\
         If this is not a rebuilt or added machine of that client, its ssh key and client.toml \
         have been copied: remove the key from the client's keys, and see docs/usage.md \
         (\"Machine identity\").\n"
    );
    Mailer::from_config(&mail)?.send(&config.admin, &subject, &body)
}

fn send(config: &ServerConfig, host: &str, batch: &AlertBatch) -> Result<()> {
    let mut mail = config.mail.clone();
    if let MailTransport::Smtp { timeout, .. } = &mut mail.transport {
        *timeout = (*timeout).min(ALERT_MAIL_TIMEOUT);
    }
    let alert = RefusalAlert {
        host: host.to_owned(),
        refusals: batch.refusals.clone(),
        dropped: batch.dropped,
    };
    Mailer::from_config(&mail)?.send(&config.admin, &alert.subject(), &alert.render_text())
}

fn with_state<T>(path: &Path, change: impl FnOnce(&mut AlertState) -> T) -> Result<T> {
    use std::os::unix::fs::OpenOptionsExt;
    let what = |doing: &str| format!("{doing} alert state {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(what("opening"), e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io(what("locking"), e.into()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| Error::io(what("reading"), e))?;
    // A damaged state file must not stop alerts: start afresh (the audit log keeps everything).
    let mut state: AlertState = serde_json::from_str(&text).unwrap_or_default();
    let result = change(&mut state);
    let json = serde_json::to_vec(&state)
        .map_err(|e| Error::new(crate::ErrorKind::Internal, what("encoding")).with_source(e))?;
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(&json))
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(what("writing"), e))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN15: Duration = Duration::from_secs(15 * 60);

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + minutes * 60).unwrap()
    }

    #[test]
    fn first_is_sent_then_burst_is_coalesced() {
        let mut s = AlertState::default();
        let first = s.push("r1".into(), at(0), MIN15).unwrap();
        assert_eq!(first.refusals, ["r1"]);
        assert_eq!(s.push("r2".into(), at(1), MIN15), None);
        assert_eq!(s.push("r3".into(), at(14), MIN15), None);
        assert_eq!(s.flush_due(at(14), MIN15), None);
        let batch = s.flush_due(at(15), MIN15).unwrap();
        assert_eq!(batch.refusals, ["r2", "r3"]);
        assert_eq!(s.flush_due(at(40), MIN15), None, "nothing waits");
        // Long after the last mail, a refusal goes out at once again.
        assert_eq!(s.push("r4".into(), at(40), MIN15).unwrap().refusals, ["r4"]);
    }

    #[test]
    fn overflow_is_counted_and_clock_going_back_does_not_silence() {
        let mut s = AlertState::default();
        s.push("first".into(), at(0), MIN15);
        for i in 0..MAX_PENDING_ALERTS + 5 {
            assert!(s.push(format!("r{i}"), at(1), MIN15).is_none());
        }
        let batch = s.flush_due(at(-10), MIN15).unwrap();
        assert_eq!(batch.refusals.len(), MAX_PENDING_ALERTS);
        assert_eq!(batch.dropped, 5);
        assert_eq!(s.dropped, 0);
    }

    #[test]
    fn state_file_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        assert!(record_refusal(&path, "a", at(0), MIN15).unwrap().is_some());
        assert!(record_refusal(&path, "b", at(1), MIN15).unwrap().is_none());
        assert!(flush_due(&path, at(2), MIN15).unwrap().is_none());
        assert_eq!(
            flush_due(&path, at(16), MIN15).unwrap().unwrap().refusals,
            ["b"]
        );
        std::fs::write(&path, b"{not json").unwrap();
        assert!(record_refusal(&path, "c", at(17), MIN15).unwrap().is_some());
        assert!(record_refusal(&dir.path().join("no/such/dir"), "d", at(0), MIN15).is_err());

        // A failed mail puts its refusals back, first, and says why.
        let batch = record_refusal(&path, "e", at(100), MIN15).unwrap().unwrap();
        assert!(
            record_refusal(&path, "f", at(101), MIN15)
                .unwrap()
                .is_none()
        );
        requeue_failed(&path, batch, "connection refused").unwrap();
        let state: AlertState = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(state.last_error.as_deref(), Some("connection refused"));
        let again = flush_due(&path, at(120), MIN15).unwrap().unwrap();
        assert_eq!(again.refusals, ["e", "f"]);
        record_sent(&path).unwrap();
        let state: AlertState = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(state.last_error, None);
    }
}
