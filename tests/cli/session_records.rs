//! Integration tests: what a session record keeps across `repair index`: a partial session's
//! reason, and the ids of sessions forgotten before the rebuild (never handed out again).

use std::fs;
use std::path::Path;

use crate::common::*;

fn repair_index(repo: &Path) {
    rsbackup([arg("repair"), arg("index"), arg("--repo"), arg(repo)]).ok();
}

fn sessions(t: &TestRepo) -> serde_json::Value {
    let run = t.run("sessions", &["--json"]);
    run.ok();
    run.json()
}

#[test]
fn a_rebuilt_index_keeps_the_reason_and_never_reuses_a_forgotten_id() {
    let t = TestRepo::new();
    let src = t.path("src");
    sample_tree(&src);
    let first = t.ingest("web", &src);
    let second = t.ingest("web", &src);
    let third = t.ingest("db", &src);
    assert!(first < second && second < third);

    // The first session made partial with a reason (as a client's rsync exit 23 does), and
    // pinned.
    t.mark_partial(first, "rsync exit 23: files vanished");
    t.run("pin", &["--session", &first.to_string()]).ok();

    // The newest session forgotten the way forget does it: rows, then record.
    let db = rusqlite::Connection::open(t.repo.join("index.db")).unwrap();
    db.execute("DELETE FROM session_manifest WHERE session = ?1", [third])
        .unwrap();
    db.execute("DELETE FROM sessions WHERE id = ?1", [third])
        .unwrap();
    drop(db);
    fs::remove_file(t.repo.join(format!("sessions/{third:020}.session"))).unwrap();
    assert_eq!(
        fs::read_to_string(t.repo.join("sessions/last-id")).unwrap(),
        format!("{third}\n")
    );

    fs::remove_file(t.repo.join("index.db")).unwrap();
    repair_index(&t.repo);
    let listed = sessions(&t);
    let got = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == first)
        .unwrap_or_else(|| panic!("session {first} not rebuilt: {listed}"));
    assert_eq!(got["state"], "partial", "{got}");
    assert_eq!(got["reason"], "rsync exit 23: files vanished", "{got}");
    assert_eq!(got["pinned"], true, "{got}");
    assert_eq!(t.check_run(true, false).code, 0);

    let next = t.ingest("db", &src);
    assert!(
        next > third,
        "session id {next} handed out again after the rebuild (forgotten: {third})"
    );
}
