//! Integration tests: `check` finds every damaged or missing key file and every damaged or
//! missing file a rebuild of the index needs, says what it breaks, and exits non-zero; an
//! intact repository is clean. Each case starts from a fresh copy of one repository.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {suffix} file in {}", dir.display()))
}

fn flip_last(path: &Path) {
    let mut b = fs::read(path).unwrap();
    let n = b.len();
    b[n - 1] ^= 1;
    fs::write(path, b).unwrap();
}

/// Run `check` (plain and `--read-data`) on a damaged copy: both exit 3 and a problem says
/// each of `needles`.
fn assert_found(repo: &Path, needles: &[&str], tag: &str) {
    for read_data in [false, true] {
        let mut args = vec![arg("check"), arg("--repo"), arg(repo), arg("--json")];
        if read_data {
            args.push(arg("--read-data"));
        }
        let run = rsbackup(args);
        assert_eq!(run.code, exit::PARTIAL, "{tag}: {run:?}");
        let problems: Vec<String> = run.json()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["what"].as_str().unwrap().to_string())
            .collect();
        for needle in needles {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{tag}: no problem says {needle:?}: {problems:?}"
            );
        }
    }
}

#[test]
fn damaged_or_missing_key_and_record_files_are_found_and_named() {
    let t = TestRepo::new();
    let src = t.path("src");
    sample_tree(&src);
    let session = t.ingest("host1", &src);
    let clean = t.check_run(true, true);
    clean.ok();
    assert!(clean.json()["problems"].as_array().unwrap().is_empty());

    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, Vec<&str>)> = vec![
        (
            "secret.age deleted",
            Box::new(|r| fs::remove_file(r.join("keys/secret.age")).unwrap()),
            vec!["secret.age", "every restore fails"],
        ),
        (
            "secret.age garbled",
            Box::new(|r| fs::write(r.join("keys/secret.age"), b"not age at all").unwrap()),
            vec!["is not an age file", "every restore fails"],
        ),
        (
            "secret altered",
            Box::new(|r| flip_last(&r.join("keys/secret"))),
            vec!["secret-check", "every ingest fails"],
        ),
        (
            "secret deleted on a primary",
            Box::new(|r| fs::remove_file(r.join("keys/secret")).unwrap()),
            vec![
                "keys/secret is missing",
                "not a mirror",
                "every ingest fails",
            ],
        ),
        (
            "secret truncated",
            Box::new(|r| fs::write(r.join("keys/secret"), b"RSBKSEC1").unwrap()),
            vec!["not a repository secret file", "every ingest fails"],
        ),
        (
            "data key file deleted",
            Box::new(|r| fs::remove_file(only_file(&r.join("keys/data"), ".age")).unwrap()),
            vec![
                "cannot be read",
                "would lose every chunk sealed with data key",
            ],
        ),
        (
            "data key file altered",
            Box::new(|r| flip_last(&only_file(&r.join("keys/data"), ".age"))),
            vec!["differs from data key"],
        ),
        (
            "session record deleted",
            Box::new(|r| fs::remove_file(only_file(&r.join("sessions"), ".session")).unwrap()),
            vec!["would be lost by a rebuilt index"],
        ),
        (
            "session record garbled",
            Box::new(|r| flip_last(&only_file(&r.join("sessions"), ".session"))),
            vec!["checksum", "would be lost by a rebuilt index"],
        ),
        (
            "reference list deleted",
            Box::new(|r| fs::remove_file(only_file(&r.join("packs"), ".refs")).unwrap()),
            vec!["a rebuilt index could not tell the manifest chunks"],
        ),
        (
            "reference list garbled",
            Box::new(|r| flip_last(&only_file(&r.join("packs"), ".refs"))),
            vec![
                "checksum",
                "a rebuilt index could not tell the manifest chunks",
            ],
        ),
    ];
    for (tag, damage, needles) in cases {
        let repo = t.path(&format!("repo-{}", tag.replace(' ', "-")));
        copy_dir(&t.repo, &repo);
        damage(&repo);
        assert_found(&repo, &needles, tag);
    }

    // With the identity, a secret.age that does not unwrap stops check with the cause.
    let repo = t.path("repo-identity");
    copy_dir(&t.repo, &repo);
    fs::remove_file(repo.join("keys/secret.age")).unwrap();
    let run = rsbackup([
        arg("check"),
        arg("--repo"),
        arg(&repo),
        arg("--identity"),
        arg(&t.identity),
    ]);
    assert_ne!(run.code, exit::OK, "{run:?}");
    assert!(run.stderr.contains("secret.age"), "{run:?}");
    let _ = session;
}
