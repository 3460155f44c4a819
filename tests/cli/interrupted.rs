//! Integration tests: after a writer is killed with SIGKILL (or aborts at a failpoint), `check`
//! names the operation that left the unsealed pack (ingest, repack, mirror) and what the next
//! run does about it, and that next run removes it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn writing_packs(repo: &Path) -> i64 {
    let db = repo.join("index.db");
    rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM packs WHERE state = 'writing'",
                [],
                |r| r.get(0),
            )
        })
        .unwrap_or(0)
}

/// Start `rsbackup ARGS`; kill it with SIGKILL as soon as `repo` has a pack in state
/// `writing` (within 60 s). Returns whether it was killed while running.
fn kill_while_writing(args: &[std::ffi::OsString], repo: &Path) -> bool {
    let mut child: Child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if writing_packs(repo) > 0 {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

/// The problems of `check --json` on `repo`, which must exit 3.
fn problems(repo: &Path) -> Vec<String> {
    let run = rsbackup([arg("check"), arg("--repo"), arg(repo), arg("--json")]);
    assert_eq!(run.code, 3, "{run:?}");
    run.json()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["what"].as_str().unwrap().to_string())
        .collect()
}

#[track_caller]
fn names(problems: &[String], operation: &str, next: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.contains("left unsealed") && p.contains(operation) && p.contains(next)),
        "no problem names {operation:?} and {next:?}: {problems:#?}"
    );
    assert!(
        problems.iter().all(|p| p.contains("left unsealed")),
        "{problems:#?}"
    );
}

fn big_tree(root: &Path) {
    for i in 0..6u8 {
        write_file(&root.join(format!("f{i}")), &pattern(40 + i, 6 << 20));
    }
}

#[test]
fn check_names_a_killed_ingest() {
    let t = TestRepo::new();
    set_pack_target(&t.repo, 65536);
    let src = t.path("src");
    big_tree(&src);
    let args = [
        arg("ingest"),
        arg("--repo"),
        arg(&t.repo),
        arg("--client"),
        arg("c1"),
        arg(&src),
    ];
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(kill_while_writing(&args, &t.repo), "the ingest ended first");
        if writing_packs(&t.repo) > 0 {
            break;
        }
        assert!(tries < 10, "never killed while a pack was being written");
    }
    names(
        &problems(&t.repo),
        "an interrupted ingest",
        "the next ingest",
    );
    // The next prune removes it.
    t.run("prune", &["--keep-last", "1"]).ok();
    assert_eq!(t.check_run(true, false).code, 0);
}

#[test]
fn check_names_a_killed_repack() {
    let t = TestRepo::new();
    // One pack per session, whatever order the ingest's workers append in: the first
    // session's pack is then half dead after the prune (its odd files are replaced), so the
    // collect must repack it. Smaller packs could by chance hold only dead or only live chunks.
    set_pack_target(&t.repo, 1 << 20);
    let mut dirs = Vec::new();
    for s in 0..3u8 {
        let dir = t.path(&format!("s{s}"));
        for f in 0..8u8 {
            let v = if f % 2 == 0 { 0 } else { s };
            write_file(&dir.join(format!("f{f}")), &pattern(f ^ (v << 4), 40_000));
        }
        t.ingest("c1", &dir);
        dirs.push(dir);
    }
    let run = rsbackup_env(
        [
            arg("prune"),
            arg("--repo"),
            arg(&t.repo),
            arg("--keep-last"),
            arg("1"),
            arg("--repack-threshold"),
            arg("0.9"),
        ],
        &[("RSBACKUP_FAILPOINT", "after-pack-written")],
    );
    assert_eq!(
        run.code, -1,
        "the prune did not stop at its failpoint: {run:?}"
    );
    names(
        &problems(&t.repo),
        "an interrupted repack, part of prune's garbage collection",
        "the next prune removes it",
    );
    t.run("prune", &["--keep-last", "1"]).ok();
    assert_eq!(t.check_run(true, false).code, 0);
}

#[test]
fn check_names_a_killed_mirror_run() {
    let t = TestRepo::new();
    set_pack_target(&t.repo, 65536);
    let src = t.path("src");
    big_tree(&src);
    t.ingest("c1", &src);
    let mirror = t.path("mirror");
    let args = [
        arg("mirror"),
        arg("--repo"),
        arg(&t.repo),
        arg("--to"),
        arg(&mirror),
    ];
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(
            kill_while_writing(&args, &mirror),
            "the mirror run ended first"
        );
        if writing_packs(&mirror) > 0 {
            break;
        }
        assert!(tries < 10, "never killed while a pack was being written");
    }
    names(
        &problems(&mirror),
        "an interrupted mirror run",
        "the next mirror run",
    );
    rsbackup(args).ok();
    let run = rsbackup([
        arg("check"),
        arg("--repo"),
        arg(&mirror),
        arg("--read-data"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
}
