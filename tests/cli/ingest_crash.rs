//! Integration tests: ingest_crash. The real binary is killed with SIGKILL at several moments of
//! an ingest of a ~200 MiB tree; after each kill the repository must show no half session, the
//! next writer must remove what the dead one left, and finally a full ingest, `check
//! --read-data` and a restore must all come out right.
//!
//! `RSBACKUP_CRASH_MIB` overrides the tree size (MiB) for quick local runs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A tree of about `mib` MiB: big incompressible files, mid-size text, many small files.
fn build_tree(root: &Path, mib: usize) {
    let big = 4 << 20;
    let n_big = (mib * 3 / 4 * (1 << 20)) / big;
    for i in 0..n_big.max(1) {
        write_file(
            &root.join(format!("big/{i:03}.bin")),
            &pattern(i as u8, big),
        );
    }
    let n_mid = (mib / 4 * (1 << 20)) / (100 << 10);
    for i in 0..n_mid.max(1) {
        let dir = format!("mid/{:02}", i % 16);
        write_file(
            &root.join(format!("{dir}/{i}.txt")),
            &text((i % 251) as u8, 100 << 10),
        );
    }
    for i in 0..2000usize {
        let body = format!("small file {i}\n").repeat(1 + i % 50);
        write_file(
            &root.join(format!("small/{:02}/{i}", i % 40)),
            body.as_bytes(),
        );
    }
}

fn sessions_json(t: &TestRepo) -> serde_json::Value {
    let run = t.run("sessions", &[arg("--json")]);
    run.ok();
    run.json()
}

struct Leftovers {
    writing_packs: Vec<(String, String)>,
    running_sessions: Vec<String>,
}

fn index_conn(t: &TestRepo) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_with_flags(
        t.repo.join("index.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open index.db");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// `writing` packs (name, writer) and writers of `running` sessions.
fn leftovers(t: &TestRepo) -> Leftovers {
    let conn = index_conn(t);
    let mut stmt = conn
        .prepare("SELECT hex(name), writer FROM packs WHERE state = 'writing'")
        .unwrap();
    let writing_packs = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?.to_lowercase(),
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut stmt = conn
        .prepare("SELECT coalesce(writer, '') FROM sessions WHERE state = 'running'")
        .unwrap();
    let running_sessions = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    Leftovers {
        writing_packs,
        running_sessions,
    }
}

/// Pack files on disk, by name.
fn pack_files(t: &TestRepo) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(dirs) = std::fs::read_dir(t.repo.join("packs")) else {
        return out;
    };
    for d in dirs {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            // A pack's reference list counts as the pack: it must go with it.
            out.insert(
                name.trim_end_matches(".pack")
                    .trim_end_matches(".refs")
                    .to_owned(),
            );
        }
    }
    out
}

fn sealed_packs(t: &TestRepo) -> BTreeSet<String> {
    let conn = index_conn(t);
    let mut stmt = conn
        .prepare("SELECT hex(name) FROM packs WHERE state = 'sealed'")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap().to_lowercase())
        .collect()
}

/// Start `ingest` of `source`, SIGKILL it after `after`; true if it was killed (not finished).
fn ingest_killed_after(t: &TestRepo, client: &str, source: &Path, after: Duration) -> bool {
    let mut child = Command::new(bin())
        .args([arg("ingest"), arg("--repo"), arg(&t.repo)])
        .args([arg("--client"), arg(client), arg("--json"), arg(source)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rsbackup ingest");
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL the ingest");
    let status = child.wait().unwrap();
    !status.success()
}

#[test]
fn ingest_killed_at_any_moment_leaves_no_half_session_and_is_cleaned_up() {
    let mib = std::env::var("RSBACKUP_CRASH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200usize);
    let t = TestRepo::new();
    let small = t.path("small-src");
    write_file(&small.join("etc/hosts"), b"127.0.0.1 localhost\n");
    write_file(&small.join("etc/motd"), &text(9, 50_000));
    let first = t.ingest("host1", &small);
    let mut expected = sessions_json(&t);
    assert_eq!(expected.as_array().unwrap().len(), 1);

    let src = t.path("big-src");
    build_tree(&src, mib);

    let mut previous_dead: Option<Leftovers> = None;
    let mut kills = 0;
    for ms in [200u64, 500, 1000, 2000, 3500] {
        let killed = ingest_killed_after(&t, "bigclient", &src, Duration::from_millis(ms));
        if !killed {
            // Finished before the kill: a legitimate new session.
            expected = sessions_json(&t);
            previous_dead = None;
            continue;
        }
        kills += 1;
        assert_eq!(
            sessions_json(&t),
            expected,
            "after a kill at {ms} ms the visible sessions must not change"
        );
        let now = leftovers(&t);
        // The run killed now cleaned up after the one killed before (at its start).
        if let Some(prev) = previous_dead.take() {
            for (pack, writer) in &prev.writing_packs {
                assert!(
                    !now.writing_packs.iter().any(|(p, _)| p == pack),
                    "writing pack {pack} of dead writer {writer} still in the index"
                );
                assert!(
                    !pack_files(&t).contains(pack),
                    "pack file {pack} of a dead writer still on disk"
                );
            }
            for w in &prev.running_sessions {
                assert!(
                    !now.running_sessions.contains(w),
                    "running session of dead writer {w} still in the index"
                );
            }
        }
        // Every pack file is either sealed or a writing pack of the writer just killed.
        let sealed = sealed_packs(&t);
        for f in pack_files(&t) {
            assert!(
                sealed.contains(&f) || now.writing_packs.iter().any(|(p, _)| *p == f),
                "pack file {f} is known to nobody"
            );
        }
        previous_dead = Some(now);
    }
    assert!(
        kills >= 2,
        "the tree was ingested too fast to kill it twice"
    );

    // A full ingest after the crashes: cleans up and succeeds.
    let last = t.ingest("bigclient", &src);
    let left = leftovers(&t);
    assert!(
        left.writing_packs.is_empty(),
        "writing packs left: {:?}",
        left.writing_packs
    );
    assert!(left.running_sessions.is_empty());
    assert_eq!(
        pack_files(&t),
        sealed_packs(&t),
        "orphan pack files or missing packs"
    );
    let after = sessions_json(&t);
    let list = after.as_array().unwrap();
    assert_eq!(list.len(), expected.as_array().unwrap().len() + 1);
    assert_eq!(
        list[0],
        expected.as_array().unwrap()[0],
        "first session intact"
    );
    assert_eq!(list.last().unwrap()["state"], "complete");

    let check = t.check_run(true, false);
    check.ok();

    let target = t.path("restored");
    t.restore(last, &target);
    assert_trees_equal(&src, &target);
    let target1 = t.path("restored-first");
    t.restore(first, &target1);
    assert_trees_equal(&small, &target1);
}
