//! Forget: apply one client's retention rules to its visible sessions and delete the rows of
//! those removed, with `gc-pending` set in the same transaction.

use jiff::Timestamp;

use super::{ClientRules, SessionFate};
use crate::error::Result;
use crate::ids::SessionId;
use crate::index::{Index, SessionInfo, SessionState};
use crate::retention::{SessionFacts, decide};

/// Decide and (unless `dry_run`) delete, in one write transaction: the decision is made on the
/// session list as it is inside the transaction, so a `pin` or a finishing ingest cannot slip
/// in between reading the list and deleting from it.
pub(super) fn forget(
    index: &Index,
    client: &str,
    rules: &ClientRules,
    now: Timestamp,
    dry_run: bool,
) -> Result<Vec<SessionFate>> {
    let decide_all = |sessions: Vec<SessionInfo>| -> Result<Vec<SessionFate>> {
        let facts: Vec<SessionFacts> = sessions
            .iter()
            .map(|s| SessionFacts {
                id: s.id,
                time: s.started,
                complete: s.state == SessionState::Complete,
                pinned: s.pinned,
            })
            .collect();
        let decisions = decide(&facts, &rules.policy, &rules.timezone, now)?;
        Ok(sessions
            .into_iter()
            .zip(decisions)
            .map(|(s, d)| SessionFate {
                id: s.id,
                client: s.client,
                started: s.started,
                state: s.state,
                pinned: s.pinned,
                keep: d.keep,
                reasons: d.reasons,
            })
            .collect())
    };
    if dry_run {
        return decide_all(index.sessions(Some(client))?);
    }
    let (fates, _removed) = index.forget_sessions(client, |sessions| {
        let fates = decide_all(sessions)?;
        let doomed = fates
            .iter()
            .filter(|f| !f.keep)
            .map(|f| SessionId(f.id))
            .collect();
        Ok((fates, doomed))
    })?;
    Ok(fates)
}
