//! `rsbackup mirror` over real ssh: sshd on loopback with the `mirror-serve` forced command,
//! two repositories, and the binary on both sides; the offsite box audits into its own
//! repository and mails refusals through a real SMTP server on loopback.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    TestRepo, arg, assert_trees_equal, audit_rows, pattern, require_root, rsbackup, write_file,
};
use crate::smtp::Smtp;
use crate::sshd::{SshKey, Sshd};

/// Exit code of a refused forced command (`serve`, `mirror-serve`).
const REFUSED: i32 = crate::common::exit::REFUSED;
const REFUSAL: &str = "rsbackup: request refused; the administrator has been notified";

/// A primary repository, an offsite box (its own server.toml, its own repository that holds its
/// audit table, the mirror repository, an SMTP server for its alerts) reached through sshd, and
/// the primary's server.toml naming it as `offsite`.
pub(crate) struct Setup {
    pub(crate) primary: TestRepo,
    sshd: Sshd,
    pub(crate) mirror: PathBuf,
    mirror_config: PathBuf,
    pub(crate) primary_config: PathBuf,
    key: SshKey,
    /// The offsite box's own repository (`repository` of its server.toml).
    own: PathBuf,
    /// The offsite box's mail server.
    smtp: Smtp,
}

fn mail_toml(dir: &Path) -> String {
    format!(
        "[mail]\nfrom = \"rsbackup@example.org\"\nadmin = [\"root@example.org\"]\n\
         transport = \"directory\"\ndirectory = {:?}\n",
        dir.display().to_string()
    )
}

/// The `authorized_keys` line forcing `mirror-serve --mirror-of NAME` for `key`.
fn mirror_serve_line(config: &Path, mirror_of: &str, key: &SshKey) -> String {
    format!(
        "command=\"{} mirror-serve --config {} --mirror-of {mirror_of}\",restrict {}\n",
        env!("CARGO_BIN_EXE_rsbackup"),
        config.display(),
        key.public
    )
}

/// Every file below `root` with its size, mtime and content: equal snapshots mean nothing was
/// written, created or removed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                dirs.push(path.clone());
                Vec::new()
            } else {
                std::fs::read(&path).unwrap()
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (meta.len(), meta.mtime(), meta.mtime_nsec(), content),
            );
        }
    }
    out
}

impl Setup {
    pub(crate) fn new(follow_deletes: bool) -> Setup {
        let primary = TestRepo::new();
        let box_dir = primary.path("offsite");
        std::fs::create_dir_all(&box_dir).unwrap();
        let own = box_dir.join("own-repo");
        rsbackup([
            arg("init"),
            arg("--repo"),
            arg(&own),
            arg("--recipient"),
            arg(&primary.recipient),
        ])
        .ok();
        let smtp = Smtp::start();
        let mirror = box_dir.join("mirror-repo");
        let mirror_config = box_dir.join("server.toml");
        std::fs::write(
            &mirror_config,
            format!(
                "repository = {:?}\nstaging-root = {:?}\naudit-log = {:?}\nalert-state = {:?}\n\
                 alert-coalesce-minutes = 0\n{}\
                 [mirror-of.main]\nrepository = {:?}\naddresses = [\"127.0.0.1\"]\n\
                 follow-deletes = {follow_deletes}\n",
                own.display().to_string(),
                box_dir.join("staging").display().to_string(),
                box_dir.join("audit.log").display().to_string(),
                box_dir.join("alert-state.json").display().to_string(),
                smtp.mail_toml("rsbackup@mirror.test", "admin", &["admin@mirror.test"]),
                mirror.display().to_string()
            ),
        )
        .unwrap();
        let key = SshKey::generate(primary.dir.path(), "mirror_key");
        let sshd = Sshd::start(&mirror_serve_line(&mirror_config, "main", &key));
        let primary_config = primary.path("server.toml");
        std::fs::create_dir_all(primary.path("mail")).unwrap();
        std::fs::write(
            &primary_config,
            format!(
                "repository = {:?}\nstaging-root = \"/srv/staging\"\n{}\
                 [mirrors.offsite]\nhost = \"127.0.0.1\"\nport = {}\nuser = {:?}\n\
                 ssh-key = {:?}\nssh-options = [\"StrictHostKeyChecking=no\", \
                 \"UserKnownHostsFile=/dev/null\", \"LogLevel=ERROR\"]\n",
                primary.repo.display().to_string(),
                mail_toml(&primary.path("mail")),
                sshd.port,
                sshd.user(),
                key.private.display().to_string()
            ),
        )
        .unwrap();
        Setup {
            primary,
            sshd,
            mirror,
            mirror_config,
            primary_config,
            key,
            own,
            smtp,
        }
    }

    /// The offsite box's audit rows.
    pub(crate) fn audit(&self) -> Vec<[String; 5]> {
        audit_rows(&self.own)
    }

    /// Wait for at least `n` alert mails from the offsite box; bodies decoded from
    /// quoted-printable (soft line breaks joined, `=3D` as `=`).
    fn mails(&self, n: usize) -> Vec<String> {
        self.smtp
            .wait_for(n, Duration::from_secs(15))
            .iter()
            .map(|m| m.replace("=\n", "").replace("=3D", "="))
            .collect()
    }

    fn mirror_args(&self, extra: &[&str]) -> Vec<std::ffi::OsString> {
        let mut args = vec![
            arg("mirror"),
            arg("--repo"),
            arg(&self.primary.repo),
            arg("--config"),
            arg(&self.primary_config),
            arg("--to"),
            arg("offsite"),
        ];
        args.extend(extra.iter().map(arg));
        args
    }

    /// `mirror --json`; panics (with sshd's log) unless it succeeds.
    pub(crate) fn mirror(&self) -> serde_json::Value {
        let run = rsbackup(self.mirror_args(&["--json"]));
        assert_eq!(
            run.code,
            0,
            "mirror failed: {}\nsshd log:\n{}",
            run.stderr,
            self.sshd.log()
        );
        run.json()
    }

    fn on_mirror(&self, command: &str, extra: &[std::ffi::OsString]) -> crate::common::Run {
        let mut args = vec![arg(command), arg("--repo"), arg(&self.mirror)];
        args.extend(extra.iter().cloned());
        rsbackup(args)
    }
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn tree(root: &Path, seed: u8, files: usize, size: usize) {
    for i in 0..files {
        write_file(
            &root.join(format!("dir{}/file{i}", i % 3)),
            &pattern(seed.wrapping_add(i as u8), size),
        );
    }
}

#[test]
fn first_mirror_then_only_new_chunks_then_restore_on_the_mirror() {
    require_root("sshd must switch to the logging-in user");
    let s = Setup::new(false);
    let src = s.primary.path("src");
    tree(&src, 1, 12, 700_000);
    s.primary.ingest("web", &src);
    let first = s.mirror();
    assert_eq!(first["created"], true);
    assert_eq!(num(&first, "sessions_sent"), 1);
    assert!(
        !s.mirror.join("keys/secret").exists(),
        "a mirror holds no secret"
    );

    // A small change: one new file. Exactly its new chunks travel.
    write_file(&src.join("new/file"), &pattern(200, 1_500_000));
    let ingest = s.primary.ingest_run("web", &src);
    ingest.ok();
    let ingested = ingest.json();
    let n = num(&ingested, "new_stored_bytes");
    let second = s.mirror();
    assert_eq!(second["full_reconcile"], false, "{second}");
    assert_eq!(num(&second, "chunks_sent"), num(&ingested, "new_chunks"));
    assert_eq!(num(&second, "record_bytes_sent"), n);
    let wire = num(&second, "wire_bytes_sent");
    assert!(
        wire <= n * 105 / 100 + 16 * 1024,
        "{wire} bytes on the wire for {n} new bytes"
    );
    assert_eq!(num(&second, "sessions_sent"), 1);

    let listed = s.on_mirror("sessions", &[arg("--json")]);
    listed.ok();
    assert_eq!(listed.json().as_array().map(|a| a.len()), Some(2));
    s.on_mirror("check", &[arg("--read-data")]).ok();
    let target = s.primary.path("restored");
    s.on_mirror(
        "restore",
        &[
            arg("--identity"),
            arg(&s.primary.identity),
            arg("--session"),
            arg("2"),
            arg("--target"),
            arg(&target),
        ],
    )
    .ok();
    assert_trees_equal(&src, &target);
}

fn mirror_chunk_count(mirror: &Path) -> i64 {
    let db = mirror.join("index.db");
    if !db.exists() {
        return 0;
    }
    rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0)))
        .unwrap_or(0)
}

#[test]
fn a_killed_mirror_run_resumes_without_resending() {
    require_root("sshd must switch to the logging-in user");
    let s = Setup::new(false);
    let src = s.primary.path("src");
    tree(&src, 7, 14, 4 << 20);
    s.primary.ingest("web", &src);
    let total_before_kill = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsbackup"))
        .args(s.mirror_args(&["--json"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the primary once the first batch is committed on the mirror.
    let mut arrived = 0;
    while total_before_kill.elapsed() < Duration::from_secs(60) {
        arrived = mirror_chunk_count(&s.mirror);
        if arrived > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(arrived > 0, "no batch arrived before the kill");
    assert!(
        !status.success(),
        "the run finished before the kill; make the tree larger"
    );
    let listed = s.on_mirror("sessions", &[arg("--json")]);
    assert!(
        listed.code != 0 || listed.json().as_array().is_none_or(|a| a.is_empty()),
        "a session is visible before all it needs arrived"
    );
    // The mirror side notices the closed connection, finishes or drops its batch and exits;
    // its writer lock file goes with it.
    let locks = s.mirror.join("locks");
    assert!(
        wait_for(|| std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_none())),
        "mirror-serve did not exit after the primary was killed"
    );
    let arrived = mirror_chunk_count(&s.mirror) as u64;
    let resumed = s.mirror();
    let total = mirror_chunk_count(&s.mirror) as u64;
    assert_eq!(num(&resumed, "chunks_sent") + arrived, total, "{resumed}");
    assert!(num(&resumed, "chunks_sent") < total);
    assert_eq!(num(&resumed, "sessions_sent"), 1);
    s.on_mirror("check", &[arg("--read-data")]).ok();
}

/// Flip a byte inside the largest record of the mirror's first pack.
fn damage_a_record(mirror: &Path) {
    let mut packs = Vec::new();
    for dir in std::fs::read_dir(mirror.join("packs")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let len = std::fs::metadata(&p).unwrap().len();
            packs.push((len, p));
        }
    }
    packs.sort();
    let (len, path) = packs.pop().expect("the mirror has packs");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(len / 2) as usize] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn tampering_on_the_mirror_is_found_and_repaired() {
    require_root("sshd must switch to the logging-in user");
    let s = Setup::new(false);
    let src = s.primary.path("src");
    tree(&src, 3, 4, 900_000);
    s.primary.ingest("web", &src);
    s.mirror();
    damage_a_record(&s.mirror);
    s.on_mirror("check", &[arg("--read-data")])
        .fails_with(3, &["problem"]);
    let repaired = s.mirror();
    assert_eq!(num(&repaired, "repaired"), 1, "{repaired}");
    assert_eq!(num(&repaired, "chunks_sent"), 0);
    s.on_mirror("check", &[arg("--read-data")]).ok();
    s.on_mirror(
        "check",
        &[
            arg("--read-data"),
            arg("--identity"),
            arg(&s.primary.identity),
        ],
    )
    .ok();
}

#[test]
fn an_append_only_mirror_refuses_the_primarys_deletes() {
    require_root("sshd must switch to the logging-in user");
    let s = Setup::new(false);
    let src = s.primary.path("src");
    tree(&src, 5, 2, 300_000);
    s.primary.ingest("web", &src);
    write_file(&src.join("more"), &pattern(99, 300_000));
    s.primary.ingest("web", &src);
    s.mirror();
    s.primary.run("prune", &["--keep-last", "1"]).ok();
    rsbackup(s.mirror_args(&["--follow-deletes"]))
        .fails_with(1, &["append-only", "follow-deletes"]);
    let listed = s.on_mirror("sessions", &[arg("--json")]);
    assert_eq!(listed.json().as_array().map(|a| a.len()), Some(2));
    // The refusal inside the protocol is audited after the connection's own row, and mailed.
    // The primary stops as soon as it reads the refusal; mirror-serve writes the row after
    // sending it, so give it a moment.
    wait_for(|| s.audit().len() >= 3);
    let audit = s.audit();
    let decisions: Vec<&str> = audit.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(decisions, ["allow", "allow", "refuse"], "{audit:#?}");
    assert_eq!(audit[2][0], "mirror-of:main");
    assert_eq!(audit[2][1], "127.0.0.1");
    assert!(
        audit[2][4].contains("is append-only: the primary asked it to forget 1 session(s)"),
        "{:?}",
        audit[2]
    );
    let mails = s.mails(1);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert!(mails[0].contains("is append-only"), "{}", mails[0]);
    // Without asking, the run succeeds and the mirror keeps what the primary rolled off.
    s.mirror();
    let listed = s.on_mirror("sessions", &[arg("--json")]);
    assert_eq!(listed.json().as_array().map(|a| a.len()), Some(2));
}

/// Without sshd: mirror-serve run by hand with `SSH_CONNECTION` and `SSH_ORIGINAL_COMMAND` set
/// as sshd would. The box's `repository` is not a repository here, so the audit lines go to
/// `audit-log`; alerts go to a mail directory.
#[test]
fn mirror_serve_refuses_other_addresses_commands_and_unknown_sections() {
    let s = TestRepo::new();
    let config = s.path("server.toml");
    let audit_log = s.path("audit.log");
    std::fs::create_dir(s.path("mail")).unwrap();
    std::fs::write(
        &config,
        format!(
            "repository = \"/nonexistent/r\"\nstaging-root = \"/srv/s\"\naudit-log = {:?}\n\
             alert-state = {:?}\nalert-coalesce-minutes = 0\n{}\
             [mirror-of.main]\nrepository = {:?}\naddresses = [\"192.0.2.1\"]\n",
            audit_log.display().to_string(),
            s.path("alert-state.json").display().to_string(),
            mail_toml(&s.path("mail")),
            s.path("m").display().to_string()
        ),
    )
    .unwrap();
    let serve = |name: &str, conn: Option<&str>, command: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsbackup"));
        cmd.args([
            arg("mirror-serve"),
            arg("--config"),
            arg(&config),
            arg("--mirror-of"),
            arg(name),
        ])
        .stdin(Stdio::null())
        .env_remove("SSH_CONNECTION")
        .env_remove("SSH_ORIGINAL_COMMAND");
        if let Some(c) = conn {
            cmd.env("SSH_CONNECTION", c);
        }
        if let Some(c) = command {
            cmd.env("SSH_ORIGINAL_COMMAND", c);
        }
        cmd.output().unwrap()
    };
    let primary = Some("192.0.2.1 5555 127.0.0.1 22");
    let attempts = [
        (
            "main",
            Some("198.51.100.9 5555 127.0.0.1 22"),
            Some("rsbackup-mirror"),
            "ip=198.51.100.9 decision=refuse command=\"rsbackup-mirror\" reason=\"mirror-of main: \
             address 198.51.100.9 is not in its addresses (192.0.2.1/32)",
        ),
        (
            "main",
            None,
            Some("rsbackup-mirror"),
            "SSH_CONNECTION is not set",
        ),
        (
            "main",
            primary,
            Some("rsbackup-mirror\nrm -rf /"),
            "command=\"rsbackup-mirror\\nrm -rf /\" reason=\"mirror-of main: unknown command",
        ),
        ("main", primary, None, "no command given"),
        (
            "other",
            primary,
            Some("rsbackup-mirror"),
            "client=mirror-of:other ip=192.0.2.1 decision=refuse",
        ),
    ];
    for (name, conn, command, _) in attempts {
        let out = serve(name, conn, command);
        assert_eq!(out.status.code(), Some(REFUSED), "{name} {conn:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), REFUSAL);
        assert!(out.stdout.is_empty(), "nothing but frames on stdout");
    }
    assert!(
        !s.path("m").exists(),
        "a refused connection creates nothing"
    );
    let log = std::fs::read_to_string(&audit_log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), attempts.len(), "{log}");
    for (line, (.., why)) in lines.iter().zip(attempts) {
        assert!(line.contains(why), "{line:?} lacks {why:?}");
        assert!(line.contains("[index unavailable: "), "{line}");
    }
    let mails: Vec<String> = std::fs::read_dir(s.path("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|m| {
            m.replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
        })
        .collect();
    assert_eq!(mails.len(), attempts.len(), "one alert per refusal");
    assert!(
        mails
            .iter()
            .any(|m| m.contains("address 198.51.100.9 is not in its addresses")),
        "{mails:?}"
    );
}

/// Through sshd, with the primary's real `mirror` runs: a connection from another address, a
/// command other than `rsbackup-mirror`, a connection outside the windows and a key bound to a
/// section that does not exist are each refused with the generic message, leave the mirror
/// repository as it was (not even created by the first), are audited in the box's own index with
/// their reason, and are mailed to the box's administrator. The allowed run is audited too.
#[test]
fn refused_mirror_connections_are_audited_mailed_and_change_nothing() {
    require_root("sshd must switch to the logging-in user");
    let s = Setup::new(false);
    let src = s.primary.path("src");
    tree(&src, 21, 3, 200_000);
    s.primary.ingest("web", &src);
    let primary_toml = std::fs::read_to_string(&s.primary_config).unwrap();
    let box_toml = std::fs::read_to_string(&s.mirror_config).unwrap();

    // From 127.0.0.2, before the mirror exists: the primary's run fails, nothing is created.
    std::fs::write(
        &s.primary_config,
        primary_toml.replace(
            "\"LogLevel=ERROR\"]",
            "\"LogLevel=ERROR\", \"BindAddress=127.0.0.2\"]",
        ),
    )
    .unwrap();
    rsbackup(s.mirror_args(&[])).fails_with(1, &["mirror offsite", REFUSAL]);
    std::fs::write(&s.primary_config, &primary_toml).unwrap();
    assert!(
        !s.mirror.exists(),
        "a refused connection created the mirror"
    );
    assert_eq!(s.mails(1).len(), 1, "no alert for the first refusal");

    // The allowed run, then the mirror must stay exactly as it is.
    assert_eq!(s.mirror()["sessions_sent"], 1);
    let before = snapshot(&s.mirror);

    let out = s.sshd.run(&s.key, None, "rsbackup-mirror; rm -rf /srv");
    assert_eq!(
        out.status.code(),
        Some(REFUSED),
        "{out:?}\n{}",
        s.sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), REFUSAL);
    assert!(out.stdout.is_empty());

    let hour = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .hour();
    let closed = format!(
        "{box_toml}windows = [\"daily {:02}:00-{:02}:00\"]\n",
        (hour + 2) % 24,
        (hour + 3) % 24
    );
    std::fs::write(&s.mirror_config, closed).unwrap();
    rsbackup(s.mirror_args(&[])).fails_with(1, &[REFUSAL]);
    std::fs::write(&s.mirror_config, &box_toml).unwrap();

    s.sshd
        .set_authorized_keys(&mirror_serve_line(&s.mirror_config, "other", &s.key));
    rsbackup(s.mirror_args(&[])).fails_with(1, &[REFUSAL]);

    assert_eq!(snapshot(&s.mirror), before, "a refusal changed the mirror");
    let expected = [
        (
            "mirror-of:main",
            "127.0.0.2",
            "rsbackup-mirror",
            "refuse",
            "mirror-of main: address 127.0.0.2 is not in its addresses (127.0.0.1/32)",
        ),
        (
            "mirror-of:main",
            "127.0.0.1",
            "rsbackup-mirror",
            "allow",
            "mirror-of main: mirror connection allowed from 127.0.0.1",
        ),
        (
            "mirror-of:main",
            "127.0.0.1",
            "rsbackup-mirror; rm -rf /srv",
            "refuse",
            "mirror-of main: unknown command",
        ),
        (
            "mirror-of:main",
            "127.0.0.1",
            "rsbackup-mirror",
            "refuse",
            "is not within its windows",
        ),
        (
            "mirror-of:other",
            "127.0.0.1",
            "rsbackup-mirror",
            "refuse",
            "is not configured in",
        ),
    ];
    let audit = s.audit();
    assert_eq!(audit.len(), expected.len(), "{audit:#?}");
    for (row, want) in audit.iter().zip(expected) {
        assert_eq!(
            [&row[0], &row[1], &row[2], &row[3]],
            [want.0, want.1, want.2, want.3],
            "{row:?}"
        );
        assert!(row[4].contains(want.4), "{row:?} lacks {:?}", want.4);
    }
    let refusals = expected.iter().filter(|r| r.3 == "refuse").count();
    let mails = s.mails(refusals);
    assert_eq!(mails.len(), refusals, "one alert per refusal: {mails:#?}");
    for (.., decision, why) in expected {
        let mailed = mails.iter().any(|m| m.contains(why));
        assert_eq!(
            mailed,
            decision == "refuse",
            "{why:?} in the mails: {mails:#?}"
        );
    }
    assert!(mails.iter().all(|m| m.contains("To: admin@mirror.test")));
    assert!(!std::fs::exists(s.own.parent().unwrap().join("audit.log")).unwrap());
}

/// Wait until `done` or a minute passes.
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn after_complete_runs_detached_and_mails_its_failure() {
    let t = TestRepo::new();
    let src = t.path("src");
    tree(&src, 11, 3, 200_000);
    t.ingest("web", &src);
    let mail = t.path("mail");
    std::fs::create_dir(&mail).unwrap();
    let config = t.path("server.toml");
    std::fs::write(
        &config,
        format!(
            "repository = {:?}\nstaging-root = \"/srv/s\"\n{}",
            t.repo.display().to_string(),
            mail_toml(&mail)
        ),
    )
    .unwrap();
    let exe = crate::common::bin();
    // A local target: the detached run mirrors, with nothing of ours held open.
    let dest = t.path("usb/mirror");
    std::fs::create_dir(t.path("usb")).unwrap();
    let started = Instant::now();
    rsbackup::mirror::spawn_after_complete(&exe, &config, &t.repo, dest.to_str().unwrap()).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "spawning must not wait"
    );
    assert!(
        wait_for(|| {
            let run = rsbackup([arg("sessions"), arg("--repo"), arg(&dest), arg("--json")]);
            run.code == 0 && run.json().as_array().is_some_and(|a| a.len() == 1)
        }),
        "the detached mirror run did not finish"
    );
    assert_eq!(
        std::fs::read_dir(&mail).unwrap().count(),
        0,
        "no mail on success"
    );
    // A target that cannot be reached: the failure arrives by mail.
    rsbackup::mirror::spawn_after_complete(&exe, &config, &t.repo, "/nonexistent/dir/mirror")
        .unwrap();
    assert!(
        wait_for(|| std::fs::read_dir(&mail).unwrap().count() > 0),
        "no failure mail"
    );
    let entry = std::fs::read_dir(&mail).unwrap().next().unwrap().unwrap();
    let text = std::fs::read_to_string(entry.path()).unwrap();
    assert!(
        text.contains("mirror to /nonexistent/dir/mirror failed"),
        "{text}"
    );
}

/// Issue 11 (smaller holes): a primary's key that speaks something other than the mirror
/// protocol (a bad first frame) is audited and mailed as a refusal, after the connection's
/// "allow" row, and the mirror is not created.
#[test]
fn a_primary_that_breaks_the_protocol_is_audited_and_mailed() {
    require_root("sshd must switch to the logging-in user");
    let s = Setup::new(false);
    let mut child = s
        .sshd
        .ssh(&s.key, None, "rsbackup-mirror")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        // A Hello frame (tag 0x01) whose payload is not a Hello.
        stdin
            .write_all(&[3, 0, 0, 0, 0x01, b'x', b'y', b'z'])
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(REFUSED),
        "{out:?}\n{}",
        s.sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), REFUSAL);
    assert!(!s.mirror.exists(), "a broken Hello created the mirror");
    let audit = s.audit();
    let decisions: Vec<&str> = audit.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(decisions, ["allow", "refuse"], "{audit:#?}");
    assert!(
        audit[1][4].contains("mirror-of main: the primary broke the protocol: mirror protocol"),
        "{audit:#?}"
    );
    let mails = s.mails(1);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert!(mails[0].contains("broke the protocol"), "{}", mails[0]);
}

/// Issue 11 (smaller holes): a connection that says nothing is closed after
/// `idle-timeout-seconds`, not held open (with the mirror's lock) for ever.
#[test]
fn an_idle_primary_connection_is_closed() {
    require_root("sshd must switch to the logging-in user");
    let s = Setup::new(false);
    let box_toml = std::fs::read_to_string(&s.mirror_config).unwrap();
    std::fs::write(
        &s.mirror_config,
        format!("{box_toml}idle-timeout-seconds = 2\n"),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = s
        .sshd
        .ssh(&s.key, None, "rsbackup-mirror")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Keep standard input open and silent until the mirror gives up.
    let stdin = child.stdin.take().unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{out:?}\n{}", s.sshd.log());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no message from the primary for 2 s"),
        "{out:?}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The connection was allowed (audited), then dropped: no refusal, no mail.
    let audit = s.audit();
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0][3], "allow");

    // Out of range is a configuration error with its line.
    std::fs::write(
        &s.mirror_config,
        format!("{box_toml}idle-timeout-seconds = 0\n"),
    )
    .unwrap();
    let out = s.sshd.run(&s.key, None, "rsbackup-mirror");
    assert_ne!(out.status.code(), Some(0), "{out:?}");
}
