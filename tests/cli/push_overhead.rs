//! The cuts of an unchanged push's fixed costs lose no check: staging walked once per run
//! (in `complete`), the state it leaves for the next run (format-spec/staging-state.md), and
//! the rsync check kept per binary.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common;
use crate::push_client::{Client, Server, code};

/// `(apparent bytes of regular files, allocated bytes)` of everything below `dir`, as the
/// server measures staging.
fn usage(dir: &Path) -> (u64, u64) {
    let (mut apparent, mut allocated) = (0, 0);
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_file() {
                apparent += meta.len();
            }
            allocated += meta.blocks() * 512;
            if meta.is_dir() {
                todo.push(entry.path());
            }
        }
    }
    (apparent, allocated)
}

/// The ACL of one file, without the header that names it.
fn acl(path: &Path) -> String {
    common::must("getfacl", &["--omit-header", "-n", path.to_str().unwrap()])
}

/// `(apparent, allocated)` of the staging state `complete` recorded.
fn state(server: &Server) -> (u64, u64) {
    let path = server.staging.join(".leases/web1.staging.json");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    }))
    .unwrap();
    (
        s["apparent"].as_u64().unwrap(),
        s["allocated"].as_u64().unwrap(),
    )
}

/// The prepare step's answer, from a job report printed by `run --print`.
fn prepared(report: &str) -> serde_json::Value {
    let start = report
        .find("--- output of step 1: prepare")
        .unwrap_or_else(|| panic!("no prepare step in:\n{report}"));
    let text = &report[start..];
    let json = &text[text.find('{').unwrap()..];
    serde_json::Deserializer::from_str(json)
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap()
        .unwrap()
}

/// Hollow staging through `rsbackup run`: after each complete the state it leaves describes
/// staging exactly; the next prepare takes its figures from it (no walk), the upload forgets it
/// before rsync runs. Nothing is lost on the way: a file with an ACL, one with a user xattr and
/// one with a capability come back on restore; a capability taken off an unchanged file is
/// gone from the next session (complete's walk stripped the receiver's name, as the upload's
/// did); an ACL and a user xattr set later on unchanged files are picked up. With a quota the
/// state is not believed: a state claiming an empty staging does not get an over-quota staging
/// past prepare.
#[test]
fn an_unchanged_push_walks_staging_once_and_loses_no_check() {
    assert!(
        common::is_root(),
        "this test sets capabilities and runs sshd"
    );
    let client = Client::new();
    let src = client.src.clone();
    common::sample_tree(&src);
    common::write_file(&src.join("acl"), b"acl\n");
    common::must(
        "setfacl",
        &["-m", "u:65534:rw", src.join("acl").to_str().unwrap()],
    );
    common::write_file(&src.join("noted"), b"noted\n");
    assert!(
        common::set_xattr(&src.join("noted"), "user.note", b"kept"),
        "user xattrs on the test's filesystem"
    );
    let cap = src.join("captrue");
    std::fs::copy("/usr/bin/true", &cap).unwrap();
    common::must("setcap", &["cap_net_raw+ep", cap.to_str().unwrap()]);
    common::write_file(&src.join("later"), b"later\n");

    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"hollow\"",
    );
    let (config, _mail) = client.config_for(&server);
    let staged = server.staging.join("web1");
    client.run(&config, &[]).code(code::OK);
    assert_eq!(state(&server), usage(&staged));
    let restored = server.restore_latest("restored-1").join(client.staged());
    assert!(acl(&src.join("acl")).contains("user:65534:rw-"));
    assert_eq!(acl(&src.join("acl")), acl(&restored.join("acl")));
    assert_eq!(
        common::xattrs(&restored.join("noted")).get(&b"user.note"[..]),
        Some(&b"kept".to_vec())
    );
    let caps = common::must("getcap", &["-r", restored.to_str().unwrap()]);
    assert!(
        caps.contains("captrue") && caps.contains("cap_net_raw=ep"),
        "{caps}"
    );

    // The capability taken off, an ACL and a user xattr put on unchanged files.
    common::must("setcap", &["-r", cap.to_str().unwrap()]);
    common::must(
        "setfacl",
        &["-m", "u:65534:r", src.join("later").to_str().unwrap()],
    );
    assert!(common::set_xattr(&src.join("later"), "user.later", b"on"));
    // A forged figure shows whether prepare believed the state.
    let path = server.staging.join(".leases/web1.staging.json");
    std::fs::write(
        &path,
        br#"{"version":1,"apparent":123456789,"allocated":4096}"#,
    )
    .unwrap();
    let run = client.run(&config, &["--print"]);
    run.code(code::OK);
    let answer = prepared(&run.stdout_str());
    assert_eq!(answer["staging_bytes"], 123456789, "{answer:#}");
    assert_eq!(
        state(&server),
        usage(&staged),
        "complete recorded staging anew"
    );
    let restored = server.restore_latest("restored-2").join(client.staged());
    let caps = common::must("getcap", &["-r", restored.to_str().unwrap()]);
    assert_eq!(caps.trim(), "", "a removed capability came back");
    assert_eq!(acl(&src.join("later")), acl(&restored.join("later")));
    assert_eq!(
        common::xattrs(&restored.join("later")).get(&b"user.later"[..]),
        Some(&b"on".to_vec())
    );

    // A quota: the state's figures are not believed.
    let text = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, format!("{text}quota = 100000\n")).unwrap();
    common::write_file(&staged.join("left-over"), &common::pattern(1, 300_000));
    std::fs::write(&path, br#"{"version":1,"apparent":0,"allocated":0}"#).unwrap();
    let run = client.run(&config, &["--print"]);
    assert_ne!(run.code, code::OK, "{}", run.stdout_str());
    let report = run.stdout_str();
    assert!(
        report.contains("skipped: prepare failed"),
        "prepare itself refused: {report}"
    );
    assert!(
        report.contains("bytes, over its quota of 100000"),
        "{report}"
    );
}
