//! Integration tests: `rsbackup repair chunks --from MIRROR`. A primary of two clients and
//! three sessions, mirrored; then on the primary bytes flipped inside records of two packs,
//! two other packs deleted, a session record and a reference list deleted. The repair (from a
//! local mirror directory, and over real ssh with the mirror's forced command) heals
//! everything: `check --read-data` is clean and every session restores equal to its source. A
//! chunk the mirror lacks too is reported lost with the sessions that need it, the exit code is
//! 3, and nothing on the primary is touched. Killed (abort at every failpoint, SIGKILL at
//! timed moments) and run again, the repair ends the same.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

/// Three sessions of two clients; returns (session id, source).
fn sessions(t: &TestRepo) -> Vec<(i64, PathBuf)> {
    let mut out = Vec::new();
    for (s, client) in [(0u8, "web"), (1, "web"), (2, "db")] {
        let dir = t.path(&format!("src{s}"));
        for f in 0..6u8 {
            // Half the files shared between sessions, half new in each.
            let seed = if f % 2 == 0 { f } else { f ^ (s << 4) };
            write_file(
                &dir.join(format!("d{}/f{f}", f % 2)),
                &pattern(seed, 50_000),
            );
        }
        write_file(&dir.join("notes.txt"), &text(s, 20_000));
        out.push((t.ingest(client, &dir), dir));
    }
    out
}

/// Sealed packs of `repo`, by name.
fn pack_files(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in fs::read_dir(repo.join("packs")).unwrap() {
        for f in fs::read_dir(dir.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "pack") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Flip one byte in the middle of a pack (inside a record).
fn flip(pack: &Path) {
    let mut bytes = fs::read(pack).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    fs::write(pack, bytes).unwrap();
}

/// The damage of the module comment; returns the deleted packs.
fn damage(repo: &Path) -> Vec<PathBuf> {
    let packs = pack_files(repo);
    assert!(packs.len() >= 6, "only {} packs", packs.len());
    flip(&packs[0]);
    flip(&packs[3]);
    fs::remove_file(&packs[1]).unwrap();
    fs::remove_file(&packs[4]).unwrap();
    fs::remove_file(packs[2].with_extension("refs")).unwrap();
    let record = fs::read_dir(repo.join("sessions"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::remove_file(record).unwrap();
    vec![packs[1].clone(), packs[4].clone()]
}

fn repair(repo: &Path, from: &[OsString], env: &[(&str, &str)]) -> Run {
    let mut args = vec![
        arg("repair"),
        arg("chunks"),
        arg("--repo"),
        arg(repo),
        arg("--json"),
    ];
    args.extend(from.iter().cloned());
    rsbackup_env(args, env)
}

fn check(repo: &Path) -> Run {
    rsbackup([arg("check"), arg("--repo"), arg(repo), arg("--read-data")])
}

/// `check --read-data` clean and every session restores equal to its source.
#[track_caller]
fn all_sound(t: &TestRepo, repo: &Path, sources: &[(i64, PathBuf)], tag: &str) {
    let run = check(repo);
    assert_eq!(run.code, 0, "{tag}: {run:?}");
    for (id, src) in sources {
        assert_restores_equal(t, repo, *id, src, tag);
    }
}

fn mirror_local(t: &TestRepo) -> PathBuf {
    let mirror = t.path("mirror");
    rsbackup([
        arg("mirror"),
        arg("--repo"),
        arg(&t.repo),
        arg("--to"),
        arg(&mirror),
    ])
    .ok();
    mirror
}

#[track_caller]
fn healed_everything(run: &Run, packs_replaced: u64) {
    run.ok();
    let r = run.json();
    assert!(r["chunks_healed"].as_u64().unwrap() >= 4, "{r}");
    assert_eq!(r["packs_replaced"], packs_replaced, "{r}");
    assert_eq!(r["session_records_rewritten"], 1, "{r}");
    assert_eq!(r["refs_rewritten"], 1, "{r}");
    assert_eq!(r["lost"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["left"].as_array().unwrap().len(), 0, "{r}");
    assert!(r["damaged"].as_array().unwrap().len() >= 6, "{r}");
}

#[test]
fn repair_chunks_from_a_local_mirror_heals_everything() {
    let t = TestRepo::new();
    set_pack_target(&t.repo, 65536);
    let sources = sessions(&t);
    let mirror = mirror_local(&t);
    let mirror_before = snapshot(&mirror);
    damage(&t.repo);
    // And a pack whose header is damaged but whose records are intact (one not damaged
    // above: the sixth of the packs left): replaced too.
    let header = pack_files(&t.repo)[5].clone();
    let mut bytes = fs::read(&header).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&header, bytes).unwrap();
    assert_eq!(check(&t.repo).code, 3);
    healed_everything(&repair(&t.repo, &[arg("--from"), arg(&mirror)], &[]), 5);
    all_sound(&t, &t.repo, &sources, "local");
    assert_eq!(
        snapshot_without_index(&mirror_before),
        snapshot_without_index(&snapshot(&mirror)),
        "the repair changed the mirror"
    );
    // The next ingest still dedups against the healed packs.
    let run = t.ingest_run("db", &sources[2].1);
    run.ok();
    assert_eq!(run.json()["new_chunks"], 0, "{}", run.stdout_str());
}

#[test]
fn repair_chunks_over_ssh_heals_everything() {
    require_root("sshd must switch to the logging-in user");
    let s = crate::mirror::Setup::new(false);
    set_pack_target(&s.primary.repo, 65536);
    let sources = sessions(&s.primary);
    s.mirror();
    damage(&s.primary.repo);
    let from = [
        arg("--from"),
        arg("offsite"),
        arg("--config"),
        arg(&s.primary_config),
    ];
    healed_everything(&repair(&s.primary.repo, &from, &[]), 4);
    all_sound(&s.primary, &s.primary.repo, &sources, "ssh");
    // The mirror authorized and audited the connection like a push.
    assert!(
        s.audit()
            .iter()
            .filter(|row| row[2] == "rsbackup-mirror" && row[3] == "allow")
            .count()
            >= 2,
        "{:?}",
        s.audit()
    );
}

/// Chunk ids stored in the pack file `pack` of `repo` (from its index).
fn chunks_of(repo: &Path, pack: &Path) -> Vec<Vec<u8>> {
    let name = hex::decode(pack.file_stem().unwrap().to_str().unwrap()).unwrap();
    let db = rusqlite::Connection::open(repo.join("index.db")).unwrap();
    let mut st = db
        .prepare("SELECT c.id FROM chunks c JOIN packs p ON p.id = c.pack WHERE p.name = ?1")
        .unwrap();
    st.query_map([name], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The pack file of `repo` that holds chunk `id`.
fn pack_of(repo: &Path, id: &[u8]) -> PathBuf {
    let db = rusqlite::Connection::open(repo.join("index.db")).unwrap();
    let name: Vec<u8> = db
        .query_row(
            "SELECT p.name FROM chunks c JOIN packs p ON p.id = c.pack WHERE c.id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    let hex = hex::encode(name);
    repo.join("packs")
        .join(&hex[..2])
        .join(format!("{hex}.pack"))
}

#[test]
fn repair_chunks_reports_what_the_mirror_lacks_too_and_touches_nothing() {
    let t = TestRepo::new();
    set_pack_target(&t.repo, 65536);
    sessions(&t);
    let mirror = mirror_local(&t);
    let packs = pack_files(&t.repo);
    let gone = &packs[2];
    let ids = chunks_of(&t.repo, gone);
    assert!(!ids.is_empty());
    // The mirror lost them too.
    for id in &ids {
        let p = pack_of(&mirror, id);
        if p.exists() {
            fs::remove_file(p).unwrap();
        }
    }
    fs::remove_file(gone).unwrap();
    let before = snapshot(&t.repo);
    let run = repair(&t.repo, &[arg("--from"), arg(&mirror)], &[]);
    assert_eq!(run.code, 3, "{run:?}");
    let r = run.json();
    let lost = r["lost"].as_array().unwrap();
    assert_eq!(lost.len(), ids.len(), "{r}");
    for l in lost {
        assert!(!l["sessions"].as_array().unwrap().is_empty(), "{r}");
    }
    assert_eq!(r["chunks_healed"], 0, "{r}");
    assert_eq!(r["packs_written"], 0, "{r}");
    assert!(!r["left"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(
        snapshot_without_index(&before),
        snapshot_without_index(&snapshot(&t.repo)),
        "the repair touched the primary although it could heal nothing"
    );
    // Named in words too.
    let run = rsbackup([
        arg("repair"),
        arg("chunks"),
        arg("--repo"),
        arg(&t.repo),
        arg("--from"),
        arg(&mirror),
    ]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("still lost"), "{}", run.stderr);
}

type Snapshot = BTreeMap<PathBuf, Vec<u8>>;

/// Every file below `root` and its content.
fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let content = fs::read(&path).unwrap_or_default();
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), content);
            }
        }
    }
    out
}

/// The files that hold backup data (packs, reference lists, records, keys): the index and
/// lock files change whenever a writer runs (`damaged_chunks`, lock files).
fn snapshot_without_index(s: &Snapshot) -> Snapshot {
    s.iter()
        .filter(|(p, _)| {
            let p = p.to_string_lossy();
            !p.starts_with("index.db") && !p.starts_with("locks/") && p != "lock"
        })
        .map(|(p, c)| (p.clone(), c.clone()))
        .collect()
}

#[test]
fn repair_chunks_killed_anywhere_then_rerun_ends_the_same() {
    let t = TestRepo::new();
    set_pack_target(&t.repo, 65536);
    let sources = sessions(&t);
    let mirror = mirror_local(&t);
    let damaged = t.path("damaged");
    copy_dir(&t.repo, &damaged);
    damage(&damaged);
    let from = [arg("--from"), arg(&mirror)];
    let points = [
        "heal-after-cleanup",
        "heal-after-fetch",
        "heal-after-fetch#2",
        "heal-after-fetch#3",
        "heal-after-fetch#4",
        "after-pack-written",
        "after-pack-written#2",
        "after-move",
        "after-move#2",
        "before-old-unlink",
        "before-old-unlink#2",
        "before-old-unlink#3",
        "before-old-unlink#4",
        "heal-before-clear",
        "heal-after-records",
    ];
    let mut aborted = 0;
    for (i, point) in points.iter().enumerate() {
        let repo = t.path(&format!("case{i}"));
        copy_dir(&damaged, &repo);
        let run = repair(&repo, &from, &[("RSBACKUP_FAILPOINT", point)]);
        if run.code == -1 {
            aborted += 1;
        } else {
            run.ok();
        }
        if *point == "after-pack-written" {
            // check names what the dead writer was doing.
            let run = check(&repo);
            assert!(
                run.stderr.contains("problem") || run.stdout_str().contains("repair chunks"),
                "{run:?}"
            );
            assert!(
                run.stdout_str().contains("an interrupted `repair chunks`"),
                "{}",
                run.stdout_str()
            );
        }
        repair(&repo, &from, &[]).ok();
        all_sound(&t, &repo, &sources, &format!("point{i}"));
        fs::remove_dir_all(&repo).unwrap();
    }
    assert!(aborted >= 13, "only {aborted} failpoints were reached");
    // SIGKILL at timed moments: fractions of how long a whole repair takes on this machine
    // now, so that the kills land inside the run however loaded the machine is.
    let whole = {
        let repo = t.path("timed");
        copy_dir(&damaged, &repo);
        let started = std::time::Instant::now();
        repair(&repo, &from, &[]).ok();
        let took = started.elapsed().as_millis() as u64;
        fs::remove_dir_all(&repo).unwrap();
        took.max(20)
    };
    let mut killed = 0;
    let moments: Vec<u64> = [5u64, 15, 25, 40, 55, 70, 80, 90]
        .iter()
        .map(|pct| (whole * pct / 100).max(1))
        .collect();
    for (i, ms) in moments.iter().enumerate() {
        let repo = t.path(&format!("kill{i}"));
        copy_dir(&damaged, &repo);
        let mut args = vec![arg("repair"), arg("chunks"), arg("--repo"), arg(&repo)];
        args.extend(from.iter().cloned());
        if kill_after(&args, *ms) {
            killed += 1;
        }
        repair(&repo, &from, &[]).ok();
        all_sound(&t, &repo, &sources, &format!("kill{i}"));
        fs::remove_dir_all(&repo).unwrap();
    }
    assert!(
        killed >= 4,
        "only {killed} repairs were still running when killed"
    );
    eprintln!("repair chunks: {aborted} failpoints aborted, {killed} runs killed with SIGKILL");
}
