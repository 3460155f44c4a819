//! Integration tests: check_damage. A repository damaged in each way an administrator may meet
//! (a flipped byte, a truncated or deleted pack, a wrong index row, a wrong identity): `check`
//! finds it and names the chunk, the pack, the sessions and (with the identity) the paths;
//! `restore` fails the affected files loudly, restores the rest and exits 3.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// The largest data chunk: its id (hex), pack file, record offset and length.
pub struct Victim {
    pub chunk: String,
    pub pack: PathBuf,
    pub offset: u64,
    pub length: u64,
}

/// The largest data chunk of the repository (also used by the mount tests).
pub fn largest_data_chunk(repo: &Path) -> Victim {
    let db = rusqlite::Connection::open(repo.join("index.db")).unwrap();
    let (id, name, offset, length): (Vec<u8>, Vec<u8>, i64, i64) = db
        .query_row(
            "SELECT c.id, p.name, c.offset, c.length FROM chunks c JOIN packs p ON p.id = c.pack \
             WHERE c.kind = 0 ORDER BY c.length DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let name = hex::encode(name);
    Victim {
        chunk: hex::encode(id),
        pack: repo
            .join("packs")
            .join(&name[..2])
            .join(format!("{name}.pack")),
        offset: offset as u64,
        length: length as u64,
    }
}

/// A repository with one session of the sample tree.
fn damaged_setup() -> (TestRepo, PathBuf, i64, Victim) {
    let t = TestRepo::new();
    let src = t.path("src");
    sample_tree(&src);
    let session = t.ingest("host1", &src);
    let victim = largest_data_chunk(&t.repo);
    (t, src, session, victim)
}

/// The problems of a `check --json` run that name `chunk`.
fn problems_naming(run: &Run, chunk: &str) -> Vec<serde_json::Value> {
    let report = run.json();
    report["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("check --json has no problems array: {report}"))
        .iter()
        .filter(|p| p["chunk"].as_str() == Some(chunk))
        .cloned()
        .collect()
}

/// Flip one bit of the byte at `at` of `path`.
pub fn flip_byte(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn a_flipped_byte_is_found_named_and_restore_fails_only_that_file() {
    let (t, src, session, v) = damaged_setup();
    t.check_run(true, true).ok();
    flip_byte(&v.pack, v.offset + v.length / 2);

    // Structure intact: a check without reading sees nothing.
    t.check_run(false, false).ok();
    let run = t.check_run(true, false);
    run.code(exit::PARTIAL);
    let found = problems_naming(&run, &v.chunk);
    assert_eq!(found.len(), 1, "{}", run.stdout_str());
    assert_eq!(found[0]["sessions"], serde_json::json!([session]));
    assert!(found[0]["pack"].as_str().is_some());

    // With the identity: the paths that need the chunk.
    let run = t.check_run(false, true);
    run.code(exit::PARTIAL);
    let found = problems_naming(&run, &v.chunk);
    let paths: Vec<String> = found[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(!paths.is_empty(), "{}", run.stdout_str());
    let prefix = format!("{session}:");
    let damaged: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(&prefix).unwrap().to_string())
        .collect();

    // Restore: the damaged files fail, naming file and chunk; everything else is identical.
    let target = t.path("restored");
    let run = t.restore_run(session, &target, &[]);
    run.code(exit::PARTIAL);
    for path in &damaged {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(path.as_str()))
            .unwrap_or_else(|| panic!("restore did not name {path}: {}", run.stderr));
        assert!(line.contains(&v.chunk), "{line}");
    }
    let diffs: Vec<String> = compare_trees(&src, &target)
        .into_iter()
        .filter(|d| !damaged.iter().any(|p| d.starts_with(&format!("{p:?}"))))
        .collect();
    assert!(
        diffs.is_empty(),
        "undamaged paths differ:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn a_truncated_pack_is_found_without_reading() {
    let (t, _, session, v) = damaged_setup();
    let f = OpenOptions::new().write(true).open(&v.pack).unwrap();
    f.set_len(v.offset + 10).unwrap();
    let run = t.check_run(false, false);
    run.code(exit::PARTIAL);
    let found = problems_naming(&run, &v.chunk);
    assert!(!found.is_empty(), "{}", run.stdout_str());
    assert_eq!(found[0]["sessions"], serde_json::json!([session]));
    assert!(
        found[0]["what"].as_str().unwrap().contains("past the end"),
        "{}",
        found[0]
    );
}

#[test]
fn a_deleted_pack_is_found_and_restore_says_what_is_missing() {
    let (t, _, session, v) = damaged_setup();
    fs::remove_file(&v.pack).unwrap();
    let run = t.check_run(false, false);
    run.code(exit::PARTIAL);
    let found = problems_naming(&run, &v.chunk);
    assert!(!found.is_empty(), "{}", run.stdout_str());
    assert_eq!(found[0]["sessions"], serde_json::json!([session]));
    // The restore cannot succeed; whether the manifest went with the pack or not, it must say
    // so and exit non-zero without a panic.
    let target = t.path("restored");
    let run = t.restore_run(session, &target, &[]);
    assert!(
        run.code == exit::PARTIAL || run.code == exit::CORRUPT,
        "exit {}: {}",
        run.code,
        run.stderr
    );
    assert!(run.stderr.contains("rsbackup: "), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn a_shifted_index_row_is_found_by_the_record_header() {
    let (t, _, session, v) = damaged_setup();
    let db = rusqlite::Connection::open(t.repo.join("index.db")).unwrap();
    let id = hex::decode(&v.chunk).unwrap();
    db.execute("UPDATE chunks SET offset = offset + 1 WHERE id = ?1", [id])
        .unwrap();
    drop(db);
    let run = t.check_run(false, false);
    run.code(exit::PARTIAL);
    let found = problems_naming(&run, &v.chunk);
    assert!(!found.is_empty(), "{}", run.stdout_str());
    assert_eq!(found[0]["sessions"], serde_json::json!([session]));
    let target = t.path("restored");
    let run = t.restore_run(session, &target, &[]);
    run.code(exit::PARTIAL);
    assert!(run.stderr.contains(&v.chunk), "{}", run.stderr);
}

#[test]
fn check_with_a_wrong_identity_is_refused() {
    let (t, _, _, _) = damaged_setup();
    let other = t.path("other.txt");
    rsbackup([arg("keygen"), arg("--output"), arg(&other)]).ok();
    t.run("check", &[arg("--identity"), arg(&other)])
        .fails_with(exit::WRONG_IDENTITY, &[]);
}
