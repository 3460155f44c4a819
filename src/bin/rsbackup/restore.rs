//! `rsbackup restore --repo R --session ID --identity F --target DIR [--force] [PATH...]`, or on
//! a client, `rsbackup restore --config client.toml --session ID|latest --identity F --target
//! DIR [PATH...]` (its own sessions through the server's `restore-fetch`, decrypted here), and
//! `rsbackup restore --config client.toml --list`.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use rsbackup::ids::SessionId;
use rsbackup::reader::ChunkSource;
use rsbackup::restore::{RestoreOptions, restore};
use rsbackup::{Error, ErrorKind};

use crate::Outcome;
use crate::output::{duration, rate, size_exact};

/// Arguments of `restore`.
#[derive(clap::Args)]
pub struct Args {
    /// The repository directory (on the server, or a copy of it).
    #[arg(
        long,
        value_name = "DIR",
        env = "RSBACKUP_REPO",
        required_unless_present = "config"
    )]
    repo: Option<PathBuf>,
    /// On a client: its client.toml; the session is fetched from the server through ssh and
    /// decrypted here with the client's own identity (its restore-recipient's).
    #[arg(long, value_name = "FILE", conflicts_with = "repo")]
    pub(crate) config: Option<PathBuf>,
    /// Session id, or `latest` (with --client, or on a client).
    #[arg(long, value_name = "ID|latest", required_unless_present = "list")]
    pub(crate) session: Option<String>,
    /// The client, for `--session latest` (or to confirm a session id's client).
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    client: Option<String>,
    /// The age identity file: the repository's, or with --config the client's own.
    #[arg(long, value_name = "FILE", env = "RSBACKUP_IDENTITY")]
    pub(crate) identity: Option<PathBuf>,
    /// With --config: list the client's sessions on the server instead of restoring.
    #[arg(long, requires = "config")]
    pub(crate) list: bool,
    /// With --config: the directory of ssh's shared connection (default: client.toml's
    /// state-dir).
    #[arg(long, value_name = "DIR", requires = "config")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Where to restore (created if missing; must be empty unless --force).
    #[arg(long, value_name = "DIR", required_unless_present = "list")]
    pub(crate) target: Option<PathBuf>,
    /// Restore into a non-empty target, replacing what is in the way.
    #[arg(long)]
    pub(crate) force: bool,
    /// Restore only these paths of the session (and what is below them).
    #[arg(value_name = "PATH")]
    pub(crate) paths: Vec<OsString>,
}

/// The identity file, required by every restore.
pub(crate) fn identity(args: &Args) -> Result<&std::path::Path> {
    args.identity.as_deref().ok_or_else(|| {
        crate::UsageError("--identity FILE is needed (or RSBACKUP_IDENTITY)".into()).into()
    })
}

/// Run `restore`.
pub fn run(args: Args) -> Result<Outcome> {
    if args.config.is_some() {
        return crate::restore_client::run(&args);
    }
    let opts = options(&args)?;
    let at = crate::open::SessionArgs {
        repo: args.repo.clone().unwrap_or_default(),
        session: args.session.clone().unwrap_or_default(),
        client: args.client.clone(),
        identity: identity(&args)?.to_owned(),
    };
    let (session, reader) = at.open()?;
    restore_from(&reader, SessionId(session.0), &opts)
}

/// The restore options of the command line.
pub(crate) fn options(args: &Args) -> Result<RestoreOptions> {
    let mut paths = Vec::with_capacity(args.paths.len());
    for p in &args.paths {
        paths.push(crate::open::session_path(p)?);
    }
    if paths.iter().any(|p| p.is_empty()) {
        paths.clear(); // the root names everything
    }
    Ok(RestoreOptions {
        target: args.target.clone().unwrap_or_default(),
        paths,
        allow_non_empty: args.force,
        restore_owner: rustix::process::geteuid().is_root(),
    })
}

/// Restore `session` from `source` as `opts` says, print the summary, and say how it went.
pub(crate) fn restore_from(
    source: &dyn ChunkSource,
    session: SessionId,
    opts: &RestoreOptions,
) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let report = restore(source, session, opts).map_err(|e| {
        if e.kind() == ErrorKind::TargetNotEmpty && !e.to_string().contains("--force") {
            Error::new(
                ErrorKind::TargetNotEmpty,
                format!("{e}; use --force to restore into it anyway"),
            )
        } else {
            e
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let mut out = crate::output::Stdout::new();
    writeln!(
        out,
        "restored session {session} into {}: {} entries, {} regular files, {} in {} ({})",
        opts.target.display(),
        report.entries,
        report.files,
        size_exact(report.bytes),
        duration(seconds),
        rate(report.bytes, seconds)
    )?;
    out.flush()?;
    if report.errors.is_empty() {
        return Ok(Outcome::Ok);
    }
    for e in &report.errors {
        eprintln!("rsbackup: cannot restore {}: {}", e.path, e.message);
    }
    let lost = if report.lost_manifest_chunks > 0 {
        format!(
            ", {} manifest chunk{} could not be read (the ranges above)",
            report.lost_manifest_chunks,
            if report.lost_manifest_chunks == 1 {
                ""
            } else {
                "s"
            }
        )
    } else {
        String::new()
    };
    eprintln!(
        "rsbackup: restore of session {session} is partial: {} path{} failed{lost}",
        report.errors.len(),
        if report.errors.len() == 1 { "" } else { "s" }
    );
    Ok(Outcome::Partial)
}
