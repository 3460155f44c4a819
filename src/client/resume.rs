//! Resuming a run that was interrupted between `prepare` and `complete`.
//!
//! The server keeps one *lease* per client from `prepare` to `complete` (for the server's
//! `lease-hours`, 12 by default) and refuses a second `prepare` while it lives. A client killed
//! mid-upload (a reboot, `kill -9`, an OOM kill) leaves that lease behind. So the client writes down each lease it takes, in
//! `STATE_DIR/client-NAME.run`, and removes the note when the run is over. When `prepare` is
//! refused because a run is in progress and the note shows that run is this client's own (the
//! age the server reports matches the note's, within [`AGE_SLACK_SECONDS`]), the new run picks
//! up the old lease: rsync resumes the transfer (`--partial` kept what arrived) and `complete`
//! ends the run. A lease this client did not take (another machine with the same client name)
//! does not match, and the run stops as refused.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How far the server's "prepared N s ago" may differ from the note's own clock.
pub const AGE_SLACK_SECONDS: i64 = 300;

/// The note of a run that holds a lease on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunNote {
    /// The lease token `prepare` returned.
    pub token: String,
    /// The server's `prepared` time (Unix seconds, server clock).
    pub prepared: i64,
    /// The client's clock when `prepare` answered (Unix seconds).
    pub noted_at: i64,
}

/// Where the note of client `name` lives in `state_dir`.
pub fn note_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("client-{name}.run"))
}

impl RunNote {
    /// Read the note; `None` if there is none or it does not parse (a torn write: the run
    /// then behaves as if there were no note, which is only slower, never wrong).
    pub fn load(path: &Path) -> Option<RunNote> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Write the note (via a temporary file and rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("run.tmp");
        let text = serde_json::to_string(self).unwrap_or_default();
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::io(format!("writing run note {}", path.display()), e))
    }

    /// Remove the note at `path` (a missing note is fine).
    pub fn remove(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("removing run note {}", path.display()),
                e,
            )),
        }
    }

    /// Does the server's refusal of `prepare` (its output) describe this note's run, still
    /// `prepared`, at client time `now`?
    pub fn matches_refusal(&self, output: &str, now: i64) -> bool {
        let Some(age) = reported_age(output) else {
            return false;
        };
        if !output.contains("state Prepared") {
            return false;
        }
        let expected = now - self.noted_at;
        (age - expected).abs() <= AGE_SLACK_SECONDS
    }
}

/// `... a run is already in progress (prepared 42 s ago, ...` -> 42.
pub fn reported_age(output: &str) -> Option<i64> {
    let rest = output
        .split("a run is already in progress (prepared ")
        .nth(1)?;
    let number = rest.split(" s ago").next()?;
    number.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSAL: &str = "rsbackup: client web1: a run is already in progress (prepared 120 s \
                           ago, state Prepared); it ends with complete, or expires 43200 s after \
                           prepare\n";

    #[test]
    fn note_round_trip_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = note_path(dir.path(), "web1");
        assert_eq!(RunNote::load(&path), None);
        let note = RunNote {
            token: "ab".into(),
            prepared: 1000,
            noted_at: 5000,
        };
        note.save(&path).unwrap();
        assert_eq!(RunNote::load(&path), Some(note));
        RunNote::remove(&path).unwrap();
        RunNote::remove(&path).unwrap();
        assert_eq!(RunNote::load(&path), None);
        std::fs::write(&path, "{torn").unwrap();
        assert_eq!(RunNote::load(&path), None);
    }

    #[test]
    fn only_our_own_prepared_run_is_resumed() {
        let note = RunNote {
            token: "ab".into(),
            prepared: 1000,
            noted_at: 10_000,
        };
        assert_eq!(reported_age(REFUSAL), Some(120));
        assert!(note.matches_refusal(REFUSAL, 10_120));
        assert!(note.matches_refusal(REFUSAL, 10_400));
        // Much older or newer: someone else's lease.
        assert!(!note.matches_refusal(REFUSAL, 20_000));
        assert!(!note.matches_refusal(REFUSAL, 9_000));
        // complete is running: not resumable.
        let completing = REFUSAL.replace("state Prepared", "state Completing");
        assert!(!note.matches_refusal(&completing, 10_120));
        for other in ["", "rsbackup: request refused", "prepared x s ago"] {
            assert!(!note.matches_refusal(other, 10_120), "{other}");
        }
    }
}
