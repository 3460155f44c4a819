//! `rsbackup mirror --repo R --to NAME|DIR [--config F] [--follow-deletes] [--json]
//! [--mail-failures]` and the hidden `rsbackup mirror-serve --config F --mirror-of NAME`, which
//! sshd on the offsite box runs as the forced command of the primary's key
//! (`rsbackup::server::mirror_serve`: the same audit and refusal alerts as `serve`).
//!
//! A target with a `/` in it is a local directory: the mirror side runs in a thread of this
//! process over a socket pair, the same protocol and code as over ssh.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow};
use clap::Args as ClapArgs;
use rsbackup::config::ServerConfig;
use rsbackup::config::mirror::MirrorTarget;
use rsbackup::mirror::{
    PushOptions, PushReport, ServeOptions, push_with_progress, serve as serve_mirror,
};
use rsbackup::server::authz::REFUSAL_MESSAGE;
use rsbackup::server::mirror_serve::{
    MIRROR_COMMAND, MirrorServeInput, MirrorServeOutcome, mirror_serve,
};

use crate::output::size_exact;
use crate::{Outcome, UsageError};

/// `server.toml` when `--config` is not given.
const DEFAULT_CONFIG: &str = crate::open::SERVER_CONFIG;
/// Buffer of the connection in each direction.
const CONN_BUFFER: usize = 1 << 20;
/// Most of ssh's standard error kept for the error message.
const SSH_STDERR_LIMIT: u64 = 16 << 10;

/// Arguments of `mirror`.
#[derive(ClapArgs)]
pub struct Args {
    /// The repository to mirror (default: `repository` of server.toml).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// A target named in server.toml (`[mirrors.NAME]`), or a directory (any value with a `/`).
    #[arg(long, value_name = "NAME|DIR")]
    to: String,
    /// The server configuration (default /etc/rsbackup/server.toml; needed for a named target).
    #[arg(long, value_name = "FILE", env = "RSBACKUP_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Ask the mirror to forget sessions this repository rolled off (a mirror refuses unless
    /// its own configuration allows it).
    #[arg(long)]
    follow_deletes: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar, and nothing on standard output when all went well (--json still
    /// prints).
    #[arg(long)]
    quiet: bool,
    /// On failure, mail the administrators of server.toml (for runs started after `complete`).
    #[arg(long)]
    mail_failures: bool,
}

/// Arguments of `mirror-serve`.
#[derive(ClapArgs)]
pub struct ServeArgs {
    /// The offsite box's server configuration (a forced command: never taken from the
    /// environment).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The `[mirror-of.NAME]` section that names the repository and what the primary may do.
    #[arg(long, value_name = "NAME")]
    mirror_of: String,
}

/// server.toml for a mirror named `to`: none for a local directory unless `--config` is given.
pub fn config_for(to: &str, config: Option<&Path>) -> Result<Option<ServerConfig>> {
    if to.contains('/') && config.is_none() {
        return Ok(None);
    }
    let path = config.unwrap_or(Path::new(DEFAULT_CONFIG));
    Ok(Some(ServerConfig::load(path)?))
}

/// Run `mirror`.
pub fn run(args: Args) -> Result<Outcome> {
    let config = config_for(&args.to, args.config.as_deref())?;
    let result = mirror(&args, config.as_ref());
    if let (Err(e), true, Some(cfg)) = (&result, args.mail_failures, &config) {
        let body = format!(
            "The mirror run of {} to {} failed:\n\n{}\n\nThe next run resumes where this one \
             stopped; nothing that arrived is sent again.\n",
            args.repo.as_deref().unwrap_or(&cfg.repository).display(),
            args.to,
            crate::one_line(e)
        );
        let subject = format!("rsbackup: mirror to {} failed", args.to);
        if let Err(mail) = rsbackup::report::mailer::Mailer::from_config(&cfg.mail)
            .and_then(|m| m.send(&cfg.admin, &subject, &body))
        {
            eprintln!("rsbackup: could not mail the failure report: {mail}");
        }
    }
    let report = result?;
    if args.json {
        crate::output::print_json(&report)?;
    } else if !args.quiet {
        print_human(&report)?;
    }
    Ok(Outcome::Ok)
}

fn mirror(args: &Args, config: Option<&ServerConfig>) -> Result<PushReport> {
    let repo_path = match (&args.repo, config) {
        (Some(p), _) => p.clone(),
        (None, Some(cfg)) => cfg.repository.clone(),
        (None, None) => {
            return Err(
                UsageError("give --repo DIR (or --config with a repository)".into()).into(),
            );
        }
    };
    let repo = crate::open::repo(&repo_path)?;
    let follow_deletes = args.follow_deletes
        || config
            .and_then(|c| c.mirrors.target(&args.to))
            .is_some_and(|t| t.follow_deletes);
    let (target, conn) = connection(&args.to, config, follow_deletes)?;
    let opts = PushOptions {
        target,
        follow_deletes,
    };
    let bar = crate::progress::Bar::new(args.quiet);
    conn.run(|reader, writer| push_with_progress(&repo, reader, writer, &opts, &bar))
}

/// The reading and writing halves of a connection to a mirror.
pub type Reader = Box<dyn Read + Send>;
/// See [`Reader`].
pub type Writer = Box<dyn Write + Send>;

/// How to reach a mirror: a local directory (the mirror side in a thread of this process) or a
/// target of server.toml (ssh to the offsite box, whose sshd forces `mirror-serve`).
pub enum Connection<'a> {
    /// A local directory.
    Local {
        /// The mirror repository.
        dest: PathBuf,
        /// The mirror side's `follow-deletes` (the operator owns both repositories).
        follow_deletes: bool,
    },
    /// A named target.
    Ssh(&'a MirrorTarget),
}

/// The connection `to` names (`DIR` with a `/`, or a `[mirrors.NAME]` of `config`), and the
/// target's name for `mirror_targets` (a config name, or `path:DIR`).
pub fn connection<'a>(
    to: &str,
    config: Option<&'a ServerConfig>,
    follow_deletes: bool,
) -> Result<(String, Connection<'a>)> {
    if to.contains('/') {
        let dest = std::path::absolute(Path::new(to)).with_context(|| format!("resolving {to}"))?;
        return Ok((
            format!("path:{}", dest.display()),
            Connection::Local {
                dest,
                follow_deletes,
            },
        ));
    }
    let config = config.expect("loaded for a named target");
    let target = config.mirrors.target(to).ok_or_else(|| {
        UsageError(format!(
            "no [mirrors.{to}] in {} (a local directory target needs a '/' in it)",
            config.path.display()
        ))
    })?;
    Ok((target.name.to_string(), Connection::Ssh(target)))
}

impl Connection<'_> {
    /// Open the connection, run the primary's side `f` over it, and close it.
    pub fn run<T>(self, f: impl FnOnce(Reader, Writer) -> rsbackup::Result<T>) -> Result<T> {
        match self {
            Connection::Local {
                dest,
                follow_deletes,
            } => local(dest, follow_deletes, f),
            Connection::Ssh(target) => over_ssh(target, f),
        }
    }
}

/// A local directory: the mirror side in a thread, over a socket pair.
fn local<T>(
    dest: PathBuf,
    follow_deletes: bool,
    f: impl FnOnce(Reader, Writer) -> rsbackup::Result<T>,
) -> Result<T> {
    let serve_opts = ServeOptions {
        name: dest.display().to_string(),
        repository: dest,
        follow_deletes,
    };
    let (ours, theirs) = UnixStream::pair().context("creating a socket pair")?;
    let server = std::thread::spawn(move || -> rsbackup::Result<()> {
        let reader = BufReader::with_capacity(CONN_BUFFER, theirs.try_clone().map_err(io)?);
        serve_mirror(
            reader,
            BufWriter::with_capacity(CONN_BUFFER, theirs),
            &serve_opts,
        )
        .map(|_| ())
    });
    let reader = BufReader::with_capacity(CONN_BUFFER, ours.try_clone()?);
    let result = f(Box::new(reader), Box::new(ours.try_clone()?));
    let _ = ours.shutdown(std::net::Shutdown::Both);
    let served = server
        .join()
        .map_err(|_| anyhow!("the local mirror thread panicked"))?;
    match (result, served) {
        (Ok(report), _) => Ok(report),
        // The mirror's own error says more than the closed connection the primary saw.
        (Err(e), Err(mirror)) if e.kind() == rsbackup::ErrorKind::Io => Err(mirror.into()),
        (Err(e), _) => Err(e.into()),
    }
}

fn io(e: std::io::Error) -> rsbackup::Error {
    rsbackup::Error::io("local mirror socket", e)
}

/// A named target: `ssh` to the offsite box, whose sshd forces `mirror-serve`.
fn over_ssh<T>(
    target: &MirrorTarget,
    f: impl FnOnce(Reader, Writer) -> rsbackup::Result<T>,
) -> Result<T> {
    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(&target.ssh_key)
        .arg("-p")
        .arg(target.port.to_string())
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]);
    for option in &target.ssh_options {
        cmd.arg("-o").arg(option);
    }
    // The only command mirror-serve accepts (it is in the mirror's audit rows).
    cmd.arg(format!("{}@{}", target.user, target.host))
        .arg("--")
        .arg(MIRROR_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run ssh")?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.take(SSH_STDERR_LIMIT).read_to_string(&mut text);
        text
    });
    let result = f(
        Box::new(BufReader::with_capacity(CONN_BUFFER, stdout)),
        Box::new(BufWriter::with_capacity(CONN_BUFFER, stdin)),
    );
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().context("waiting for ssh")?;
    let ssh_said = errors.join().unwrap_or_default();
    let ssh_said = ssh_said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match result {
        Ok(report) => Ok(report),
        Err(e) if !ssh_said.is_empty() && e.kind() == rsbackup::ErrorKind::Io => Err(anyhow!(
            "{e} (ssh to {}@{}:{} exited with {status}: {ssh_said})",
            target.user,
            target.host,
            target.port
        )),
        Err(e) => Err(e.into()),
    }
}

fn print_human(r: &PushReport) -> Result<()> {
    let mut out = crate::output::Stdout::new();
    writeln!(
        out,
        "mirror to {}{}: {} chunks ({}) sent, {} sessions, {} keys",
        r.target,
        if r.created { " (created)" } else { "" },
        r.chunks_sent,
        size_exact(r.record_bytes_sent),
        r.sessions_sent,
        r.keys_sent
    )?;
    writeln!(
        out,
        "  {} chunk ids offered ({}), {} repaired, {} sessions forgotten",
        r.chunks_offered,
        if r.full_reconcile {
            "full reconciliation"
        } else {
            "above the watermark"
        },
        r.repaired,
        r.forgotten
    )?;
    writeln!(
        out,
        "  {} sent and {} received on the wire; the mirror holds {} chunks",
        size_exact(r.wire_bytes_sent),
        size_exact(r.wire_bytes_received),
        r.mirror_chunks
    )?;
    out.flush()?;
    Ok(())
}

/// Run `mirror-serve`: decide and record the connection (`SSH_CONNECTION`,
/// `SSH_ORIGINAL_COMMAND`, `[mirror-of.NAME]`), then serve the protocol on standard input and
/// output. A refusal prints only the generic refusal message and exits 16, as `serve` does; the
/// reason is in the audit table and the alert mail.
pub fn serve(args: ServeArgs) -> Result<Outcome> {
    let config = ServerConfig::load(&args.config)?;
    let (command, raw_command) = crate::serve::original_command();
    let input = MirrorServeInput {
        mirror_of: args.mirror_of,
        ssh_connection: std::env::var("SSH_CONNECTION").ok(),
        ssh_original_command: command,
        raw_command,
        now: jiff::Timestamp::now(),
        host: crate::serve::host_name(),
    };
    let idle_timeout = config.mirrors.mirror_of(&input.mirror_of).map_or(
        std::time::Duration::from_secs(
            rsbackup::config::mirror::DEFAULT_MIRROR_IDLE_TIMEOUT_SECONDS,
        ),
        |m| m.idle_timeout,
    );
    let stdin = IdleReader::watched(std::io::stdin().lock(), idle_timeout);
    let stdout = std::io::stdout().lock();
    let outcome = mirror_serve(
        &config,
        &input,
        BufReader::with_capacity(CONN_BUFFER, stdin),
        BufWriter::with_capacity(CONN_BUFFER, stdout),
    );
    match outcome {
        MirrorServeOutcome::Served(_) => Ok(Outcome::Ok),
        MirrorServeOutcome::Refused => {
            eprintln!("{REFUSAL_MESSAGE}");
            std::process::exit(crate::serve::REFUSED);
        }
        MirrorServeOutcome::Failed(e) => Err(e.into()),
    }
}

/// A reader that a watchdog thread ends the process over when one read waits longer than the
/// idle timeout: a primary that connects and then says nothing (a hung run, a half-open
/// connection, someone holding the key) must not keep a mirror process and its repository
/// lock for ever. Only time spent waiting for the primary counts; the mirror's own work
/// between reads (writing and syncing a batch) does not. Ending the process mid-run is safe:
/// the mirror repository survives a kill at any moment, and the next run resumes.
struct IdleReader<R> {
    inner: R,
    /// Milliseconds since `start` when the current read began; 0 when not reading.
    waiting_since: std::sync::Arc<std::sync::atomic::AtomicU64>,
    start: std::time::Instant,
}

impl<R: std::io::Read> IdleReader<R> {
    fn watched(inner: R, timeout: std::time::Duration) -> IdleReader<R> {
        use std::sync::atomic::Ordering;
        let waiting_since = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = std::time::Instant::now();
        let watched = std::sync::Arc::clone(&waiting_since);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                let since = watched.load(Ordering::Relaxed);
                if since == 0 {
                    continue;
                }
                let now = start.elapsed().as_millis() as u64;
                if now.saturating_sub(since) > timeout.as_millis() as u64 {
                    eprintln!(
                        "rsbackup: mirror-serve: no message from the primary for {} s \
                         (idle-timeout-seconds); closing the connection",
                        timeout.as_secs()
                    );
                    std::process::exit(i32::from(crate::exit::FAILURE));
                }
            }
        });
        IdleReader {
            inner,
            waiting_since,
            start,
        }
    }
}

impl<R: std::io::Read> std::io::Read for IdleReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        // At least 1, so that a read starting in the first millisecond still counts.
        let now = (self.start.elapsed().as_millis() as u64).max(1);
        self.waiting_since.store(now, Ordering::Relaxed);
        let got = self.inner.read(buf);
        self.waiting_since.store(0, Ordering::Relaxed);
        got
    }
}
