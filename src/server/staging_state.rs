//! What `complete` leaves in a client's staging, remembered for the next run, so that an
//! unchanged nightly run walks staging once (in `complete`) instead of three times (`prepare`'s
//! measure, the upload's strip walk, `complete`).
//!
//! In `hollow` mode `complete` ends by walking staging anyway, to hollow it (and in `purge`
//! mode staging is empty): the same walk takes every privileged `user.rsync.*` name off (as the
//! upload's strip walk does: [`crate::server::staging_clean::strip_transport_xattrs`]) and
//! measures staging. The result goes to `STAGING-ROOT/.leases/NAME.staging.json`
//! (format-spec/staging-state.md). Not in `keep` mode: there staging is the latest tree, which
//! a download hands back with its privileged attributes, so the upload strips it as before.
//!
//! Why it can be believed: the file is written by `complete` under the run's lease, after
//! every change it makes to staging, and removed at the start of `complete` and by the first
//! upload that follows, before its rsync starts ([`take`]). Between the two, nothing writes to
//! staging: uploads need the lease that `prepare` takes, and `prepare` itself only moves entries
//! (renames keep sizes and attributes). So while the file exists it describes staging as it
//! is. Still, it is never used where a quota is set: there `prepare` and the upload measure
//! staging as before, since their figures decide a refusal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the state file.
pub const STAGING_STATE_VERSION: u32 = 1;

/// Staging as `complete` left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagingState {
    /// [`STAGING_STATE_VERSION`].
    pub version: u32,
    /// Apparent bytes of the regular files below staging.
    pub apparent: u64,
    /// Allocated bytes of everything below staging.
    pub allocated: u64,
}

/// `STAGING-ROOT/.leases/NAME.staging.json`.
pub fn state_path(staging_root: &Path, client: &str) -> PathBuf {
    staging_root
        .join(".leases")
        .join(format!("{client}.staging.json"))
}

/// Record `(apparent, allocated)` (written whole, then renamed into place).
pub fn record(path: &Path, apparent: u64, allocated: u64) -> Result<()> {
    let state = StagingState {
        version: STAGING_STATE_VERSION,
        apparent,
        allocated,
    };
    let what = || format!("writing {}", path.display());
    let text = serde_json::to_vec(&state).map_err(|e| Error::io(what(), e.into()))?;
    crate::server::staging_root::replace_owner_only(path, &text).map_err(|e| Error::io(what(), e))
}

/// The state at `path`, when there is one this build writes.
pub fn read(path: &Path) -> Option<StagingState> {
    let text = std::fs::read(path).ok()?;
    let state: StagingState = serde_json::from_slice(&text).ok()?;
    (state.version == STAGING_STATE_VERSION).then_some(state)
}

/// Forget the state: staging is about to change. Its removal is made durable (the directory
/// synced), so that a crash during the change cannot bring back a state that no longer holds.
pub fn forget(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    }
    Ok(())
}

/// The state, forgotten as it is read: `None` when there was none, or when it could not be
/// forgotten (then nothing may rely on it).
pub fn take(path: &Path) -> Option<StagingState> {
    let state = read(path);
    forget(path).ok()?;
    state
}

/// What one walk of staging measured and took off, as [`crate::server::staging::walk_tree`]
/// visits each entry ([`Tally::visit`]).
#[derive(Debug, Default)]
pub struct Tally {
    /// Apparent bytes of regular files.
    pub apparent: u64,
    /// Allocated bytes of every entry.
    pub allocated: u64,
    /// `user.rsync.*` names taken off.
    pub removed: u64,
    /// The first entry whose names could not be read or taken off.
    pub failed: Option<Error>,
    names: Vec<u8>,
}

impl Tally {
    /// Count one entry (`full` its path, `stx` what `statx` said) and take its privileged
    /// `user.rsync.*` names off. A symlink carries no user xattrs: never followed, never listed.
    pub fn visit(&mut self, full: &Path, stx: &rustix::fs::Statx) {
        let kind = u32::from(stx.stx_mode) & 0o170000;
        if kind == 0o100000 {
            self.apparent = self.apparent.saturating_add(stx.stx_size);
        }
        self.allocated = self
            .allocated
            .saturating_add(crate::server::staging_clean::allocated_bytes(stx));
        if kind != 0o120000 {
            self.strip(full);
        }
    }

    /// Take the privileged `user.rsync.*` names off `path` (the staging directory itself, which
    /// no walk visits).
    pub fn strip(&mut self, path: &Path) {
        if self.failed.is_some() {
            return;
        }
        if self.names.is_empty() {
            self.names.resize(4096, 0);
        }
        self.failed =
            crate::server::staging_clean::strip_one(path, &mut self.names, &mut self.removed).err();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_read_once_by_take_and_never_after_forget() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path(), "web1");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert_eq!(read(&path), None);
        record(&path, 10, 4096).unwrap();
        let want = StagingState {
            version: STAGING_STATE_VERSION,
            apparent: 10,
            allocated: 4096,
        };
        assert_eq!(read(&path), Some(want));
        assert_eq!(read(&path), Some(want), "read leaves it");
        assert_eq!(take(&path), Some(want));
        assert_eq!(take(&path), None, "take consumed it");
        record(&path, 1, 2).unwrap();
        forget(&path).unwrap();
        assert_eq!(read(&path), None);
        forget(&path).unwrap();
        // Another version, or anything else, is no state.
        std::fs::write(&path, br#"{"version":2,"apparent":1,"allocated":2}"#).unwrap();
        assert_eq!(read(&path), None);
        std::fs::write(&path, br#"{"version":1,"apparent":1,"allocated":2,"x":0}"#).unwrap();
        assert_eq!(read(&path), None);
    }
}

/// The examples of format-spec/staging-state.md are what this build reads.
#[cfg(test)]
#[test]
fn the_specs_examples_parse() {
    let spec = include_str!("../../format-spec/staging-state.md");
    let blocks: Vec<&str> = spec
        .split("```json\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2);
    let state: StagingState = serde_json::from_str(blocks[0]).unwrap();
    assert_eq!(state.version, STAGING_STATE_VERSION);
    let checked: crate::server::rsync_check::CheckedRsync =
        serde_json::from_str(blocks[1]).unwrap();
    assert_eq!(
        checked.version,
        crate::server::rsync_check::RSYNC_CHECK_VERSION
    );
}
