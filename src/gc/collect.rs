//! Collect, under the exclusive repository lock: live set, dead chunk rows, empty packs,
//! repacking, unused keys, stray pack files, then `gc-pending` cleared.
//!
//! Order (format-spec/index.md "Garbage collection"): index first, files after. Every step
//! leaves the invariants true, so a crash between any two leaves a repository that reads
//! correctly; what it leaves behind (a pack file without a row, a `writing` pack of the dead
//! collector) is garbage the next collect removes, and `gc-pending` stays set until then.

use std::path::{Path, PathBuf};

use super::{Failpoint, repack};
use crate::error::{Error, Result};
use crate::ids::PackName;
use crate::index::{Index, PackUse};
use crate::repo::{Repo, RepoLock};
use crate::store::durable::sync_dir;
use crate::store::pack_path;

/// What a collect did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CollectReport {
    /// Dead writers whose leftovers were removed first.
    pub dead_writers: u64,
    /// Chunks still used by a kept session.
    pub live_chunks: u64,
    /// Chunk rows deleted.
    pub chunks_deleted: u64,
    /// Packs deleted because nothing in them was live.
    pub packs_emptied: u64,
    /// Packs rewritten because little in them was live.
    pub packs_repacked: u64,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Data keys deleted.
    pub keys_deleted: u64,
    /// Pack files without an index row that were removed.
    pub stray_files: u64,
    /// Pack file bytes removed minus pack file bytes written.
    pub bytes_reclaimed: u64,
    /// Packs left alone, with why (e.g. a record that does not match its stored hash).
    pub skipped: Vec<String>,
}

/// Run a collect. The caller holds `_lock` (exclusive).
pub(super) fn collect(
    repo: &Repo,
    _lock: &RepoLock,
    threshold: f64,
    fail: &Failpoint,
    progress: &dyn crate::progress::Progress,
) -> Result<CollectReport> {
    let mut report = CollectReport::default();
    let writer = super::lock::start(repo, crate::repo::Operation::Repack)?;
    let index = repo.index()?;
    // A dead ingest's sealed packs hold chunks no session names: they are collected below.
    report.dead_writers = repo.cleanup_dead_writers(&index)? as u64;
    fail.hit("after-cleanup");
    super::sweep_records::sweep_session_records(repo, &index)?;

    collect_with_live(
        repo,
        &index,
        &writer.id,
        threshold,
        fail,
        progress,
        &mut report,
    )?;
    Ok(report)
}

fn collect_with_live(
    repo: &Repo,
    index: &Index,
    writer: &crate::ids::WriterId,
    threshold: f64,
    fail: &Failpoint,
    progress: &dyn crate::progress::Progress,
    report: &mut CollectReport,
) -> Result<()> {
    let dead = index.delete_dead_chunks()?;
    report.live_chunks = dead.live;
    report.chunks_deleted = dead.deleted;
    report.keys_deleted = dead.keys_deleted;
    fail.hit("after-chunk-delete");
    super::sweep_records::sweep_data_keys(repo, index)?;
    fail.hit("after-keys-delete");

    let packs = index.pack_use()?;
    let (empty, rest): (Vec<PackUse>, Vec<PackUse>) =
        packs.into_iter().partition(|p| p.live_chunks == 0);
    if !empty.is_empty() {
        index.delete_empty_packs(&empty)?;
        let mut dirs = Vec::new();
        for p in &empty {
            fail.hit("before-empty-unlink");
            report.bytes_reclaimed += remove_pack_file(repo.root(), &p.name, &mut dirs)?;
            report.packs_emptied += 1;
        }
        sync_dirs(&dirs)?;
        fail.hit("after-empty-unlink");
    }

    let sparse: Vec<PackUse> = rest
        .into_iter()
        .filter(|p| {
            p.size > 0 && (p.live_bytes as f64) < threshold * p.size as f64 && threshold > 0.0
        })
        .collect();
    if !sparse.is_empty() {
        let r = repack::repack(repo, index, writer, &sparse, fail, progress)?;
        report.packs_repacked = r.packs_repacked;
        report.packs_written = r.packs_written;
        report.bytes_reclaimed =
            (report.bytes_reclaimed + r.bytes_removed).saturating_sub(r.bytes_written);
        report.skipped.extend(r.skipped);
    }

    let (n, bytes) = sweep_stray_packs(repo, index, fail)?;
    report.stray_files = n;
    report.bytes_reclaimed += bytes;

    fail.hit("before-clear-pending");
    index.set_gc_pending(false)?;
    Ok(())
}

/// Unlink a pack file whose row is gone; returns its size (0 if it was already gone).
pub(crate) fn remove_pack_file(
    root: &Path,
    name: &PackName,
    dirs: &mut Vec<PathBuf>,
) -> Result<u64> {
    let path = pack_path(root, name);
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        // Gone already (lost, or a crash after the unlink): its reference list goes too.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::store::records::remove_refs(root, name)?;
            return Ok(0);
        }
        Err(e) => return Err(Error::io(format_args!("reading {}", path.display()), e)),
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(Error::io(
                format_args!("removing pack {}", path.display()),
                e,
            ));
        }
    }
    // The pack first: a reference list without its pack is swept below, a pack without its
    // list would be one a rebuild cannot fully read.
    crate::store::records::remove_refs(root, name)?;
    let dir = path
        .parent()
        .expect("pack path has a directory")
        .to_path_buf();
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
    Ok(size)
}

pub(crate) fn sync_dirs(dirs: &[PathBuf]) -> Result<()> {
    for d in dirs.iter().filter(|d| d.is_dir()) {
        sync_dir(d)?;
    }
    Ok(())
}

/// Remove `packs/xx/<name>.pack` files that have no row. Rows are always committed before
/// their file is created, so under the exclusive lock a file without a row is what a crash
/// between deleting a row and unlinking its file left. Anything not named like a pack is left
/// for `check` to report.
pub(crate) fn sweep_stray_packs(
    repo: &Repo,
    index: &Index,
    fail: &Failpoint,
) -> Result<(u64, u64)> {
    let packs_dir = repo.root().join("packs");
    let subdirs = match std::fs::read_dir(&packs_dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => {
            return Err(Error::io(
                format_args!("reading {}", packs_dir.display()),
                e,
            ));
        }
    };
    let (mut count, mut bytes) = (0, 0);
    let mut dirs = Vec::new();
    for sub in subdirs {
        let sub = sub.map_err(|e| Error::io(format_args!("reading {}", packs_dir.display()), e))?;
        let sub_name = sub.file_name();
        let Some(prefix) = sub_name.to_str().filter(|s| s.len() == 2) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(sub.path()) else {
            continue;
        };
        for file in files.flatten() {
            let file_name = file.file_name();
            let Some(file_name_str) = file_name.to_str() else {
                continue;
            };
            // A reference list whose pack is gone (a crash between the two unlinks).
            if let Some(name) = file_name_str
                .strip_suffix(".refs")
                .and_then(|hex| hex.parse::<PackName>().ok())
                .filter(|n| n.to_hex().starts_with(prefix))
            {
                if !pack_path(repo.root(), &name).exists() && !index.has_pack(&name)? {
                    crate::store::records::remove_refs(repo.root(), &name)?;
                }
                continue;
            }
            let Some(name) = Some(file_name_str)
                .and_then(|n| n.strip_suffix(".pack"))
                .filter(|hex| hex.starts_with(prefix))
                .and_then(|hex| hex.parse::<PackName>().ok())
                .filter(|n| n.to_hex().starts_with(prefix))
            else {
                continue;
            };
            if pack_path(repo.root(), &name) != file.path() || index.has_pack(&name)? {
                continue;
            }
            fail.hit("before-sweep-unlink");
            bytes += remove_pack_file(repo.root(), &name, &mut dirs)?;
            count += 1;
        }
    }
    sync_dirs(&dirs)?;
    Ok((count, bytes))
}
