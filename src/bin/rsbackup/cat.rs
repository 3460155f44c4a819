//! `rsbackup cat --repo R --session ID --identity F PATH`: one regular file to standard output.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use crate::Outcome;

/// Arguments of `cat`.
#[derive(clap::Args)]
pub struct Args {
    /// The repository directory.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// Session id, or `latest` together with --client.
    #[arg(long, value_name = "ID|latest")]
    session: String,
    /// The client, for `--session latest` (or to confirm a session id's client).
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// The age identity file that can unlock the repository.
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// The regular file to print, as a path inside the session.
    #[arg(value_name = "PATH")]
    path: OsString,
}

/// Run `cat`.
pub fn run(args: Args) -> Result<Outcome> {
    let path = crate::open::session_path(&args.path)?;
    let repo = crate::open::repo(&args.repo)?;
    let index = repo.index()?;
    let session = crate::open::session(&index, &args.repo, &args.session, args.client.as_deref())?;
    let reader = crate::open::reader(&repo, &args.identity)?;
    let mut out = crate::output::Stdout::new();
    rsbackup::restore::cat(&reader, session, &path, &mut out)?;
    out.flush()?;
    Ok(Outcome::Ok)
}
