//! Forget: apply one client's retention rules to its visible sessions and delete the rows of
//! those removed, with `gc-pending` set in the same transaction.

use jiff::Timestamp;

use super::{ClientRules, SessionFate, set_gc_pending, write_tx};
use crate::error::Result;
use crate::index::{Index, SessionInfo, SessionState};
use crate::retention::{SessionFacts, decide};

/// Clients that have visible sessions.
pub(super) fn clients(index: &Index) -> Result<Vec<String>> {
    let mut stmt = index
        .conn()
        .prepare("SELECT DISTINCT client FROM sessions WHERE state != 'running' ORDER BY client")?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}

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
    write_tx(index, &format!("forgetting sessions of {client}"), |conn| {
        let fates = decide_all(index.sessions(Some(client))?)?;
        let mut del_root =
            conn.prepare_cached("DELETE FROM session_manifest WHERE session = ?1")?;
        let mut del_session =
            conn.prepare_cached("DELETE FROM sessions WHERE id = ?1 AND state != 'running'")?;
        let mut removed = 0;
        for fate in fates.iter().filter(|f| !f.keep) {
            del_root.execute([fate.id])?;
            removed += del_session.execute([fate.id])?;
        }
        if removed > 0 {
            set_gc_pending(conn, true)?;
        }
        Ok(fates)
    })
}
