//! `rsbackup check --repo R [--read-data] [--identity F] [--json]`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use rsbackup::check::{CheckOptions, CheckReport, check_with_progress};

use crate::Outcome;
use crate::output::size_exact;

/// Arguments of `check`.
#[derive(clap::Args)]
pub struct Args {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// Read every record and compare its hash with the index.
    #[arg(long)]
    read_data: bool,
    /// Also decrypt every chunk and verify its id (implies reading everything), and name the
    /// paths that depend on a damaged chunk.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar, and nothing on standard output when all went well (problems are still
    /// reported on standard error; --json still prints).
    #[arg(long)]
    quiet: bool,
}

/// Run `check`.
pub fn run(args: Args) -> Result<Outcome> {
    let identities = match &args.identity {
        Some(p) => Some(crate::open::identities(p)?),
        None => None,
    };
    let repo = crate::open::repo(&args.repo)?;
    let opts = CheckOptions {
        read_data: args.read_data,
        identities,
    };
    let bar = crate::progress::Bar::new(args.quiet);
    let report = check_with_progress(&repo, &opts, &bar)?;
    drop(bar);
    if args.json {
        crate::output::print_json(&report)?;
    } else if !args.quiet || !report.problems.is_empty() {
        print_human(&args, &report)?;
    }
    if report.problems.is_empty() {
        Ok(Outcome::Ok)
    } else {
        eprintln!(
            "rsbackup: check of {} found {} problem{}",
            args.repo.display(),
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        );
        Ok(Outcome::Partial)
    }
}

fn print_human(args: &Args, r: &CheckReport) -> Result<()> {
    let mut out = crate::output::Stdout::new();
    let depth = match (&args.identity, args.read_data) {
        (Some(_), _) => "index, packs, every record's hash and every chunk's authentication",
        (None, true) => "index, packs and every record's hash",
        (None, false) => "index and packs (add --read-data to read every record)",
    };
    writeln!(out, "checked {depth}")?;
    writeln!(
        out,
        "  {} packs, {} chunks, {} read",
        r.packs,
        r.chunks,
        size_exact(r.bytes_read)
    )?;
    if r.problems.is_empty() {
        writeln!(out, "no problems found")?;
    }
    for p in &r.problems {
        writeln!(out, "problem: {}", p.what)?;
        if let Some(chunk) = &p.chunk {
            writeln!(out, "  chunk:    {chunk}")?;
        }
        if let Some(pack) = &p.pack {
            writeln!(out, "  pack:     {pack}")?;
        }
        if !p.sessions.is_empty() {
            let list: Vec<String> = p.sessions.iter().map(|s| s.to_string()).collect();
            writeln!(out, "  sessions: {}", list.join(", "))?;
        }
        for path in &p.paths {
            writeln!(out, "  path:     {path}")?;
        }
    }
    out.flush()?;
    Ok(())
}
