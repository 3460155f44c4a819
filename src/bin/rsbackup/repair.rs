//! `rsbackup repair index --repo R`: rebuild `index.db` from the packs, their reference lists,
//! the session records and the wrapped data keys beside them (no key needed).

use std::path::PathBuf;

use anyhow::Result;
use rsbackup::gc::Failpoint;
use rsbackup::repair::rebuild_index;

use crate::Outcome;

/// What to repair.
#[derive(clap::Subcommand)]
pub enum What {
    /// Rebuild index.db from what is on disk beside it (the old one is kept as index.db.old).
    Index(IndexArgs),
}

/// Arguments of `repair index`.
#[derive(clap::Args)]
pub struct IndexArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// An age identity file: needed only when a pack's reference list is missing or damaged,
    /// to find its manifest chunks by opening its records.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

/// Run `repair`.
pub fn run(what: What) -> Result<Outcome> {
    match what {
        What::Index(args) => index(args),
    }
}

fn index(args: IndexArgs) -> Result<Outcome> {
    let repo = crate::open::repo(&args.repo)?;
    // Crash tests only: abort at a named point, as for prune.
    let fail = Failpoint::new(std::env::var("RSBACKUP_FAILPOINT").ok().as_deref())?;
    let identities = match &args.identity {
        Some(path) => Some(rsbackup::crypto::wrap::Identities::load(path)?),
        None => None,
    };
    let report = rebuild_index(&repo, identities.as_ref(), &fail)?;
    println!(
        "rebuilt {}: {} sessions, {} chunks ({} manifest) in {} packs, {} data keys{}",
        repo.root().join("index.db").display(),
        report.sessions,
        report.chunks,
        report.manifest_chunks,
        report.packs,
        report.keys,
        if report.old_index_kept {
            "; the old index is index.db.old"
        } else {
            ""
        }
    );
    for line in report
        .sessions_lost
        .iter()
        .map(|l| format!("session lost: {l}"))
        .chain(
            report
                .sessions_damaged
                .iter()
                .map(|l| format!("session damaged: {l}")),
        )
        .chain(report.problems.iter().map(|l| format!("problem: {l}")))
    {
        eprintln!("rsbackup: {line}");
    }
    Ok(if report.clean() {
        Outcome::Ok
    } else {
        Outcome::Partial
    })
}
