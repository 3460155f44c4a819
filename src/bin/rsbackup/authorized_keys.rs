//! `rsbackup authorized-keys [--config FILE] [--program PATH]`: print the `authorized_keys`
//! lines that bind each client's keys to `rsbackup serve --client NAME`.

use std::path::PathBuf;

use anyhow::Result;
use rsbackup::config::ServerConfig;
use rsbackup::server::authorized_keys::authorized_keys_lines;

use crate::Outcome;

/// Arguments of `authorized-keys`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: crate::open::ServerConfigArg,
    /// The rsbackup binary sshd should run (default: this one).
    #[arg(long, value_name = "PATH")]
    program: Option<PathBuf>,
}

/// Run `authorized-keys`.
pub fn run(args: Args) -> Result<Outcome> {
    let config = ServerConfig::load(&args.server.path)?;
    for warning in config.warnings() {
        eprintln!("rsbackup: warning: {warning}");
    }
    let program = match args.program {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let mut prefix = format!("{} serve", program.display());
    if args.server.path != std::path::Path::new(crate::open::SERVER_CONFIG) {
        let config_path = std::path::absolute(&args.server.path)?;
        prefix.push_str(&format!(" --config {}", config_path.display()));
    }
    if prefix.contains(' ') && prefix.split(' ').any(str::is_empty) {
        anyhow::bail!("paths with double spaces cannot be used in a forced command: {prefix:?}");
    }
    for line in authorized_keys_lines(&config, &prefix)? {
        println!("{line}");
    }
    Ok(Outcome::Ok)
}
