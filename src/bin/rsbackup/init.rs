//! `rsbackup init --repo R --recipient age1... [--recipient ...]`: create a repository.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use rsbackup::repo::Repo;

use crate::Outcome;

/// Arguments of `init`.
#[derive(clap::Args)]
pub struct Args {
    /// The repository directory (missing or empty).
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// An age recipient (`age1...`) that can restore; repeat for several (an escrow key, say).
    #[arg(long, value_name = "AGE1...", required = true)]
    recipient: Vec<String>,
}

/// Run `init`.
pub fn run(args: Args) -> Result<Outcome> {
    let repo = Repo::init(&args.repo, &args.recipient)?;
    let mut out = crate::output::Stdout::new();
    writeln!(
        out,
        "initialized repository {} (id {}) for {} recipient{}",
        repo.root().display(),
        repo.config().id,
        args.recipient.len(),
        if args.recipient.len() == 1 { "" } else { "s" }
    )?;
    out.flush()?;
    Ok(Outcome::Ok)
}
