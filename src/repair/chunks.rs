//! `rsbackup repair chunks --from MIRROR`: heal the primary from a mirror (format-spec/wire.md
//! "Read-only connections", docs/usage.md "repair chunks").
//!
//! The damage is found by the scan of `check --read-data` ([`crate::check::find_damage`]).
//! Reference lists, session records and data key files are copies of what the primary's index
//! holds, so they are rewritten from it. Chunks are fetched from the mirror over a read-only
//! connection, one damaged pack at a time; every record fetched must hash to the stored hash in
//! the primary's own index, and carry the chunk id, key id and length the index has, before it
//! is written. Each damaged pack is replaced, never overwritten: its good records (verified
//! again) and the fetched copies are copied into new packs by the collector's [`Repacker`]
//! (`writing` row, file, fsync of file and directory, then one transaction that moves the rows,
//! seals the new pack and deletes the old pack's row; the old file is unlinked last). A pack
//! with a chunk the mirror lacks too keeps that chunk's row and its file; a pack none of whose
//! damaged chunks could be fetched is not touched at all.
//!
//! Crash safety: the repair runs under the exclusive repository lock as a writer of its own
//! (operation `repair` in its lock file). Killed at any point it leaves at most a dead writer's
//! `writing` pack and old pack files without rows; the next run removes both first (the cleanup
//! of dead writers, the collector's sweep of stray pack files), scans again and does the rest.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use crate::check::{CheckOptions, Problem, find_damage};
use crate::crypto::wrap::Identities;
use crate::error::{Error, Result};
use crate::format::pack::decode_record_header;
use crate::format::records::{ManifestRefs, PackRefs};
use crate::gc::Failpoint;
use crate::gc::collect::sweep_stray_packs;
use crate::gc::repack::Repacker;
use crate::ids::{ChunkId, PackName};
use crate::index::PackUse;
use crate::index::{ChunkKind, ChunkLocation, Index};
use crate::mirror::fetch::Fetch;
use crate::mirror::wire::WireRecord;
use crate::repo::{Operation, Repo};
use crate::store::PackReader;
use crate::store::records;

/// A chunk still damaged after the repair, and what needs it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LostChunk {
    /// The chunk id (hex).
    pub chunk: String,
    /// The pack it is in (hex).
    pub pack: String,
    /// Visible sessions that need it.
    pub sessions: Vec<i64>,
}

/// What a repair found and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HealReport {
    /// What `check --read-data` found before the repair.
    pub damaged: Vec<Problem>,
    /// Damaged chunks found.
    pub chunks_damaged: u64,
    /// Good copies fetched from the mirror and written.
    pub chunks_healed: u64,
    /// Damaged packs replaced by new ones (old file and row gone).
    pub packs_replaced: u64,
    /// New packs written.
    pub packs_written: u64,
    /// Reference lists rewritten from the index.
    pub refs_rewritten: u64,
    /// Session records rewritten from the index.
    pub session_records_rewritten: u64,
    /// Data key files rewritten from the index.
    pub key_files_rewritten: u64,
    /// Chunks the mirror could not give (it lacks them, or holds them damaged too).
    pub lost: Vec<LostChunk>,
    /// What `check --read-data` still finds after the repair; empty when all is healed.
    pub left: Vec<Problem>,
    /// Bytes sent on the connection to the mirror.
    pub wire_bytes_sent: u64,
    /// Bytes received from it.
    pub wire_bytes_received: u64,
}

impl HealReport {
    /// True when nothing is left damaged.
    pub fn clean(&self) -> bool {
        self.left.is_empty() && self.lost.is_empty()
    }
}

/// Repair `repo` from the mirror at the other end of `reader`/`writer`. With `identities`, the
/// final check also names the paths that still-lost chunks break.
pub fn repair_chunks<R: Read, W: Write>(
    repo: &Repo,
    reader: R,
    writer: W,
    identities: Option<&Identities>,
    fail: &Failpoint,
) -> Result<HealReport> {
    // Exclusive: no ingest dedups against a chunk while its row moves, no prune deletes one.
    let _lock = repo.lock_exclusive(false)?;
    let me = crate::gc::lock::start(repo, Operation::Repair)?;
    let mut fetch = Fetch::open(repo, reader, writer)?;
    let mut report = HealReport::default();
    {
        let index = repo.index()?;
        // What an earlier, killed repair left: its unsealed pack, old packs whose rows went.
        repo.cleanup_dead_writers(&index)?;
        sweep_stray_packs(repo, &index, fail)?;
    }
    fail.hit("heal-after-cleanup");
    let (before, damage) = find_damage(repo)?;
    report.damaged = before.problems;
    report.chunks_damaged = damage.chunks.len() as u64;
    let index = repo.index()?;

    // The packs to replace: every pack with a damaged chunk or a damaged file.
    let mut packs: BTreeMap<i64, PackName> = BTreeMap::new();
    let mut homeless = Vec::new();
    for id in &damage.chunks {
        match index.lookup_chunk(id)? {
            Some(loc) => {
                packs.insert(loc.pack_row, loc.pack);
            }
            None => homeless.push(*id),
        }
    }
    for pack in index
        .packs()?
        .iter()
        .filter(|p| damage.packs.contains(&p.name))
    {
        packs.insert(pack.row, pack.name);
    }

    let mut mover = Repacker::new(repo, &index, &me.id, fail);
    let pack_reader = PackReader::new(repo.root());
    let mut healed = Vec::new();
    let mut replaced = Vec::new();
    for (&row, &name) in &packs {
        let locs = index.chunks_in_pack(row)?;
        let mut good: HashMap<ChunkId, Vec<u8>> = HashMap::new();
        let mut need: HashMap<ChunkId, &ChunkLocation> = HashMap::new();
        for loc in &locs {
            let ok = (!damage.chunks.contains(&loc.id))
                .then(|| pack_reader.read_record(loc).ok())
                .flatten()
                .filter(|r| blake3::hash(r).as_bytes() == &loc.stored_hash);
            match ok {
                Some(record) => {
                    good.insert(loc.id, record);
                }
                None => {
                    need.insert(loc.id, loc);
                }
            }
        }
        let mut ids: Vec<ChunkId> = need.keys().copied().collect();
        ids.sort_unstable();
        let mut fetched: HashMap<ChunkId, Vec<u8>> = HashMap::new();
        fetch.chunks(&ids, |r| {
            let (id, record) = verified(&need, r)?;
            fetched.insert(id, record);
            Ok(())
        })?;
        fail.hit("heal-after-fetch");
        let lost: Vec<&ChunkLocation> = locs
            .iter()
            .filter(|l| need.contains_key(&l.id) && !fetched.contains_key(&l.id))
            .collect();
        for loc in &lost {
            report.lost.push(LostChunk {
                chunk: loc.id.to_hex(),
                pack: name.to_hex(),
                sessions: sessions_of(&index, &loc.id)?,
            });
        }
        if fetched.is_empty() && !damage.packs.contains(&name) {
            continue; // nothing to gain: the pack stays as it is
        }
        for loc in &locs {
            let Some(record) = fetched.get(&loc.id).or_else(|| good.get(&loc.id)) else {
                continue;
            };
            let refs = match loc.kind {
                ChunkKind::Manifest => Some(index.chunk_refs(&loc.id)?),
                ChunkKind::Data => None,
            };
            mover.append(loc.id, row, loc.offset, record, refs)?;
        }
        healed.extend(fetched.keys().copied());
        if lost.is_empty() {
            mover.retire(PackUse {
                row,
                name,
                size: 0,
                live_bytes: 0,
                live_chunks: 0,
            });
            replaced.push(name);
        }
    }
    let moved = mover.finish()?;
    report.packs_written = moved.packs_written;
    report.packs_replaced = moved.packs_repacked;
    report.chunks_healed = healed.len() as u64;
    fail.hit("heal-before-clear");
    index.clear_damaged(&healed)?;
    for id in homeless {
        report.lost.push(LostChunk {
            chunk: id.to_hex(),
            pack: String::new(),
            sessions: sessions_of(&index, &id)?,
        });
    }

    // Copies of the index: rewritten from it (the replaced packs' lists went with them).
    let root = repo.root();
    let live: HashMap<PackName, i64> = index.packs()?.iter().map(|p| (p.name, p.row)).collect();
    for name in damage.refs.iter().filter(|n| !replaced.contains(n)) {
        let Some(&row) = live.get(name) else {
            continue;
        };
        let mut manifests = Vec::new();
        for loc in index.chunks_in_pack(row)? {
            if loc.kind == ChunkKind::Manifest {
                manifests.push(ManifestRefs {
                    id: loc.id,
                    refs: index.chunk_refs(&loc.id)?,
                });
            }
        }
        records::write_refs(
            root,
            &PackRefs {
                pack: *name,
                manifests,
            },
        )?;
        report.refs_rewritten += 1;
    }
    for id in &damage.session_records {
        let info = index.session(*id)?;
        let record = records::session_record(&info, index.session_root(*id)?)?;
        records::write_session_record(root, &record)?;
        report.session_records_rewritten += 1;
    }
    for id in &damage.key_files {
        records::write_data_key(root, *id, &index.data_key(*id)?)?;
        report.key_files_rewritten += 1;
    }
    fail.hit("heal-after-records");
    let (sent, received) = fetch.close()?;
    report.wire_bytes_sent = sent;
    report.wire_bytes_received = received;
    drop(index);
    drop(me);

    let after = crate::check::check(
        repo,
        &CheckOptions {
            read_data: true,
            identities: identities.map(|i| Identities(i.0.clone())),
        },
    )?;
    report.left = after.problems;
    Ok(report)
}

/// A record from the mirror, accepted only if it is the one the primary's index describes:
/// same chunk id, key id and length, and BLAKE3 equal to the stored hash.
fn verified(need: &HashMap<ChunkId, &ChunkLocation>, r: WireRecord) -> Result<(ChunkId, Vec<u8>)> {
    let header = decode_record_header(&r.record)?;
    let loc = need.get(&header.chunk_id).ok_or_else(|| {
        Error::protocol(format!(
            "the mirror sent chunk {}, which was not asked for",
            header.chunk_id
        ))
    })?;
    if header.key_id != loc.key_id
        || r.record.len() as u64 != u64::from(loc.length)
        || blake3::hash(&r.record).as_bytes() != &loc.stored_hash
    {
        return Err(Error::corrupt(format!(
            "the mirror's copy of chunk {} does not match the primary's index (key, length or \
             stored hash): not written",
            header.chunk_id
        )));
    }
    Ok((header.chunk_id, r.record))
}

fn sessions_of(index: &Index, id: &ChunkId) -> Result<Vec<i64>> {
    Ok(index
        .sessions_using_chunk(id)?
        .into_iter()
        .map(|s| s.0)
        .collect())
}
