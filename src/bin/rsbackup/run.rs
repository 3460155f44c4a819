//! `rsbackup run`: the client's backup run, from cron.

use std::path::PathBuf;

use crate::Outcome;

/// Arguments of `rsbackup run`.
#[derive(clap::Args)]
pub struct Args {
    /// The client configuration file.
    #[arg(long, value_name = "FILE", default_value = "/etc/rsbackup/client.toml")]
    config: PathBuf,
}

/// Run the backup.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("run: not implemented yet ({})", args.config.display())
}
