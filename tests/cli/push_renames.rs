//! `prepare renames` through the real parts: the server makes the client's moves in hollow
//! staging before rsync compares, so a renamed directory costs its file list, not its bytes;
//! and a wrong or forged list costs bandwidth only, never a wrong session.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use rsbackup::format::rename_list::{Rename, encode};

use crate::common;
use crate::push_server::{ANY, Server};

fn r(from: &str, to: &str) -> Rename {
    Rename::new(from, to)
}

/// `prepare renames` with `list` on standard input; the answer.
fn prepare_with(s: &Server, list: &[u8]) -> serde_json::Value {
    let mut child = s
        .ssh_command("web1", "prepare renames")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(list).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prepare renames: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.sshd.log()
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["ok"], true, "{answer:#}");
    answer
}

/// rsync then complete after a prepare; (rsync's `Total bytes sent`, complete's answer).
fn upload_and_complete(s: &Server, src: &Path) -> (u64, serde_json::Value) {
    let out = s.rsync("web1", src, &["--whole-file"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rsync: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = text
        .lines()
        .find_map(|l| l.strip_prefix("Total bytes sent: "))
        .map(|n| n.replace(',', "").trim().parse::<u64>().unwrap())
        .unwrap_or_else(|| panic!("no Total bytes sent in {text}"));
    let done = s.json("web1", "complete rsync-exit=0");
    assert_eq!(done["state"], "complete", "{done:#}");
    (sent, done)
}

/// A hollow server whose client web1 pushed [`tree`] once; (server, source).
fn pushed_once() -> (Server, std::path::PathBuf) {
    let body = format!("{ANY}\nstaging-mode = \"hollow\"");
    let s = Server::start(&[("web1", Some(&body))], None);
    let src = s.dir.path().join("src");
    tree(&src);
    let done = s.push("web1", &src, &["--whole-file"]);
    s.restore_equals(done["session"].as_i64().unwrap(), &src);
    (s, src)
}

fn tree(src: &Path) {
    common::sample_tree(src);
    std::fs::create_dir_all(src.join("big/inner")).unwrap();
    for i in 0..4u8 {
        common::write_file(
            &src.join(format!("big/inner/f{i}")),
            &common::pattern(i, 1 << 20),
        );
    }
    common::write_file(&src.join("one"), &common::text(1, 3000));
    common::write_file(&src.join("two"), &common::text(2, 5000));
    common::set_times_bottom_up(src, 1_700_000_000);
}

/// A renamed directory of 4 MiB in hollow staging: with the rename sent to prepare, the push
/// sends under 1% of its bytes and the session restores equal; placeholder rows moved with it.
#[test]
fn a_renamed_directory_travels_as_a_rename() {
    let (s, src) = pushed_once();

    std::fs::rename(src.join("big"), src.join("moved")).unwrap();
    let answer = prepare_with(&s, &encode(&[r("big", "moved")]));
    assert_eq!(answer["renames"]["applied"], 1, "{answer:#}");
    // The count is audited beside the request's own row.
    let rows = common::audit_rows(&s.repo.repo);
    assert!(
        rows.iter().any(|r| r[0] == "web1"
            && r[3] == "allow"
            && r[4].starts_with("prepare renames: 1 sent, 1 applied, 0 skipped")),
        "{rows:?}"
    );
    assert!(
        answer["renames"]["rows_moved"].as_u64().unwrap() >= 4,
        "{answer:#}"
    );
    let (sent, done) = upload_and_complete(&s, &src);
    eprintln!("renamed 4 MiB directory: rsync sent {sent} bytes");
    assert!(
        sent < (4 << 20) / 100,
        "sent {sent} bytes for a renamed 4 MiB directory"
    );
    assert_eq!(done["files_read"], 0, "{done:#}");
    s.restore_equals(done["session"].as_i64().unwrap(), &src);
}

/// A wrong or forged list: swapped names, a rename onto an existing path, `..` and absolute
/// paths (refused whole as a list), a symlink in staging pointing outside. The session still
/// restores equal, and nothing outside staging is touched.
#[test]
fn a_wrong_rename_list_costs_bandwidth_never_correctness() {
    let (s, src) = pushed_once();
    let staged = s.staging.join("web1");
    let outside = s.dir.path().join("outside");
    std::fs::create_dir_all(outside.join("victim")).unwrap();
    std::fs::write(outside.join("victim/f"), b"not yours").unwrap();
    // As if an earlier run had left a symlink in staging (rsync munges the ones it writes).
    std::os::unix::fs::symlink(&outside, staged.join("link")).unwrap();

    // Swapped names (through a free name), a rename onto an existing path, moves through and
    // onto the symlink.
    let forged = encode(&[
        r("one", "tmp"),
        r("two", "one"),
        r("tmp", "two"),
        r("big", "one"),
        r("link/victim", "stolen"),
        r("big/inner", "link/inner"),
    ]);
    let answer = prepare_with(&s, &forged);
    assert_eq!(answer["renames"]["applied"], 3, "{answer:#}");
    assert_eq!(answer["renames"]["skipped_count"], 3, "{answer:#}");
    let (_, done) = upload_and_complete(&s, &src);
    s.restore_equals(done["session"].as_i64().unwrap(), &src);
    assert_eq!(
        std::fs::read(outside.join("victim/f")).unwrap(),
        b"not yours"
    );
    assert!(!outside.join("inner").exists());

    // A list with `..` or an absolute path is refused as a whole; the run goes on.
    for bad in [&b"../escape"[..], b"/etc/passwd"] {
        let mut bytes = rsbackup::format::rename_list::RENAME_LIST_MAGIC.to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        for p in [bad, b"x"] {
            bytes.extend_from_slice(&(p.len() as u16).to_le_bytes());
            bytes.extend_from_slice(p);
        }
        let answer = prepare_with(&s, &bytes);
        assert!(
            answer["renames"]["error"]
                .as_str()
                .unwrap()
                .contains("not a relative path"),
            "{answer:#}"
        );
        let (_, done) = upload_and_complete(&s, &src);
        s.restore_equals(done["session"].as_i64().unwrap(), &src);
    }
    assert_eq!(
        std::fs::read(outside.join("victim/f")).unwrap(),
        b"not yours"
    );
}
