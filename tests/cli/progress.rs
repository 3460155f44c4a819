//! Integration tests: the progress bar of long work. On a terminal (a real pseudo-terminal from
//! util-linux `script`) `restore`, `check`, `ingest` draw a bar with bytes, rate and time left
//! on standard error; without a terminal, or with `--quiet`, standard error stays empty, and
//! `prune --quiet` prints nothing at all when it succeeds.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// Run `rsbackup ARGS > STDOUT` on a pseudo-terminal: standard error is the terminal, standard
/// output the file. Returns (exit code, what the terminal showed, what went to the file).
fn on_terminal(args: &[OsString], stdout: &Path) -> (i32, String, String) {
    let quote = |a: &OsString| format!("'{}'", a.to_str().unwrap().replace('\'', "'\\''"));
    let mut command: Vec<String> = vec![quote(&bin().into_os_string())];
    command.extend(args.iter().map(quote));
    command.push(format!("> {}", quote(&stdout.as_os_str().to_owned())));
    let out = Command::new("script")
        .args(["-qfec", &command.join(" "), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` is needed to test the progress bar (apt install bsdutils)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(stdout).unwrap_or_default(),
    )
}

/// A repository with one session of 16 MiB in four files.
fn big_session() -> (TestRepo, i64) {
    let t = TestRepo::new();
    let src = t.path("src");
    for i in 0..4u8 {
        write_file(&src.join(format!("f{i}")), &pattern(i, 4 << 20));
    }
    let session = t.ingest("web1", &src);
    (t, session)
}

fn restore_args(t: &TestRepo, session: i64, target: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args = vec![
        arg("restore"),
        arg("--repo"),
        arg(&t.repo),
        arg("--identity"),
        arg(&t.identity),
        arg("--session"),
        arg(session.to_string()),
        arg("--target"),
        arg(target),
    ];
    args.extend(extra.iter().map(arg));
    args
}

#[test]
fn a_terminal_gets_a_bar_with_bytes_rate_and_eta() {
    let (t, session) = big_session();
    let (code, shown, stdout) = on_terminal(
        &restore_args(&t, session, &t.path("to"), &[]),
        &t.path("out"),
    );
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("restoring"),
        "no bar on the terminal: {shown:?}"
    );
    assert!(
        shown.contains("/16.00 MiB"),
        "no bytes of the total: {shown:?}"
    );
    assert!(shown.contains("/s"), "no rate: {shown:?}");
    assert!(shown.contains("ETA"), "no time left: {shown:?}");
    // The bar never goes to standard output, which holds the summary alone.
    assert!(stdout.starts_with("restored session"), "{stdout:?}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains("ETA"),
        "{stdout:?}"
    );

    let (code, shown, _) = on_terminal(
        &[
            arg("check"),
            arg("--repo"),
            arg(&t.repo),
            arg("--read-data"),
        ],
        &t.path("check-out"),
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("checking packs"), "{shown:?}");

    let src = t.path("more");
    write_file(&src.join("g"), &pattern(9, 8 << 20));
    let (code, shown, _) = on_terminal(
        &[
            arg("ingest"),
            arg("--repo"),
            arg(&t.repo),
            arg("--client"),
            arg("web2"),
            arg(&src),
        ],
        &t.path("ingest-out"),
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("reading files"), "{shown:?}");

    let (code, shown, _) = on_terminal(
        &[
            arg("mirror"),
            arg("--repo"),
            arg(&t.repo),
            arg("--to"),
            arg(t.path("mirror")),
        ],
        &t.path("mirror-out"),
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("sending chunks"), "{shown:?}");

    // --quiet: nothing on the terminal, nothing on standard output.
    let (code, shown, stdout) = on_terminal(
        &restore_args(&t, session, &t.path("to-quiet"), &["--quiet"]),
        &t.path("quiet-out"),
    );
    assert_eq!(code, 0, "{shown}");
    assert_eq!(shown, "", "--quiet drew on the terminal");
    assert_eq!(stdout, "");
    assert_trees_equal(&t.path("to"), &t.path("to-quiet"));
}

#[test]
fn without_a_terminal_stderr_stays_clean() {
    let (t, session) = big_session();
    let run = rsbackup(restore_args(&t, session, &t.path("to"), &[]));
    run.ok();
    assert_eq!(run.stderr, "");
    assert!(run.stdout_str().starts_with("restored session"));
    for args in [vec!["--read-data"], vec!["--read-data", "--quiet"]] {
        let run = t.run("check", &args);
        run.ok();
        assert_eq!(run.stderr, "", "check {args:?}");
    }
    let run = t.run("ingest", &[arg("--client"), arg("web2"), arg(t.path("to"))]);
    run.ok();
    assert_eq!(run.stderr, "");
    let run = t.run(
        "mirror",
        &[arg("--to"), arg(t.path("mirror")), arg("--quiet")],
    );
    run.ok();
    assert_eq!(run.stderr, "");
    assert!(run.stdout.is_empty());
}

#[test]
fn prune_quiet_from_a_timer_prints_nothing_on_success() {
    let (t, _) = big_session();
    let src = t.path("src2");
    write_file(&src.join("other"), &pattern(7, 1 << 20));
    t.ingest("web1", &src);
    let run = t.run("prune", &["--keep-last", "1", "--quiet"]);
    run.ok();
    assert_eq!(run.stderr, "");
    assert!(run.stdout.is_empty(), "{}", run.stdout_str());
    // The work was done: one session left, and the collect ran.
    let sessions = t.run("sessions", &["--json"]);
    assert_eq!(sessions.json().as_array().unwrap().len(), 1);
    // Without --quiet the same prune says what it did.
    let run = t.run("prune", &["--keep-last", "1"]);
    run.ok();
    assert!(
        run.stdout_str().contains("removed 0 of 1 sessions"),
        "{}",
        run.stdout_str()
    );
}
