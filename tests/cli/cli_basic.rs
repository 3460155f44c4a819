//! Integration tests: cli_basic. The whole path through the binary (init, ingest, sessions, ls,
//! cat, restore, compare), and every bad input with its exit code and one-line message.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common::*;

#[test]
fn helpers_build_and_compare_a_sample_tree() {
    let dir = tempdir();
    let a = dir.path().join("a");
    let info = sample_tree(&a);
    assert!(info.files > 60, "sample tree too small: {info:?}");
    assert!(compare_trees(&a, &a).is_empty());
    // A copy made by hand differs in ways the comparison must see.
    let b = dir.path().join("b");
    std::fs::create_dir(&b).unwrap();
    write_file(&b.join("hello.txt"), b"hello, world?\n");
    let diffs = compare_trees(&a, &b);
    assert!(diffs.iter().any(|d| d.contains("only in")), "{diffs:?}");
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("hello.txt") && d.contains("size")),
        "{diffs:?}"
    );
}

#[test]
fn end_to_end_ingest_list_cat_restore_compare() {
    let t = TestRepo::new();
    let src = t.path("src");
    let info = sample_tree(&src);

    let first = t.ingest_run("web1", &src);
    first.ok();
    let report = first.json();
    let s1 = report["session"].as_i64().unwrap();
    assert_eq!(report["state"], "complete", "{report}");
    assert_eq!(report["files"].as_u64(), Some(info.files), "{report}");
    assert_eq!(report["bytes"].as_u64(), Some(info.bytes), "{report}");
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");

    // The human report names the session and the client.
    let s2_run = t.run("ingest", &[arg("--client"), arg("web1"), arg(&src)]);
    s2_run.ok();
    let human = s2_run.stdout_str();
    assert!(human.contains("client web1"), "{human}");
    assert!(human.contains("complete"), "{human}");

    // sessions: both, as JSON and as a table; --client filters.
    let sessions = t.run("sessions", &["--json"]);
    sessions.ok();
    let list = sessions.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["id"].as_i64(), Some(s1));
    assert_eq!(list[0]["client"], "web1");
    let s2 = list[1]["id"].as_i64().unwrap();
    assert!(s2 > s1);
    let table = t.run("sessions", &[] as &[&str]);
    table.ok();
    assert!(
        table.stdout_str().contains("web1"),
        "{}",
        table.stdout_str()
    );
    let none = t.run("sessions", &["--client", "other", "--json"]);
    none.ok();
    assert_eq!(none.json().as_array().map(|a| a.len()), Some(0));

    // An unchanged tree adds nothing to the store.
    let third = t.ingest_run("web1", &src);
    third.ok();
    assert_eq!(
        third.json()["new_chunks"].as_u64(),
        Some(0),
        "{}",
        third.stdout_str()
    );

    // ls: everything, a subtree, the long form.
    let ls = t.run_with_identity("ls", &["--session", &s1.to_string()]);
    ls.ok();
    let out = ls.stdout_str();
    for want in [
        "hello.txt",
        "docs/",
        "docs/deep/er/still/leaf.txt",
        "links/dangling",
    ] {
        assert!(out.lines().any(|l| l == want), "ls lacks {want:?}:\n{out}");
    }
    let sub = t.run_with_identity("ls", &["--session", &s1.to_string(), "/docs/deep"]);
    sub.ok();
    let sub_out = sub.stdout_str();
    assert!(sub_out.contains("docs/deep/er/still/leaf.txt"), "{sub_out}");
    assert!(!sub_out.contains("hello.txt"), "{sub_out}");
    let long = t.run_with_identity(
        "ls",
        &["--session", "latest", "--client", "web1", "--long", "links"],
    );
    long.ok();
    let long_out = long.stdout_str();
    assert!(
        long_out.contains("links/rel-symlink -> original"),
        "{long_out}"
    );
    assert!(long_out.contains("rwx"), "{long_out}");

    // cat: bytes exactly, including a non-UTF-8 name.
    let cat = t.run_with_identity("cat", &["--session", &s1.to_string(), "hello.txt"]);
    cat.ok();
    assert_eq!(cat.stdout, b"hello, world\n");
    let raw = t.run_with_identity(
        "cat",
        &[
            arg("--session"),
            arg(s1.to_string()),
            OsStr::from_bytes(b"odd names/latin1-\xe9\xff").to_owned(),
        ],
    );
    raw.ok();
    assert_eq!(raw.stdout, b"latin1\n");
    let big = t.run_with_identity(
        "cat",
        &["--session", "latest", "--client", "web1", "data/big.bin"],
    );
    big.ok();
    assert!(
        big.stdout == pattern(4, 5 << 20),
        "cat data/big.bin differs"
    );

    // restore everything, then compare entry by entry.
    let target = t.path("restored");
    t.restore(s2, &target);
    assert_trees_equal(&src, &target);

    // restore one path into a fresh target.
    let part = t.path("part");
    t.restore_run(s1, &part, &[b"docs"]).ok();
    assert!(part.join("docs/deep/er/still/leaf.txt").is_file());
    assert!(!part.join("hello.txt").exists());
}

#[test]
fn a_closed_pipe_on_stdout_is_success() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("big"), &pattern(1, 4 << 20));
    let s = t.ingest("pipe", &src);
    let script = format!(
        "set -o pipefail; {:?} cat --repo {:?} --identity {:?} --session {s} big | head -c 10 >/dev/null",
        bin(),
        t.repo,
        t.identity
    );
    assert_quiet_success_into_closed_pipe(&script, "cat");
}

#[test]
fn help_lists_every_exit_code() {
    let help = rsbackup(["--help"]);
    help.ok();
    let text = help.stdout_str();
    for code in 0..=11 {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "--help does not explain exit code {code}:\n{text}"
        );
    }
}

#[test]
fn missing_repository_is_not_a_repository() {
    let dir = tempdir();
    let missing = dir.path().join("nope");
    rsbackup([arg("sessions"), arg("--repo"), arg(&missing)])
        .fails_with(exit::NOT_A_REPOSITORY, &[missing.to_str().unwrap()]);
}

#[test]
fn empty_directory_is_not_a_repository() {
    let dir = tempdir();
    rsbackup([arg("sessions"), arg("--repo"), arg(dir.path())])
        .fails_with(exit::NOT_A_REPOSITORY, &[dir.path().to_str().unwrap()]);
}

#[test]
fn future_repository_version_is_refused() {
    let t = TestRepo::new();
    let toml = t.repo.join("repository.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("version = 1"), "{text}");
    std::fs::write(&toml, text.replace("version = 1", "version = 99")).unwrap();
    t.run("sessions", &[] as &[&str])
        .fails_with(exit::UNSUPPORTED_VERSION, &["repository.toml", "99"]);
}

#[test]
fn init_refuses_a_non_empty_directory() {
    let t = TestRepo::new();
    let dir = t.path("busy");
    write_file(&dir.join("something"), b"x");
    let run = rsbackup([
        arg("init"),
        arg("--repo"),
        arg(&dir),
        arg("--recipient"),
        arg(&t.recipient),
    ]);
    assert_ne!(run.code, 0);
    run.fails_with(run.code, &[dir.to_str().unwrap()]);
    assert!(!dir.join("repository.toml").exists());
    // Nor over an existing repository.
    let again = t.run("init", &["--recipient", &t.recipient]);
    assert_ne!(again.code, 0);
    again.fails_with(again.code, &[t.repo.to_str().unwrap()]);
}

#[test]
fn init_refuses_a_bad_recipient() {
    let dir = tempdir();
    let repo = dir.path().join("repo");
    rsbackup([
        arg("init"),
        arg("--repo"),
        arg(&repo),
        arg("--recipient"),
        arg("age1notarealkey"),
    ])
    .fails_with(exit::FAILURE, &["age1notarealkey"]);
    assert!(!repo.join("repository.toml").exists());
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = tempdir();
    let id = dir.path().join("id");
    std::fs::write(&id, b"precious").unwrap();
    rsbackup([arg("keygen"), arg("--output"), arg(&id)])
        .fails_with(exit::FAILURE, &[id.to_str().unwrap(), "exists"]);
    assert_eq!(std::fs::read(&id).unwrap(), b"precious");
    let fresh = dir.path().join("fresh");
    rsbackup([arg("keygen"), arg("--output"), arg(&fresh)]).ok();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "identity file mode {mode:o}");
}

/// A repository with one session of client `web1`; returns it and the session id.
fn repo_with_session() -> (TestRepo, i64) {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("a.txt"), b"alpha\n");
    write_file(&src.join("dir/b.txt"), b"beta\n");
    let s = t.ingest("web1", &src);
    (t, s)
}

#[test]
fn wrong_identity_is_refused() {
    let (t, s) = repo_with_session();
    let other = t.path("other-identity");
    rsbackup([arg("keygen"), arg("--output"), arg(&other)]).ok();
    rsbackup([
        arg("ls"),
        arg("--repo"),
        arg(&t.repo),
        arg("--identity"),
        arg(&other),
        arg("--session"),
        arg(s.to_string()),
    ])
    .fails_with(exit::WRONG_IDENTITY, &["identity"]);
}

/// Every command that takes `--identity FILE`, reading session `s` of `t` with `identity`.
/// `restore` restores into `DIR/out`.
fn each_identity_command(t: &TestRepo, s: i64, identity: &Path) -> Vec<Run> {
    let session = s.to_string();
    let at = |command: &str, extra: &[std::ffi::OsString]| {
        let mut args = vec![
            arg(command),
            arg("--repo"),
            arg(&t.repo),
            arg("--identity"),
            arg(identity),
        ];
        if command != "check" {
            args.extend([arg("--session"), arg(&session)]);
        }
        args.extend(extra.iter().cloned());
        rsbackup(args)
    };
    vec![
        at("ls", &[]),
        at("cat", &[arg("a.txt")]),
        at("restore", &[arg("--target"), arg(t.path("out"))]),
        at("check", &[]),
    ]
}

#[test]
fn identity_file_that_is_not_an_age_identity_is_a_wrong_identity() {
    let (t, s) = repo_with_session();
    let recipient_file = format!("# the public key\n{}\n", t.recipient);
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "garbage-identity",
            b"this is not an age identity\n",
            "line 1 is not an AGE-SECRET-KEY-1... line",
        ),
        (
            "recipient.txt",
            recipient_file.as_bytes(),
            "line 2 is a recipient (public key)",
        ),
        (
            "damaged.txt",
            b"AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n",
            "line 1 is an AGE-SECRET-KEY-1... line that does not decode",
        ),
        ("empty.txt", b"", "it holds no AGE-SECRET-KEY-1... line"),
        ("binary.key", &[0xff, 0xfe, 0, 1], "it is not text"),
    ];
    for (name, content, why) in cases {
        let bad = t.path(name);
        std::fs::write(&bad, content).unwrap();
        let said = format!(
            "rsbackup: identity file {} is not an age identity: {why}",
            bad.display()
        );
        for run in each_identity_command(&t, s, &bad) {
            run.fails_with(exit::WRONG_IDENTITY, &[&said]);
        }
        assert!(!t.path("out").exists(), "restore created its target anyway");
    }
}

#[test]
fn missing_identity_file_is_not_found_and_named() {
    let (t, s) = repo_with_session();
    let missing = t.path("no-such-identity.txt");
    let said = format!(
        "rsbackup: identity file {} does not exist",
        missing.display()
    );
    for run in each_identity_command(&t, s, &missing) {
        run.fails_with(exit::NOT_FOUND, &[&said]);
    }
    assert!(!t.path("out").exists(), "restore created its target anyway");
}

#[test]
fn bad_client_name_is_refused() {
    let (t, _) = repo_with_session();
    let src = t.path("src");
    t.run("ingest", &[arg("--client"), arg("Bad Name"), arg(&src)])
        .fails_with(exit::FAILURE, &["Bad Name"]);
    t.run("ingest", &[arg("--client"), arg("../escape"), arg(&src)])
        .fails_with(exit::FAILURE, &["../escape"]);
}

#[test]
fn unknown_session_is_not_found() {
    let (t, _) = repo_with_session();
    t.run_with_identity("ls", &["--session", "999"])
        .fails_with(exit::NOT_FOUND, &["999"]);
    t.run_with_identity("ls", &["--session", "latest", "--client", "nobody"])
        .fails_with(exit::NOT_FOUND, &["nobody"]);
    t.run_with_identity("ls", &["--session", "yesterday"])
        .fails_with(exit::USAGE, &["yesterday"]);
}

#[test]
fn unknown_path_is_not_found() {
    let (t, s) = repo_with_session();
    let s = s.to_string();
    t.run_with_identity("ls", &["--session", &s, "no/such/path"])
        .fails_with(exit::NOT_FOUND, &["no/such/path"]);
    t.run_with_identity("cat", &["--session", &s, "missing.txt"])
        .fails_with(exit::NOT_FOUND, &["missing.txt"]);
}

#[test]
fn latest_needs_a_client() {
    let (t, _) = repo_with_session();
    t.run_with_identity("ls", &["--session", "latest"])
        .fails_with(exit::USAGE, &["--client"]);
    let out = t.path("out");
    t.run_with_identity(
        "restore",
        &[arg("--session"), arg("latest"), arg("--target"), arg(&out)],
    )
    .fails_with(exit::USAGE, &["--client"]);
}

#[test]
fn restore_target_that_is_a_file_is_refused() {
    let (t, s) = repo_with_session();
    let file = t.path("a-file");
    std::fs::write(&file, b"keep me").unwrap();
    t.restore_run(s, &file, &[])
        .fails_with(exit::TARGET_NOT_DIRECTORY, &[file.to_str().unwrap()]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn restore_into_non_empty_target_needs_force() {
    let (t, s) = repo_with_session();
    let target = t.path("busy");
    write_file(&target.join("unrelated"), b"mine");
    t.restore_run(s, &target, &[]).fails_with(
        exit::TARGET_NOT_EMPTY,
        &[target.to_str().unwrap(), "--force"],
    );
    assert!(!target.join("a.txt").exists());
    let mut args = vec![
        arg("--session"),
        arg(s.to_string()),
        arg("--target"),
        arg(&target),
        arg("--force"),
    ];
    args.push(arg("a.txt"));
    t.run_with_identity("restore", &args).ok();
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(std::fs::read(target.join("unrelated")).unwrap(), b"mine");
}

#[test]
fn missing_ingest_source_is_named() {
    let (t, _) = repo_with_session();
    let missing = t.path("not-there");
    t.run("ingest", &[arg("--client"), arg("web1"), arg(&missing)])
        .fails_with(exit::NOT_FOUND, &[missing.to_str().unwrap()]);
}

#[test]
fn usage_errors_are_one_line_with_code_2() {
    rsbackup([
        "ingest",
        "--repo",
        "/tmp",
        "--client",
        "x",
        "--threads",
        "0",
        "/tmp",
    ])
    .fails_with(exit::USAGE, &["--threads"]);
    rsbackup(["restore", "--repo", "/tmp"]).fails_with(exit::USAGE, &["--session"]);
    rsbackup(["frobnicate"]).fails_with(exit::USAGE, &["frobnicate"]);
}

#[test]
fn check_of_a_fresh_repository_is_clean() {
    let (t, _) = repo_with_session();
    let run = t.check_run(true, true);
    run.ok();
    let report = run.json();
    assert_eq!(
        report["problems"].as_array().map(|p| p.len()),
        Some(0),
        "{report}"
    );
    // One manifest chunk: both files are small enough to be inline in it.
    assert_eq!(report["chunks"].as_u64(), Some(1), "{report}");
    assert!(report["bytes_read"].as_u64().unwrap() > 0, "{report}");
    let human = t.run("check", &["--read-data"]);
    human.ok();
    assert!(
        human.stdout_str().contains("no problems"),
        "{}",
        human.stdout_str()
    );
}

#[test]
fn ls_into_a_closed_pipe_is_success() {
    let t = TestRepo::new();
    let src = t.path("src");
    // Enough names that the listing overflows the pipe buffer after `head` has gone.
    for i in 0..1500 {
        write_file(
            &src.join(format!(
                "dir-{:02}/a-rather-long-file-name-number-{i:05}",
                i % 20
            )),
            b"",
        );
    }
    let s = t.ingest("pipe", &src);
    let script = format!(
        "set -o pipefail; {:?} ls --repo {:?} --identity {:?} --session {s} | head -n 1 >/dev/null",
        bin(),
        t.repo,
        t.identity
    );
    assert_quiet_success_into_closed_pipe(&script, "ls");
}

#[test]
fn usage_doc_lists_every_exit_code() {
    let doc = include_str!("../../docs/usage.md");
    for code in 0..=11 {
        assert!(
            doc.contains(&format!("\n| {code} | ")),
            "docs/usage.md does not explain exit code {code}"
        );
    }
}

/// Run a `bash -c` pipeline whose reader closes early: the pipeline must succeed and rsbackup
/// must print nothing on stderr (a broken pipe is success).
fn assert_quiet_success_into_closed_pipe(script: &str, what: &str) {
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what} | head failed: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
