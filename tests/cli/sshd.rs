//! A real OpenSSH `sshd` on a loopback port, for tests of the push path.
//!
//! API (kept stable; the client tests use it too):
//!
//! * [`SshKey::generate`]`(dir, name)`: a fresh ed25519 key pair without passphrase
//!   (`key.private`, `key.public` = the `ssh-ed25519 AAAA... comment` line).
//! * [`forced_command_line`]`(config, client, &key)`: the `authorized_keys` line
//!   `command="<rsbackup> serve --client NAME --config CONFIG",restrict KEY` for the built binary.
//! * [`Sshd::start`]`(authorized_keys_text)`: sshd on `127.0.0.1:<free port>` with its own host
//!   key, that `AuthorizedKeysFile`, `PidFile`, `StrictModes no`, `UsePAM no`, `LogLevel VERBOSE`,
//!   public keys only; waits until the port accepts connections; killed on drop.
//!   [`Sshd::set_authorized_keys`] rewrites the file (sshd reads it on every connection).
//! * [`Sshd::ssh`]`(&key, bind, command)`: an `ssh` [`Command`] (not yet run) that connects as
//!   [`Sshd::user`] with `-F /dev/null -i KEY -p PORT -o StrictHostKeyChecking=no -o
//!   UserKnownHostsFile=/dev/null -o BatchMode=yes`, optionally `-b BIND` (e.g. `127.0.0.2`: the
//!   server then sees that address in `SSH_CONNECTION`). [`Sshd::run`] runs it and captures it.
//! * [`Sshd::rsh`]`(&key, bind)`: the same ssh as one string for `rsync -e`, and
//!   [`Sshd::destination`]: `root@127.0.0.1:` for rsync.
//! * [`Sshd::log`]: sshd's log so far (for failure messages).
//! * [`free_port`]: a loopback TCP port nobody listens on (right now).
//!
//! Needs root (sshd must be able to switch to the logging-in user) and `/usr/sbin/sshd`.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The sshd binary.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A loopback TCP port that was free when asked.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

/// An ssh key pair on disk.
#[derive(Debug, Clone)]
pub struct SshKey {
    /// The private key file (mode 0600).
    pub private: PathBuf,
    /// The public key line: `ssh-ed25519 AAAA... comment`.
    pub public: String,
}

impl SshKey {
    /// Generate an ed25519 key pair `dir/name` and `dir/name.pub`.
    pub fn generate(dir: &Path, name: &str) -> SshKey {
        let private = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("{name}@test"))
            .arg("-f")
            .arg(&private)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run ssh-keygen");
        assert!(
            out.status.success(),
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = std::fs::read_to_string(private.with_extension("pub"))
            .expect("ssh-keygen wrote no .pub")
            .trim()
            .to_owned();
        SshKey { private, public }
    }
}

/// The `authorized_keys` line that forces `rsbackup serve --client CLIENT --config CONFIG` for
/// `key`, with the binary cargo built for these tests.
pub fn forced_command_line(config: &Path, client: &str, key: &SshKey) -> String {
    format!(
        "command=\"{} serve --client {client} --config {}\",restrict {}",
        env!("CARGO_BIN_EXE_rsbackup"),
        config.display(),
        key.public
    )
}

/// A running sshd; killed (and its files removed) on drop.
pub struct Sshd {
    dir: tempfile::TempDir,
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    child: Child,
    authorized_keys: PathBuf,
    log: PathBuf,
}

impl Sshd {
    /// Start sshd with `authorized_keys` as its only authorized keys file.
    pub fn start(authorized_keys: &str) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("cannot create /run/sshd");
        let mut dir = tempfile::Builder::new()
            .prefix("rsbackup-sshd-")
            .tempdir()
            .expect("tempdir");
        let host_key = dir.path().join("host_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .expect("cannot run ssh-keygen");
        assert!(out.status.success(), "ssh-keygen for the host key failed");
        let keys_file = dir.path().join("authorized_keys");
        std::fs::write(&keys_file, authorized_keys).expect("writing authorized_keys");
        let log = dir.path().join("sshd.log");
        let config = dir.path().join("sshd_config");
        // A few tries: the free port may be taken between asking and binding.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut text = String::new();
            let _ = writeln!(text, "Port {port}");
            let _ = writeln!(text, "ListenAddress 127.0.0.1");
            let _ = writeln!(text, "HostKey {}", host_key.display());
            let _ = writeln!(text, "AuthorizedKeysFile {}", keys_file.display());
            let _ = writeln!(text, "PidFile {}", dir.path().join("sshd.pid").display());
            for line in [
                "StrictModes no",
                "UsePAM no",
                "LogLevel VERBOSE",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AuthenticationMethods publickey",
                "PermitUserEnvironment no",
                "X11Forwarding no",
                "MaxStartups 100:30:200",
                "MaxSessions 50",
            ] {
                let _ = writeln!(text, "{line}");
            }
            std::fs::write(&config, text).expect("writing sshd_config");
            let _ = std::fs::remove_file(&log);
            let child = Command::new(SSHD)
                .arg("-D")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            let mut sshd = Sshd {
                dir,
                port,
                child,
                authorized_keys: keys_file.clone(),
                log: log.clone(),
            };
            if sshd.wait_listening(Duration::from_secs(10)) {
                return sshd;
            }
            last_log = sshd.log();
            let _ = sshd.child.kill();
            let _ = sshd.child.wait();
            dir = std::mem::replace(&mut sshd.dir, tempfile::tempdir().expect("tempdir"));
        }
        panic!("sshd did not start listening; its log:\n{last_log}");
    }

    fn wait_listening(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Replace the authorized keys (takes effect with the next connection).
    pub fn set_authorized_keys(&self, text: &str) {
        std::fs::write(&self.authorized_keys, text).expect("writing authorized_keys");
    }

    /// The user ssh logs in as: the one running the tests.
    pub fn user(&self) -> String {
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".to_owned())
    }

    fn options(&self, key: &SshKey, bind: Option<&str>) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            key.private.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
        ];
        if let Some(bind) = bind {
            argv.push("-b".into());
            argv.push(bind.into());
        }
        argv
    }

    /// `ssh ... USER@127.0.0.1 COMMAND` (not run). `command` goes to the server as one string:
    /// sshd puts it in `SSH_ORIGINAL_COMMAND` unchanged.
    pub fn ssh(&self, key: &SshKey, bind: Option<&str>, command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.options(key, bind))
            .arg(format!("{}@127.0.0.1", self.user()))
            .arg("--")
            .arg(command)
            .stdin(Stdio::null());
        cmd
    }

    /// [`Sshd::run`] with a command given as bytes, which need not be UTF-8 (ssh and sshd pass
    /// them on as they are).
    pub fn run_bytes(&self, key: &SshKey, command: &[u8]) -> Output {
        use std::os::unix::ffi::OsStrExt;
        let mut cmd = Command::new("ssh");
        cmd.args(self.options(key, None))
            .arg(format!("{}@127.0.0.1", self.user()))
            .arg("--")
            .arg(std::ffi::OsStr::from_bytes(command))
            .stdin(Stdio::null());
        cmd.output().expect("cannot run ssh")
    }

    /// Run [`Sshd::ssh`] and capture its output.
    pub fn run(&self, key: &SshKey, bind: Option<&str>, command: &str) -> Output {
        self.ssh(key, bind, command)
            .output()
            .expect("cannot run ssh")
    }

    /// The ssh command line for `rsync -e` (words separated by spaces; no quoting needed as
    /// long as the key path has no spaces).
    pub fn rsh(&self, key: &SshKey, bind: Option<&str>) -> String {
        let mut words = vec!["ssh".to_owned()];
        words.extend(self.options(key, bind));
        words.join(" ")
    }

    /// `USER@127.0.0.1:` (rsync's destination: the server picks the staging directory).
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1:", self.user())
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The directory holding sshd's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
