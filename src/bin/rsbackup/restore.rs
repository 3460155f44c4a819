//! `rsbackup restore --repo R --session ID --identity F --target DIR [--force]
//! [--to-original-paths] [--json] [--quiet] [PATH...]`, or on
//! a client, `rsbackup restore --config client.toml --session ID|latest --identity F --target
//! DIR [PATH...]` (its own sessions through the server's `restore-fetch`, decrypted here), and
//! `rsbackup restore --config client.toml --list`.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use rsbackup::ids::SessionId;
use rsbackup::reader::ChunkSource;
use rsbackup::restore::{RestoreOptions, restore_with_progress};
use rsbackup::{Error, ErrorKind};

use crate::Outcome;
use crate::exit;
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
    /// Put each source back at its original path under --target (`--target / --force`: where
    /// it was on the client). Only for sessions that recorded their sources' full paths.
    #[arg(long)]
    pub(crate) to_original_paths: bool,
    /// Print the summary as JSON on standard output (docs/usage.md "restore").
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress bar, and nothing on standard output when all went well (problems are still
    /// reported on standard error; --json still prints).
    #[arg(long)]
    pub(crate) quiet: bool,
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
    let sources = if args.to_original_paths {
        original_sources(&reader, session)?
    } else {
        None
    };
    restore_from(
        &reader,
        SessionId(session.0),
        &opts,
        &args,
        sources.as_deref(),
    )
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
    let target = args.target.clone().unwrap_or_default();
    let to_root = target
        .components()
        .eq(std::path::Path::new("/").components());
    if to_root && !args.to_original_paths {
        return Err(crate::UsageError(
            "--target / writes the session's paths into the root file system: add \
             --to-original-paths to say that is what you mean"
                .into(),
        )
        .into());
    }
    Ok(RestoreOptions {
        target,
        paths,
        allow_non_empty: args.force,
        restore_owner: rustix::process::geteuid().is_root(),
    })
}

/// Restore `session` from `source` as `opts` says, print the summary (as `args` asks; with
/// where each of `sources` went, when restored to its original paths), and say how it went.
pub(crate) fn restore_from(
    source: &dyn ChunkSource,
    session: SessionId,
    opts: &RestoreOptions,
    args: &Args,
    sources: Option<&[Vec<u8>]>,
) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let bar = crate::progress::Bar::new(args.quiet);
    let report = restore_with_progress(source, session, opts, &bar).map_err(|e| {
        if e.kind() == ErrorKind::TargetNotEmpty && !e.to_string().contains("--force") {
            Error::new(
                ErrorKind::TargetNotEmpty,
                format!("{e}; use --force to restore into it anyway"),
            )
        } else {
            e
        }
    })?;
    drop(bar);
    let seconds = started.elapsed().as_secs_f64();
    let placed: Vec<(String, PathBuf)> = sources
        .iter()
        .copied()
        .flatten()
        .map(|source| {
            let source = String::from_utf8_lossy(source).into_owned();
            let rel = source.trim_start_matches('/');
            let to = if rel.is_empty() {
                opts.target.clone()
            } else {
                opts.target.join(rel)
            };
            (source, to)
        })
        .collect();
    if args.json {
        crate::output::print_json(&serde_json::json!({
            "session": session.to_string(),
            "target": opts.target,
            "outcome": if report.errors.is_empty() { "ok" } else { "partial" },
            "exit_code": if report.errors.is_empty() { exit::OK } else { exit::PARTIAL },
            "entries": report.entries,
            "files": report.files,
            "bytes": report.bytes,
            "seconds": seconds,
            "errors": report.errors,
            "lost_manifest_chunks": report.lost_manifest_chunks,
            "disk_full": report.disk_full,
            "sources": placed
                .iter()
                .map(|(source, to)| serde_json::json!({"source": source, "target": to}))
                .collect::<Vec<_>>(),
        }))?;
    } else if !args.quiet || !report.errors.is_empty() {
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
        for (source, to) in &placed {
            writeln!(out, "  {source} -> {}", to.display())?;
        }
        out.flush()?;
    }
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
    if let Some(full) = &report.disk_full {
        eprintln!("rsbackup: {full}");
    }
    Ok(Outcome::Partial)
}

/// The session's sources (absolute paths on the client) for `--to-original-paths`: its paths
/// are full paths, so each source is restored at its own path under the target. A session
/// recorded before full paths holds each source under its last component only, and is refused.
fn original_sources(
    reader: &rsbackup::reader::SessionReader,
    session: rsbackup::ids::SessionId,
) -> Result<Option<Vec<Vec<u8>>>> {
    recorded_sources(
        session,
        rsbackup::store::records::read_session_sources(reader.repo().root(), session)?,
    )
}

/// `sources` (a session's sources record, if it has one) for `--to-original-paths`, or why
/// that session cannot be restored to its original paths.
pub(crate) fn recorded_sources(
    session: rsbackup::ids::SessionId,
    sources: Option<Vec<Vec<u8>>>,
) -> Result<Option<Vec<Vec<u8>>>> {
    match sources {
        Some(sources) => Ok(Some(sources)),
        None => Err(crate::UsageError(format!(
            "session {session} was recorded before sessions kept full paths: each source lies \
             under its last component (/var/www as www/), so where it was on the client is not \
             recorded; restore it with --target DIR and copy each directory back by hand \
             (docs/usage.md, \"A bad day\")"
        ))
        .into()),
    }
}
