//! `rsbackup keygen --output FILE`: write a new age identity (mode 0600, never overwriting) and
//! print its recipient.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::Outcome;

/// Arguments of `keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the identity (private key). Refuses to overwrite. Keep it offline:
    /// restores need it, the server never does.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// Protect the identity with a passphrase (age scrypt, armored), asked twice on the
    /// terminal unless --passphrase-file is given.
    #[arg(long)]
    passphrase: bool,
    /// With --passphrase: read the passphrase from the first line of this file.
    #[arg(long, value_name = "FILE", requires = "passphrase")]
    passphrase_file: Option<PathBuf>,
}

/// Run `keygen`.
pub fn run(args: Args) -> Result<Outcome> {
    let (identity, recipient) = rsbackup::crypto::wrap::keygen();
    let identity = if args.passphrase {
        let passphrase = match &args.passphrase_file {
            Some(f) => crate::passphrase::from_file(f)?,
            None => crate::passphrase::prompt_twice()?,
        };
        rsbackup::crypto::passphrase::encrypt(&identity, passphrase)?
    } else {
        identity
    };
    let path = &args.output;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "{} already exists; refusing to overwrite an identity file",
                    path.display()
                )
            } else {
                anyhow::anyhow!("cannot create identity file {}: {e}", path.display())
            }
        })?;
    let written = file
        .write_all(identity.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("cannot write identity file {}", path.display()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the new directory entry durable too; the identity is the one thing a restore
        // cannot do without.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync directory {}", dir.display()))?;
    }
    let mut out = crate::output::Stdout::new();
    writeln!(out, "{recipient}")?;
    out.flush()?;
    Ok(Outcome::Ok)
}
