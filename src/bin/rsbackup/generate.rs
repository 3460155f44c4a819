//! Hidden `generate-man DIR` and `generate-completions SHELL DIR`: the package's man pages and
//! shell completions, made from the same clap definitions as `--help` so they cannot drift.

use std::path::PathBuf;

use anyhow::Context;
use clap_complete::Shell;

use crate::{Outcome, cli_command};

#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory to write `rsbackup.1` and one `rsbackup-SUBCOMMAND.1` per subcommand into.
    dir: PathBuf,
}

#[derive(clap::Args)]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
    /// Directory to write the completion file into (named as the shell expects).
    dir: PathBuf,
}

pub fn man(args: ManArgs) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    // One page for `rsbackup`, then one per visible subcommand, recursively
    // (`rsbackup-repair-index.1`); hidden commands get none.
    clap_mangen::generate_to(cli_command(), &args.dir)
        .with_context(|| format!("cannot write man pages into {}", args.dir.display()))?;
    Ok(Outcome::Ok)
}

pub fn completions(args: CompletionArgs) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut cmd = cli_command();
    clap_complete::generate_to(args.shell, &mut cmd, "rsbackup", &args.dir)
        .with_context(|| format!("cannot write completions into {}", args.dir.display()))?;
    Ok(Outcome::Ok)
}
