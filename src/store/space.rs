//! Free space on the repository's filesystem, and the error that says the disk is full.
//!
//! SQLite needs room to grow its write-ahead log and its shared-memory file before it can
//! delete anything, so a repository disk filled to the last byte cannot even be pruned. Writers
//! of packs therefore stop while [`INDEX_HEADROOM`] is still free, and readers that find the
//! disk full open the index read-only (see [`crate::index::Index::open`]).

use std::path::Path;

use crate::error::{Error, ErrorKind};

/// Bytes a pack writer leaves free for the index, so that the next prune can run and reclaim
/// what an interrupted ingest left. Below this a disk counts as full.
pub const INDEX_HEADROOM: u64 = 2 << 20;

/// Bytes this process may still write on the filesystem that holds `path` (root may use the
/// blocks reserved for it), or `None` if the filesystem cannot be asked.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    let blocks = if rustix::process::geteuid().is_root() {
        st.f_bfree
    } else {
        st.f_bavail
    };
    Some(blocks.saturating_mul(st.f_frsize))
}

/// Whether the filesystem that holds `path` has less than [`INDEX_HEADROOM`] free.
pub fn is_full(path: &Path) -> bool {
    free_bytes(path).is_some_and(|free| free < INDEX_HEADROOM)
}

/// "the repository's disk is full" for the repository at `root`, with what could not be done.
pub fn disk_full(root: &Path, what: impl std::fmt::Display) -> Error {
    let free = free_bytes(root).map_or_else(|| "unknown".to_string(), |b| format!("{b}"));
    Error::new(
        ErrorKind::DiskFull,
        format!(
            "the repository's disk is full ({}: {free} bytes free): {what}; free space on it \
             (then `rsbackup prune` reclaims what an interrupted ingest left)",
            root.display()
        ),
    )
}

/// An error met while working on the repository at `root`, explained as the repository's
/// full disk when it is one: an I/O error (ENOSPC, SQLite failing to grow a file, or any other
/// it reports) while the repository's filesystem has no room left. A full disk elsewhere (a
/// restore target) keeps its own words.
pub fn explain(root: &Path, err: Error) -> Error {
    if err.message().starts_with("the repository's disk is full") {
        return err;
    }
    if matches!(err.kind(), ErrorKind::DiskFull | ErrorKind::Io) && is_full(root) {
        return disk_full(root, err);
    }
    err
}
