//! `rsbackup add-client NAME --key FILE [--address CIDR]... [--window SPEC]...`: append a
//! `[clients.NAME]` table to server.toml (comments and layout kept), validated, written
//! atomically with the file's owner and mode; then print the next steps.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rsbackup::config::add_client::{NewClient, append_client};

use crate::Outcome;

/// Arguments of `add-client`.
#[derive(clap::Args)]
pub struct Args {
    /// The new client's name (a-z 0-9 . _ -), as its client.toml will state it.
    name: String,
    /// The client's ssh public key file (its `id_ed25519.pub`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// An address or network the client connects from; repeat for several. Without one, the
    /// `[defaults]` addresses apply (and the file must have some).
    #[arg(long, value_name = "CIDR")]
    address: Vec<String>,
    /// When the client may connect (`"mon-fri 22:00-06:00"`); repeat for several. Without one,
    /// the `[defaults]` windows apply.
    #[arg(long, value_name = "SPEC")]
    window: Vec<String>,
    #[command(flatten)]
    server: crate::open::ServerConfigArg,
}

/// Run `add-client`.
pub fn run(args: Args) -> Result<Outcome> {
    let text = std::fs::read_to_string(&args.server.path)
        .with_context(|| format!("cannot read {}", args.server.path.display()))?;
    let key_text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("--key {}: cannot read it", args.key.display()))?;
    let client = NewClient {
        name: args.name.clone(),
        key_text,
        key_file: args.key.clone(),
        addresses: args.address,
        windows: args.window,
    };
    let (new_text, config) = append_client(&text, &args.server.path, &client)?;
    let meta = std::fs::metadata(&args.server.path)
        .with_context(|| format!("cannot inspect {}", args.server.path.display()))?;
    rsbackup::store::durable::write_atomic(
        &args.server.path,
        new_text.as_bytes(),
        meta.mode() & 0o7777,
    )?;
    // The account reads server.toml through its group: keep the owner and group it had.
    std::os::unix::fs::chown(&args.server.path, Some(meta.uid()), Some(meta.gid()))
        .with_context(|| format!("cannot give {} its owner back", args.server.path.display()))?;
    let file = args.server.path.display();
    let staging = config.staging_root.display();
    println!(
        "added client {name} to {file}
next steps:
  1. on this server, as root: give sshd the new key (authorized-keys is its one writer):
       rsbackup authorized-keys --config {file} > ~rsbackup/.ssh/authorized_keys
  2. on the client: name = \"{name}\" in /etc/rsbackup/client.toml, then
       rsbackup config check --client /etc/rsbackup/client.toml
       rsbackup run --dry-run --config /etc/rsbackup/client.toml
  (its uploads land in {staging}/{name})",
        name = args.name
    );
    Ok(Outcome::Ok)
}
