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
        Client { dir, key, src }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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
            "name = \"web1\"\nsources = [{:?}]\n{extra}\n[server]\nhost = \"127.0.0.1\"\n\
             port = {port}\nuser = \"root\"\nssh-key = {:?}\n{known}\n{mail}",
            self.src.display().to_string(),
            self.key.private.display().to_string(),
        );
        let path = self.path("client.toml");
        fs::write(&path, text).unwrap();
        path
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
    assert!(error.contains("no backup was made"), "{error}");
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

    // Two sources that would land on each other: a configuration error found at run time,
    // reported by mail too.
    fs::create_dir(&mail).unwrap();
    fs::write(
        &config,
        text.replace("sources = [", "sources = [\"/tmp/a/src\", "),
    )
    .unwrap();
    let run = client.run(&config, &[]);
    run.code(code::CONFIG);
    let error = message_with(&eml_messages(&mail), "ERROR").to_owned();
    assert!(error.contains("would both land in staging"), "{error}");
    let missing = client.run(&client.path("nope.toml"), &[]);
    missing.fails_with(code::CONFIG, &["nope.toml"]);
}
