//! The server half of the push path through the real parts: sshd on loopback with forced
//! commands to the built binary, real rsync driven by hand (the command line the client sends),
//! real SMTP.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{self, CompareOptions, TestRepo};
use crate::smtp::Smtp;
use crate::sshd::{SshKey, Sshd, forced_command_line};

/// Exit code of a refused request (`rsbackup serve`).
const REFUSED: i32 = crate::common::exit::REFUSED;
const REFUSAL: &str = "rsbackup: request refused; the administrator has been notified";

/// A server: repository, staging root, server.toml, sshd with one key per client, SMTP.
pub(crate) struct Server {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) repo: TestRepo,
    pub(crate) staging: PathBuf,
    pub(crate) config: PathBuf,
    keys: Vec<(String, SshKey)>,
    pub(crate) sshd: Sshd,
    pub(crate) smtp: Smtp,
}

impl Server {
    /// `clients`: (name in authorized_keys, `[clients.NAME]` body without `keys`, or `None` for
    /// a name that is not configured). `mail`: the `[mail]` table, default this SMTP server.
    pub(crate) fn start(clients: &[(&str, Option<&str>)], mail: Option<&str>) -> Server {
        let dir = common::tempdir();
        let repo = TestRepo::new();
        let staging = dir.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let smtp = Smtp::start();
        let config = dir.path().join("server.toml");
        let mut keys = Vec::new();
        let mut text = format!(
            "repository = {:?}\nstaging-root = {:?}\naudit-log = {:?}\nalert-state = {:?}\n\
             alert-coalesce-minutes = 0\n",
            repo.repo,
            staging,
            dir.path().join("audit.log"),
            dir.path().join("alert-state.json"),
        );
        text.push_str(&match mail {
            Some(m) => m.to_owned(),
            None => smtp.mail_toml("rsbackup@server.test", "admin", &["admin@server.test"]),
        });
        let mut authorized = String::new();
        for (i, (name, body)) in clients.iter().enumerate() {
            let key = SshKey::generate(dir.path(), &format!("key{i}"));
            if let Some(body) = body {
                text.push_str(&format!(
                    "\n[clients.{name}]\nkeys = [{:?}]\n{body}\n",
                    key.public
                ));
            }
            authorized.push_str(&forced_command_line(&config, name, &key));
            authorized.push('\n');
            keys.push((name.to_string(), key));
        }
        std::fs::write(&config, text).unwrap();
        let sshd = Sshd::start(&authorized);
        Server {
            dir,
            repo,
            staging,
            config,
            keys,
            sshd,
            smtp,
        }
    }

    /// The SMTP server the administrator's mail goes to.
    pub(crate) fn smtp(&self) -> &Smtp {
        &self.smtp
    }

    pub(crate) fn key(&self, client: &str) -> &SshKey {
        &self.keys.iter().find(|(n, _)| n == client).unwrap().1
    }

    /// `ssh CLIENT 'PREFIX COMMAND'`: as the client names itself, from machine [`MACHINE`].
    pub(crate) fn ssh(&self, client: &str, bind: Option<&str>, command: &str) -> Output {
        self.sshd.run(
            self.key(client),
            bind,
            &format!("{} {command}", prefix(client)),
        )
    }

    /// `ssh CLIENT COMMAND`, without the identity prefix (as an older client would send it).
    pub(crate) fn ssh_raw(&self, client: &str, command: &str) -> Output {
        self.sshd.run(self.key(client), None, command)
    }

    /// `ssh CLIENT 'PREFIX COMMAND'`, not started.
    pub(crate) fn ssh_command(&self, client: &str, command: &str) -> Command {
        self.sshd.ssh(
            self.key(client),
            None,
            &format!("{} {command}", prefix(client)),
        )
    }

    /// `ssh CLIENT COMMAND`, which must succeed with a JSON answer.
    pub(crate) fn json(&self, client: &str, command: &str) -> serde_json::Value {
        let out = self.ssh(client, None, command);
        assert!(
            out.status.success(),
            "{command}: {:?}\nstderr: {}\nstdout: {}\nsshd: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.sshd.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{command}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The client's rsync command line.
    pub(crate) fn rsync_command(&self, client: &str, src: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new("rsync");
        cmd.args([
            "-a",
            "-H",
            "-A",
            "-X",
            "--numeric-ids",
            "--delete",
            "--delete-delay",
            "--delay-updates",
            "--partial",
            "--stats",
        ])
        .args(extra)
        .arg(format!("--rsync-path={} rsync", prefix(client)))
        .arg("-e")
        .arg(self.sshd.rsh(self.key(client), None))
        .arg(format!("{}/", src.display()))
        .arg(self.sshd.destination());
        cmd
    }

    /// The client's rsync download of its whole staging area into `dest` (`restore = true`).
    pub(crate) fn download_command(&self, client: &str, dest: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new("rsync");
        cmd.args(["-a", "-H", "-A", "-X", "--numeric-ids"])
            .args(extra)
            .arg(format!("--rsync-path={} rsync", prefix(client)))
            .arg("-e")
            .arg(self.sshd.rsh(self.key(client), None))
            .arg(self.sshd.destination())
            .arg(format!("{}/", dest.display()));
        cmd
    }

    /// Run [`Self::rsync_command`].
    pub(crate) fn rsync(&self, client: &str, src: &Path, extra: &[&str]) -> Output {
        self.rsync_command(client, src, extra)
            .output()
            .expect("cannot run rsync")
    }

    /// prepare, rsync, complete; returns the complete answer.
    pub(crate) fn push(&self, client: &str, src: &Path, extra: &[&str]) -> serde_json::Value {
        let prepared = self.json(client, "prepare");
        assert_eq!(prepared["ok"], true, "{prepared}");
        let out = self.rsync(client, src, extra);
        assert!(
            out.status.success(),
            "rsync: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.sshd.log()
        );
        let done = self.json(client, "complete rsync-exit=0");
        assert_eq!(done["token"], prepared["token"]);
        done
    }

    /// (client, ip, command, decision, reason) of every audit row, oldest first; the command
    /// without the identity prefix this harness puts in front of every command.
    pub(crate) fn audit(&self) -> Vec<[String; 5]> {
        let mut rows = common::audit_rows(&self.repo.repo);
        for row in &mut rows {
            if let Some((_, rest)) = row[2]
                .strip_prefix("rsbackup-client=")
                .and_then(|r| r.split_once(" rsbackup-machine="))
                .and_then(|(_, r)| r.split_once(' '))
            {
                row[2] = rest.to_owned();
            }
        }
        rows
    }

    pub(crate) fn sessions(&self) -> i64 {
        let db = rusqlite::Connection::open(self.repo.repo.join("index.db")).unwrap();
        db.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap()
    }

    pub(crate) fn restore_equals(&self, session: i64, src: &Path) {
        let target = self.dir.path().join(format!("restore-{session}"));
        self.repo.restore(session, &target);
        let opts = CompareOptions {
            root_meta: false,
            ..Default::default()
        };
        let diffs = common::compare_trees_with(src, &target, &opts);
        assert!(
            diffs.is_empty(),
            "session {session} differs:\n{}",
            diffs.join("\n")
        );
    }
}

fn tree_with_specials(root: &Path) {
    common::sample_tree(root);
    // A device node and an owned setuid file: fake-super keeps them out of staging as such.
    let dev = root.join("dev-null");
    let ok = Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .status();
    assert!(ok.unwrap().success());
    let suid = root.join("suid-tool");
    common::write_file(&suid, b"#!/bin/true\n");
    std::os::unix::fs::chown(&suid, Some(1234), Some(5678)).unwrap();
    common::set_mode(&suid, 0o4755);
    common::set_times_bottom_up(root, 1_700_000_000);
}

/// The machine id every request of this harness states (as a client's derived machine id).
pub(crate) const MACHINE: &str = "00000000000000000000000000000001";

/// The identity prefix `client` sends from [`MACHINE`].
pub(crate) fn prefix(client: &str) -> String {
    format!("rsbackup-client={client} rsbackup-machine={MACHINE}")
}

pub(crate) const ANY: &str = "addresses = [\"127.0.0.1\"]\nwindows = [\"daily 00:00-24:00\"]";

/// The harnesses themselves: sshd runs a forced command and shows it the original command and
/// the connection; aiosmtpd receives a message.
#[test]
fn harnesses_run_forced_command_and_receive_mail() {
    let dir = common::tempdir();
    let key = SshKey::generate(dir.path(), "k");
    let line = format!(
        "command=\"/bin/sh -c 'echo \\\"$SSH_ORIGINAL_COMMAND|$SSH_CONNECTION\\\"'\",restrict {}\n",
        key.public
    );
    let sshd = Sshd::start(&line);
    let out = sshd.run(&key, Some("127.0.0.2"), "prepare now");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{}", sshd.log());
    assert!(stdout.starts_with("prepare now|127.0.0.2 "), "{stdout}");

    let smtp = Smtp::start();
    assert!(smtp.messages().is_empty());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", smtp.port)).unwrap();
    use std::io::{BufRead, BufReader, Write};
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    for cmd in [
        "",
        "HELO t\r\n",
        "MAIL FROM:<a@example.org>\r\n",
        "RCPT TO:<b@example.org>\r\n",
        "DATA\r\n",
        "Subject: hello\r\n\r\nbody\r\n.\r\n",
        "QUIT\r\n",
    ] {
        s.write_all(cmd.as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(!line.starts_with('5'), "{cmd:?} -> {line}");
    }
    let got = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: hello"), "{}", got[0]);
}

/// prepare -> rsync -> complete -> restore equals the source, with devices, owners and setuid
/// bits decoded from fake-super; staging purged; every request audited as allowed.
#[test]
fn push_then_restore_equals_source() {
    let body = format!("{ANY}\nstaging-mode = \"purge\"");
    let s = Server::start(&[("web1", Some(&body))], None);
    let src = s.dir.path().join("src");
    tree_with_specials(&src);
    let done = s.push("web1", &src, &[]);
    assert_eq!(done["state"], "complete", "{done:#}");
    assert!(done["new_chunks"].as_u64().unwrap() > 0);
    let session = done["session"].as_i64().unwrap();
    s.restore_equals(session, &src);
    // Nothing plaintext left, and the staging tree never held a device or a setuid file.
    let staged: Vec<_> = std::fs::read_dir(s.staging.join("web1")).unwrap().collect();
    assert!(staged.is_empty(), "purge left {staged:?}");
    let list = s.json("web1", "sessions");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], session);
    let audit = s.audit();
    assert_eq!(audit.len(), 4, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|r| r[3] == "allow" && r[0] == "web1" && r[1] == "127.0.0.1")
    );
    assert_eq!(audit[0][2], "prepare");
    assert!(audit[1][2].starts_with("rsync --server "), "{:?}", audit[1]);
    // A second run in the middle of nothing: complete without prepare is refused by the lease.
    let out = s.ssh("web1", None, "complete rsync-exit=0");
    assert_eq!(out.status.code(), Some(common::exit::LOCKED));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run in progress"));
    assert!(s.smtp.messages().is_empty(), "nothing was refused");
}

/// Refusals by IP, time window, command and unknown client: each audited in the index, mailed
/// with its reason, and nothing written to staging or the repository.
#[test]
fn refusals_are_audited_mailed_and_do_nothing() {
    let hour = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .hour();
    let closed = format!(
        "addresses = [\"127.0.0.1\"]\nwindows = [\"daily {:02}:00-{:02}:00\"]",
        (hour + 2) % 24,
        (hour + 3) % 24
    );
    let only_sessions = format!("{ANY}\ncommands = [\"sessions\"]");
    let s = Server::start(
        &[
            ("web1", Some(ANY)),
            ("night", Some(&closed)),
            ("viewer", Some(&only_sessions)),
            ("ghost", None),
        ],
        None,
    );
    let attempts = [
        (
            "web1",
            Some("127.0.0.2"),
            "prepare",
            "address 127.0.0.2 is not in its addresses",
        ),
        ("night", None, "prepare", "is outside its windows"),
        (
            "viewer",
            None,
            "prepare",
            "command prepare is not in its commands",
        ),
        ("ghost", None, "prepare", "is not configured in"),
    ];
    for (client, bind, command, _) in attempts {
        let start = Instant::now();
        let out = s.ssh(client, bind, command);
        assert_eq!(out.status.code(), Some(REFUSED), "{client}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), REFUSAL);
        assert!(out.stdout.is_empty());
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    let audit = s.audit();
    assert_eq!(audit.len(), attempts.len(), "{audit:?}");
    for (row, (client, bind, command, why)) in audit.iter().zip(attempts) {
        assert_eq!(row[0], client);
        assert_eq!(row[1], bind.unwrap_or("127.0.0.1"));
        assert_eq!(row[2], command);
        assert_eq!(row[3], "refuse");
        assert!(row[4].contains(why), "{row:?} lacks {why}");
    }
    // Bodies are quoted-printable: join soft line breaks, decode '='.
    let mails: Vec<String> = s
        .smtp
        .wait_for(attempts.len(), Duration::from_secs(15))
        .iter()
        .map(|m| m.replace("=\n", "").replace("=3D", "="))
        .collect();
    assert_eq!(mails.len(), attempts.len());
    for (_, _, _, why) in attempts {
        assert!(
            mails.iter().any(|m| m.contains(why)),
            "no mail says {why}: {mails:?}"
        );
    }
    assert!(mails.iter().all(|m| m.contains("To: admin@server.test")));
    // Nothing written: no staging directory, no session, no lease.
    assert_eq!(std::fs::read_dir(&s.staging).unwrap().count(), 0);
    assert_eq!(s.sessions(), 0);
    // The one allowed command of the viewer still works, and is audited as allowed.
    assert_eq!(s.json("viewer", "sessions"), serde_json::json!([]));
    assert_eq!(s.audit().last().unwrap()[3], "allow");
}

/// Issue 11 (smaller holes): a command that is not UTF-8 is refused, audited with its bytes
/// escaped (not as "no command given"), and mailed.
#[test]
fn a_command_that_is_not_utf8_is_audited_byte_for_byte() {
    let s = Server::start(&[("web1", Some(ANY))], None);
    let out = s.sshd.run_bytes(s.key("web1"), b"prepare \xff\xfe;x");
    assert_eq!(out.status.code(), Some(REFUSED), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), REFUSAL);
    let audit = common::audit_rows(&s.repo.repo);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0][2], "prepare \\xff\\xfe;x", "{audit:?}");
    assert_eq!(audit[0][3], "refuse");
    assert!(
        audit[0][4].contains("command is not UTF-8 (byte 0xff at offset 8)"),
        "{audit:?}"
    );
    let mails = s.smtp.wait_for(1, Duration::from_secs(15));
    assert_eq!(mails.len(), 1);
    let mail = mails[0].replace("=\n", "").replace("=3D", "=");
    assert!(mail.contains("command=\"prepare \\xff\\xfe;x\""), "{mail}");
    assert!(mail.contains("is not UTF-8"), "{mail}");
    assert_eq!(s.sessions(), 0);
}

/// rsync argument attacks through real ssh: each refused (audited, mailed), nothing written
/// outside or inside staging; a symlinked staging directory is never written through.
#[test]
fn rsync_argument_attacks_are_refused() {
    let s = Server::start(&[("web1", Some(ANY))], None);
    let attacks = [
        (
            "rsync --server -logDtpre.iLsfxCIvu . ../web2",
            "contains \\\"..\\\"",
        ),
        ("rsync --server -logDtpre.iLsfxCIvu . /etc", "is absolute"),
        (
            "rsync --server --sender -logDtpre.iLsfxCIvu . .",
            "need restore = true",
        ),
        (
            "rsync --server -slogDtpre.iLsfxCIvu . .",
            "-s (--protect-args",
        ),
        (
            "rsync --server --rsync-path=/bin/sh . .",
            "--rsync-path is not allowed",
        ),
        (
            "rsync --server --log-file=/tmp/x . .",
            "--log-file is not allowed",
        ),
        ("prepare\nrm -rf /", "0x0a"),
        ("prepare; rm -rf /", "unknown command"),
    ];
    for (command, _) in attacks {
        let out = s.ssh("web1", None, command);
        assert_eq!(out.status.code(), Some(REFUSED), "{command:?}: {out:?}");
    }
    let audit = s.audit();
    assert_eq!(audit.len(), attacks.len());
    for (row, (command, why)) in audit.iter().zip(attacks) {
        assert_eq!(row[3], "refuse", "{command:?}");
        assert!(row[4].contains(why), "{command:?}: {row:?}");
        assert!(!row[2].contains('\n'), "escaped: {row:?}");
    }
    // A real rsync download (--sender) is refused too.
    let back = s.dir.path().join("back");
    let out = Command::new("rsync")
        .args(["-a", "-e"])
        .arg(s.sshd.rsh(s.key("web1"), None))
        .arg(format!("--rsync-path={} rsync", prefix("web1")))
        .arg(s.sshd.destination())
        .arg(&back)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(s.audit().last().unwrap()[3], "refuse");
    assert!(
        s.smtp
            .wait_for(attacks.len() + 1, Duration::from_secs(15))
            .len()
            > attacks.len()
    );

    // A staging directory that is a symlink is never written through.
    let elsewhere = s.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.staging.join("web1")).unwrap();
    let out = s.ssh("web1", None, "prepare");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory (a symlink?)"));
    let src = s.dir.path().join("src");
    common::write_file(&src.join("f"), b"data");
    let out = s.rsync("web1", &src, &[]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert_eq!(s.sessions(), 0);
}

/// SMTP down: the refusal is still refused, quickly, audited, and the failure recorded.
#[test]
fn refusal_with_smtp_down_is_quick() {
    let port = crate::smtp::dead_smtp_port();
    let mail = format!(
        "[mail]\nfrom = \"a@server.test\"\nadmin = [\"admin@server.test\"]\ntransport = \"smtp\"\n\
         host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\ntimeout-seconds = 30\n"
    );
    let s = Server::start(&[("web1", Some(ANY))], Some(&mail));
    let start = Instant::now();
    let out = s.ssh("web1", Some("127.0.0.2"), "prepare");
    assert_eq!(out.status.code(), Some(REFUSED));
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(s.audit().len(), 1);
    let state = std::fs::read_to_string(s.dir.path().join("alert-state.json")).unwrap();
    assert!(state.contains("last_error"), "{state}");
    assert!(
        state.contains("127.0.0.2"),
        "the refusal waits for the next mail: {state}"
    );
}

/// `rsbackup authorized-keys` prints the forced-command lines for the configured clients, and
/// sshd accepts them: the printed line works as is.
#[test]
fn authorized_keys_lines_work_with_sshd() {
    let s = Server::start(&[("web1", Some(ANY))], None);
    let bin = common::bin();
    let run = common::rsbackup([
        "authorized-keys".as_ref(),
        "--config".as_ref(),
        s.config.as_os_str(),
        "--program".as_ref(),
        bin.as_os_str(),
    ]);
    run.ok();
    let text = run.stdout_str();
    let expected = format!(
        "command=\"{} serve --config {} --client web1\",restrict {}\n",
        bin.display(),
        s.config.display(),
        s.key("web1").public
    );
    assert_eq!(text, expected);
    s.sshd.set_authorized_keys(&text);
    assert_eq!(s.json("web1", "sessions"), serde_json::json!([]));
}

/// Keep mode with a quota and hooks: a second prepare while a run is open is refused by the
/// lease; hook output comes back in the answer; a failing hook fails prepare and frees the
/// lease; a staging area over its quota fails prepare.
#[test]
fn prepare_lease_hooks_and_quota() {
    let hooks = "prepare-hooks = [{ argv = [\"/bin/sh\", \"-c\", \"echo checked $0\", \"space\"] }]\n\
                 complete-hooks = [{ argv = [\"/bin/sh\", \"-c\", \"echo done\"] }]";
    let body = format!("{ANY}\nstaging-mode = \"keep\"\nquota = \"1M\"\n{hooks}");
    let s = Server::start(&[("web1", Some(&body))], None);
    let src = s.dir.path().join("src");
    common::write_file(&src.join("big"), &common::pattern(1, 200_000));

    let prepared = s.json("web1", "prepare");
    assert_eq!(
        prepared["hooks"][0]["output"], "checked space\n",
        "{prepared:#}"
    );
    assert_eq!(prepared["staging_mode"], "keep");
    let busy = s.ssh("web1", None, "prepare");
    assert_eq!(busy.status.code(), Some(common::exit::LOCKED), "{busy:?}");
    assert!(String::from_utf8_lossy(&busy.stderr).contains("already in progress"));
    assert!(s.rsync("web1", &src, &[]).status.success());
    let done = s.json("web1", "complete rsync-exit=0");
    assert_eq!(done["hooks"][0]["output"], "done\n", "{done:#}");
    assert_eq!(done["staging"]["mode"], "keep");
    assert!(s.staging.join("web1/big").exists(), "keep leaves staging");

    // Now staging holds more than its 1 MiB quota (put there behind the server's back: an
    // upload that crosses the quota is stopped, see confine::quota_stops_the_upload...).
    common::write_file(&s.staging.join("web1/more"), &common::pattern(2, 2 << 20));
    let over = s.ssh("web1", None, "prepare");
    assert_eq!(over.status.code(), Some(common::exit::FAILURE), "{over:?}");
    assert!(String::from_utf8_lossy(&over.stderr).contains("over its quota"));
    // ... and the lease was given back: an upload is refused for want of a run.
    let out = s.rsync("web1", &src, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no run in progress"),
        "{out:?}"
    );
    // The rsync refusal of a missing lease is audited as allowed-then-failed, not as refused.
    assert_eq!(s.audit().last().unwrap()[3], "allow");

    // A failing prepare hook: prepare answers ok = false, exits 1 and frees the lease.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text = text.replace("quota = \"1M\"\n", "").replace(
        "\"echo checked $0\", \"space\"",
        "\"echo no space; exit 4\"",
    );
    std::fs::write(&s.config, text).unwrap();
    for _ in 0..2 {
        let out = s.ssh("web1", None, "prepare");
        assert_eq!(out.status.code(), Some(common::exit::FAILURE), "{out:?}");
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["ok"], false);
        assert_eq!(answer["hooks"][0]["code"], 4);
        assert_eq!(answer["hooks"][0]["output"], "no space\n");
    }
}

/// `lease-hours` in server.toml sets how long a client's run may stay between prepare and
/// complete; a client without it gets 12 hours; `serve --lease-hours` in the forced command
/// overrides the file, longer or shorter. Runs are aged by moving the lease's `prepared` time
/// back, as if the client had died that many hours ago.
#[test]
fn lease_hours_from_the_file_and_the_flag() {
    let two_hours = format!("{ANY}\nlease-hours = 2");
    let s = Server::start(&[("web1", Some(&two_hours)), ("db1", Some(ANY))], None);
    // Moves the client's lease `hours` back in time; returns its token.
    let age = |client: &str, hours: i64| -> String {
        let path = s.staging.join(".leases").join(format!("{client}.json"));
        let text = std::fs::read(&path).unwrap();
        let mut lease: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let prepared = lease["prepared"].as_i64().unwrap();
        lease["prepared"] = (prepared - hours * 3600).into();
        std::fs::write(&path, lease.to_string()).unwrap();
        lease["token"].as_str().unwrap().to_owned()
    };
    // prepare must be refused by the live lease, which expires `secs` after its prepare.
    let busy = |client: &str, secs: u64| {
        let out = s.ssh(client, None, "prepare");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(common::exit::LOCKED),
            "{client}: {out:?}"
        );
        assert!(
            stderr.contains(&format!("expires {secs} s after prepare")),
            "{client}: {stderr}"
        );
    };

    // web1, 2 hours from its table: a run prepared 1 hour ago holds, one 3 hours ago expired.
    let first = s.json("web1", "prepare");
    busy("web1", 2 * 3600);
    assert_eq!(age("web1", 1), first["token"]);
    busy("web1", 2 * 3600);
    age("web1", 2);
    let second = s.json("web1", "prepare");
    assert_eq!(second["replaced_expired_run"], first["token"], "{second:#}");

    // db1, nothing in the file: 12 hours, so a run prepared 3 hours ago still holds.
    let db1_run = s.json("db1", "prepare");
    assert_eq!(age("db1", 3), db1_run["token"]);
    busy("db1", 12 * 3600);

    // The flag wins over the file: web1 gets 4 hours (longer than its 2), db1 2 (shorter than
    // the default 12).
    let line = |client: &str, hours: u64| {
        let line = forced_command_line(&s.config, client, s.key(client));
        let with_flag = line.replacen(" serve ", &format!(" serve --lease-hours {hours} "), 1);
        assert_ne!(line, with_flag);
        with_flag + "\n"
    };
    s.sshd
        .set_authorized_keys(&(line("web1", 4) + &line("db1", 2)));
    age("web1", 3);
    busy("web1", 4 * 3600);
    // ... and complete honours it too: the 3-hour-old run (expired by the file's 2 hours) ends.
    let done = s.json("web1", "complete rsync-exit=0");
    assert_eq!(done["token"], second["token"], "{done:#}");
    let taken_over = s.json("db1", "prepare");
    assert_eq!(
        taken_over["replaced_expired_run"], db1_run["token"],
        "{taken_over:#}"
    );
}

/// A `complete` that outlasts the lease keeps it: the next `prepare` is refused while it runs
/// (it would write into staging under the ingest), and gets the run as soon as it ends.
#[test]
fn a_running_complete_keeps_its_lease_past_the_timeout() {
    let hooks = "complete-hooks = [{ argv = [\"/bin/sleep\", \"4\"] }]";
    let body = format!("{ANY}\nlease-hours = 1\n{hooks}");
    let s = Server::start(&[("web1", Some(&body))], None);
    let lease = s.staging.join(".leases/web1.json");
    let run = s.json("web1", "prepare");
    std::thread::scope(|scope| {
        let complete = scope.spawn(|| s.json("web1", "complete rsync-exit=0"));
        // Wait for complete to mark the lease, then make it 5 hours old.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = std::fs::read(&lease).unwrap_or_default();
            if let Ok(mut l) = serde_json::from_slice::<serde_json::Value>(&text)
                && l["state"] == "completing"
            {
                l["prepared"] = (l["prepared"].as_i64().unwrap() - 5 * 3600).into();
                std::fs::write(&lease, l.to_string()).unwrap();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "complete never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = s.ssh("web1", None, "prepare");
        assert_eq!(
            out.status.code(),
            Some(common::exit::LOCKED),
            "prepare under a running complete: {out:?}"
        );
        let done = complete.join().unwrap();
        assert_eq!(done["token"], run["token"], "{done:#}");
    });
    let next = s.json("web1", "prepare");
    assert_ne!(next["token"], run["token"]);
    assert!(next["replaced_expired_run"].is_null(), "{next:#}");
}
