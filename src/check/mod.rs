//! Check a repository: the index against the packs; with `read_data` every record's hash; with
//! an identity every chunk's authentication and id. Names each damaged chunk and what depends on it.
//!
//! Without a key, check verifies everything the server can: SQLite's own consistency, the
//! references between tables, that every pack file exists with its sealed size and holds each
//! record where the index says, and (`read_data`) that every record still hashes to what was
//! stored. With an identity it also opens every chunk, decodes every session's manifest, and
//! names the paths that a damaged chunk breaks, so an administrator knows what a restore would
//! miss before the bad day.

mod packs;
mod records;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;

use rayon::prelude::*;

use crate::crypto::wrap::Identities;
use crate::error::Result;
use crate::format::manifest::Body;
use crate::ids::{ChunkId, KeyId, PackName, SessionId};
use crate::index::{Index, PackInfo};
use crate::progress::{NoProgress, Progress};
use crate::reader::{IndexPool, SessionReader};
use crate::repo::Repo;
use crate::restore::display;

/// What to check.
#[derive(Default)]
pub struct CheckOptions {
    /// Read every record and compare its BLAKE3 with the index.
    pub read_data: bool,
    /// Also decrypt every chunk and verify its id (implies reading).
    pub identities: Option<Identities>,
}

/// One problem found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// What is wrong, in words.
    pub what: String,
    /// The damaged chunk, if one.
    pub chunk: Option<String>,
    /// The pack concerned, if one.
    pub pack: Option<String>,
    /// Sessions that depend on it.
    pub sessions: Vec<i64>,
    /// Paths that depend on it (needs an identity), as "session:path".
    pub paths: Vec<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Packs examined.
    pub packs: u64,
    /// Chunks examined.
    pub chunks: u64,
    /// Bytes read from packs.
    pub bytes_read: u64,
    /// Problems found; empty means the repository is sound.
    pub problems: Vec<Problem>,
}

/// Most paths listed for one damaged chunk; the count of the rest follows them.
const MAX_PATHS_PER_PROBLEM: usize = 1000;

/// A problem before the sessions and paths that depend on it are attached.
pub(crate) struct Finding {
    what: String,
    chunk: Option<ChunkId>,
    pack: Option<String>,
    /// Sessions known to be affected besides those that use `chunk`.
    sessions: Vec<i64>,
}

/// What a check found damaged, by what can be healed (`rsbackup repair chunks`).
#[derive(Debug, Clone, Default)]
pub struct Damage {
    /// Chunks whose record is missing, unreadable or does not match the index.
    pub chunks: BTreeSet<ChunkId>,
    /// Sealed packs whose file is missing, of the wrong size or with a bad header.
    pub packs: BTreeSet<PackName>,
    /// Sealed packs whose reference list is missing, unreadable or short of the index.
    pub refs: BTreeSet<PackName>,
    /// Visible sessions whose record is missing or disagrees with the index.
    pub session_records: BTreeSet<SessionId>,
    /// Data keys whose file is missing or differs from the index.
    pub key_files: BTreeSet<KeyId>,
}

/// Run a check.
pub fn check(repo: &Repo, opts: &CheckOptions) -> Result<CheckReport> {
    check_with(repo, opts, &mut Damage::default(), &NoProgress)
}

/// [`check`], reporting the sealed packs' bytes as each pack is checked (one phase, `checking
/// packs`, whose total is the sum of their sizes).
pub fn check_with_progress(
    repo: &Repo,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    check_with(repo, opts, &mut Damage::default(), progress)
}

/// `check --read-data` without an identity, with what it found damaged sorted by what can be
/// healed: the scan `rsbackup repair chunks` works from.
pub fn find_damage(repo: &Repo) -> Result<(CheckReport, Damage)> {
    let mut damage = Damage::default();
    let opts = CheckOptions {
        read_data: true,
        identities: None,
    };
    let report = check_with(repo, &opts, &mut damage, &NoProgress)?;
    Ok((report, damage))
}

fn check_with(
    repo: &Repo,
    opts: &CheckOptions,
    damage: &mut Damage,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    // Unlock first: a wrong identity is an error of the command, not a problem of the repository.
    let reader = match &opts.identities {
        Some(ids) => Some(SessionReader::new(repo, Identities(ids.0.clone()))?),
        None => None,
    };
    let index = repo.index()?;
    let mut findings = Vec::new();
    let mut report = CheckReport::default();

    quick_check(&index, &mut findings)?;
    references(&index, &mut findings)?;

    let all_packs = index.packs()?;
    leftovers(repo, &all_packs, &mut findings);
    unknown_files(repo, &all_packs, &mut findings);

    let sealed: Vec<&PackInfo> = all_packs.iter().filter(|p| p.sealed).collect();
    report.packs = sealed.len() as u64;
    records::key_files(repo, &mut findings);
    records::records(repo, &index, &sealed, &mut findings, damage)?;
    let pool = IndexPool::new(repo);
    progress.start("checking packs", Some(sealed.iter().map(|p| p.size).sum()));
    let outcomes: Vec<packs::PackOutcome> = sealed
        .par_iter()
        .map(|pack| {
            let outcome = packs::check_pack(repo, &pool, pack, opts.read_data, reader.as_ref());
            progress.advance(pack.size);
            outcome
        })
        .collect();
    let mut damaged = HashSet::new();
    for (outcome, pack) in outcomes.into_iter().zip(&sealed) {
        if outcome.pack_damaged {
            damage.packs.insert(pack.name);
        }
        report.chunks += outcome.chunks;
        report.bytes_read += outcome.bytes_read;
        findings.extend(outcome.findings);
        damaged.extend(outcome.damaged);
    }
    // Chunks named by findings outside the pack scan (a root or reference to a missing chunk).
    damaged.extend(findings.iter().filter_map(|f| f.chunk));
    damage.chunks.extend(damaged.iter().copied());
    if opts.read_data && !damaged.is_empty() {
        // Remembered for the next mirror run, which fetches good copies (src/mirror).
        let ids: Vec<ChunkId> = damaged.iter().copied().collect();
        if let Err(e) = index.record_damaged(&ids, crate::store::now()) {
            // A read-only index must not stop the check; the next mirror run then cannot repair.
            findings.push(Finding {
                what: format!(
                    "could not record the damaged chunks for repair by a mirror run: {e}"
                ),
                chunk: None,
                pack: None,
                sessions: Vec::new(),
            });
        }
    }

    let mut paths = HashMap::new();
    if let Some(reader) = &reader {
        manifests(reader, &damaged, &mut findings, &mut paths)?;
    }

    for finding in findings {
        let mut sessions = finding.sessions;
        if let Some(id) = &finding.chunk {
            sessions.extend(index.sessions_using_chunk(id)?.into_iter().map(|s| s.0));
        }
        sessions.sort_unstable();
        sessions.dedup();
        let paths = finding
            .chunk
            .and_then(|id| paths.get(&id).cloned())
            .map(|set: BTreeSet<String>| limit_paths(set))
            .unwrap_or_default();
        report.problems.push(Problem {
            what: finding.what,
            chunk: finding.chunk.map(|c| c.to_hex()),
            pack: finding.pack,
            sessions,
            paths,
        });
    }
    Ok(report)
}

fn limit_paths(set: BTreeSet<String>) -> Vec<String> {
    let total = set.len();
    let mut out: Vec<String> = set.into_iter().take(MAX_PATHS_PER_PROBLEM).collect();
    if total > out.len() {
        out.push(format!("... and {} more paths", total - out.len()));
    }
    out
}

/// SQLite's own consistency check of the index file.
fn quick_check(index: &Index, findings: &mut Vec<Finding>) -> Result<()> {
    for line in index.quick_check()? {
        findings.push(Finding {
            what: format!("the index database is damaged: {line}"),
            chunk: None,
            pack: None,
            sessions: Vec::new(),
        });
    }
    Ok(())
}

/// References between tables that must hold (format-spec/index.md "Invariants"); see
/// [`crate::index`]'s `missing_roots` and siblings for what each finding means.
fn references(index: &Index, findings: &mut Vec<Finding>) -> Result<()> {
    for m in index.missing_roots()? {
        findings.push(Finding {
            what: format!(
                "manifest chunk {} of session {} (chunk number {}) is missing from the index: \
                 the session cannot be read",
                m.seq, m.session, m.num
            ),
            chunk: None,
            pack: None,
            sessions: vec![m.session.0],
        });
    }
    // A reference to a missing chunk: the sessions whose root holds the manifest chunk lose it.
    for m in index.missing_children()? {
        let parent = match m.parent {
            Some(id) => id.to_string(),
            None => format!("number {} (itself missing)", m.parent_num),
        };
        findings.push(Finding {
            what: format!(
                "chunk number {}, named by manifest chunk {parent}, is missing from the index: \
                 the files that use it cannot be restored",
                m.child
            ),
            chunk: None,
            pack: None,
            sessions: m.sessions.iter().map(|s| s.0).collect(),
        });
    }
    // References whose manifest chunk is gone: no restore needs them, but they are a sign of
    // an index edited without its foreign keys.
    for (parent, count) in index.orphan_references()? {
        findings.push(Finding {
            what: format!(
                "the index holds {count} reference(s) from chunk number {parent}, which is \
                 missing from the index"
            ),
            chunk: None,
            pack: None,
            sessions: Vec::new(),
        });
    }
    for m in index.misplaced_chunks()? {
        let pack_row = m.pack_row;
        let what = match m.pack_state.as_deref() {
            None => format!("the chunk's pack (row {pack_row}) is missing from the index"),
            Some(s) if s != "sealed" => {
                format!("the chunk is recorded in pack row {pack_row}, which is not sealed ({s})")
            }
            _ => format!(
                "the chunk was sealed with data key {}, which the index lacks",
                m.key_id.0
            ),
        };
        findings.push(Finding {
            what,
            chunk: Some(m.id),
            pack: m.pack.map(|p| p.to_hex()),
            sessions: Vec::new(),
        });
    }
    Ok(())
}

/// Whether the writer `writer` is dead: its lock file is gone or can be locked.
fn writer_is_dead(repo: &Repo, writer: &str) -> bool {
    let path = repo.root().join("locks").join(format!("{writer}.lock"));
    match std::fs::File::open(&path) {
        Err(_) => true,
        // Taking the lock for an instant is harmless: a dead writer never comes back, and the
        // lock is released when the file closes at the end of this arm.
        Ok(file) => {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok()
        }
    }
}

/// Packs still `writing` whose writer is dead (a live writer's are work in progress).
fn leftovers(repo: &Repo, all: &[PackInfo], findings: &mut Vec<Finding>) {
    for pack in all.iter().filter(|p| !p.sealed) {
        let writer = pack.writer.as_deref().unwrap_or("");
        if writer.is_empty() || writer_is_dead(repo, writer) {
            let op = crate::repo::writer_operation(repo.root(), writer);
            findings.push(Finding {
                what: format!(
                    "pack {} was left unsealed by writer {writer:?}, which is no longer running: \
                     {}",
                    pack.name,
                    crate::repo::Operation::left_behind(op)
                ),
                chunk: None,
                pack: Some(pack.name.to_hex()),
                sessions: Vec::new(),
            });
        }
    }
}

/// Files under `packs/` that the index does not know.
fn unknown_files(repo: &Repo, all: &[PackInfo], findings: &mut Vec<Finding>) {
    let known: HashSet<PackName> = all.iter().map(|p| p.name).collect();
    let packs_dir = repo.root().join("packs");
    let Ok(subdirs) = std::fs::read_dir(&packs_dir) else {
        return;
    };
    for sub in subdirs.flatten() {
        let Ok(files) = std::fs::read_dir(sub.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let name = name.to_string_lossy();
            let known_pack = name
                .strip_suffix(".pack")
                .or_else(|| name.strip_suffix(".refs"))
                .and_then(|hex| hex.parse::<PackName>().ok())
                .is_some_and(|n| known.contains(&n));
            if !known_pack {
                findings.push(Finding {
                    what: format!(
                        "{} is not a pack the index knows; nothing refers to it (it can be \
                         moved away after checking what it is)",
                        file.path().display()
                    ),
                    chunk: None,
                    pack: name.strip_suffix(".pack").map(str::to_string),
                    sessions: Vec::new(),
                });
            }
        }
    }
}

/// Decode every session's manifest; collect, for each damaged chunk, the paths that need it.
fn manifests(
    reader: &SessionReader,
    damaged: &HashSet<ChunkId>,
    findings: &mut Vec<Finding>,
    paths: &mut HashMap<ChunkId, BTreeSet<String>>,
) -> Result<()> {
    for session in reader.sessions(None)? {
        let id = SessionId(session.id);
        // Files of this session that name a damaged chunk, for the hard links to them.
        let mut broken_files: HashMap<Vec<u8>, Vec<ChunkId>> = HashMap::new();
        let mut lost_chunks = Vec::new();
        let walked = reader.walk_salvaging(
            id,
            &mut |entry| {
                match &entry.body {
                    Body::File { extents, .. } => {
                        let mut hit = Vec::new();
                        for extent in extents {
                            if let crate::format::manifest::Extent::Chunk { id: chunk, .. } = extent
                                && damaged.contains(chunk)
                            {
                                hit.push(*chunk);
                            }
                        }
                        for chunk in &hit {
                            paths.entry(*chunk).or_default().insert(format!(
                                "{}:{}",
                                id.0,
                                display(&entry.path)
                            ));
                        }
                        if !hit.is_empty() {
                            broken_files.insert(entry.path.clone(), hit);
                        }
                    }
                    Body::Hardlink { target } => {
                        if let Some(chunks) = broken_files.get(target) {
                            for chunk in chunks {
                                paths.entry(*chunk).or_default().insert(format!(
                                    "{}:{}",
                                    id.0,
                                    display(&entry.path)
                                ));
                            }
                        }
                    }
                    _ => {}
                }
                Ok(ControlFlow::Continue(()))
            },
            &mut |lost| {
                lost_chunks.push(lost);
                Ok(())
            },
        );
        // The rest of the manifest was still read: a damaged manifest chunk costs the entries
        // it describes, which restore names as a range.
        for lost in lost_chunks {
            findings.push(Finding {
                what: format!(
                    "manifest chunk {} of {} of session {} cannot be read ({}): the entries it describes are lost; a restore names their range and restores the rest",
                    lost.seq, lost.count, id.0, lost.error
                ),
                chunk: Some(lost.id),
                pack: None,
                sessions: vec![id.0],
            });
        }
        if let Err(e) = walked {
            findings.push(Finding {
                what: format!("the manifest of session {} cannot be read: {e}", id.0),
                chunk: None,
                pack: None,
                sessions: vec![id.0],
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
