//! `rsbackup pin|unpin --repo R --session ID`: keep a session whatever the retention rules, or
//! hand it back to them.

use std::path::PathBuf;

use anyhow::Result;
use rsbackup::gc::set_pinned;
use rsbackup::ids::SessionId;

use crate::{Outcome, UsageError};

/// Arguments of `pin` and `unpin`.
#[derive(clap::Args)]
pub struct Args {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// The session id (as `rsbackup sessions` lists it).
    #[arg(long, value_name = "ID")]
    session: String,
}

/// Run `pin` (`pinned` true) or `unpin`.
pub fn run(args: Args, pinned: bool) -> Result<Outcome> {
    let id: SessionId = args.session.parse().map_err(|_| {
        UsageError(format!(
            "--session must be a session id, got {:?}",
            args.session
        ))
    })?;
    let repo = crate::open::repo(&args.repo)?;
    set_pinned(&repo, id, pinned)?;
    println!(
        "session {id} {}",
        if pinned {
            "pinned: it is kept whatever the retention rules say"
        } else {
            "unpinned: the retention rules apply to it again"
        }
    );
    Ok(Outcome::Ok)
}
