//! `rsbackup mirror` and the hidden `rsbackup mirror-serve` (the mirror's forced command).

use clap::Args as ClapArgs;

use crate::Outcome;

/// `rsbackup mirror`.
#[derive(ClapArgs)]
pub struct Args {}

/// `rsbackup mirror-serve`.
#[derive(ClapArgs)]
pub struct ServeArgs {}

/// Run `mirror`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("mirror is not implemented yet")
}

/// Run `mirror-serve`.
pub fn serve(_args: ServeArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("mirror-serve is not implemented yet")
}
