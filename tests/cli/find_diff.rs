//! Integration tests of `find`, `diff` and `ls --json` on sessions made by real ingests: a file
//! deleted in the last session is found in the ones before it, globs keep `*` within a
//! component, a diff names each kind of change (also as JSON, an ACL apart from other xattrs),
//! and a damaged manifest chunk makes both partial (exit 3) while still giving what could be
//! read.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::common::*;

/// Parse one JSON object per line.
fn json_lines(run: &Run) -> Vec<Value> {
    run.stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn sessions_of(matches: &[Value], path: &str) -> Vec<i64> {
    matches
        .iter()
        .filter(|m| m["path"] == path)
        .map(|m| m["session"].as_i64().unwrap())
        .collect()
}

#[test]
fn find_names_the_sessions_that_still_hold_a_deleted_file() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("docs/report.pdf"), &pattern(1, 5000));
    write_file(&src.join("docs/old/notes.txt"), b"notes\n");
    write_file(&src.join("a/b/c/deep.txt"), b"deep\n");
    let s1 = t.ingest("host", &src);
    write_file(&src.join("docs/report.pdf"), &pattern(2, 6000));
    let s2 = t.ingest("host", &src);
    fs::remove_file(src.join("docs/report.pdf")).unwrap();
    let s3 = t.ingest("host", &src);
    t.ingest("other", &src);

    // Which sessions still have it: the two before the deletion, with their sizes.
    let run = t.run_with_identity("find", &["--client", "host", "--json", "report.pdf"]);
    run.ok();
    let matches = json_lines(&run);
    assert_eq!(sessions_of(&matches, "docs/report.pdf"), vec![s1, s2]);
    let sizes: Vec<u64> = matches
        .iter()
        .map(|m| m["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![5000, 6000]);
    for m in &matches {
        assert_eq!(m["type"], "file");
        assert_eq!(m["client"], "host");
        assert!(m["mtime"].as_i64().unwrap() > 0 && m["started"].as_i64().unwrap() > 0);
    }
    // The text form names the sessions, the type, the size and the path.
    let text = t.run_with_identity("find", &["--client", "host", "*.pdf"]);
    text.ok();
    let out = text.stdout_str();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .trim_start()
            .starts_with(&s1.to_string()),
        "{out}"
    );
    assert!(out.contains("file") && out.contains("6000") && out.contains("docs/report.pdf"));
    // Not in the latest session: not found (exit 11), said so.
    t.run_with_identity(
        "find",
        &["--client", "host", "--session", "latest", "report.pdf"],
    )
    .fails_with(
        exit::NOT_FOUND,
        &["no path matching report.pdf", "1 session"],
    );

    // `*` stays within a component, `**` crosses any number of them.
    t.run_with_identity("find", &["--client", "host", "a/*/deep.txt"])
        .code(exit::NOT_FOUND);
    let deep = t.run_with_identity("find", &["--client", "host", "--json", "a/**/deep.txt"]);
    deep.ok();
    assert_eq!(
        sessions_of(&json_lines(&deep), "a/b/c/deep.txt"),
        vec![s1, s2, s3]
    );
    let any = t.run_with_identity("find", &["--json", "/**/old/*.txt"]);
    any.ok();
    assert_eq!(
        json_lines(&any).len(),
        4,
        "three sessions of host, one of other"
    );
    // A bad glob is a clear error.
    t.run_with_identity("find", &["a[b"])
        .fails_with(1, &["pattern \"a[b\" is not a valid glob"]);
}

/// The session of `src` after `change` ran on it.
fn two_sessions(t: &TestRepo, src: &Path, change: impl FnOnce(&Path)) -> (i64, i64) {
    let a = t.ingest("host", src);
    change(src);
    (a, t.ingest("host", src))
}

#[test]
fn diff_names_added_removed_content_mode_and_xattr_changes() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("keep.txt"), b"same\n");
    write_file(&src.join("gone.txt"), &pattern(3, 700));
    write_file(&src.join("change.txt"), b"version one\n");
    write_file(&src.join("mode.txt"), b"mode\n");
    set_mode(&src.join("mode.txt"), 0o644);
    write_file(&src.join("tag.txt"), b"tag\n");
    write_file(&src.join("acl.txt"), b"acl\n");
    set_mode(&src.join("acl.txt"), 0o644);
    std::os::unix::fs::symlink("keep.txt", src.join("link")).unwrap();
    let (a, b) = two_sessions(&t, &src, |src| {
        fs::remove_file(src.join("gone.txt")).unwrap();
        write_file(&src.join("new.txt"), &pattern(4, 1234));
        let m = fs::metadata(src.join("change.txt")).unwrap();
        write_file(&src.join("change.txt"), b"version two, longer\n");
        // Same mtime: the content change is found by the chunk lists, not the time.
        use std::os::unix::fs::MetadataExt;
        set_mtime(&src.join("change.txt"), m.mtime(), m.mtime_nsec() as u32);
        set_mode(&src.join("mode.txt"), 0o600);
        assert!(
            set_xattr(&src.join("tag.txt"), "user.tag", b"v"),
            "this test needs user xattrs on the temporary filesystem"
        );
        must(
            "setfacl",
            &["-m", "u:65534:r", src.join("acl.txt").to_str().unwrap()],
        );
    });

    let run = t.run_with_identity("diff", &["--json", &a.to_string(), &b.to_string()]);
    run.ok();
    let mut lines = json_lines(&run);
    let summary = lines.pop().unwrap();
    let by_path: BTreeMap<String, Value> = lines
        .into_iter()
        .map(|c| (c["path"].as_str().unwrap().to_string(), c))
        .collect();
    let change = |p: &str| {
        by_path
            .get(p)
            .unwrap_or_else(|| panic!("no change for {p}: {by_path:?}"))
    };
    assert_eq!(change("new.txt")["change"], "added");
    assert_eq!(change("new.txt")["new"]["size"], 1234);
    assert_eq!(change("gone.txt")["change"], "removed");
    assert_eq!(change("gone.txt")["old"]["size"], 700);
    assert_eq!(change("change.txt")["change"], "changed");
    assert_eq!(
        change("change.txt")["aspects"],
        serde_json::json!(["content"])
    );
    assert_eq!(change("change.txt")["new"]["size"], 20);
    assert_eq!(change("mode.txt")["aspects"], serde_json::json!(["mode"]));
    assert_eq!(change("mode.txt")["old"]["mode"], "0644");
    assert_eq!(change("mode.txt")["new"]["mode"], "0600");
    assert_eq!(change("tag.txt")["aspects"], serde_json::json!(["xattrs"]));
    assert_eq!(change("acl.txt")["aspects"], serde_json::json!(["acls"]));
    assert_eq!(
        change("acl.txt")["new"]["xattrs"],
        serde_json::json!(["system.posix_acl_access"])
    );
    assert_eq!(
        change("tag.txt")["new"]["xattrs"],
        serde_json::json!(["user.tag"])
    );
    assert!(!by_path.contains_key("keep.txt") && !by_path.contains_key("link"));
    let s = &summary["summary"];
    assert_eq!(
        (s["added"].as_u64(), s["removed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(s["content_changed"], 1);
    assert!(s["changed"].as_u64().unwrap() >= 4, "{summary}");
    assert_eq!(
        (s["added_bytes"].as_u64(), s["removed_bytes"].as_u64()),
        (Some(1234), Some(700))
    );
    assert_eq!(summary["lost_manifest_chunks"], 0);

    // The text form, with `latest` and a path.
    let text = t.run_with_identity("diff", &["--client", "host", &a.to_string(), "latest"]);
    text.ok();
    let out = text.stdout_str();
    assert!(out.contains("+ file") && out.contains("new.txt"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("- file") && l.ends_with("gone.txt")),
        "{out}"
    );
    assert!(
        out.contains("change.txt  [content 12 -> 20 bytes]"),
        "{out}"
    );
    assert!(out.contains("mode.txt  [mode 0644 -> 0600]"), "{out}");
    assert!(out.contains("tag.txt  [xattrs]"), "{out}");
    assert!(out.contains("acl.txt  [acls]"), "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.contains("1 added (1.21 KiB), 1 removed (700 bytes)"),
        "{last}"
    );
    let one = t.run_with_identity("diff", &[&a.to_string(), &b.to_string(), "mode.txt"]);
    one.ok();
    assert_eq!(one.stdout_str().lines().count(), 2, "{}", one.stdout_str());
    t.run_with_identity("diff", &[&a.to_string(), &b.to_string(), "nothing"])
        .fails_with(exit::NOT_FOUND, &["\"nothing\" is in neither session"]);
    t.run_with_identity("diff", &[&a.to_string(), "999"])
        .fails_with(exit::NOT_FOUND, &["session 999 not found"]);
    t.run_with_identity("diff", &[&a.to_string(), "latest"])
        .fails_with(exit::USAGE, &["--client"]);
}

#[test]
fn ls_json_gives_one_object_per_entry() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("d/f.txt"), b"hello\n");
    set_mode(&src.join("d/f.txt"), 0o640);
    std::os::unix::fs::symlink("d/f.txt", src.join("l")).unwrap();
    let session = t.ingest("host", &src);
    let run = t.run_with_identity("ls", &["--session", &session.to_string(), "--json"]);
    run.ok();
    let entries = json_lines(&run);
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["", "d", "d/f.txt", "l"]);
    let f = &entries[2];
    assert_eq!(
        (f["type"].as_str(), f["mode"].as_str()),
        (Some("file"), Some("0640"))
    );
    assert_eq!(f["size"], 6);
    assert!(f["uid"].is_u64() && f["gid"].is_u64() && f["mtime"].is_i64());
    assert_eq!(entries[1]["type"], "dir");
    assert!(entries[1].get("size").is_none());
    assert_eq!(
        (entries[3]["type"].as_str(), entries[3]["target"].as_str()),
        (Some("symlink"), Some("d/f.txt"))
    );
    // Below a path only; --json and --long do not go together.
    let below = t.run_with_identity("ls", &["--session", &session.to_string(), "--json", "d"]);
    assert_eq!(json_lines(below.ok()).len(), 2);
    t.run_with_identity(
        "ls",
        &["--session", &session.to_string(), "--json", "--long"],
    )
    .code(exit::USAGE);
}

#[test]
fn a_damaged_manifest_chunk_makes_find_diff_and_ls_partial() {
    let (t, src, a) = crate::manifest_damage::setup();
    write_file(&src.join("zz-new"), b"added\n");
    let b = t.ingest("host", &src);
    let chunks = crate::manifest_damage::manifest_chunks(&t.repo, a);
    assert!(chunks.len() >= 4, "only {} manifest chunks", chunks.len());
    let all =
        json_lines(&t.run_with_identity("ls", &["--json", "--session", &a.to_string()])).len();
    let (pack, offset, length) = &chunks[chunks.len() / 2];
    crate::manifest_damage::flip(pack, offset + length / 2);

    // find: every match outside the damaged chunk, the chunk named, exit 3.
    let run = t.run_with_identity("find", &["--json", "--session", &a.to_string(), "f*"]);
    run.code(exit::PARTIAL);
    let found = json_lines(&run).len();
    // 3,200 files; a manifest chunk of about 8 KiB describes dozens of them.
    assert!(found > 2000 && found < 3200, "found {found} of 3200");
    assert!(
        run.stderr.contains(&format!(
            "session {a}: manifest chunk {} of {}",
            chunks.len() / 2 + 1,
            chunks.len()
        )) && run.stderr.contains("find is partial"),
        "{}",
        run.stderr
    );
    // diff: what could be read is compared, the added file is still there, exit 3.
    let run = t.run_with_identity("diff", &["--json", &a.to_string(), &b.to_string()]);
    run.code(exit::PARTIAL);
    let lines = json_lines(&run);
    assert!(
        lines
            .iter()
            .any(|c| c["path"] == "zz-new" && c["change"] == "added"),
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap()["lost_manifest_chunks"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(run.stderr.contains("diff is partial"), "{}", run.stderr);
    // ls: every entry outside the damaged chunk, the chunk named, exit 3.
    let run = t.run_with_identity("ls", &["--json", "--session", &a.to_string()]);
    run.code(exit::PARTIAL);
    let listed = json_lines(&run).len();
    assert!(
        listed > all * 2 / 3 && listed < all,
        "listed {listed} of {all}"
    );
    assert!(
        run.stderr.contains("ls is partial") && run.stderr.contains("manifest chunk"),
        "{}",
        run.stderr
    );
}
