//! Helpers for the package test: the shell blocks of docs/install.md that the test runs as
//! written, the machine's package state, and running a command as another account.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The doc whose marked blocks are run.
pub const INSTALL_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/install.md");

/// The blocks fenced as ```` ```sh MARK ````, in order, joined into one script.
pub fn blocks(doc: &str, mark: &str) -> String {
    let opening = format!("```sh {mark}");
    let mut script = String::new();
    let mut inside = false;
    for line in doc.lines() {
        if inside {
            if line.trim_end() == "```" {
                inside = false;
            } else {
                script.push_str(line);
                script.push('\n');
            }
        } else if line.trim_end() == opening {
            inside = true;
        }
    }
    assert!(!inside, "{INSTALL_DOC}: a ```sh {mark} block is not closed");
    assert!(!script.is_empty(), "{INSTALL_DOC}: no ```sh {mark} block");
    script
}

/// `script` with each `(from, to)` replaced; every `from` must occur (the doc and the
/// placeholder table in the test stay in step).
pub fn substitute(script: &str, table: &[(&str, String)]) -> String {
    let mut out = script.to_owned();
    for (from, to) in table {
        out = out.replace(from, to);
    }
    out
}

/// Panic unless every `from` of `table` occurs in `text`.
pub fn assert_placeholders_used(text: &str, table: &[(&str, String)]) {
    for (from, _) in table {
        assert!(
            text.contains(from),
            "{INSTALL_DOC}: the placeholder {from:?} of the test's table is not in the doc"
        );
    }
}

/// Run `script` with `bash -euo pipefail`, echoing each command, in `dir`; panic on failure
/// with everything it printed.
pub fn run_script(name: &str, script: &str, dir: &Path) -> Output {
    let out = Command::new("bash")
        .args(["-euxo", "pipefail", "-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("cannot run bash");
    assert_success(
        &format!("the {name} steps of docs/install.md\n--- script\n{script}"),
        &out,
    );
    out
}

/// Panic unless `out` is a success, with `what` and everything it printed.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `argv` as `user` (runuser), capturing it.
pub fn run_as(user: &str, argv: &[&str]) -> Output {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--"]).args(argv).stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run runuser: {e}"))
}

/// Run a command, panic with its output unless it succeeds; return its stdout.
pub fn must(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (is it installed?)", argv[0]));
    assert_success(&format!("{argv:?}"), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Is the Debian package `name` installed (or half-installed)?
pub fn package_present(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|o| {
            let status = String::from_utf8_lossy(&o.stdout).into_owned();
            o.status.success() && !status.ends_with("not-installed")
        })
        .unwrap_or(false)
}

/// Does the account exist?
pub fn account_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The account's uid and gid.
pub fn ids(name: &str) -> (u32, u32) {
    let line = must(&["getent", "passwd", name]);
    let fields: Vec<&str> = line.trim().split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

/// Panic unless `path` is a directory with this owner, group and mode.
pub fn assert_dir(path: &str, uid: u32, gid: u32, mode: u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(meta.is_dir(), "{path} is not a directory");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (uid, gid, mode),
        "{path}: owner, group, mode"
    );
}

/// The `ExecStart=` argv and the `User=` (root if none) of a unit file.
pub fn exec_start(unit: &str) -> (Vec<String>, String) {
    let text = std::fs::read_to_string(unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
    };
    let exec = value("ExecStart=").unwrap_or_else(|| panic!("{unit}: no ExecStart="));
    assert!(
        !exec.contains(['"', '\'', '$', '%']),
        "{unit}: ExecStart= uses quoting or specifiers; this test splits it on spaces"
    );
    let argv = exec.split_whitespace().map(str::to_owned).collect();
    (argv, value("User=").unwrap_or_else(|| "root".into()))
}
