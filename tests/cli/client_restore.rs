//! A client restores its own sessions (`rsbackup restore --config client.toml`), decrypting on
//! the client, through the real sshd and the forced command `serve restore-fetch`; and what the
//! server refuses it: another client's session or chunk, a client without the permission, from
//! another address, or without a restore-recipient.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rsbackup::ids::ChunkId;
use rsbackup::restore_fetch::wire::{Message, PROTOCOL_VERSION, code};

use crate::common::{self, CompareOptions, Run, arg, rsbackup};
use crate::push_client::known_hosts;
use crate::push_server::{ANY, MACHINE, Server};

/// Exit code of `serve` for a refused request.
const REFUSED: i32 = 16;

/// The commands of a client that pushes and restores.
const PUSH_AND_RESTORE: &str =
    "commands = [\"prepare\", \"upload\", \"complete\", \"sessions\", \"restore\"]";

/// `rsbackup keygen` into `dir/NAME.txt`: (identity file, recipient).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.txt"));
    let run = rsbackup([arg("keygen"), arg("--output"), arg(&path)]);
    run.ok();
    (path, common::recipient_from_keygen(&run.stdout_str()))
}

/// The `[clients.NAME]` body: any time, from 127.0.0.1, purge staging, `extra`; the machine
/// the `rsbackup` client states (from its machine-id file) is accepted beside the harness's.
fn body(extra: &str) -> String {
    format!("{ANY}\nstaging-mode = \"purge\"\non-new-machine = \"accept\"\n{extra}")
}

/// A server whose only client web1 may push and restore, with a restore-recipient whose
/// identity is returned (in the returned directory); `body_of` makes its `[clients.web1]` body
/// around those two settings.
fn restoring_web1(body_of: impl Fn(&str) -> String) -> (tempfile::TempDir, PathBuf, Server) {
    let keys = common::tempdir();
    let (identity, recipient) = keygen(keys.path(), "web1");
    let s = Server::start(
        &[(
            "web1",
            Some(&body_of(&format!(
                "{PUSH_AND_RESTORE}\nrestore-recipient = {recipient:?}"
            ))),
        )],
        None,
    );
    (keys, identity, s)
}

/// client.toml of `client` for the harness server (its key, the sshd's host key).
fn client_toml(s: &Server, client: &str) -> PathBuf {
    let dir = s.dir.path().join(format!("client-{client}"));
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("machine-id"), format!("{MACHINE}\n")).unwrap();
    let known = known_hosts(&s.sshd, &dir);
    let text = format!(
        "name = {client:?}\nsources = [\"/nonexistent\"]\nmachine-id-file = {:?}\n\
         state-dir = {:?}\n\n[server]\nhost = \"127.0.0.1\"\nport = {}\nuser = {:?}\n\
         ssh-key = {:?}\nknown-hosts = {:?}\n\n[mail]\nfrom = \"rsbackup@client.test\"\n\
         errors-to = [\"errors@example.org\"]\nreports-to = [\"reports@example.org\"]\n\
         transport = \"directory\"\ndirectory = {:?}\n",
        dir.join("machine-id").display().to_string(),
        dir.join("state").display().to_string(),
        s.sshd.port,
        s.sshd.user(),
        s.key(client).private.display().to_string(),
        known.display().to_string(),
        dir.display().to_string(),
    );
    let path = dir.join("client.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `rsbackup restore --config CONFIG --identity IDENTITY ARGS`.
fn client_restore(config: &Path, identity: &Path, args: &[&str]) -> Run {
    let mut argv = vec![
        arg("restore"),
        arg("--config"),
        arg(config),
        arg("--identity"),
        arg(identity),
    ];
    argv.extend(args.iter().map(arg));
    rsbackup(argv)
}

/// A raw `restore-fetch` connection as `client`: send `requests` in turn, one answer each, and
/// return the answers (up to the first `Error`) and ssh's exit code.
fn raw_fetch(s: &Server, client: &str, requests: &[Message]) -> (Vec<Message>, Option<i32>) {
    let mut child = s
        .ssh_command(client, "restore-fetch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ssh");
    let mut conn = rsbackup::restore_fetch::wire::Conn::new(
        child.stdout.take().unwrap(),
        child.stdin.take().unwrap(),
    );
    let mut answers = Vec::new();
    for request in std::iter::once(Message::Hello(PROTOCOL_VERSION)).chain(requests.to_vec()) {
        conn.send(&request).unwrap();
        let answer = conn.recv().unwrap();
        let failed = matches!(answer, Message::Error { .. });
        answers.push(answer);
        if failed {
            break;
        }
    }
    drop(conn);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (answers, status.code())
}

/// The manifest chunk ids of `session`, from the index.
fn root_of(s: &Server, session: i64) -> Vec<ChunkId> {
    let db = rusqlite::Connection::open(s.repo.repo.join("index.db")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT c.id FROM session_manifest m JOIN chunks c ON c.num = m.chunk \
             WHERE m.session = ?1 ORDER BY m.seq",
        )
        .unwrap();
    stmt.query_map([session], |r| Ok(ChunkId(r.get(0)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// A data chunk `session` holds (named by one of its manifest chunks).
fn data_chunk_of(s: &Server, session: i64) -> ChunkId {
    let db = rusqlite::Connection::open(s.repo.repo.join("index.db")).unwrap();
    db.query_row(
        "SELECT c.id FROM session_manifest m JOIN chunk_refs r ON r.parent = m.chunk \
         JOIN chunks c ON c.num = r.child WHERE m.session = ?1 LIMIT 1",
        [session],
        |r| Ok(ChunkId(r.get(0)?)),
    )
    .unwrap()
}

/// A push, then the client's own restore of the whole session and of some paths: equal to the
/// source, content and metadata; the administrator's restore of the same session too; the
/// client's listing names it; every request audited as allowed.
#[test]
fn a_client_restores_its_own_session_equal_to_the_source() {
    let (_keys, identity, s) = restoring_web1(body);
    let src = s.dir.path().join("src");
    let tree = common::sample_tree(&src);
    let session = s.push("web1", &src, &[])["session"].as_i64().unwrap();
    let config = client_toml(&s, "web1");

    let target = s.dir.path().join("restored");
    let run = client_restore(
        &config,
        &identity,
        &["--session", "latest", "--target", target.to_str().unwrap()],
    );
    run.ok();
    assert!(
        run.stdout_str()
            .contains(&format!("restored session {session} into")),
        "{}",
        run.stdout_str()
    );
    let opts = CompareOptions {
        root_meta: false,
        xattrs: tree.xattrs,
        ..Default::default()
    };
    let diffs = common::compare_trees_with(&src, &target, &opts);
    assert!(
        diffs.is_empty(),
        "client restore differs:\n{}",
        diffs.join("\n")
    );

    // A subset: one directory and one file, nothing else.
    let part = s.dir.path().join("part");
    client_restore(
        &config,
        &identity,
        &[
            "--session",
            &session.to_string(),
            "--target",
            part.to_str().unwrap(),
            "docs",
            "links/second",
        ],
    )
    .ok();
    let mut top: Vec<String> = std::fs::read_dir(&part)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["docs", "links"]);
    let diffs = common::compare_trees_with(&src.join("docs"), &part.join("docs"), &opts);
    assert!(diffs.is_empty(), "docs differs:\n{}", diffs.join("\n"));
    assert_eq!(
        std::fs::read(part.join("links/second")).unwrap(),
        std::fs::read(src.join("links/original")).unwrap()
    );
    assert_eq!(std::fs::read_dir(part.join("links")).unwrap().count(), 1);

    // The administrator reads the client's scope as well.
    s.restore_equals(session, &src);

    // A session stored outside the client's scope (a direct ingest on the server) is the
    // administrator's to restore: the client is told so.
    let outside = s.repo.ingest("web1", &src.join("docs"));
    client_restore(
        &config,
        &identity,
        &[
            "--session",
            &outside.to_string(),
            "--target",
            s.dir.path().join("outside").to_str().unwrap(),
        ],
    )
    .fails_with(
        6,
        &[
            "is not wrapped to this identity",
            "restores it on the server",
        ],
    );

    let list = rsbackup([arg("restore"), arg("--config"), arg(&config), arg("--list")]);
    assert!(
        list.stdout_str().contains(&format!("{outside} ")),
        "{}",
        list.stdout_str()
    );
    list.ok();
    assert!(
        list.stdout_str()
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{session} "))),
        "{}",
        list.stdout_str()
    );
    let audit = s.audit();
    let fetches: Vec<_> = audit.iter().filter(|r| r[2] == "restore-fetch").collect();
    assert_eq!(fetches.len(), 4, "{audit:?}");
    assert!(fetches.iter().all(|r| r[3] == "allow" && r[0] == "web1"));
    assert!(s.smtp().messages().is_empty(), "nothing was refused");
}

/// `restore --config --to-original-paths`: the session's sources come from the server (protocol
/// version 2), each source lands at its own path under the target, and a session recorded
/// before full paths is refused with the reason.
#[test]
fn a_client_restores_to_the_original_paths_its_session_recorded() {
    let (_keys, identity, s) = restoring_web1(body);
    let src = s.dir.path().join("src");
    common::sample_tree(&src);
    let config = client_toml(&s, "web1");

    // Pushed without full paths: no sources record.
    let old = s.push("web1", &src, &[])["session"].as_i64().unwrap();
    client_restore(
        &config,
        &identity,
        &[
            "--session",
            &old.to_string(),
            "--to-original-paths",
            "--target",
            s.dir.path().join("old").to_str().unwrap(),
        ],
    )
    .fails_with(2, &["recorded before sessions kept full paths"]);

    // Pushed with full paths: `docs` is the source /docs.
    let prepared = s.json("web1", "prepare");
    assert_eq!(prepared["ok"], true, "{prepared}");
    assert!(s.rsync("web1", &src, &[]).status.success());
    let done = s.json("web1", "complete rsync-exit=0 paths=full sources=docs");
    let session = done["session"].as_i64().unwrap();
    let target = s.dir.path().join("restored");
    let run = client_restore(
        &config,
        &identity,
        &[
            "--session",
            "latest",
            "--to-original-paths",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    run.ok();
    assert!(
        run.stdout_str()
            .contains(&format!("/docs -> {}", target.join("docs").display())),
        "{}",
        run.stdout_str()
    );
    let diffs = common::compare_trees_with(
        &src.join("docs"),
        &target.join("docs"),
        &CompareOptions {
            root_meta: false,
            xattrs: false,
            ..Default::default()
        },
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let top: Vec<_> = std::fs::read_dir(&target).unwrap().collect();
    assert_eq!(top.len(), 1, "only the source docs: {top:?}");
    assert!(session > old);
}

/// A copy of the client's key on another machine (a clone, or a thief with the key) cannot
/// restore the client's sessions while `on-new-machine = "refuse"`: refused (exit 16), audited
/// with the machine, nothing sent. The administrator's `accept-machine` for a rebuilt machine
/// lets it restore.
#[test]
fn a_new_machine_restores_only_once_the_administrator_accepts_it() {
    let (_keys, identity, s) = restoring_web1(|extra| {
        format!("{ANY}\nstaging-mode = \"purge\"\non-new-machine = \"refuse\"\n{extra}")
    });
    let src = s.dir.path().join("src");
    common::sample_tree(&src);
    // The push records the harness's machine as web1's.
    let session = s.push("web1", &src, &[])["session"].as_i64().unwrap();
    // The restoring machine states another machine id (its machine-id file).
    let config = client_toml(&s, "web1");
    let target = s.dir.path().join("restored");
    let run = client_restore(
        &config,
        &identity,
        &["--session", "latest", "--target", target.to_str().unwrap()],
    );
    run.fails_with(REFUSED, &["refused restore-fetch"]);
    assert!(
        !target.join("docs").exists(),
        "a refused restore wrote something"
    );
    let audit = s.audit();
    let last = audit.last().unwrap();
    assert_eq!((last[0].as_str(), last[3].as_str()), ("web1", "refuse"));
    assert!(
        last[4].contains("is not a machine recorded for this client"),
        "{last:?}"
    );

    let machine = rsbackup::client::identity::machine_id_from(MACHINE, Path::new("machine-id"))
        .unwrap()
        .to_string();
    rsbackup([
        arg("accept-machine"),
        arg("--config"),
        arg(&s.config),
        arg("--client"),
        arg("web1"),
        arg("--machine"),
        arg(&machine),
    ])
    .ok();
    client_restore(
        &config,
        &identity,
        &[
            "--session",
            &session.to_string(),
            "--target",
            target.to_str().unwrap(),
        ],
    )
    .ok();
    let diffs = common::compare_trees_with(
        &src,
        &target,
        &CompareOptions {
            root_meta: false,
            xattrs: false,
            ..Default::default()
        },
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// web1 and web2 each have their own scope and push the same tree: no chunk is shared, and
/// web1 asking over the wire for web2's session or for a chunk only web2's session holds is
/// refused, audited with the reason, mailed, and ends the connection.
#[test]
fn a_client_asking_for_another_clients_session_or_chunk_is_refused() {
    let keys = common::tempdir();
    let (_, r1) = keygen(keys.path(), "web1");
    let (_, r2) = keygen(keys.path(), "web2");
    let b1 = body(&format!("{PUSH_AND_RESTORE}\nrestore-recipient = {r1:?}"));
    let b2 = body(&format!("{PUSH_AND_RESTORE}\nrestore-recipient = {r2:?}"));
    let s = Server::start(&[("web1", Some(&b1)), ("web2", Some(&b2))], None);
    let src = s.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    common::write_file(&src.join("same.bin"), &common::pattern(5, 300_000));
    let one = s.push("web1", &src, &[])["session"].as_i64().unwrap();
    let two = s.push("web2", &src, &[])["session"].as_i64().unwrap();
    // The same content stored twice, once in each scope.
    let (c1, c2) = (data_chunk_of(&s, one), data_chunk_of(&s, two));
    assert_ne!(c1, c2, "two scopes share a chunk");

    // Its own: fine.
    let (answers, status) = raw_fetch(
        &s,
        "web1",
        &[
            Message::ListSessions,
            Message::GetRoot(one),
            Message::GetChunks(vec![c1]),
        ],
    );
    assert_eq!(status, Some(0), "{answers:?}");
    match &answers[1] {
        Message::SessionList(list) => {
            assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), [one]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(answers[2], Message::Root(root_of(&s, one)));
    match &answers[3] {
        Message::Chunks { keys, chunks } => {
            assert_eq!(keys.len(), 1);
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0].id, c1);
        }
        other => panic!("{other:?}"),
    }

    // Another client's session, then a chunk only the other client's session holds.
    for (request, why) in [
        (
            Message::GetRoot(two),
            format!("asked for session {two}, which is client web2's"),
        ),
        (
            Message::GetChunks(vec![c2]),
            format!("asked for chunk {c2}, which no session of client web1 holds"),
        ),
        (
            Message::GetSources(two),
            format!("asked for session {two}, which is client web2's"),
        ),
    ] {
        let (answers, status) = raw_fetch(&s, "web1", &[request]);
        assert_eq!(status, Some(REFUSED), "{answers:?}");
        assert!(
            matches!(
                answers.last(),
                Some(Message::Error { code: c, .. }) if *c == code::REFUSED
            ),
            "{answers:?}"
        );
        let audit = s.audit();
        let last = audit.last().unwrap();
        assert_eq!(last[0], "web1");
        assert_eq!(last[3], "refuse", "{audit:?}");
        assert!(last[4].contains(&why), "{last:?} lacks {why}");
    }
    let mails: Vec<String> = s
        .smtp()
        .wait_for(2, Duration::from_secs(15))
        .iter()
        .map(|m| m.replace("=\n", "").replace("=3D", "="))
        .collect();
    assert!(
        mails.iter().any(|m| m.contains("which is client web2's")),
        "{mails:?}"
    );
    assert!(
        mails
            .iter()
            .any(|m| m.contains("no session of client web1 holds"))
    );

    // The client's own restore command refuses a session id that is not its own.
    let config = client_toml(&s, "web1");
    client_restore(
        &config,
        &keys.path().join("web1.txt"),
        &[
            "--session",
            &two.to_string(),
            "--target",
            s.dir.path().join("t").to_str().unwrap(),
        ],
    )
    .fails_with(11, &["is not one of client web1's sessions"]);
}

/// Refused before anything is read: no `restore` in its commands, from an address not in its
/// addresses, no restore-recipient; each audited with its reason; `rsbackup restore --config`
/// says the server refused.
#[test]
fn clients_without_the_permission_address_or_recipient_are_refused() {
    let keys = common::tempdir();
    let (id_a, ra) = keygen(keys.path(), "nope");
    let (_, rb) = keygen(keys.path(), "web1");
    let s = Server::start(
        &[
            // Every command but restore.
            ("nope", Some(&body(&format!("restore-recipient = {ra:?}")))),
            (
                "web1",
                Some(&body(&format!(
                    "{PUSH_AND_RESTORE}\nrestore-recipient = {rb:?}"
                ))),
            ),
            ("norecipient", Some(&body(PUSH_AND_RESTORE))),
        ],
        None,
    );
    let config = client_toml(&s, "nope");
    client_restore(&config, &id_a, &["--list"]).fails_with(16, &["refused restore-fetch"]);
    let out = s.ssh("web1", Some("127.0.0.2"), "restore-fetch");
    assert_eq!(out.status.code(), Some(REFUSED));
    let out = s.ssh("norecipient", None, "restore-fetch");
    assert_eq!(out.status.code(), Some(REFUSED));
    let audit = s.audit();
    let want = [
        ("nope", "command restore is not in its commands"),
        ("web1", "address 127.0.0.2 is not in its addresses"),
        ("norecipient", "restore-fetch needs a restore-recipient"),
    ];
    assert_eq!(audit.len(), want.len(), "{audit:?}");
    for (row, (client, why)) in audit.iter().zip(want) {
        assert_eq!(row[0], client);
        assert_eq!(row[2], "restore-fetch");
        assert_eq!(row[3], "refuse");
        assert!(row[4].contains(why), "{row:?} lacks {why}");
    }
}

/// A new `restore-recipient` in server.toml and `key rewrap --config server.toml`: the client's
/// keys follow it, its old identity opens nothing (exit 6, saying why), the new one restores.
#[test]
fn rewrap_with_the_server_config_moves_a_clients_keys_to_its_new_recipient() {
    let keys = common::tempdir();
    let (old, r_old) = keygen(keys.path(), "old");
    let (new, r_new) = keygen(keys.path(), "new");
    let s = Server::start(
        &[(
            "web1",
            Some(&body(&format!(
                "{PUSH_AND_RESTORE}\nrestore-recipient = {r_old:?}"
            ))),
        )],
        None,
    );
    let src = s.dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    common::write_file(&src.join("d/f.bin"), &common::pattern(3, 100_000));
    s.push("web1", &src, &[]);
    let config = client_toml(&s, "web1");
    let restore_with = |identity: &Path, name: &str| {
        let target = s.dir.path().join(name);
        let run = client_restore(
            &config,
            identity,
            &["--session", "latest", "--target", target.to_str().unwrap()],
        );
        (run, target)
    };
    restore_with(&old, "before").0.ok();

    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, text.replace(&r_old, &r_new)).unwrap();
    let run = rsbackup([
        arg("key"),
        arg("rewrap"),
        arg("--repo"),
        arg(&s.repo.repo),
        arg("--identity"),
        arg(&s.repo.identity),
        arg("--config"),
        arg(&s.config),
    ]);
    run.ok();
    assert!(
        run.stdout_str().contains(&format!(
            "client web1's own keys are also wrapped to {r_new}"
        )),
        "{}",
        run.stdout_str()
    );
    let list = rsbackup([arg("key"), arg("list"), arg("--repo"), arg(&s.repo.repo)]);
    list.ok();
    assert!(
        list.stdout_str()
            .contains(&format!("{r_new} (client web1's own sessions only)")),
        "{}",
        list.stdout_str()
    );
    assert!(!list.stdout_str().contains(&r_old));
    restore_with(&old, "old")
        .0
        .fails_with(6, &["is not wrapped to this identity"]);
    let (run, target) = restore_with(&new, "new");
    run.ok();
    assert_eq!(
        std::fs::read(target.join("d/f.bin")).unwrap(),
        common::pattern(3, 100_000)
    );
}
