//! `rsbackup mirror` over real ssh: sshd on loopback with the `mirror-serve` forced command,
//! two repositories, and the binary on both sides.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestRepo, arg, assert_trees_equal, is_root, pattern, rsbackup, write_file};
use crate::sshd::{SshKey, Sshd};

/// A primary repository, an offsite box (its own server.toml and mirror repository) reached
/// through sshd, and the primary's server.toml naming it as `offsite`.
struct Setup {
    primary: TestRepo,
    sshd: Sshd,
    mirror: PathBuf,
    mirror_config: PathBuf,
    primary_config: PathBuf,
    key: SshKey,
}

fn mail_toml(dir: &Path) -> String {
    format!(
        "[mail]\nfrom = \"rsbackup@example.org\"\nadmin = [\"root@example.org\"]\n\
         transport = \"directory\"\ndirectory = {:?}\n",
        dir.display().to_string()
    )
}

impl Setup {
    fn new(follow_deletes: bool) -> Setup {
        let primary = TestRepo::new();
        let box_dir = primary.path("offsite");
        std::fs::create_dir_all(box_dir.join("mail")).unwrap();
        let mirror = box_dir.join("mirror-repo");
        let mirror_config = box_dir.join("server.toml");
        std::fs::write(
            &mirror_config,
            format!(
                "repository = {:?}\nstaging-root = {:?}\n{}\
                 [mirror-of.main]\nrepository = {:?}\naddresses = [\"127.0.0.1\"]\n\
                 follow-deletes = {follow_deletes}\n",
                box_dir.join("own-repo").display().to_string(),
                box_dir.join("staging").display().to_string(),
                mail_toml(&box_dir.join("mail")),
                mirror.display().to_string()
            ),
        )
        .unwrap();
        let key = SshKey::generate(primary.dir.path(), "mirror_key");
        let line = format!(
            "command=\"{} mirror-serve --config {} --mirror-of main\",restrict {}\n",
            env!("CARGO_BIN_EXE_rsbackup"),
            mirror_config.display(),
            key.public
        );
        let sshd = Sshd::start(&line);
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
        }
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
    fn mirror(&self) -> serde_json::Value {
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
    if !is_root() {
        eprintln!("skipped: needs root for sshd");
        return;
    }
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
    if !is_root() {
        eprintln!("skipped: needs root for sshd");
        return;
    }
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
    if !is_root() {
        eprintln!("skipped: needs root for sshd");
        return;
    }
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
    if !is_root() {
        eprintln!("skipped: needs root for sshd");
        return;
    }
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
    // Without asking, the run succeeds and the mirror keeps what the primary rolled off.
    s.mirror();
    let listed = s.on_mirror("sessions", &[arg("--json")]);
    assert_eq!(listed.json().as_array().map(|a| a.len()), Some(2));
    let _ = (&s.mirror_config, &s.key);
}

#[test]
fn mirror_serve_refuses_other_addresses_and_unknown_sections() {
    let s = TestRepo::new();
    let config = s.path("server.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"/srv/r\"\nstaging-root = \"/srv/s\"\n{}\
             [mirror-of.main]\nrepository = {:?}\naddresses = [\"192.0.2.1\"]\n",
            mail_toml(&s.path("mail")),
            s.path("m").display().to_string()
        ),
    )
    .unwrap();
    let serve = |name: &str, conn: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsbackup"));
        cmd.args([
            arg("mirror-serve"),
            arg("--config"),
            arg(&config),
            arg("--mirror-of"),
            arg(name),
        ])
        .stdin(Stdio::null())
        .env_remove("SSH_CONNECTION");
        if let Some(c) = conn {
            cmd.env("SSH_CONNECTION", c);
        }
        cmd.output().unwrap()
    };
    let out = serve("main", Some("198.51.100.9 5555 127.0.0.1 22"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in its addresses"));
    let out = serve("main", None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("SSH_CONNECTION"));
    let out = serve("other", Some("192.0.2.1 5555 127.0.0.1 22"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [mirror-of.other]"));
    assert!(out.stdout.is_empty(), "nothing but frames on stdout");
    assert!(
        !s.path("m").exists(),
        "a refused connection creates nothing"
    );
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
