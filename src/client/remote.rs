//! The client's side of the wire: the ssh command for `prepare` and `complete`, the rsync
//! command for the upload (exactly the options the server's allow-list accepts), where each
//! source lands in staging, and reading the server's JSON answers.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::config::ClientConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::format::client_identity::StatedIdentity;

/// Timeouts and options of the connection; defaults suit a nightly cron run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// ssh `ConnectTimeout`: how long to wait for the TCP connection and banner.
    pub connect_timeout: Duration,
    /// rsync `--timeout`: the longest time without any data moving before rsync gives up.
    pub io_timeout: Duration,
    /// The longest `prepare` may take (server hooks such as space checks run in it).
    pub prepare_timeout: Duration,
    /// The longest `complete` may take (the server ingests staging in it).
    pub complete_timeout: Duration,
    /// rsync `--bwlimit` in KiB/s (`None`: no limit).
    pub bwlimit_kib: Option<u32>,
    /// rsync `-z`: compress on the wire (helps on slow links, costs CPU on both ends).
    pub compress: bool,
    /// ssh's control socket: the run's ssh connections (`prepare`, each rsync pass, `complete`)
    /// share one authenticated connection ([`control_path`]); `None`: each connects anew.
    pub control_path: Option<PathBuf>,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(600),
            prepare_timeout: Duration::from_secs(30 * 60),
            complete_timeout: Duration::from_secs(12 * 60 * 60),
            bwlimit_kib: None,
            compress: false,
            control_path: None,
        }
    }
}

/// The environment ssh and rsync get: nothing of ours (no agent socket, no locale that changes
/// rsync's number format), a fixed `PATH` for what ssh may run itself.
fn clean_env(command: &mut Command) {
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("LC_ALL", "C");
}

/// `host:port`, for messages.
pub fn server_label(config: &ClientConfig) -> String {
    format!(
        "{}@{}:{}",
        config.server.user, config.server.host, config.server.port
    )
}

/// ssh's options (without the program): key, port, batch mode, timeouts, pinned host key.
pub fn ssh_options(config: &ClientConfig, conn: &Connection) -> Vec<OsString> {
    let s = &config.server;
    let mut argv: Vec<OsString> = vec![
        "-i".into(),
        s.ssh_key.clone().into(),
        "-p".into(),
        s.port.to_string().into(),
    ];
    let mut opt = |o: String| {
        argv.push("-o".into());
        argv.push(o.into());
    };
    opt("BatchMode=yes".into());
    opt("IdentitiesOnly=yes".into());
    opt(format!(
        "ConnectTimeout={}",
        conn.connect_timeout.as_secs().max(1)
    ));
    // A dead server or a broken link is noticed within about two minutes.
    opt("ServerAliveInterval=30".into());
    opt("ServerAliveCountMax=4".into());
    opt("ClearAllForwardings=yes".into());
    opt("LogLevel=ERROR".into());
    if let Some(known) = &s.known_hosts {
        opt(format!("UserKnownHostsFile={}", known.display()));
        opt("StrictHostKeyChecking=yes".into());
    }
    if let Some(path) = &conn.control_path {
        // The first connection of the run becomes the master and the others its sessions; the
        // server still runs its forced command for each (every request is authorized and
        // audited as before). The master outlives its last session by a few seconds, and the
        // run ends it ([`close_master`]).
        opt("ControlMaster=auto".into());
        opt(format!(
            "ControlPath={}",
            path.display().to_string().replace('%', "%%")
        ));
        opt(format!("ControlPersist={MASTER_LINGER_SECONDS}"));
    }
    argv.push("-T".into());
    argv
}

/// How long the shared connection outlives its last session (seconds).
pub const MASTER_LINGER_SECONDS: u32 = 10;

/// The control socket of client `name` in `state_dir`, when its path is short enough for a
/// Unix socket (ssh adds a temporary suffix while it creates it); `None`: no shared connection.
pub fn control_path(state_dir: &Path, name: &str) -> Option<PathBuf> {
    let path = state_dir.join(format!("ssh-{name}.ctl"));
    (path.as_os_str().len() <= 80).then_some(path)
}

/// Start the run's shared connection in the background (`ssh -f -N`: no session, so no request
/// reaches the server), so that it is made while the client walks its sources for renames;
/// `prepare` then runs over it. `None` without a control socket. Before the first request,
/// [`master_failure`] waits for it.
pub fn start_master(config: &ClientConfig, conn: &Connection) -> Option<std::process::Child> {
    conn.control_path.as_ref()?;
    // A master that is still up (an earlier run's, lingering) is used as it is: `ssh -N` would
    // become its client, and a client of a master opens a session even with -N, which reaches
    // the server as a request without a command (refused, audited, mailed).
    if master_command(config, conn, &["-O", "check"])
        .status()
        .is_ok_and(|s| s.success())
    {
        return None;
    }
    let mut command = master_command(config, conn, &["-f", "-N"]);
    // Read only when it failed: then no background process holds the pipe (ssh forks only
    // once the connection is up, and ignores SIGPIPE should it write later).
    command.stderr(std::process::Stdio::piped());
    command.spawn().ok()
}

/// Wait for [`start_master`]'s child (it exits once the connection is up): `None` when it is
/// up (or the wait failed, or ssh did not fail as ssh: exit code other than 255), else what ssh
/// said, as the first request's own attempt would have
/// ended. The caller reports it as that request's failure instead of connecting again, so
/// that an unreachable server costs one connect timeout, not two.
pub fn master_failure(
    mut child: std::process::Child,
    started: std::time::Instant,
) -> Option<crate::process::Captured> {
    use std::io::Read;
    let status = child.wait().ok()?;
    // 255 is ssh's own failure (unreachable, refused, authentication): the first request would
    // fail the same way. Anything else (an `ssh-path` wrapper that cannot run `ssh -N`, say)
    // leaves the first request to connect by itself.
    if status.success() || status.code() != Some(255) {
        return None;
    }
    let mut output = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut output);
    }
    Some(crate::process::Captured {
        ended: crate::process::Ended::from_status(status),
        status: Some(status),
        output,
        elapsed: started.elapsed(),
    })
}

/// End the run's shared connection, if any (best effort: it also ends by itself).
pub fn close_master(config: &ClientConfig, conn: &Connection) {
    if conn.control_path.is_none() {
        return;
    }
    let _ = master_command(config, conn, &["-O", "exit"]).status();
}

/// `ssh OPTIONS ARGS user@host`, silent, for the shared connection itself (no request).
fn master_command(config: &ClientConfig, conn: &Connection, args: &[&str]) -> Command {
    let mut command = Command::new(&config.ssh_path);
    command
        .args(ssh_options(config, conn))
        .args(args)
        .arg(format!("{}@{}", config.server.user, config.server.host))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    clean_env(&mut command);
    command
}

/// `ssh ... user@host -- 'rsbackup-client=NAME rsbackup-machine=ID WORD'`: `prepare` or
/// `complete`, after the client identity prefix (format-spec/wire.md).
pub fn ssh_command(
    config: &ClientConfig,
    conn: &Connection,
    identity: &StatedIdentity,
    word: &str,
) -> Command {
    let mut command = Command::new(&config.ssh_path);
    command
        .args(ssh_options(config, conn))
        .arg(format!("{}@{}", config.server.user, config.server.host))
        .arg("--")
        .arg(format!("{} {word}", identity.prefix()));
    clean_env(&mut command);
    command
}

/// One word for rsync's `-e`, which splits on spaces and honours single quotes.
fn rsh_word(word: &std::ffi::OsStr) -> Result<String> {
    let text = word.to_str().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("{word:?} is not UTF-8; rsync -e cannot pass it"),
        )
    })?;
    if text.contains('\'') || text.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{text:?} contains a quote or control character; rsync -e cannot pass it"),
        ));
    }
    if text.is_empty() || text.contains([' ', '"', '\\']) {
        Ok(format!("'{text}'"))
    } else {
        Ok(text.to_owned())
    }
}

/// The sending side's rule: no `user.rsync.*` xattr name leaves the client.
pub const CLIENT_XATTR_FILTER: &str = "--filter=-x user.rsync.**";

/// The rsync command: `rsync -a -H -A -X --filter='-x user.rsync.**' --numeric-ids
/// --delete --delete-delay --delay-updates --partial --stats --timeout=N [-z] [--bwlimit=N]
/// -e 'ssh ...' --rsync-path='PREFIX rsync' --exclude=... SOURCES user@host:`. The
/// `--rsync-path` puts the client identity prefix in front of the `rsync --server ...` command
/// the server sees.
pub fn rsync_command(
    config: &ClientConfig,
    conn: &Connection,
    identity: &StatedIdentity,
) -> Result<Command> {
    let mut rsh = vec![rsh_word(config.ssh_path.as_os_str())?];
    for o in ssh_options(config, conn) {
        rsh.push(rsh_word(&o)?);
    }
    let mut command = Command::new(&config.rsync_path);
    command.args([
        "-a",
        "-H",
        "-A",
        "-X",
        // The server's receiver keeps privileged attributes under user.rsync.* names
        // (fake super): the same names sent by the client would be taken for them, so none
        // is ever sent (the server also refuses them; see server::rsync_daemon).
        CLIENT_XATTR_FILTER,
        "--numeric-ids",
        "--delete",
        // Deletions and new contents wait until the transfer has finished (new contents in
        // .~tmp~ directories), so that an upload the server stops half-way (over the quota)
        // leaves staging as it was: see server::rsync_argv::ALLOWED_LONG. Without a quota
        // the upload plan takes --delay-updates off (upload_plan::UploadPlan::no_quota).
        "--delete-delay",
        "--delay-updates",
        "--partial",
        "--stats",
        // Every source lands in staging at its full path (transfer_sources).
        "--relative",
        // Compare modification times to the nanosecond (rsync compares whole seconds by
        // default): see server::rsync_argv::NANOSECOND_TIMES.
        "--modify-window=-1",
    ]);
    command.arg(format!("--timeout={}", conn.io_timeout.as_secs().max(1)));
    if conn.compress {
        command.arg("-z");
    }
    if let Some(kib) = conn.bwlimit_kib {
        command.arg(format!("--bwlimit={kib}"));
    }
    command.arg("-e").arg(rsh.join(" "));
    command.arg(format!("--rsync-path={} rsync", identity.prefix()));
    for exclude in transfer_excludes(&config.sources, &config.excludes)? {
        command.arg(format!("--exclude={exclude}"));
    }
    for source in transfer_sources(&config.sources)? {
        command.arg(source);
    }
    let host = &config.server.host;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    command.arg(format!("{}@{host}:", config.server.user));
    clean_env(&mut command);
    Ok(command)
}

/// The sources as rsync gets them: normalized absolute paths (trailing slashes removed), sent
/// with `--relative`, so that each lands in staging at its full path (`/var/www` as
/// `var/www/`, `/srv/www` as `srv/www/`); `/` alone sends the whole tree. A source inside
/// another would be sent twice and is refused (client.toml's check says so with its line).
pub fn transfer_sources(sources: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for source in sources {
        let normal: PathBuf = source.components().collect();
        if let Some(other) = out
            .iter()
            .find(|o| normal.starts_with(o) || o.starts_with(&normal))
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "sources: {} and {} overlap (one is inside the other): keep the outer one",
                    other.display(),
                    source.display()
                ),
            ));
        }
        out.push(normal);
    }
    Ok(out)
}

/// Where a source lands in staging (and in the session): its path without the leading `/`
/// (empty for the whole tree).
pub fn staging_path(source: &Path) -> Vec<u8> {
    let normal: PathBuf = source.components().collect();
    let bytes = normal.as_os_str().as_bytes();
    bytes.strip_prefix(b"/").unwrap_or(bytes).to_vec()
}

/// The excludes as rsync gets them: unchanged. An anchored pattern (`/var/www/cache/`) is
/// written as the administrator sees the file system, and with `--relative` rsync anchors it at
/// `/` as well. An anchored pattern under no source could never match and is refused;
/// unanchored patterns (`*.tmp`) pass unchanged.
pub fn transfer_excludes(sources: &[PathBuf], excludes: &[String]) -> Result<Vec<String>> {
    let sources = transfer_sources(sources)?;
    excludes
        .iter()
        .map(|pattern| {
            if !pattern.starts_with('/') {
                return Ok(pattern.clone());
            }
            if sources
                .iter()
                .any(|source| crate::client::guards::under(pattern, source))
            {
                Ok(pattern.clone())
            } else {
                Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "excludes: {pattern:?} starts with '/' but is under no source, so it \
                         could never match; write it as a full path below a source, or without \
                         the leading '/'"
                    ),
                ))
            }
        })
        .collect()
}

/// What the server said to `complete` (or `prepare`): the JSON object it printed, read
/// tolerantly (missing fields are `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerAnswer {
    /// The whole object.
    pub json: serde_json::Value,
}

impl ServerAnswer {
    /// The last JSON object in `output` that starts at the beginning of a line (the server
    /// pretty-prints it over several lines; ssh's or the server's messages may come before or
    /// after it). `None`: no answer.
    pub fn parse(output: &str) -> Option<ServerAnswer> {
        let mut starts: Vec<usize> = output
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .filter(|&i| output[i..].starts_with('{'))
            .collect();
        if output.starts_with('{') {
            starts.insert(0, 0);
        }
        starts.iter().rev().find_map(|&i| {
            let mut stream =
                serde_json::Deserializer::from_str(&output[i..]).into_iter::<serde_json::Value>();
            match stream.next() {
                Some(Ok(json @ serde_json::Value::Object(_))) => Some(ServerAnswer { json }),
                _ => None,
            }
        })
    }

    /// What went wrong on the server, as the answer says: failed hooks, per-path errors,
    /// notes. Empty when it lists nothing.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(hooks) = self.json.get("hooks").and_then(|h| h.as_array()) {
            for hook in hooks {
                if hook.get("ok").and_then(|v| v.as_bool()) != Some(false) {
                    continue;
                }
                let argv = hook
                    .get("argv")
                    .and_then(|a| a.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|w| w.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                let why = if hook.get("timed_out").and_then(|v| v.as_bool()) == Some(true) {
                    "timed out".to_owned()
                } else if let Some(e) = hook.get("error").and_then(|v| v.as_str()) {
                    e.to_owned()
                } else if let Some(c) = hook.get("code").and_then(|v| v.as_i64()) {
                    format!("exit code {c}")
                } else {
                    "failed".to_owned()
                };
                out.push(format!("server hook {argv}: {why}"));
            }
        }
        out.extend(self.errors());
        let left_out = self.errors_left_out();
        if left_out > 0 {
            out.push(format!(
                "... and {left_out} more path errors, not listed in the server's answer"
            ));
        }
        if let Some(notes) = self.json.get("notes").and_then(|n| n.as_array()) {
            out.extend(notes.iter().filter_map(|n| n.as_str()).map(str::to_owned));
        }
        out
    }

    /// A field, looked for at the top level and then one level down (`{"ingest": {...}}`).
    pub fn field(&self, name: &str) -> Option<&serde_json::Value> {
        let obj = self.json.as_object()?;
        obj.get(name).or_else(|| {
            obj.values()
                .filter_map(|v| v.as_object())
                .find_map(|inner| inner.get(name))
        })
    }

    /// A numeric field (the first of `names` present).
    pub fn number(&self, names: &[&str]) -> Option<u64> {
        names
            .iter()
            .find_map(|n| self.field(n).and_then(serde_json::Value::as_u64))
    }

    /// A field as text (strings as they are, numbers written out).
    pub fn text(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| match self.field(n)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(x) => Some(x.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    /// Path errors the server left out of its answer's list (`errors_left_out`).
    pub fn errors_left_out(&self) -> u64 {
        self.number(&["errors_left_out"]).unwrap_or(0)
    }

    /// The per-path problems the server listed (`errors: [{path, message}]` or strings); a long
    /// list is cut to its first entries by the server to keep the answer whole
    /// ([`ServerAnswer::errors_left_out`] more).
    pub fn errors(&self) -> Vec<String> {
        let Some(list) = self.field("errors").and_then(|v| v.as_array()) else {
            return Vec::new();
        };
        list.iter()
            .map(|e| match e {
                serde_json::Value::String(s) => s.clone(),
                other => match (other.get("path"), other.get("message")) {
                    (Some(p), Some(m)) => format!(
                        "{}: {}",
                        p.as_str().unwrap_or_default(),
                        m.as_str().unwrap_or_default()
                    ),
                    _ => other.to_string(),
                },
            })
            .collect()
    }
}

/// What the server said went wrong, from a failed step's output: its `rsbackup: ...` lines,
/// else the problems its JSON answer lists, else the last line.
pub fn server_problem(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("rsbackup: "))
        .collect();
    if !lines.is_empty() {
        return lines.join(" / ");
    }
    if let Some(problems) = ServerAnswer::parse(output).map(|a| a.problems())
        && !problems.is_empty()
    {
        return problems.join(" / ");
    }
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_owned()
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
