//! Integration tests: damage to what describes the tree loses only what it describes. A
//! flipped byte in a manifest chunk, a missing pack holding manifest chunks, or a garbled pack
//! header: restore goes on with the next manifest chunk, names each lost range of paths, restores
//! every other entry equal to its source, and exits 3. Each test counts the paths lost against
//! the paths the damage touches and prints both (`--nocapture`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// A tree of 3,241 entries (40 directories of 80 small files), whose manifest spans dozens of
/// chunks (manifest chunks of 8 KiB on average, not counting the inline content); packs of 4 KiB
/// so that manifest chunks spread over several packs (the files are inline in them: there are
/// no data chunks).
pub(crate) fn setup() -> (TestRepo, PathBuf, i64) {
    let t = TestRepo::new();
    let toml = t.repo.join("repository.toml");
    let text = fs::read_to_string(&toml).unwrap();
    let changed = text
        .replace("target-size = 33554432", "target-size = 4096")
        .replace("min-size = 512\n", "min-size = 2048\n")
        .replace("avg-size = 1024\n", "avg-size = 8192\n");
    assert_eq!(changed.matches("= 2048\n").count(), 1, "{changed}");
    fs::write(&toml, changed).unwrap();
    let src = t.path("src");
    for d in 0..40 {
        for f in 0..80 {
            write_file(
                &src.join(format!("d{d:02}/f{f:03}")),
                format!("file {d} {f} {}\n", "x".repeat((d * 80 + f) % 97)).as_bytes(),
            );
        }
    }
    let session = t.ingest("host", &src);
    (t, src, session)
}

/// The session's manifest chunks in order: (pack file, record offset, record length).
pub(crate) fn manifest_chunks(repo: &Path, session: i64) -> Vec<(PathBuf, u64, u64)> {
    let db = rusqlite::Connection::open(repo.join("index.db")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT p.name, c.offset, c.length FROM session_manifest m \
             JOIN chunks c ON c.num = m.chunk JOIN packs p ON p.id = c.pack \
             WHERE m.session = ?1 ORDER BY m.seq",
        )
        .unwrap();
    stmt.query_map([session], |r| {
        let name = hex::encode(r.get::<_, Vec<u8>>(0)?);
        Ok((
            repo.join("packs")
                .join(&name[..2])
                .join(format!("{name}.pack")),
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<Vec<_>>>()
    .unwrap()
}

/// Regular files under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Manifest order: component by component.
fn cmp_paths(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// The lost ranges restore names on stderr: (after, before), `None` for the session's ends.
fn lost_ranges(stderr: &str) -> Vec<(Option<String>, Option<String>)> {
    stderr
        .lines()
        .filter(|l| l.contains("is lost: manifest chunk"))
        .map(|l| {
            let rest = l.strip_prefix("rsbackup: cannot restore ").unwrap();
            let range = rest.split(": every entry").next().unwrap();
            let (from, to) = range.split_once(" .. ").unwrap();
            let end = |s: &str| (!s.starts_with("the ")).then(|| s.to_string());
            (end(from), end(to))
        })
        .collect()
}

/// Files that failed alone (not a range) on stderr.
fn failed_files(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("rsbackup: cannot restore ") && !l.contains(" .. "))
        .map(|l| {
            let rest = l.strip_prefix("rsbackup: cannot restore ").unwrap();
            rest.split(": ").next().unwrap().to_string()
        })
        .collect()
}

fn in_range(p: &str, (from, to): &(Option<String>, Option<String>)) -> bool {
    from.as_deref()
        .is_none_or(|f| cmp_paths(f, p) == Ordering::Less)
        && to
            .as_deref()
            .is_none_or(|t| cmp_paths(p, t) == Ordering::Less)
}

/// Restore the damaged session; every file either comes back equal or is accounted for by a
/// named range or a named file. Returns (files lost, files the damage touches, total).
fn restore_and_account(t: &TestRepo, src: &Path, session: i64, tag: &str) -> (usize, usize, usize) {
    let target = t.path(&format!("restore-{tag}"));
    let run = t.restore_run(session, &target, &[]);
    assert_eq!(run.code, exit::PARTIAL, "{tag}: {run:?}");
    assert!(
        run.stderr.contains("manifest chunk") && run.stderr.contains("is partial"),
        "{tag}: no summary: {}",
        run.stderr
    );
    let ranges = lost_ranges(&run.stderr);
    assert!(
        !ranges.is_empty(),
        "{tag}: no lost range named: {}",
        run.stderr
    );
    let failed = failed_files(&run.stderr);
    let source = files(src);
    let restored = files(&target);
    let mut touched = 0;
    let mut lost = 0;
    for (path, content) in &source {
        let in_lost_range = ranges.iter().any(|r| in_range(path, r));
        if in_lost_range || failed.contains(path) {
            touched += 1;
        }
        if failed.contains(path) {
            // Named as failed: whatever is in the target is not claimed to be the file.
            lost += 1;
            continue;
        }
        match restored.get(path) {
            Some(got) => assert_eq!(got, content, "{tag}: {path} restored wrongly"),
            None => {
                lost += 1;
                assert!(
                    in_lost_range || failed.contains(path),
                    "{tag}: {path} is missing but no error names it: {}",
                    run.stderr
                );
            }
        }
    }
    assert!(restored.keys().all(|p| source.contains_key(p)), "{tag}");
    // The walk went on past each lost range: files after it came back.
    for (_, to) in &ranges {
        if let Some(to) = to {
            assert!(
                restored.keys().any(|p| cmp_paths(p, to) != Ordering::Less),
                "{tag}: nothing after {to} was restored"
            );
        }
    }
    eprintln!(
        "{tag}: {lost} of {} files lost, the damage touches {touched}; {} ranges: {ranges:?}",
        source.len(),
        ranges.len()
    );
    (lost, touched, source.len())
}

pub(crate) fn flip(path: &Path, at: u64) {
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
fn a_flipped_byte_in_a_manifest_chunk_loses_only_its_entries() {
    let (t, src, session) = setup();
    let chunks = manifest_chunks(&t.repo, session);
    assert!(chunks.len() >= 4, "only {} manifest chunks", chunks.len());
    let (pack, offset, length) = &chunks[chunks.len() / 2];
    flip(pack, offset + length / 2);
    let (lost, touched, total) = restore_and_account(&t, &src, session, "flipped");
    assert!(
        lost > 0 && lost == touched,
        "lost {lost}, touched {touched}"
    );
    // check finds it without a key (stored hash) and, with the identity, says what it costs.
    let run = t.check_run(true, true);
    assert_eq!(run.code, exit::PARTIAL, "{run:?}");
    let problems = run.json()["problems"].to_string();
    assert!(
        problems.contains(&format!(
            "manifest chunk {} of {}",
            chunks.len() / 2,
            chunks.len()
        )) && problems.contains("the entries it describes are lost"),
        "{problems}"
    );
    assert!(
        lost < total / 2,
        "{lost} of {total} lost for one manifest chunk"
    );
}

#[test]
fn a_missing_pack_with_manifest_chunks_loses_only_what_it_holds() {
    let (t, src, session) = setup();
    let chunks = manifest_chunks(&t.repo, session);
    let (pack, _, _) = &chunks[chunks.len() / 2];
    assert!(
        chunks.iter().any(|c| c.0 != *pack),
        "every manifest chunk is in one pack"
    );
    fs::remove_file(pack).unwrap();
    let (lost, touched, total) = restore_and_account(&t, &src, session, "missing-pack");
    assert!(lost > 0 && lost <= touched && touched < total);
}

#[test]
fn a_garbled_pack_header_loses_only_what_the_pack_holds() {
    let (t, src, session) = setup();
    let chunks = manifest_chunks(&t.repo, session);
    let (pack, _, _) = &chunks[chunks.len() / 2];
    flip(pack, 3);
    let (lost, touched, total) = restore_and_account(&t, &src, session, "pack-header");
    assert!(lost > 0 && lost <= touched && touched < total);
}
