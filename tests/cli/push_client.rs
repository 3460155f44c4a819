//! The client half of the push path, `rsbackup run`, through the real parts: the built binary,
//! OpenSSH's sshd on loopback with forced commands, real rsync, aiosmtpd for the mailed reports.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Run, arg, rsbackup, tempdir};
use crate::smtp::Smtp;
use crate::sshd::{SshKey, Sshd, free_port};

/// Exit codes of `rsbackup run` (docs/usage.md).
pub mod code {
    pub const OK: i32 = 0;
    pub const PARTIAL: i32 = 3;
    pub const CONFIG: i32 = 12;
    pub const LOCKED: i32 = 13;
    pub const INIT_HOOK: i32 = 14;
    pub const UNREACHABLE: i32 = 15;
    pub const REFUSED: i32 = 16;
    pub const TIMED_OUT: i32 = 17;
}

/// Where the client's mail goes.
pub enum MailTo<'a> {
    /// A directory of .eml files.
    Dir(&'a Path),
    /// The test SMTP server.
    Smtp(&'a Smtp),
    /// An SMTP port with nothing listening.
    DeadSmtp(u16),
}

/// A client machine: its key, a source tree, a lock file, and a client.toml writer.
pub struct Client {
    pub dir: tempfile::TempDir,
    pub key: SshKey,
    pub src: PathBuf,
}

impl Client {
    pub fn new() -> Client {
        let dir = tempdir();
        let key = SshKey::generate(dir.path(), "client_key");
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        // This test machine's own machine-id (client.toml's machine-id-file names it).
        fs::write(dir.path().join("machine-id"), "test-machine-web1\n").unwrap();
        Client { dir, key, src }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where the source lands in staging and in its sessions: its full path without the
    /// leading `/`.
    pub fn staged(&self) -> PathBuf {
        self.src.strip_prefix("/").unwrap().to_owned()
    }

    /// Write client.toml: `extra` goes at the top level (hooks), the server is `port` on
    /// 127.0.0.1 with `known_hosts` if given.
    pub fn config(
        &self,
        port: u16,
        known_hosts: Option<&Path>,
        mail: MailTo,
        extra: &str,
    ) -> PathBuf {
        let known = known_hosts
            .map(|k| format!("known-hosts = {:?}\n", k.display().to_string()))
            .unwrap_or_default();
        let mail = match mail {
            MailTo::Dir(d) => format!(
                "[mail]\nfrom = \"rsbackup@client.test\"\ntransport = \"directory\"\n\
                 directory = {:?}\n",
                d.display().to_string()
            ),
            MailTo::Smtp(s) => s.mail_toml(
                "rsbackup@client.test",
                "reports-to",
                &["reports@example.org"],
            ),
            MailTo::DeadSmtp(port) => format!(
                "[mail]\nfrom = \"rsbackup@client.test\"\nreports-to = [\"reports@example.org\"]\n\
                 transport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
                 timeout-seconds = 5\n"
            ),
        };
        let mail = if mail.contains("reports-to") {
            mail.replace("[mail]\n", "[mail]\nerrors-to = [\"errors@example.org\"]\n")
        } else {
            mail.replace(
                "[mail]\n",
                "[mail]\nerrors-to = [\"errors@example.org\"]\nreports-to = [\"reports@example.org\"]\n",
            )
        };
        let text = format!(
            "name = \"web1\"\nsources = [{:?}]\nmachine-id-file = {:?}\n{extra}\n[server]\n\
             host = \"127.0.0.1\"\nport = {port}\nuser = {:?}\nssh-key = {:?}\n{known}\n{mail}",
            self.src.display().to_string(),
            self.path("machine-id").display().to_string(),
            // The user the sshd harness logs in as.
            std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "root".to_owned()),
            self.key.private.display().to_string(),
        );
        let path = self.path("client.toml");
        fs::write(&path, text).unwrap();
        path
    }

    /// client.toml for `server`'s sshd and host key, mail into `DIR/mail` (created); returns
    /// the config file and the mail directory.
    pub fn config_for(&self, server: &Server) -> (PathBuf, PathBuf) {
        let mail = self.path("mail");
        fs::create_dir_all(&mail).unwrap();
        let config = self.config(
            server.sshd.port,
            Some(&server.known_hosts),
            MailTo::Dir(&mail),
            "",
        );
        (config, mail)
    }

    /// `rsbackup run --config CONFIG --state-dir DIR/state --connect-timeout 10 ARGS`.
    pub fn run(&self, config: &Path, args: &[&str]) -> Run {
        let mut argv = vec![
            arg("run"),
            arg("--config"),
            arg(config),
            arg("--state-dir"),
            arg(self.path("state")),
            arg("--connect-timeout"),
            arg("10"),
        ];
        argv.extend(args.iter().map(arg));
        rsbackup(argv)
    }
}

/// A `known_hosts` line for `sshd`'s host key.
pub fn known_hosts(sshd: &Sshd, dir: &Path) -> PathBuf {
    let public = fs::read_to_string(sshd.dir().join("host_ed25519.pub")).unwrap();
    let mut words = public.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{} {} {}\n",
        sshd.port,
        words.next().unwrap(),
        words.next().unwrap()
    );
    let path = dir.join("known_hosts");
    fs::write(&path, line).unwrap();
    path
}

/// The .eml files in `dir`, as text, with quoted-printable soft breaks joined.
/// The usual client.toml for `server`, reports written to a new directory `mail`: (mail
/// directory, config path).
pub fn mail_dir_config(client: &Client, server: &Server) -> (PathBuf, PathBuf) {
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let config = client.config(
        server.sshd.port,
        Some(&server.known_hosts),
        MailTo::Dir(&mail),
        "",
    );
    (mail, config)
}

pub fn eml_messages(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .map(|e| decode_mail(&fs::read_to_string(e.path()).unwrap()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Undo quoted-printable (`=\r\n` soft breaks, `=3D`) and CRLF, enough to search a body.
pub fn decode_mail(raw: &str) -> String {
    let text = raw.replace("\r\n", "\n").replace("=\n", "");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3).unwrap_or("");
        match u8::from_str_radix(hex, 16) {
            Ok(b) if hex.len() == 2 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                out.push(b as char);
                rest = &rest[i + 3..];
            }
            _ => {
                out.push('=');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The one message whose subject contains `needle`.
#[track_caller]
pub fn message_with<'a>(messages: &'a [String], needle: &str) -> &'a str {
    let found: Vec<&String> = messages
        .iter()
        .filter(|m| {
            m.lines()
                .any(|l| l.starts_with("Subject:") && l.contains(needle))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one message with {needle:?} in {messages:#?}"
    );
    found[0]
}

#[test]
fn run_with_nothing_listening_reports_unreachable() {
    let client = Client::new();
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let marker = client.path("cleanup-ran");
    let extra = format!(
        "cleanup-hooks = [{{ argv = [\"/usr/bin/touch\", {:?}] }}]",
        marker.display().to_string()
    );
    let config = client.config(free_port(), None, MailTo::Dir(&mail), &extra);
    let run = client.run(&config, &[]);
    run.code(code::UNREACHABLE);
    assert!(
        run.stderr.contains("rsbackup: prepare failed") && run.stderr.contains("cannot be reached"),
        "{}",
        run.stderr
    );
    assert!(
        marker.exists(),
        "the cleanup hook did not run after the failure"
    );
    let messages = eml_messages(&mail);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let error = message_with(&messages, "ERROR");
    assert!(error.contains("To: errors@example.org"), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    assert!(error.contains("to do: root@127.0.0.1:"), "{error}");
    assert!(error.contains("No backup was made by this run."), "{error}");
    let job = message_with(&messages, "backup FAILED");
    assert!(job.contains("To: reports@example.org"), "{job}");
    assert!(job.contains("skipped: prepare failed"), "{job}");
    assert!(job.contains("cleanup hook /usr/bin/touch"), "{job}");
}

#[test]
fn run_with_a_key_the_server_does_not_know_is_refused() {
    let client = Client::new();
    let other = SshKey::generate(client.dir.path(), "other_key");
    let sshd = Sshd::start(&format!("restrict {}\n", other.public));
    let known = known_hosts(&sshd, client.dir.path());
    let smtp = Smtp::start();
    let config = client.config(sshd.port, Some(&known), MailTo::Smtp(&smtp), "");
    let run = client.run(&config, &[]);
    run.code(code::REFUSED);
    assert!(
        run.stderr.contains("did not accept the key"),
        "{}",
        run.stderr
    );
    let messages = smtp.wait_for(2, Duration::from_secs(10));
    let messages: Vec<String> = messages.iter().map(|m| decode_mail(m)).collect();
    let error = message_with(&messages, "ERROR: 1 failure");
    assert!(error.contains("Permission denied"), "{error}");
    assert!(error.contains("rsbackup authorized-keys"), "{error}");
}

#[test]
fn run_with_a_changed_host_key_is_not_sent() {
    let client = Client::new();
    let sshd = Sshd::start(&format!("restrict {}\n", client.key.public));
    // A known_hosts that pins another key for this host and port.
    let wrong = SshKey::generate(client.dir.path(), "not_the_host");
    let known = client.path("known_hosts");
    let mut words = wrong.public.split_whitespace();
    fs::write(
        &known,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            words.next().unwrap(),
            words.next().unwrap()
        ),
    )
    .unwrap();
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let config = client.config(sshd.port, Some(&known), MailTo::Dir(&mail), "");
    let run = client.run(&config, &[]);
    run.code(code::UNREACHABLE);
    let error = message_with(&eml_messages(&mail), "ERROR").to_owned();
    assert!(error.contains("host key"), "{error}");
    assert!(error.contains("known-hosts"), "{error}");
}

#[test]
fn failing_init_hook_aborts_and_cleanup_still_runs() {
    let client = Client::new();
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let marker = client.path("cleanup-ran");
    let extra = format!(
        "init-hooks = [{{ argv = [\"/bin/sh\", \"-c\", \"echo dump failed: disk full >&2; exit 5\"] }}]\n\
         cleanup-hooks = [{{ argv = [\"/usr/bin/touch\", {:?}] }}]",
        marker.display().to_string()
    );
    // Nothing listens on the port: an aborted run never connects.
    let config = client.config(free_port(), None, MailTo::Dir(&mail), &extra);
    let run = client.run(&config, &[]);
    run.code(code::INIT_HOOK);
    assert!(marker.exists(), "cleanup hook did not run");
    assert!(run.stderr.contains("init hook /bin/sh"), "{}", run.stderr);
    let messages = eml_messages(&mail);
    let error = message_with(&messages, "ERROR");
    assert!(
        error.contains("exit code 5: dump failed: disk full"),
        "{error}"
    );
    assert!(error.contains("No backup was made by this run."), "{error}");
    let job = message_with(&messages, "backup FAILED");
    assert!(job.contains("skipped: an init hook failed"), "{job}");
    assert!(job.contains("dump failed: disk full"), "{job}");

    // With --on-init-hook-failure continue the run goes on (and finds nothing listening).
    fs::remove_file(&marker).unwrap();
    let run = client.run(&config, &["--on-init-hook-failure", "continue"]);
    run.code(code::UNREACHABLE);
    assert!(marker.exists());
}

#[test]
fn init_hook_timeout_is_killed_and_reported() {
    let client = Client::new();
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let extra = "init-hooks = [{ argv = [\"/bin/sleep\", \"60\"], timeout-seconds = 1 }]";
    let config = client.config(free_port(), None, MailTo::Dir(&mail), extra);
    let start = std::time::Instant::now();
    let run = client.run(&config, &[]);
    run.code(code::INIT_HOOK);
    assert!(start.elapsed() < Duration::from_secs(20));
    let job = message_with(&eml_messages(&mail), "backup FAILED").to_owned();
    assert!(job.contains("TIMED OUT after 1.0 s"), "{job}");
}

#[test]
fn second_run_beside_a_running_one_is_locked_out() {
    let client = Client::new();
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let config = client.config(free_port(), None, MailTo::Dir(&mail), "");
    let lock = rsbackup::client::lock::ClientLock::acquire(&client.path("state/client-web1.lock"))
        .unwrap();
    let run = client.run(&config, &[]);
    run.code(code::LOCKED);
    assert!(run.stderr.contains("still running"), "{}", run.stderr);
    let messages = eml_messages(&mail);
    assert_eq!(messages.len(), 1, "only the error report: {messages:#?}");
    assert!(
        messages[0].contains("this run did nothing"),
        "{}",
        messages[0]
    );
    drop(lock);
}

#[test]
fn bad_configuration_exits_with_the_config_code() {
    let client = Client::new();
    let mail = client.path("mail");
    let config = client.config(22, None, MailTo::Dir(&mail), "");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replace("name = ", "nmae = ")).unwrap();
    let run = client.run(&config, &[]);
    run.fails_with(code::CONFIG, &["client.toml:1:", "no backup was made"]);

    // A source inside another: refused where it is written.
    let inner = format!("{:?}, ", client.src.join("sub").display().to_string());
    fs::write(
        &config,
        text.replace("sources = [", &format!("sources = [{inner}")),
    )
    .unwrap();
    let run = client.run(&config, &[]);
    run.fails_with(code::CONFIG, &["client.toml:2:", "overlap"]);

    // An anchored exclude under no source: a configuration error found at run time, reported
    // by mail too.
    fs::create_dir(&mail).unwrap();
    fs::write(
        &config,
        text.replace("sources = [", "excludes = [\"/nowhere/x\"]\nsources = ["),
    )
    .unwrap();
    let run = client.run(&config, &[]);
    run.code(code::CONFIG);
    let error = message_with(&eml_messages(&mail), "ERROR").to_owned();
    assert!(error.contains("under no source"), "{error}");
    let missing = client.run(&client.path("nope.toml"), &[]);
    missing.fails_with(code::CONFIG, &["nope.toml"]);
}

/// The backup server: a repository, server.toml, and sshd whose authorized_keys forces
/// `rsbackup serve --client web1 --config server.toml` for the client's key.
pub struct Server {
    pub repo: crate::common::TestRepo,
    pub sshd: Sshd,
    /// server.toml.
    #[allow(dead_code)]
    pub config: PathBuf,
    pub staging: PathBuf,
    pub known_hosts: PathBuf,
}

impl Server {
    /// `policy` goes into `[clients.web1]` (keys and addresses are written here).
    pub fn start(client: &Client, policy: &str) -> Server {
        let repo = crate::common::TestRepo::new();
        let staging = repo.path("staging");
        fs::create_dir_all(&staging).unwrap();
        fs::create_dir_all(repo.path("server-mail")).unwrap();
        let config = repo.path("server.toml");
        let text = format!(
            "repository = {:?}\nstaging-root = {:?}\naudit-log = {:?}\nalert-state = {:?}\n\n\
             [mail]\nfrom = \"server@backup.test\"\nadmin = [\"admin@example.org\"]\n\
             transport = \"directory\"\ndirectory = {:?}\n\n[clients.web1]\nkeys = [{:?}]\n\
             addresses = [\"127.0.0.0/8\"]\n{policy}\n",
            repo.repo.display().to_string(),
            staging.display().to_string(),
            repo.path("audit.log").display().to_string(),
            repo.path("alert-state.json").display().to_string(),
            repo.path("server-mail").display().to_string(),
            client.key.public,
        );
        fs::write(&config, text).unwrap();
        let line = crate::sshd::forced_command_line(&config, "web1", &client.key);
        let sshd = Sshd::start(&format!("{line}\n"));
        let known_hosts = known_hosts(&sshd, repo.dir.path());
        Server {
            repo,
            sshd,
            config,
            staging,
            known_hosts,
        }
    }

    /// The newest session of web1, restored into a fresh directory; returns that directory.
    pub fn restore_latest(&self, name: &str) -> PathBuf {
        let target = self.repo.path(name);
        self.repo
            .run_with_identity(
                "restore",
                &[
                    arg("--session"),
                    arg("latest"),
                    arg("--client"),
                    arg("web1"),
                    arg("--target"),
                    arg(&target),
                ],
            )
            .ok();
        target
    }

    /// The number of sessions of web1.
    pub fn sessions(&self) -> usize {
        let run = self.repo.run("sessions", &["--client", "web1", "--json"]);
        run.ok();
        run.json().as_array().map_or(0, Vec::len)
    }
}

/// The value of a figure line `  LABEL  VALUE` in a job report.
#[track_caller]
pub fn figure<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no figure {label:?} in:\n{report}"))
}

/// The first number in `text` (digits and commas), e.g. `7,314 bytes ...` -> 7314.
pub fn first_number(text: &str) -> u64 {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number at the start of {text:?}"))
}

/// `bytes sent by rsync`: (sent, total) from `7,314 bytes (7.1 KiB) of 3,000,012 total (0.24%)`.
pub fn sent_and_total(report: &str) -> (u64, u64) {
    let value = figure(report, "bytes sent by rsync");
    let total = value
        .split(" of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no total in {value:?}"));
    (first_number(value), first_number(total))
}

#[test]
fn full_run_then_a_second_run_that_sends_only_the_changes() {
    let client = Client::new();
    crate::common::sample_tree(&client.src);
    let big = client.src.join("big.bin");
    fs::write(&big, crate::common::pattern(9, 8 << 20)).unwrap();
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"keep\"",
    );
    let smtp = Smtp::start();
    let config = client.config(
        server.sshd.port,
        Some(&server.known_hosts),
        MailTo::Smtp(&smtp),
        "",
    );

    let run = client.run(&config, &[]);
    run.code(code::OK);
    assert_eq!(run.stderr, "", "a good run is quiet");
    let messages = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1, "only the job report: {messages:#?}");
    let report = decode_mail(&messages[0]);
    assert!(report.contains("backup ok"), "{report}");
    assert!(report.contains("To: reports@example.org"), "{report}");
    assert!(report.contains("session:  "), "{report}");
    let (sent, total) = sent_and_total(&report);
    let source_bytes = first_number(figure(&report, "bytes on the client"));
    assert_eq!(total, source_bytes);
    assert!(total >= 8 << 20, "{report}");
    assert!(
        sent >= (8 << 20) * 9 / 10,
        "first run sends everything: {report}"
    );
    assert!(
        first_number(figure(&report, "files changed (sent)")) > 3,
        "{report}"
    );
    assert!(
        first_number(figure(&report, "new bytes stored")) > 0,
        "{report}"
    );
    assert_eq!(figure(&report, "session state"), "complete");
    let restored = server.restore_latest("restored-1");
    crate::common::assert_trees_equal(&client.src, &restored.join(client.staged()));

    // Change 100 bytes in the middle of the big file: rsync sends a delta.
    let mut data = fs::read(&big).unwrap();
    data[4 << 20..(4 << 20) + 100].fill(0xAB);
    fs::write(&big, &data).unwrap();
    let run = client.run(&config, &[]);
    run.code(code::OK);
    let messages = smtp.wait_for(2, Duration::from_secs(10));
    let report = decode_mail(&messages[1]);
    let (sent, total) = sent_and_total(&report);
    eprintln!("second run: rsync sent {sent} of {total} bytes");
    assert!(
        sent * 20 < total,
        "second run sent {sent} of {total}:\n{report}"
    );
    assert_eq!(
        first_number(figure(&report, "files changed (sent)")),
        1,
        "{report}"
    );
    let matched = figure(&report, "literal / matched data");
    assert!(
        first_number(matched.split(" / ").nth(1).unwrap()) > 7 << 20,
        "{report}"
    );
    assert_eq!(server.sessions(), 2);
    let restored = server.restore_latest("restored-2");
    crate::common::assert_trees_equal(&client.src, &restored.join(client.staged()));
}

#[test]
fn run_outside_the_window_is_refused_and_reported() {
    let client = Client::new();
    fs::write(client.src.join("f"), b"x").unwrap();
    // A half-hour window twelve hours from now.
    let hour = (jiff::Timestamp::now().as_second() / 3600 + 12) % 24;
    let server = Server::start(
        &client,
        &format!("windows = [\"daily {hour:02}:00-{hour:02}:30\"]"),
    );
    let (mail, config) = mail_dir_config(&client, &server);
    let run = client.run(&config, &[]);
    run.code(code::REFUSED);
    let messages = eml_messages(&mail);
    let error = message_with(&messages, "ERROR");
    assert!(error.contains("refused the request"), "{error}");
    assert!(error.contains("time window"), "{error}");
    assert_eq!(server.sessions(), 0);
}

#[test]
fn vanished_source_is_a_partial_run_and_the_rest_is_stored() {
    let client = Client::new();
    fs::write(client.src.join("f"), b"kept").unwrap();
    let server = Server::start(&client, "windows = [\"daily 00:00-24:00\"]");
    let (mail, config) = mail_dir_config(&client, &server);
    let missing = client.path("missing");
    let text = fs::read_to_string(&config).unwrap().replace(
        "sources = [",
        &format!("sources = [{:?}, ", missing.display().to_string()),
    );
    fs::write(&config, text).unwrap();
    let run = client.run(&config, &[]);
    run.code(code::PARTIAL);
    let messages = eml_messages(&mail);
    // The missing source fails its guard (must-exist): not sent, the session partial.
    let error = message_with(&messages, "ERROR");
    assert!(error.contains("was not sent: it does not exist"), "{error}");
    message_with(&messages, "backup PARTIAL");
    assert_eq!(server.sessions(), 1);
    let restored = server.restore_latest("restored");
    assert_eq!(
        fs::read(restored.join(client.staged()).join("f")).unwrap(),
        b"kept"
    );
}

#[test]
fn smtp_down_still_backs_up_and_says_so() {
    let client = Client::new();
    fs::write(client.src.join("f"), b"data").unwrap();
    let server = Server::start(&client, "windows = [\"daily 00:00-24:00\"]");
    let config = client.config(
        server.sshd.port,
        Some(&server.known_hosts),
        MailTo::DeadSmtp(crate::smtp::dead_smtp_port()),
        "",
    );
    let run = client.run(&config, &[]);
    run.code(code::OK);
    assert!(
        run.stderr.contains("warning: a report could not be mailed")
            && run.stderr.contains("the backup itself was made"),
        "{}",
        run.stderr
    );
    assert_eq!(server.sessions(), 1);
}

#[test]
fn client_killed_mid_transfer_then_the_next_run_resumes_and_succeeds() {
    let client = Client::new();
    fs::write(client.src.join("small"), b"small file").unwrap();
    fs::write(
        client.src.join("big.bin"),
        crate::common::pattern(3, 24 << 20),
    )
    .unwrap();
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"keep\"",
    );
    let (mail, config) = mail_dir_config(&client, &server);
    // 4 MiB/s: the big file takes about six seconds, time enough to kill the run mid-file.
    let mut child = std::process::Command::new(crate::common::bin())
        .args([
            arg("run"),
            arg("--config"),
            arg(&config),
            arg("--state-dir"),
        ])
        .arg(client.path("state"))
        .args(["--bwlimit", "4096"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let staged = server.staging.join("web1").join(client.staged());
    let start = std::time::Instant::now();
    let partial = loop {
        let found = fs::read_dir(&staged).ok().and_then(|rd| {
            rd.filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().starts_with(".big.bin."))
        });
        if let Some(f) = found
            && f.metadata().map(|m| m.len()).unwrap_or(0) > 0
        {
            break f.path();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rsync never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    eprintln!("killed the run while {} was arriving", partial.display());
    assert!(!staged.join("big.bin").exists(), "killed too late");

    // The killed run's rsync still holds the client lock until it is gone.
    let lock = client.path("state/client-web1.lock");
    let start = std::time::Instant::now();
    loop {
        match rsbackup::client::lock::ClientLock::acquire(&lock) {
            Ok(l) => break drop(l),
            Err(_) => assert!(
                start.elapsed() < Duration::from_secs(120),
                "lock never freed"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("lock free {:?} after the kill", start.elapsed());
    assert_eq!(server.sessions(), 0);
    let start = std::time::Instant::now();
    let run = client.run(&config, &[]);
    eprintln!("next run took {:?}", start.elapsed());
    run.code(code::OK);
    let job = message_with(&eml_messages(&mail), "backup ok").to_owned();
    assert!(job.contains("prepare (resumed)"), "{job}");
    // The killed run's ssh connection may still be up: the next run uses it, and sends nothing
    // the server would refuse (a session without a command).
    let audit = crate::common::audit_rows(&server.repo.repo);
    assert!(!audit.iter().any(|row| row[3] == "refuse"), "{audit:#?}");
    assert_eq!(server.sessions(), 1);
    let restored = server.restore_latest("restored");
    crate::common::assert_trees_equal(&client.src, &restored.join(client.staged()));
}

#[test]
fn server_that_never_answers_is_a_timeout() {
    let client = Client::new();
    // Accepts connections (the kernel does, into the backlog) but never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let config = client.config(port, None, MailTo::Dir(&mail), "");
    let start = std::time::Instant::now();
    let run = rsbackup([
        arg("run"),
        arg("--config"),
        arg(&config),
        arg("--state-dir"),
        arg(client.path("state")),
        arg("--connect-timeout"),
        arg("2"),
    ]);
    run.code(code::TIMED_OUT);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let error = message_with(&eml_messages(&mail), "ERROR").to_owned();
    assert!(error.contains("timed out"), "{error}");
    assert!(error.contains("did not answer in time"), "{error}");
    drop(silent);
}

/// A chatty complete hook (64 KiB of control characters, six bytes each in JSON) must not cost
/// the run its answer: the server cuts the hook's output to keep the answer whole, and the
/// report still has the session's figures.
#[test]
fn a_chatty_server_hook_does_not_cost_the_answer() {
    let client = Client::new();
    fs::write(client.src.join("f"), b"content").unwrap();
    let hook = "complete-hooks = [{ argv = [\"/bin/sh\", \"-c\", \
                \"head -c 65536 /dev/zero | tr '\\\\0' '\\\\1'; head -c 65536 /dev/zero >&2\"] }]";
    let server = Server::start(
        &client,
        &format!("windows = [\"daily 00:00-24:00\"]\n{hook}"),
    );
    let smtp = Smtp::start();
    let config = client.config(
        server.sshd.port,
        Some(&server.known_hosts),
        MailTo::Smtp(&smtp),
        "",
    );
    let run = client.run(&config, &[]);
    run.code(code::OK);
    let messages = smtp.wait_for(1, Duration::from_secs(10));
    let report = decode_mail(&messages[0]);
    assert!(report.contains("backup ok"), "{report}");
    assert_eq!(figure(&report, "session state"), "complete", "{report}");
    assert!(report.contains("output cut to fit the answer"), "{report}");
    assert_eq!(server.sessions(), 1);
}

/// A file rewritten with its old size within the same second as its last backed-up version,
/// and a directory changed within that second, are sent again: rsync compares times to the
/// nanosecond (`--modify-window=-1`), not to the second.
#[test]
fn a_same_second_same_size_rewrite_is_not_missed() {
    let client = Client::new();
    let f = client.src.join("d/f");
    crate::common::write_file(&f, b"first version");
    crate::common::set_mtime(&f, 1_700_000_000, 100_000_000);
    crate::common::set_mtime(&client.src.join("d"), 1_700_000_000, 100_000_000);
    // Staging kept between runs, so that rsync's quick check decides what is sent.
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"keep\"",
    );
    let (_mail, config) = mail_dir_config(&client, &server);
    client.run(&config, &[]).code(code::OK);
    crate::common::write_file(&f, b"other version");
    crate::common::set_mtime(&f, 1_700_000_000, 900_000_000);
    crate::common::set_mtime(&client.src.join("d"), 1_700_000_000, 900_000_000);
    client.run(&config, &[]).code(code::OK);
    let restored = server.restore_latest("restored");
    assert_eq!(
        fs::read(restored.join(client.staged()).join("d/f")).unwrap(),
        b"other version"
    );
    let mtime = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec())
    };
    assert_eq!(
        mtime(&restored.join(client.staged()).join("d/f")),
        (1_700_000_000, 900_000_000)
    );
    assert_eq!(
        mtime(&restored.join(client.staged()).join("d")),
        (1_700_000_000, 900_000_000)
    );
}
