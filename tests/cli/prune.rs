//! Integration tests: prune, pin and unpin through the real binary, and crash safety: a prune
//! aborted at every named failpoint, and killed with SIGKILL at many moments, must leave a
//! repository whose every listed session restores; the next prune must finish the work and
//! leave `check --read-data` clean.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

/// Make packs small so that a few hundred KiB spread over many packs.
fn small_packs(repo: &Path) {
    let path = repo.join("repository.toml");
    let text = fs::read_to_string(&path).unwrap();
    let changed = text.replace("target-size = 33554432", "target-size = 65536");
    assert_ne!(text, changed, "repository.toml has no default target-size");
    fs::write(&path, changed).unwrap();
}

/// Content unique to (name, version).
fn content(name: &str, version: u32, n: usize) -> Vec<u8> {
    let mut out = format!("{name} version {version}\n").into_bytes();
    out.extend(pattern((name.len() as u8) ^ (version as u8), n));
    out
}

/// `sessions` trees of `files` files. Returns (session id, source).
fn build_sessions(t: &TestRepo, sessions: u32, files: u32) -> Vec<(i64, PathBuf)> {
    small_packs(&t.repo);
    let mut out = Vec::new();
    for s in 0..sessions {
        let dir = t.path(&format!("src{s}"));
        for f in 0..files {
            // Every third file never changes; the others change in every session. So the
            // first session's packs end up a third live (repacked), the middle sessions' packs
            // wholly dead (deleted).
            let version = if f % 3 == 0 { 0 } else { s };
            let name = format!("d{}/f{f:03}", f % 4);
            write_file(&dir.join(&name), &content(&name, version, 20_000));
        }
        out.push((t.ingest("web", &dir), dir));
    }
    out
}

fn run_in(repo: &Path, command: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all: Vec<OsString> = vec![arg(command), arg("--repo"), arg(repo)];
    all.extend(args.iter().map(OsString::from));
    rsbackup_env(all, env)
}

fn listed(repo: &Path) -> Vec<i64> {
    let run = run_in(repo, "sessions", &["--json"], &[]);
    run.ok();
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
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
                let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Every listed session restores equal to its source.
fn assert_listed_restore(t: &TestRepo, repo: &Path, sources: &[(i64, PathBuf)], tag: &str) {
    for id in listed(repo) {
        let source = &sources.iter().find(|(s, _)| *s == id).unwrap().1;
        let target = t.path(&format!("restore-{tag}-{id}"));
        let run = rsbackup([
            arg("restore"),
            arg("--repo"),
            arg(repo),
            arg("--identity"),
            arg(&t.identity),
            arg("--session"),
            arg(id.to_string()),
            arg("--target"),
            arg(&target),
        ]);
        run.ok();
        assert!(
            files_of(&target) == files_of(source),
            "{tag}: session {id} does not restore equal to its source"
        );
        fs::remove_dir_all(&target).unwrap();
    }
}

/// `check --read-data --json`: the problems' texts.
fn problems(repo: &Path) -> Vec<String> {
    let run = run_in(repo, "check", &["--json", "--read-data"], &[]);
    assert!(run.code == exit::OK || run.code == exit::PARTIAL, "{run:?}");
    run.json()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["what"].as_str().unwrap().to_string())
        .collect()
}

/// What a crash of a prune may leave, which the next prune removes: a pack file whose row is
/// already gone, and the dead collector's unsealed pack. Nothing that damages a session.
fn assert_only_leftovers(problems: &[String], tag: &str) {
    for p in problems {
        assert!(
            p.contains("is not a pack the index knows") || p.contains("was left unsealed"),
            "{tag}: a killed prune left a real problem: {p}"
        );
    }
}

/// After a crash: listed sessions restore; a prune finishes; the repository is clean and holds
/// exactly the sessions the rules keep.
fn recover_and_verify(t: &TestRepo, repo: &Path, sources: &[(i64, PathBuf)], tag: &str) {
    assert_only_leftovers(&problems(repo), tag);
    assert_listed_restore(t, repo, sources, tag);
    run_in(repo, "prune", &["--keep-last", "2"], &[]).ok();
    let left = problems(repo);
    assert!(left.is_empty(), "{tag}: after the next prune: {left:?}");
    let kept: Vec<i64> = sources[sources.len() - 2..].iter().map(|s| s.0).collect();
    assert_eq!(listed(repo), kept, "{tag}");
    assert_listed_restore(t, repo, sources, tag);
    let pending = rusqlite::Connection::open(repo.join("index.db"))
        .unwrap()
        .query_row(
            "SELECT coalesce((SELECT value FROM meta WHERE key = 'gc-pending'), 0)",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!(pending, 0, "{tag}: gc-pending still set");
}

#[test]
fn prune_aborted_at_every_failpoint_recovers() {
    let t = TestRepo::new();
    let sources = build_sessions(&t, 6, 24);
    // A stray pack file, so that the sweep's failpoint is reached too.
    let mut reached = Vec::new();
    let points = [
        "after-forget",
        "after-cleanup",
        "after-chunk-delete",
        "before-empty-unlink",
        "before-empty-unlink#2",
        "after-empty-unlink",
        "after-pack-written",
        "after-pack-written#2",
        "after-move",
        "after-move#2",
        "before-old-unlink",
        "before-old-unlink#3",
        "after-keys-delete",
        "before-sweep-unlink",
        "before-clear-pending",
    ];
    for (i, point) in points.iter().enumerate() {
        let repo = t.path(&format!("case{i}"));
        copy_dir(&t.repo, &repo);
        let stray = repo.join("packs/ab/abababababababababababababababab.pack");
        write_file(&stray, b"left by an earlier crash");
        let run = run_in(
            &repo,
            "prune",
            &["--keep-last", "2"],
            &[("RSBACKUP_FAILPOINT", point)],
        );
        if run.code == -1 {
            reached.push(*point);
        } else {
            run.ok();
        }
        recover_and_verify(&t, &repo, &sources, point);
        fs::remove_dir_all(&repo).unwrap();
    }
    // Every point but possibly the second hits of repeated ones must have been reached.
    for must in rsbackup::gc::FAILPOINTS {
        assert!(reached.contains(must), "failpoint {must} was never reached");
    }
}

#[test]
fn prune_killed_at_random_moments_recovers() {
    let t = TestRepo::new();
    let sources = build_sessions(&t, 8, 60);
    let mut killed = 0;
    for (i, ms) in [2u64, 6, 12, 20, 35, 50, 80, 120, 200].iter().enumerate() {
        let repo = t.path(&format!("kill{i}"));
        copy_dir(&t.repo, &repo);
        let args = [
            arg("prune"),
            arg("--repo"),
            arg(&repo),
            arg("--keep-last"),
            arg("2"),
        ];
        if kill_after(&args, *ms) {
            killed += 1;
        }
        recover_and_verify(&t, &repo, &sources, &format!("kill after {ms} ms"));
        fs::remove_dir_all(&repo).unwrap();
    }
    assert!(
        killed >= 3,
        "only {killed} prunes were still running when killed"
    );
}

#[test]
fn prune_needs_a_rule_and_dry_run_changes_nothing() {
    let t = TestRepo::new();
    let sources = build_sessions(&t, 4, 6);
    t.run::<&str>("prune", &[])
        .fails_with(exit::USAGE, &["no retention rule"]);
    t.run("prune", &["--keep-within", "soon"])
        .fails_with(exit::USAGE, &["--keep-within"]);
    t.run("prune", &["--keep-last", "1", "--repack-threshold", "2"])
        .fails_with(exit::FAILURE, &["repack threshold"]);
    rsbackup([
        "prune",
        "--repo",
        t.path("nothing-here").to_str().unwrap(),
        "--keep-last",
        "1",
    ])
    .fails_with(exit::NOT_A_REPOSITORY, &["not a repository"]);

    let run = t.run("prune", &["--keep-last", "2", "--dry-run"]);
    run.ok();
    let out = run.stdout_str();
    assert!(out.contains("remove"), "{out}");
    assert!(out.contains("keep-last"), "{out}");
    assert!(out.contains("newest complete"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(listed(&t.repo).len(), 4);

    // Pin the oldest: a real prune keeps it, and says why.
    t.run("pin", &["--session", &sources[0].0.to_string()]).ok();
    let run = t.run("prune", &["--keep-last", "2", "--json"]);
    run.ok();
    let json = run.json();
    let fates = json["sessions"].as_array().unwrap();
    assert_eq!(fates.len(), 4);
    assert_eq!(fates[0]["reasons"][0], "pinned");
    assert_eq!(fates[1]["keep"], false);
    assert_eq!(json["removed"], 1);
    assert!(json["collect"]["chunks_deleted"].as_u64().unwrap() > 0);
    assert_eq!(
        listed(&t.repo),
        vec![sources[0].0, sources[2].0, sources[3].0]
    );
    t.run("unpin", &["--session", &sources[0].0.to_string()])
        .ok();
    t.run("prune", &["--keep-last", "2"]).ok();
    assert_eq!(listed(&t.repo), vec![sources[2].0, sources[3].0]);
    t.run("pin", &["--session", "999"])
        .fails_with(exit::NOT_FOUND, &["session 999"]);
    t.run("pin", &["--session", "latest"])
        .fails_with(exit::USAGE, &["--session"]);
    assert!(problems(&t.repo).is_empty());
    assert_listed_restore(&t, &t.repo, &sources, "after unpin");
}

#[test]
fn prune_takes_rules_from_server_toml() {
    let t = TestRepo::new();
    let sources = build_sessions(&t, 4, 6);
    let config = t.path("server.toml");
    fs::write(
        &config,
        format!(
            "repository = \"{}\"\nstaging-root = \"/srv/staging\"\n\
             [mail]\nfrom = \"rsbackup@example.org\"\nadmin = [\"root@example.org\"]\n\
             transport = \"directory\"\ndirectory = \"/tmp\"\n\
             [retention]\nkeep-last = 3\n\
             [clients.web]\nkeys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111\"]\n\
             addresses = [\"192.0.2.1\"]\nwindows = [\"daily 00:00-24:00\"]\n\
             [clients.web.retention]\nkeep-last = 1\n",
            t.repo.display()
        ),
    )
    .unwrap();
    let both = t.run(
        "prune",
        &[arg("--config"), arg(&config), arg("--keep-last"), arg("2")],
    );
    both.fails_with(exit::USAGE, &["not both"]);
    t.run("prune", &[arg("--config"), arg(&config)]).ok();
    assert_eq!(listed(&t.repo), vec![sources[3].0]);
    assert!(problems(&t.repo).is_empty());
    fs::write(&config, "repository = 3\n").unwrap();
    t.run("prune", &[arg("--config"), arg(&config)])
        .fails_with(exit::CONFIG, &["server.toml:1"]);
}
