//! Integration tests: `rsbackup repair index`. A repository of two clients and several
//! sessions, one pinned, after a prune that forgot, deleted and repacked; its `index.db`
//! deleted, truncated or garbled; the rebuild recovers every session (same ids, clients,
//! states, pins), each restores equal to its source, `check --read-data` is clean, and the next
//! ingest of an unchanged tree stores next to nothing. A repair aborted at each of its
//! failpoints and run again gives the same result.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

fn run_in(repo: &Path, command: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all: Vec<OsString> = vec![arg(command), arg("--repo"), arg(repo)];
    all.extend(args.iter().map(OsString::from));
    rsbackup_env(all, env)
}

/// `rsbackup repair index --repo R`.
fn repair(repo: &Path, env: &[(&str, &str)]) -> Run {
    rsbackup_env([arg("repair"), arg("index"), arg("--repo"), arg(repo)], env)
}

/// (id, client, state, pinned) of every listed session.
fn listing(repo: &Path) -> Vec<(i64, String, String, bool)> {
    let run = run_in(repo, "sessions", &["--json"], &[]);
    run.ok();
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_i64().unwrap(),
                s["client"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
                s["pinned"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Two clients, five sessions; the oldest web session pinned; a prune that forgets one
/// session and repacks.
fn build(t: &TestRepo) -> Vec<(i64, PathBuf)> {
    let toml = t.repo.join("repository.toml");
    let text = fs::read_to_string(&toml).unwrap();
    fs::write(
        &toml,
        text.replace("target-size = 33554432", "target-size = 65536"),
    )
    .unwrap();
    let mut out = Vec::new();
    for s in 0..3u8 {
        let dir = t.path(&format!("web{s}"));
        for f in 0..12u8 {
            // Unchanged, new in every session, or new in the second and kept in the third:
            // the second session's packs end up part live, part dead (repacked).
            let version = match f % 3 {
                0 => 0,
                1 => s,
                _ => s.min(1),
            };
            write_file(
                &dir.join(format!("d{}/f{f:02}", f % 4)),
                &pattern(f.wrapping_mul(7) ^ version.wrapping_mul(31), 30_000),
            );
        }
        out.push((t.ingest("web", &dir), dir));
    }
    for s in 0..2u8 {
        let dir = t.path(&format!("db{s}"));
        sample_tree(&dir);
        write_file(&dir.join("dump.sql"), &pattern(100 + s, 200_000));
        out.push((t.ingest("db", &dir), dir));
    }
    t.run("pin", &["--session", &out[0].0.to_string()]).ok();
    // Forgets web's second session (the first is pinned, the last two kept).
    let run = t.run(
        "prune",
        &[
            "--keep-last",
            "1",
            "--client",
            "web",
            "--repack-threshold",
            "0.9",
            "--json",
        ],
    );
    run.ok();
    let report = run.json();
    assert_eq!(report["removed"], 1, "{report}");
    assert!(
        report["collect"]["packs_repacked"].as_u64().unwrap() > 0
            && report["collect"]["chunks_deleted"].as_u64().unwrap() > 0,
        "the prune neither repacked nor deleted: {report}"
    );
    out
}

fn assert_restores(t: &TestRepo, repo: &Path, sources: &[(i64, PathBuf)], tag: &str) {
    for (id, _, _, _) in listing(repo) {
        let source = &sources.iter().find(|(s, _)| *s == id).unwrap().1;
        assert_restores_equal(t, repo, id, source, tag);
    }
}

fn assert_clean(repo: &Path, tag: &str) {
    let run = run_in(repo, "check", &["--json", "--read-data"], &[]);
    assert_eq!(run.code, exit::OK, "{tag}: {run:?}");
    assert!(
        run.json()["problems"].as_array().unwrap().is_empty(),
        "{tag}: {}",
        run.stdout_str()
    );
}

#[test]
fn a_lost_truncated_or_garbled_index_is_rebuilt_with_every_session() {
    let t = TestRepo::new();
    let sources = build(&t);
    let before = listing(&t.repo);
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before[0].3, "the oldest web session is pinned");
    assert_clean(&t.repo, "before");

    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("deleted", |p| fs::remove_file(p).unwrap()),
        ("truncated", |p| {
            let f = fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(f.metadata().unwrap().len() / 3).unwrap();
        }),
        ("garbled", |p| {
            let mut bytes = fs::read(p).unwrap();
            for b in bytes.iter_mut().skip(100).step_by(7) {
                *b ^= 0x5a;
            }
            fs::write(p, bytes).unwrap();
        }),
    ];
    for (tag, damage) in damages {
        let repo = t.path(&format!("repo-{tag}"));
        copy_dir(&t.repo, &repo);
        let _ = fs::remove_file(repo.join("index.db-wal"));
        let _ = fs::remove_file(repo.join("index.db-shm"));
        damage(&repo.join("index.db"));
        let broken = run_in(&repo, "sessions", &[], &[]);
        assert_ne!(broken.code, exit::OK, "{tag}: the damage was not noticed");

        let run = repair(&repo, &[]);
        run.ok();
        assert!(run.stdout_str().contains("4 sessions"), "{tag}: {run:?}");
        assert_eq!(listing(&repo), before, "{tag}");
        assert_clean(&repo, tag);
        assert_restores(&t, &repo, &sources, tag);

        // The rebuilt index dedups: an unchanged tree stores (almost) nothing new.
        let db = &sources[4].1;
        let again = run_in(
            &repo,
            "ingest",
            &["--client", "db", "--json", db.to_str().unwrap()],
            &[],
        );
        again.ok();
        let new_bytes = again.json()["new_stored_bytes"]
            .as_u64()
            .unwrap_or_else(|| {
                panic!(
                    "ingest --json has no new_stored_bytes: {}",
                    again.stdout_str()
                )
            });
        assert!(
            new_bytes < 64 * 1024,
            "{tag}: an unchanged tree stored {new_bytes} new bytes after the rebuild"
        );
        let mut sources = sources.clone();
        sources.push((again.json()["session"].as_i64().unwrap(), db.clone()));
        // Prune and collect work on the rebuilt index and leave it clean.
        run_in(&repo, "prune", &["--keep-last", "2"], &[]).ok();
        assert_clean(&repo, &format!("{tag} after prune"));
        assert_restores(&t, &repo, &sources, &format!("{tag}-pruned"));
    }
}

#[test]
fn a_repair_aborted_anywhere_and_run_again_gives_the_same_index() {
    let t = TestRepo::new();
    let sources = build(&t);
    let before = listing(&t.repo);
    for point in [
        "repair-after-packs",
        "repair-after-build",
        "repair-before-rename",
    ] {
        let repo = t.path(&format!("repo-{point}"));
        copy_dir(&t.repo, &repo);
        fs::remove_file(repo.join("index.db")).unwrap();
        let run = run_in(
            &repo,
            "repair",
            &["index"],
            &[("RSBACKUP_FAILPOINT", point)],
        );
        assert_ne!(run.code, exit::OK, "{point}: the failpoint did not abort");
        repair(&repo, &[]).ok();
        assert_eq!(listing(&repo), before, "{point}");
        assert_clean(&repo, point);
        assert_restores(&t, &repo, &sources, point);
    }
}

#[test]
fn a_repair_killed_at_random_moments_and_run_again_gives_the_same_index() {
    let t = TestRepo::new();
    let sources = build(&t);
    let before = listing(&t.repo);
    let mut killed = 0;
    for (i, us) in [
        500u64, 1000, 2000, 3000, 5000, 7000, 10_000, 15_000, 20_000, 30_000, 50_000, 80_000,
    ]
    .iter()
    .enumerate()
    {
        let repo = t.path(&format!("kill{i}"));
        copy_dir(&t.repo, &repo);
        // A garbled index, so the killed run has an old index to move aside too.
        fs::write(repo.join("index.db"), b"garbage").unwrap();
        let mut child = std::process::Command::new(bin())
            .args([arg("repair"), arg("index"), arg("--repo"), arg(&repo)])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(*us));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        repair(&repo, &[]).ok();
        let tag = format!("kill after {us} us");
        assert_eq!(listing(&repo), before, "{tag}");
        assert_clean(&repo, &tag);
        fs::remove_dir_all(&repo).unwrap();
    }
    assert_restores(&t, &t.repo, &sources, "original");
    assert!(
        killed >= 3,
        "only {killed} repairs were still running when killed"
    );
    eprintln!("repair killed with SIGKILL {killed} times, each rerun gave the same sessions");
}

fn remove_all(dir: &Path, suffix: &str) -> usize {
    let mut n = 0;
    for sub in fs::read_dir(dir).unwrap() {
        let sub = sub.unwrap().path();
        for f in fs::read_dir(&sub).unwrap() {
            let f = f.unwrap().path();
            if f.to_string_lossy().ends_with(suffix) {
                fs::remove_file(f).unwrap();
                n += 1;
            }
        }
    }
    n
}

#[test]
fn lost_reference_lists_need_the_identity_and_nothing_is_deleted_meanwhile() {
    let t = TestRepo::new();
    let sources = build(&t);
    let before = listing(&t.repo);
    let repo = t.path("repo-no-refs");
    copy_dir(&t.repo, &repo);
    fs::remove_file(repo.join("index.db")).unwrap();
    assert!(remove_all(&repo.join("packs"), ".refs") > 3);

    // Without the identity no manifest chunk can be told: every session is lost, said so, and
    // the packs are moved out of the way of the next prune, not deleted.
    let run = repair(&repo, &[]);
    assert_eq!(run.code, exit::PARTIAL, "{run:?}");
    assert!(run.stderr.contains("session lost"), "{run:?}");
    assert!(listing(&repo).is_empty());
    assert!(fs::read_dir(repo.join("lost+found")).unwrap().count() > 3);
    run_in(&repo, "prune", &["--keep-last", "1"], &[]).ok();
    assert!(fs::read_dir(repo.join("lost+found")).unwrap().count() > 3);

    // With it, every record is opened: every session comes back, the lists are written again.
    let run = rsbackup([
        arg("repair"),
        arg("index"),
        arg("--repo"),
        arg(&repo),
        arg("--identity"),
        arg(&t.identity),
    ]);
    assert_eq!(run.code, exit::PARTIAL, "{run:?}");
    assert!(
        run.stderr.contains("read whole with the identity"),
        "{run:?}"
    );
    assert_eq!(listing(&repo), before, "{run:?}");
    assert_clean(&repo, "with identity");
    assert_restores(&t, &repo, &sources, "with-identity");
    // The next rebuild needs no key.
    repair(&repo, &[]).ok();
    assert_eq!(listing(&repo), before);
}
