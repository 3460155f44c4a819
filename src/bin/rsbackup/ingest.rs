//! `rsbackup ingest --repo R --client NAME [--threads N] [--no-files-cache] [--json] DIR`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use rsbackup::index::SessionState;
use rsbackup::ingest::{IngestOptions, IngestReport, ingest_with_progress, validate_client_name};
use rsbackup::{Error, ErrorKind};

use crate::Outcome;
use crate::output::{duration, rate, size, size_exact};

/// Arguments of `ingest`.
#[derive(clap::Args)]
pub struct Args {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// The client the session belongs to (1-64 of a-z 0-9 . _ -).
    #[arg(long, value_name = "NAME")]
    client: String,
    /// Worker threads (default: a few more than cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Read every file, ignoring (and not writing) the files cache.
    #[arg(long)]
    no_files_cache: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar, and nothing on standard output when all went well (problems are still
    /// reported on standard error; --json still prints).
    #[arg(long)]
    quiet: bool,
    /// The directory to store.
    #[arg(value_name = "DIR")]
    source: PathBuf,
}

/// Run `ingest`.
pub fn run(args: Args) -> Result<Outcome> {
    validate_client_name(&args.client)?;
    match std::fs::metadata(&args.source) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid(format!(
                "ingest source {} is not a directory",
                args.source.display()
            ))
            .into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("ingest source {} does not exist", args.source.display()),
            )
            .into());
        }
        Err(e) => {
            return Err(Error::io(
                format_args!("cannot read ingest source {}", args.source.display()),
                e,
            )
            .into());
        }
    }
    let repo = crate::open::repo(&args.repo)?;
    let opts = IngestOptions {
        client: args.client.clone(),
        source: args.source.clone(),
        threads: args.threads.map(usize::from),
        files_cache: !args.no_files_cache,
        sources: None,
        restore_recipient: None,
    };
    let bar = crate::progress::Bar::new(args.quiet);
    let report = ingest_with_progress(&repo, &opts, &bar)?;
    drop(bar);
    if args.json {
        crate::output::print_json(&report)?;
    } else if !args.quiet || !report.errors.is_empty() {
        print_human(&args.client, &report)?;
    }
    if report.state == SessionState::Partial || !report.errors.is_empty() {
        eprintln!(
            "rsbackup: session {} of client {:?} is partial: {} path{} could not be read",
            report.session,
            args.client,
            report.errors.len(),
            if report.errors.len() == 1 { "" } else { "s" }
        );
        return Ok(Outcome::Partial);
    }
    Ok(Outcome::Ok)
}

fn print_human(client: &str, r: &IngestReport) -> Result<()> {
    let mut out = crate::output::Stdout::new();
    let state = match r.state {
        SessionState::Complete => "complete",
        SessionState::Partial => "partial",
        SessionState::Running => "running",
    };
    writeln!(out, "session {} of client {client}: {state}", r.session)?;
    writeln!(
        out,
        "  entries:  {} ({} regular files, {})",
        r.entries,
        r.files,
        size_exact(r.bytes)
    )?;
    let skipped = r.files.saturating_sub(r.files_read);
    if skipped > 0 {
        writeln!(
            out,
            "  read:     {} files, {} ({skipped} proven unchanged by the files cache)",
            r.files_read,
            size(r.bytes_read)
        )?;
    } else {
        writeln!(
            out,
            "  read:     {} files, {}",
            r.files_read,
            size(r.bytes_read)
        )?;
    }
    writeln!(
        out,
        "  new:      {} chunks, {} before compression, {} stored",
        r.new_chunks,
        size(r.new_plain_bytes),
        size_exact(r.new_stored_bytes)
    )?;
    if r.bytes_read > 0 {
        writeln!(
            out,
            "  time:     {} ({} read)",
            duration(r.seconds),
            rate(r.bytes_read, r.seconds)
        )?;
    } else {
        writeln!(out, "  time:     {}", duration(r.seconds))?;
    }
    for e in &r.errors {
        writeln!(out, "  not backed up: {}: {}", e.path, e.message)?;
    }
    out.flush()?;
    Ok(())
}
