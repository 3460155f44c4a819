//! Records left behind by a crash between deleting an index row and removing the file beside
//! the packs that describes it (format-spec/records.md "Removal"): session records of sessions
//! the index no longer holds, and wrapped data keys with no row. Runs under the exclusive lock,
//! where no ingest is between writing such a file and committing its row.

use std::collections::HashSet;

use crate::error::Result;
use crate::ids::{KeyId, SessionId};
use crate::index::Index;
use crate::repo::Repo;
use crate::store::records::{
    DATA_KEYS_DIR, SESSIONS_DIR, numbered_files, remove_data_key, remove_session_record,
};

/// Remove session records whose session is not in the index; returns how many. Must run
/// before any chunk is deleted: such a record may name chunks about to go, and a rebuild must
/// not bring its session back.
pub(super) fn sweep_session_records(repo: &Repo, index: &Index) -> Result<u64> {
    if lost_found_in_use(repo) {
        return Ok(0);
    }
    let known: HashSet<SessionId> = index.all_session_ids()?.into_iter().collect();
    let mut removed = 0;
    for (id, _) in numbered_files(&repo.root().join(SESSIONS_DIR), ".session")? {
        let id = SessionId(id as i64);
        if !known.contains(&id) {
            remove_session_record(repo.root(), id)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Remove wrapped data key files whose key has no row; returns how many.
pub(super) fn sweep_data_keys(repo: &Repo, index: &Index) -> Result<u64> {
    if lost_found_in_use(repo) {
        return Ok(0);
    }
    let known: HashSet<KeyId> = index.data_key_ids()?.into_iter().collect();
    let mut removed = 0;
    for (id, _) in numbered_files(&repo.root().join(DATA_KEYS_DIR), ".age")? {
        if !known.contains(&KeyId(id)) {
            remove_data_key(repo.root(), KeyId(id))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Packs a rebuild of the index could take nothing from wait in `lost+found/` for a rebuild
/// with the identity, which needs the session records and key files that describe them: while
/// any is there, nothing is swept (a record of a collected session is then reported lost by
/// that rebuild, never recovered with missing chunks).
fn lost_found_in_use(repo: &Repo) -> bool {
    let lost_found = repo.root().join(crate::repair::LOST_FOUND_DIR);
    std::fs::read_dir(&lost_found).is_ok_and(|mut d| d.next().is_some())
}
