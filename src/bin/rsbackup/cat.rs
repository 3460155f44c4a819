//! `rsbackup cat --repo R --session ID --identity F PATH`: one regular file to standard output.

use std::ffi::OsString;
use std::io::Write;

use anyhow::Result;

use crate::Outcome;

/// Arguments of `cat`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    at: crate::open::SessionArgs,
    /// The regular file to print, as a path inside the session.
    #[arg(value_name = "PATH")]
    path: OsString,
}

/// Run `cat`.
pub fn run(args: Args) -> Result<Outcome> {
    let path = crate::open::session_path(&args.path)?;
    let (session, reader) = args.at.open()?;
    let mut out = crate::output::Stdout::new();
    rsbackup::restore::cat(&reader, session, &path, &mut out)?;
    out.flush()?;
    Ok(Outcome::Ok)
}
