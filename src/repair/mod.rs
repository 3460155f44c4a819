//! `rsbackup repair index`: rebuild `index.db` from what is beside it on disk
//! (format-spec/records.md "Rebuilding the index"): wrapped data keys from `keys/data/`, chunks
//! from scanning every pack, chunk kinds and references from each pack's reference list, and
//! sessions from `sessions/`. No key is needed.
//!
//! Crash safety: the new index is built in `index.db.rebuild` (removed first if a killed run
//! left one), made durable, and only then put in place: the old `index.db` (and its `-wal`)
//! is renamed to `index.db.old` (`index.db.old-wal`), its `-shm` removed, and the new file
//! renamed to `index.db`. Killed at any moment, a rerun builds the same index again from the
//! same files, which the rebuild never changes.

mod chunks;
mod classify;
mod scan;

use std::collections::{HashMap, HashSet};
use std::path::Path;

pub use chunks::{HealReport, LostChunk, repair_chunks};

use crate::crypto::wrap::Identities;
use crate::error::{Error, ErrorKind, Result};
use crate::format::records::{ManifestRefs, SessionRecord};
use crate::gc::Failpoint;
use crate::ids::{ChunkId, KeyId, SessionId};
use crate::index::IndexBuilder;
use crate::repo::Repo;
use crate::store::durable::sync_dir;
use crate::store::records::{
    DATA_KEYS_DIR, SESSIONS_DIR, numbered_files, read_refs, read_session_record,
};

/// The index file and the names the rebuild uses beside it.
const INDEX_FILE: &str = "index.db";
const BUILD_FILE: &str = "index.db.rebuild";
const OLD_FILE: &str = "index.db.old";
/// Where packs nothing recovered names are moved, out of reach of garbage collection.
pub const LOST_FOUND_DIR: &str = "lost+found";

/// What a rebuild found and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuildReport {
    /// Data keys recovered.
    pub keys: u64,
    /// Pack files read.
    pub packs: u64,
    /// Chunks indexed.
    pub chunks: u64,
    /// Manifest chunks among them.
    pub manifest_chunks: u64,
    /// Sessions recovered.
    pub sessions: u64,
    /// Sessions whose record exists but that could not be recovered, with why.
    pub sessions_lost: Vec<String>,
    /// Recovered sessions that name data chunks found in no pack (they restore with losses;
    /// `check` names the paths), with how many chunks are missing.
    pub sessions_damaged: Vec<String>,
    /// Everything else worth an administrator's attention: unreadable packs, torn records,
    /// missing reference lists, chunks whose data key is gone, unreadable session records.
    pub problems: Vec<String>,
    /// Whether an old `index.db` was moved to `index.db.old`.
    pub old_index_kept: bool,
}

impl RebuildReport {
    /// True when everything on disk was recovered.
    pub fn clean(&self) -> bool {
        self.sessions_lost.is_empty()
            && self.sessions_damaged.is_empty()
            && self.problems.is_empty()
    }
}

/// A pack whose reference list is missing or damaged: which of its chunks are manifests is
/// unknown, so only chunks something else names are taken from it.
struct Unsure {
    scanned: scan::ScannedPack,
}

/// Rebuild `index.db` of the repository at `repo`, under the exclusive repository lock.
/// With `identities`, a pack whose reference list is missing or damaged is read whole: every
/// record is opened and the manifest chunks found by decoding; without, only the chunks other
/// packs name are taken from it. `fail` aborts at the named points `repair-*` (crash tests
/// only).
pub fn rebuild_index(
    repo: &Repo,
    identities: Option<&Identities>,
    fail: &Failpoint,
) -> Result<RebuildReport> {
    let _lock = repo.lock_exclusive(false)?;
    // A wrong identity is refused before anything is built.
    if let Some(identities) = identities {
        repo.unlock_secret(identities)?;
    }
    let root = repo.root();
    let build = root.join(BUILD_FILE);
    remove_if_exists(&build)?;
    remove_if_exists(&root.join(format!("{BUILD_FILE}-journal")))?;
    let mut report = RebuildReport::default();
    let builder = IndexBuilder::create(&build, &repo.config().id)?;

    // Keys.
    let mut keys = HashSet::new();
    let mut wrapped_keys = HashMap::new();
    for (id, path) in numbered_files(&root.join(DATA_KEYS_DIR), ".age")? {
        let wrapped = std::fs::read(&path)
            .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
        if !wrapped.starts_with(b"age-encryption.org/v1\n") {
            report.problems.push(format!(
                "{}: not an age file; chunks sealed with data key {id} are left out",
                path.display()
            ));
            continue;
        }
        builder.add_key(KeyId(id), &wrapped, mtime(&path))?;
        keys.insert(KeyId(id));
        if identities.is_some() {
            wrapped_keys.insert(KeyId(id), wrapped);
        }
        report.keys += 1;
    }

    // Packs with their reference lists; the others wait until we know what is wanted.
    let mut manifests: Vec<ManifestRefs> = Vec::new();
    let mut unsure = Vec::new();
    let mut opener = identities.map(|identities| classify::Opener {
        identities,
        wrapped: std::mem::take(&mut wrapped_keys),
        keys: HashMap::new(),
        max_data: repo.config().chunker.max_size as usize,
    });
    let mut relisted = Vec::new();
    let mut packs: Vec<scan::ScannedPack> = Vec::new();
    let mut max_key_id = 0u64;
    let mut locations = HashMap::new();
    let mut used = HashSet::new();
    for (name, path) in scan::pack_files(root)? {
        locations.insert(name, path.clone());
        let mut scanned = match scan::scan_pack(&name, &path) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::Io && !path.exists() => continue,
            Err(e) => {
                report
                    .problems
                    .push(format!("{e}; the whole pack is left out"));
                continue;
            }
        };
        report.packs += 1;
        max_key_id = scanned
            .chunks
            .iter()
            .map(|c| c.key_id.0)
            .fold(max_key_id, u64::max);
        if let Some(why) = &scanned.stopped {
            report.problems.push(format!(
                "pack {}: {why}; the {} records before it are kept",
                path.display(),
                scanned.chunks.len()
            ));
        }
        let without_key = scanned
            .chunks
            .iter()
            .filter(|c| !keys.contains(&c.key_id))
            .count();
        if without_key > 0 {
            report.problems.push(format!(
                "pack {}: {without_key} records name a data key that has no file in {DATA_KEYS_DIR}; \
                 they are left out",
                path.display()
            ));
            scanned.chunks.retain(|c| keys.contains(&c.key_id));
        }
        match read_refs(root, &name) {
            Ok(refs) => {
                let ids: HashMap<ChunkId, usize> = scanned
                    .chunks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.id, i))
                    .collect();
                for m in refs.manifests {
                    match ids.get(&m.id) {
                        Some(&i) => {
                            scanned.chunks[i].manifest = true;
                            manifests.push(m);
                        }
                        None => report.problems.push(format!(
                            "pack {name}: its reference list names manifest chunk {}, which the \
                             pack does not hold",
                            m.id
                        )),
                    }
                }
                packs.push(scanned);
            }
            Err(e) => match opener.as_mut() {
                Some(opener) => {
                    let found = opener.classify(&mut scanned, &path, &mut report.problems)?;
                    report.problems.push(format!(
                        "{e}: pack {name} was read whole with the identity ({} manifest chunks \
                         found); its reference list is written again",
                        found.len()
                    ));
                    relisted.push(crate::format::records::PackRefs {
                        pack: name,
                        manifests: found.clone(),
                    });
                    manifests.extend(found);
                    packs.push(scanned);
                }
                None => {
                    report.problems.push(format!(
                        "{e}: only chunks that a manifest chunk or session elsewhere names are \
                         taken from pack {name} (with --identity, all of it)"
                    ));
                    unsure.push(Unsure { scanned });
                }
            },
        }
    }
    // Oldest first, so that of two copies of a chunk (a repack killed half way) the one the
    // index had is more likely kept; either copy is the same authenticated record.
    packs.sort_by_key(|p| (p.created, p.name));
    for p in &packs {
        report.chunks += builder.add_pack(&p.name, p.size, p.created, &p.chunks)?;
        used.insert(p.name);
    }
    fail.hit("repair-after-packs");

    // Session records.
    let mut sessions: Vec<SessionRecord> = Vec::new();
    for (id, path) in numbered_files(&root.join(SESSIONS_DIR), ".session")? {
        match read_session_record(&path) {
            Ok(s) if s.id as u64 == id => sessions.push(s),
            Ok(s) => report.problems.push(format!(
                "{}: holds session {}, not {id}; left out",
                path.display(),
                s.id
            )),
            Err(e) => report.sessions_lost.push(format!("session {id}: {e}")),
        }
    }

    // Chunks of the unsure packs that something names: a child of a known manifest chunk is
    // a data chunk. A root chunk found only there is a manifest chunk whose references are
    // unknown: its session cannot be recovered safely (a collect would delete its data).
    let mut wanted: HashSet<ChunkId> = HashSet::new();
    for m in &manifests {
        for c in &m.refs {
            if !builder.has_chunk(c)? {
                wanted.insert(*c);
            }
        }
    }
    for u in &mut unsure {
        u.scanned.chunks.retain(|c| wanted.contains(&c.id));
        if !u.scanned.chunks.is_empty() {
            used.insert(u.scanned.name);
            report.chunks += builder.add_pack(
                &u.scanned.name,
                u.scanned.size,
                u.scanned.created,
                &u.scanned.chunks,
            )?;
        }
    }

    let mut missing_children: HashMap<ChunkId, Vec<ChunkId>> = HashMap::new();
    for m in &manifests {
        let missing = builder.add_refs(&m.id, &m.refs)?;
        if !missing.is_empty() {
            missing_children.insert(m.id, missing);
        }
    }
    report.manifest_chunks = manifests.len() as u64;

    for s in &sessions {
        match builder.add_session(s) {
            Ok(()) => {
                report.sessions += 1;
                let lost: usize = s
                    .root
                    .iter()
                    .filter_map(|r| missing_children.get(r))
                    .map(Vec::len)
                    .sum();
                if lost > 0 {
                    report.sessions_damaged.push(format!(
                        "session {} of client {}: {lost} data chunks are in no readable pack",
                        s.id, s.client
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                report.sessions_lost.push(e.message().to_string());
            }
            Err(e) => return Err(e),
        }
    }

    builder.reserve_key_ids(max_key_id)?;
    // Ids of sessions forgotten before this rebuild are never handed out again.
    match crate::store::records::read_last_session_id(root) {
        Ok(Some(last)) => builder.reserve_session_ids(last)?,
        Ok(None) => {}
        Err(e) => report.problems.push(format!(
            "{e}: the ids of sessions forgotten before this rebuild may be handed out again"
        )),
    }
    // A generation no files cache was written under: every cache re-checks its chunks once.
    builder.finish(crate::store::now().max(1))?;
    fail.hit("repair-after-build");
    place_packs(root, &locations, &used, &mut report)?;
    report.old_index_kept = swap_in(root, fail)?;
    // Reference lists recovered with the identity, so that the next rebuild needs none.
    for refs in &relisted {
        crate::store::records::write_refs(root, refs)?;
    }
    Ok(report)
}

/// Put every pack where the new index expects it: a pack it uses that an earlier rebuild moved
/// to `lost+found/` goes back under `packs/`; a pack it does not use goes to `lost+found/`, out
/// of reach of the next collect (which would sweep a pack file without a row), for an
/// administrator to look at. `lost+found/` is scanned too, so a rerun finds the same packs.
fn place_packs(
    root: &Path,
    locations: &HashMap<crate::ids::PackName, std::path::PathBuf>,
    used: &HashSet<crate::ids::PackName>,
    report: &mut RebuildReport,
) -> Result<()> {
    let lost_found = root.join(LOST_FOUND_DIR);
    for (name, path) in locations {
        let home = crate::store::pack_path(root, name);
        let in_lost_found = path.parent() == Some(lost_found.as_path());
        if used.contains(name) && in_lost_found {
            let dir = home.parent().expect("pack path has a directory");
            if !dir.is_dir() {
                crate::store::durable::create_dir_synced(dir)?;
            }
            rename(path, &home)?;
            sync_dir(dir)?;
            sync_dir(&lost_found)?;
        } else if !used.contains(name) && !in_lost_found {
            if !lost_found.is_dir() {
                crate::store::durable::create_dir_synced(&lost_found)?;
            }
            rename(path, &lost_found.join(format!("{}.pack", name.to_hex())))?;
            sync_dir(&lost_found)?;
            sync_dir(home.parent().expect("pack path has a directory"))?;
            report.problems.push(format!(
                "pack {name} was moved to {}: nothing recovered names its chunks",
                lost_found.display()
            ));
        } else if !used.contains(name) {
            report.problems.push(format!(
                "pack {name} stays in {}: nothing recovered names its chunks",
                lost_found.display()
            ));
        }
    }
    Ok(())
}

/// Move the old index aside and the new one into place; returns whether there was an old one.
fn swap_in(root: &Path, fail: &Failpoint) -> Result<bool> {
    let index = root.join(INDEX_FILE);
    let old = root.join(OLD_FILE);
    let had_old = index.exists();
    if had_old {
        rename(&index, &old)?;
    }
    let wal = root.join(format!("{INDEX_FILE}-wal"));
    if wal.exists() {
        rename(&wal, &root.join(format!("{OLD_FILE}-wal")))?;
    }
    remove_if_exists(&root.join(format!("{INDEX_FILE}-shm")))?;
    fail.hit("repair-before-rename");
    rename(&root.join(BUILD_FILE), &index)?;
    sync_dir(root)?;
    Ok(had_old)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        Error::io(
            format_args!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    })
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format_args!("removing {}", path.display()), e)),
    }
}

fn mtime(path: &Path) -> i64 {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// The session ids a rebuild would recover (their records), for reports and tests.
pub fn recorded_sessions(root: &Path) -> Result<Vec<SessionId>> {
    Ok(numbered_files(&root.join(SESSIONS_DIR), ".session")?
        .into_iter()
        .map(|(id, _)| SessionId(id as i64))
        .collect())
}
