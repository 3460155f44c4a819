//! Roll-off over real repositories built with `ingest`: forget, collect, repack, keys, pins,
//! dry runs, a busy lock, and an ingest running beside a prune.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::check::{CheckOptions, check};
use crate::ids::SessionId;
use crate::ingest::{IngestOptions, ingest};
use crate::repo::Repo;
use crate::restore::testutil::{TestRepo, noise};
use rusqlite::OptionalExtension;

/// A test repository whose packs are small, so a few files spread over several packs.
fn small_pack_repo() -> TestRepo {
    let mut t = TestRepo::new();
    let mut config = t.repo.config().clone();
    config.pack_target_size = 100_000;
    let path = t.repo.root().join("repository.toml");
    fs::write(&path, config.to_toml()).unwrap();
    t.repo = Repo::open(t.repo.root()).unwrap();
    t
}

/// Write a tree of `files` (name -> seed), 30 000 bytes each.
fn tree(t: &TestRepo, name: &str, files: &[(&str, u64)]) -> PathBuf {
    let dir = t.path(name);
    for (f, seed) in files {
        let p = dir.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, noise(*seed, 30_000)).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn ingest_tree(t: &TestRepo, client: &str, dir: &Path) -> SessionId {
    let r = ingest(
        &t.repo,
        &IngestOptions {
            client: client.into(),
            source: dir.to_path_buf(),
            threads: Some(2),
            files_cache: false,
            sources: None,
            restore_recipient: None,
        },
    )
    .unwrap();
    SessionId(r.session)
}

/// Restore `session` and compare every file with `source`.
fn assert_restores(t: &TestRepo, session: SessionId, source: &Path) {
    let target = t.path(&format!("restore-{}-{}", session.0, rand_suffix()));
    let report = t.restore_all(session, &target);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(files_of(&target), files_of(source), "session {session}");
}

fn rand_suffix() -> String {
    hex::encode(crate::crypto::random_array::<4>())
}

fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path().strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    out
}

fn assert_check_clean(t: &TestRepo) {
    let report = check(
        &t.repo,
        &CheckOptions {
            read_data: true,
            identities: Some(t.identities()),
        },
    )
    .unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

fn count(t: &TestRepo, sql: &str) -> i64 {
    t.repo
        .index()
        .unwrap()
        .conn()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn packs_bytes(t: &TestRepo) -> u64 {
    let mut total = 0;
    for sub in fs::read_dir(t.repo.root().join("packs")).unwrap() {
        for f in fs::read_dir(sub.unwrap().path()).unwrap() {
            total += f.unwrap().metadata().unwrap().len();
        }
    }
    total
}

fn keep_last(n: u32) -> PruneOptions {
    PruneOptions::new(Rules::same(ClientRules::utc(Policy {
        keep_last: n,
        ..Policy::default()
    })))
}

/// Four sessions: A and B shared by all, one unique file each; a fifth of another client.
fn four_sessions(t: &TestRepo) -> Vec<(SessionId, PathBuf)> {
    let mut out = Vec::new();
    for i in 0..4u64 {
        let dir = tree(
            t,
            &format!("src{i}"),
            &[
                ("a", 1),
                ("sub/b", 2),
                (&format!("u{i}"), 100 + i),
                (&format!("v{i}"), 200 + i),
            ],
        );
        out.push((ingest_tree(t, "web", &dir), dir));
    }
    out
}

#[test]
fn prune_removes_rolled_off_sessions_and_kept_ones_restore() {
    let t = small_pack_repo();
    let sessions = four_sessions(&t);
    let other = tree(&t, "other", &[("a", 1), ("o", 300)]);
    let other_id = ingest_tree(&t, "db", &other);
    let keys_before = count(&t, "SELECT count(*) FROM data_keys");
    let bytes_before = packs_bytes(&t);
    let generation = t.repo.index().unwrap().gc_generation().unwrap();

    let mut opts = keep_last(2);
    opts.client = Some("web".into());
    let report = prune(&t.repo, &opts).unwrap();
    assert_eq!(report.removed, 2);
    let removed: Vec<i64> = report
        .sessions
        .iter()
        .filter(|f| !f.keep)
        .map(|f| f.id)
        .collect();
    assert_eq!(removed, vec![sessions[0].0.0, sessions[1].0.0]);
    let c = report.collect.expect("collect ran");
    // u0, v0, u1, v1 and the two old manifests' chunks at least.
    assert!(c.chunks_deleted >= 4, "{c:?}");
    assert!(c.bytes_reclaimed >= 4 * 30_000, "{c:?}");
    assert!(!report.gc_pending);

    let listed: Vec<i64> = t
        .repo
        .index()
        .unwrap()
        .sessions(None)
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![sessions[2].0.0, sessions[3].0.0, other_id.0]);
    for (id, dir) in &sessions[2..] {
        assert_restores(&t, *id, dir);
    }
    assert_restores(&t, other_id, &other);
    assert_check_clean(&t);
    assert!(packs_bytes(&t) < bytes_before);
    assert!(t.repo.index().unwrap().gc_generation().unwrap() > generation);
    // Keys of the removed sessions that no chunk needs are gone; every key left is used.
    assert!(count(&t, "SELECT count(*) FROM data_keys") < keys_before);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM data_keys WHERE id NOT IN (SELECT key_id FROM chunks)"
        ),
        0
    );
    // No pack is left mostly empty.
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM packs p WHERE (SELECT coalesce(sum(length), 0) FROM chunks \
             WHERE pack = p.id) * 2 < p.size"
        ),
        0
    );

    // A second prune is a no-op that does not even take the exclusive lock.
    let again = prune(&t.repo, &opts).unwrap();
    assert_eq!(again.removed, 0);
    assert!(again.collect.is_none());
    assert_eq!(packs_bytes(&t), packs_bytes(&t));
}

/// Two sessions of client `web`: twelve files (sizes from `base`), then every third of them;
/// once the first rolls off, its packs are about a third live. Returns the second session and
/// its source.
fn half_live(t: &TestRepo, base: u64) -> (SessionId, PathBuf) {
    let files: Vec<(String, u64)> = (0..12).map(|i| (format!("f{i:02}"), base + i)).collect();
    let refs: Vec<(&str, u64)> = files.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let full = tree(t, "full", &refs);
    ingest_tree(t, "web", &full);
    let half: Vec<(&str, u64)> = refs.iter().step_by(3).copied().collect();
    let half_dir = tree(t, "half", &half);
    (ingest_tree(t, "web", &half_dir), half_dir)
}

#[test]
fn repacking_moves_live_records_verbatim() {
    let t = small_pack_repo();
    // One session with many files, then one that keeps every other file: the old packs end up
    // about half live.
    let (kept, half_dir) = half_live(&t, 500);
    let before: Vec<(Vec<u8>, Vec<u8>)> = {
        let index = t.repo.index().unwrap();
        let mut stmt = index
            .conn()
            .prepare("SELECT id, stored_hash FROM chunks ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };

    let report = prune(&t.repo, &keep_last(1)).unwrap();
    let c = report.collect.unwrap();
    assert!(c.packs_repacked >= 1, "{c:?}");
    assert!(c.packs_written >= 1, "{c:?}");
    assert!(c.skipped.is_empty());
    // Every kept chunk keeps its stored hash: records were copied, not re-sealed.
    let index = t.repo.index().unwrap();
    let mut stmt = index
        .conn()
        .prepare("SELECT stored_hash FROM chunks WHERE id = ?1")
        .unwrap();
    let mut still = 0;
    for (id, hash) in &before {
        if let Some(h) = stmt
            .query_row([id], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .unwrap()
        {
            assert_eq!(&h, hash);
            still += 1;
        }
    }
    assert!(still >= 4);
    assert_restores(&t, kept, &half_dir);
    assert_check_clean(&t);
}

#[test]
fn pinned_sessions_stay_until_unpinned_and_dry_run_changes_nothing() {
    let t = small_pack_repo();
    let sessions = four_sessions(&t);
    set_pinned(&t.repo, sessions[0].0, true).unwrap();

    let mut dry = keep_last(1);
    dry.dry_run = true;
    let bytes = packs_bytes(&t);
    let r = prune(&t.repo, &dry).unwrap();
    assert_eq!(r.removed, 0);
    assert!(r.collect.is_none());
    let fates: Vec<(i64, bool)> = r.sessions.iter().map(|f| (f.id, f.keep)).collect();
    let ids: Vec<i64> = sessions.iter().map(|s| s.0.0).collect();
    assert_eq!(
        fates,
        vec![
            (ids[0], true),
            (ids[1], false),
            (ids[2], false),
            (ids[3], true)
        ]
    );
    assert_eq!(r.sessions[0].reasons, vec![Reason::Pinned]);
    assert_eq!(t.repo.index().unwrap().sessions(None).unwrap().len(), 4);
    assert_eq!(packs_bytes(&t), bytes);

    prune(&t.repo, &keep_last(1)).unwrap();
    assert_restores(&t, sessions[0].0, &sessions[0].1);
    assert_eq!(t.repo.index().unwrap().sessions(None).unwrap().len(), 2);
    set_pinned(&t.repo, sessions[0].0, false).unwrap();
    prune(&t.repo, &keep_last(1)).unwrap();
    let left = t.repo.index().unwrap().sessions(None).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, ids[3]);
    assert_restores(&t, sessions[3].0, &sessions[3].1);
    assert_check_clean(&t);

    let missing = set_pinned(&t.repo, SessionId(9999), true).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

#[test]
fn no_rules_keep_everything() {
    let t = small_pack_repo();
    four_sessions(&t);
    let r = prune(
        &t.repo,
        &PruneOptions::new(Rules::same(ClientRules::utc(Policy::default()))),
    )
    .unwrap();
    assert_eq!(r.removed, 0);
    assert!(r.sessions.iter().all(|f| f.keep));
    assert_eq!(t.repo.index().unwrap().sessions(None).unwrap().len(), 4);
}

#[test]
fn bad_options_are_refused() {
    let t = small_pack_repo();
    let mut o = keep_last(1);
    o.repack_threshold = 1.5;
    assert_eq!(
        prune(&t.repo, &o).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut o = keep_last(1);
    o.failpoint = Some("no-such-point".into());
    assert_eq!(
        prune(&t.repo, &o).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut o = keep_last(1);
    o.failpoint = Some("after-move#0".into());
    assert!(prune(&t.repo, &o).is_err());
}

#[test]
fn after_ingest_leaves_collect_pending_when_the_repository_is_busy() {
    let t = small_pack_repo();
    let sessions = four_sessions(&t);
    let rules = ClientRules::utc(Policy {
        keep_last: 2,
        ..Policy::default()
    });
    let held = t.repo.lock_shared().unwrap();
    let r = after_ingest(&t.repo, "web", &rules, 0.5, Timestamp::now()).unwrap();
    assert_eq!(r.removed, vec![sessions[0].0.0, sessions[1].0.0]);
    assert!(r.gc_pending);
    assert!(r.collect.is_none());
    assert!(t.repo.index().unwrap().gc_pending().unwrap());
    drop(held);

    // Nothing more to forget, but the pending collect is done by the next run.
    let r = after_ingest(&t.repo, "web", &rules, 0.5, Timestamp::now()).unwrap();
    assert!(r.removed.is_empty());
    assert!(r.collect.unwrap().chunks_deleted > 0);
    assert!(!t.repo.index().unwrap().gc_pending().unwrap());
    for (id, dir) in &sessions[2..] {
        assert_restores(&t, *id, dir);
    }
    assert_check_clean(&t);
}

#[test]
fn collect_removes_what_a_dead_ingest_sealed() {
    let t = small_pack_repo();
    let sessions = four_sessions(&t);
    // A sealed pack whose chunk no session names: what an ingest killed after sealing a pack
    // but before committing its session leaves behind.
    {
        let index = t.repo.index().unwrap();
        let writer = crate::ids::WriterId::random();
        let mut w = crate::store::PackWriter::new(t.repo.root(), &index, &writer, 1 << 20);
        w.append(crate::store::PendingChunk {
            id: crate::ids::ChunkId([7; 32]),
            kind: crate::index::ChunkKind::Data,
            key_id: crate::ids::KeyId(1),
            envelope: vec![0; 5000],
            refs: Vec::new(),
        })
        .unwrap();
        w.finish().unwrap();
        index.set_gc_pending(true).unwrap();
    }
    let r = prune(&t.repo, &keep_last(10)).unwrap();
    assert_eq!(r.removed, 0);
    let c = r.collect.unwrap();
    assert_eq!(c.chunks_deleted, 1);
    assert_eq!(c.packs_emptied, 1);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM chunks WHERE id = x'0707070707070707070707070707070707070707070707070707070707070707'"
        ),
        0
    );
    for (id, dir) in &sessions {
        assert_restores(&t, *id, dir);
    }
    assert_check_clean(&t);
}

#[test]
fn stray_pack_files_are_swept_and_other_files_left() {
    let t = small_pack_repo();
    let sessions = four_sessions(&t);
    let stray = crate::store::pack_path(t.repo.root(), &crate::ids::PackName([0xab; 16]));
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"left by a crash").unwrap();
    let other = stray.parent().unwrap().join("notes.txt");
    fs::write(&other, b"not a pack").unwrap();
    prune(&t.repo, &keep_last(3)).unwrap();
    assert!(!stray.exists());
    assert!(other.exists());
    fs::remove_file(&other).unwrap();
    for (id, dir) in &sessions[1..] {
        assert_restores(&t, *id, dir);
    }
    assert_check_clean(&t);
}

#[test]
fn an_ingest_beside_a_prune_both_succeed() {
    let t = small_pack_repo();
    let sessions = four_sessions(&t);
    // The new tree shares a and b with the sessions being rolled off.
    let files: Vec<(String, u64)> = (0..30).map(|i| (format!("n{i}"), 900 + i)).collect();
    let mut refs: Vec<(&str, u64)> = files.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    refs.extend([("a", 1), ("sub/b", 2), ("u0", 100)]);
    let new_dir = tree(&t, "new", &refs);
    let (ingested, pruned) = std::thread::scope(|s| {
        let i = s.spawn(|| ingest_tree(&t, "web", &new_dir));
        let p = s.spawn(|| {
            let mut reports = Vec::new();
            for _ in 0..5 {
                reports.push(prune(&t.repo, &keep_last(1)).unwrap());
            }
            reports
        });
        (i.join().unwrap(), p.join().unwrap())
    });
    assert!(pruned.iter().map(|r| r.removed).sum::<u64>() >= 3);
    let r = prune(&t.repo, &keep_last(1)).unwrap();
    assert!(!r.gc_pending);
    let left = t.repo.index().unwrap().sessions(None).unwrap();
    assert_eq!(left.last().unwrap().id, ingested.0);
    assert_restores(&t, ingested, &new_dir);
    assert_check_clean(&t);
    let _ = sessions;
}

#[test]
fn a_dead_ingest_found_by_prune_makes_a_collect_owed() {
    let t = small_pack_repo();
    let sessions = four_sessions(&t);
    // What an ingest killed after sealing one pack leaves: a running session and a sealed pack
    // of a writer whose lock file is gone.
    {
        let index = t.repo.index().unwrap();
        let writer = crate::ids::WriterId::random();
        index.create_session("web", &writer, 1).unwrap();
        let mut w = crate::store::PackWriter::new(t.repo.root(), &index, &writer, 1 << 20);
        w.append(crate::store::PendingChunk {
            id: crate::ids::ChunkId([9; 32]),
            kind: crate::index::ChunkKind::Data,
            key_id: crate::ids::KeyId(1),
            envelope: vec![1; 3000],
            refs: Vec::new(),
        })
        .unwrap();
        w.finish().unwrap();
    }
    assert!(!t.repo.index().unwrap().gc_pending().unwrap());
    let r = prune(&t.repo, &keep_last(10)).unwrap();
    assert_eq!(r.removed, 0);
    let c = r.collect.expect("the dead ingest's chunks are collected");
    assert_eq!(c.chunks_deleted, 1);
    assert_eq!(
        count(&t, "SELECT count(*) FROM sessions WHERE state = 'running'"),
        0
    );
    for (id, dir) in &sessions {
        assert_restores(&t, *id, dir);
    }
    assert_check_clean(&t);
}

/// The live data chunks of `session`, with their locations.
fn live_locations(t: &TestRepo, session: SessionId) -> Vec<crate::index::ChunkLocation> {
    let index = t.repo.index().unwrap();
    let ids: Vec<Vec<u8>> = {
        let mut stmt = index
            .conn()
            .prepare(
                "SELECT c.id FROM chunks c JOIN chunk_refs r ON r.child = c.num \
                 JOIN session_manifest m ON m.chunk = r.parent WHERE m.session = ?1",
            )
            .unwrap();
        stmt.query_map([session.0], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    ids.iter()
        .map(|id| {
            let id = crate::ids::ChunkId(id.as_slice().try_into().unwrap());
            index.lookup_chunk(&id).unwrap().unwrap()
        })
        .collect()
}

/// Regression: repacking must never copy a record that does not match its stored hash. A copy
/// would move bit rot into a fresh pack and delete the old one, the only evidence of where the
/// damage came from; the pack is left where it is for `check` to report.
#[test]
fn repack_leaves_a_damaged_record_and_its_pack_for_check() {
    let t = small_pack_repo();
    let (kept, _) = half_live(&t, 700);

    // Damage one live record in every pack that also holds records of the session that will
    // roll off: those are the packs repack would copy from.
    let live = live_locations(&t, kept);
    let live_ids: std::collections::HashSet<_> = live.iter().map(|l| l.id).collect();
    let index = t.repo.index().unwrap();
    let mut damaged_packs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for loc in &live {
        if !seen.insert(loc.pack_row) {
            continue;
        }
        let in_pack = index.chunks_in_pack(loc.pack_row).unwrap();
        if in_pack.iter().all(|c| live_ids.contains(&c.id)) {
            continue;
        }
        let path = crate::store::pack_path(t.repo.root(), &loc.pack);
        let mut bytes = fs::read(&path).unwrap();
        let at = loc.offset as usize + loc.length as usize / 2;
        bytes[at] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        damaged_packs.push(path);
    }
    drop(index);
    assert!(!damaged_packs.is_empty(), "the test needs a sparse pack");

    let report = prune(&t.repo, &keep_last(1)).unwrap();
    let c = report.collect.unwrap();
    assert_eq!(c.skipped.len(), damaged_packs.len(), "{c:?}");
    for why in &c.skipped {
        assert!(why.contains("does not match its stored hash"), "{why}");
    }
    for path in &damaged_packs {
        assert!(path.exists(), "{} was repacked away", path.display());
    }
    // check still finds every damaged record where it was.
    let report = check(
        &t.repo,
        &CheckOptions {
            read_data: true,
            identities: Some(t.identities()),
        },
    )
    .unwrap();
    assert!(
        report.problems.len() >= damaged_packs.len(),
        "{:#?}",
        report.problems
    );
}

/// Regression: a files cache written before a garbage collection must not be trusted after
/// it. Here the cache names chunks that the collection deleted (their only session rolled off
/// while a `--no-files-cache` ingest of another tree kept the cache as it was); trusting it
/// would make the new session point at chunks that no longer exist.
#[test]
fn files_cache_is_rechecked_after_a_collection() {
    let t = small_pack_repo();
    let with_cache = |dir: &Path, cache: bool| {
        ingest(
            &t.repo,
            &IngestOptions {
                client: "web".into(),
                source: dir.to_path_buf(),
                threads: Some(2),
                sources: None,
                files_cache: cache,
                restore_recipient: None,
            },
        )
        .unwrap()
    };
    let first = tree(&t, "first", &[("x", 901), ("y", 902)]);
    // The files cache does not vouch for a file modified in the last moments (its mtime could
    // still change within the same tick): age them.
    for name in ["x", "y"] {
        let f = fs::File::options()
            .write(true)
            .open(first.join(name))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
    }
    let r1 = with_cache(&first, true);
    assert_eq!(
        with_cache(&first, true).files_read,
        0,
        "the cache works here"
    );
    assert_eq!(r1.files_read, 2);
    let other = tree(&t, "other", &[("z", 903)]);
    with_cache(&other, false);
    let report = prune(&t.repo, &keep_last(1)).unwrap();
    assert_eq!(report.removed, 2);
    assert!(report.collect.unwrap().chunks_deleted >= 2);

    // `first` is unchanged: its cache rows match every file, but their chunks are gone.
    let r3 = with_cache(&first, true);
    assert_eq!(
        r3.files_read, 2,
        "a stale cache was trusted after a collection"
    );
    assert_restores(&t, r3.session_id(), &first);
    assert_check_clean(&t);
}

/// Issue 12, part 4: an ingest that died after sealing a pack, cleaned up by the next ingest
/// (not by a prune): a prune that removes no session still reclaims the pack.
#[test]
fn a_dead_ingest_cleaned_up_by_an_ingest_still_owes_a_collect() {
    let t = small_pack_repo();
    let sessions = four_sessions(&t);
    {
        let writer = t.repo.start_writer(crate::repo::Operation::Ingest).unwrap();
        let index = t.repo.index().unwrap();
        index.create_session("web", &writer.id, 1).unwrap();
        let mut w = crate::store::PackWriter::new(t.repo.root(), &index, &writer.id, 1 << 20);
        w.append(crate::store::PendingChunk {
            id: crate::ids::ChunkId([9; 32]),
            kind: crate::index::ChunkKind::Data,
            key_id: crate::ids::KeyId(1),
            envelope: vec![0; 5000],
            refs: Vec::new(),
        })
        .unwrap();
        w.finish().unwrap();
        // The writer is dropped without committing its session: a failed ingest.
    }
    let bytes = packs_bytes(&t);
    ingest_tree(&t, "web", &sessions[3].1);
    let r = prune(&t.repo, &keep_last(10)).unwrap();
    assert_eq!(r.removed, 0);
    let c = r.collect.expect("a collect was owed");
    assert_eq!(c.chunks_deleted, 1, "{c:?}");
    assert!(packs_bytes(&t) < bytes + 5000);
    for (id, dir) in &sessions {
        assert_restores(&t, *id, dir);
    }
    assert_check_clean(&t);
}
