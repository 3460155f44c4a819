//! A real SMTP server on loopback (Debian's python3-aiosmtpd), for tests of mailed reports.
//!
//! API (kept stable; the client tests use it too):
//!
//! * [`Smtp::start`]`()`: `/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c
//!   aiosmtpd.handlers.Mailbox DIR` on a free port; waits until it accepts connections; killed
//!   on drop. Each message lands as one file in the maildir `DIR/new`.
//! * [`Smtp::mail_toml`]`(from, to_key, to)`: a `[mail]` table that sends to it
//!   (`transport = "smtp"`, `security = "none"`, a 5 s timeout); `to_key` is `admin` on the
//!   server, `errors-to`/`reports-to` lines are written by the caller on the client.
//! * [`Smtp::messages`]`()`: every message received so far (raw RFC 5322 text, oldest first).
//! * [`Smtp::wait_for`]`(n, timeout)`: wait until at least `n` messages arrived; returns them.
//! * [`dead_smtp_port`]`()`: a loopback port with nothing listening (for "SMTP down" tests).
//!
//! `/usr/bin/python3` is used on purpose: the `python3` first on `PATH` may not see Debian's
//! packages.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python that can import Debian's aiosmtpd.
pub const PYTHON: &str = "/usr/bin/python3";

/// A loopback port nobody listens on.
pub fn dead_smtp_port() -> u16 {
    super::sshd::free_port()
}

/// A running SMTP server writing messages into a maildir; killed on drop.
pub struct Smtp {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl Smtp {
    /// Start the server and wait until it accepts connections.
    pub fn start() -> Smtp {
        let mut dir = tempfile::Builder::new()
            .prefix("rsbackup-smtp-")
            .tempdir()
            .expect("tempdir");
        let maildir = dir.path().join("maildir");
        for _ in 0..5 {
            let port = super::sshd::free_port();
            let log = std::fs::File::create(dir.path().join("smtp.log")).expect("smtp log");
            let child = Command::new(PYTHON)
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {PYTHON} -m aiosmtpd: {e}"));
            let mut smtp = Smtp { dir, port, child };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = smtp.child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return smtp;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = smtp.child.kill();
            let _ = smtp.child.wait();
            let log = std::fs::read_to_string(smtp.dir.path().join("smtp.log")).unwrap_or_default();
            eprintln!("aiosmtpd did not start on port {port}: {log}");
            dir = std::mem::replace(&mut smtp.dir, tempfile::tempdir().expect("tempdir"));
        }
        panic!("aiosmtpd did not start (is python3-aiosmtpd installed?)");
    }

    /// The maildir messages land in (`new/` holds one file per message).
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// A `[mail]` table sending to this server: `from`, then `to_key = [to...]`, then the
    /// transport keys.
    pub fn mail_toml(&self, from: &str, to_key: &str, to: &[&str]) -> String {
        let to: Vec<String> = to.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[mail]\nfrom = {from:?}\n{to_key} = [{}]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"none\"\ntimeout-seconds = 5\n",
            to.join(", "),
            self.port
        )
    }

    /// Every message so far, oldest first (by file modification time, then name).
    pub fn messages(&self) -> Vec<String> {
        read_maildir(&self.maildir().join("new"))
    }

    /// Wait up to `timeout` for at least `n` messages; returns what arrived (maybe fewer).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let got = self.messages();
            if got.len() >= n || start.elapsed() >= timeout {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_maildir(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|(_, p)| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
