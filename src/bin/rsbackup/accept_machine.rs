//! `rsbackup accept-machine --config FILE --client NAME [--machine ID]`: the administrator's
//! answer to a refused new machine (`on-new-machine = "refuse"`). With `--machine`, that machine
//! becomes the client's only recorded machine (a rebuilt machine replaces the old one); without
//! it, every recorded machine is forgotten and the client's next request is a first use.

use anyhow::Result;
use rsbackup::config::ServerConfig;
use rsbackup::format::client_identity::MachineId;
use rsbackup::server::machines::{MachineBook, MachineEntry, machines_path};

use crate::{Outcome, UsageError};

/// Arguments of `accept-machine`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: crate::open::ServerConfigArg,
    /// The client (as in `[clients.NAME]`).
    #[arg(long, value_name = "NAME")]
    client: String,
    /// The new machine's id, as the refusal (audit log, alert mail) names it: 32 hex digits.
    /// Without it, the recorded machines are forgotten and the next request is a first use.
    #[arg(long, value_name = "ID")]
    machine: Option<String>,
}

/// Run `accept-machine`.
pub fn run(args: Args) -> Result<Outcome> {
    let config = ServerConfig::load(&args.server.path)?;
    let Some(policy) = config.client(&args.client) else {
        return Err(UsageError(format!(
            "--client {:?}: no such client in {}",
            args.client,
            args.server.path.display()
        ))
        .into());
    };
    let machine = args
        .machine
        .as_deref()
        .map(|m| MachineId::parse(m).map_err(|e| UsageError(format!("--machine: {e}"))))
        .transpose()?;
    let mut book = MachineBook::open(&config.staging_root, &policy.name)?;
    let now = jiff::Timestamp::now().as_second();
    let old = match &machine {
        Some(m) => book.replace(m, now)?,
        None => book.forget()?,
    };
    let file = machines_path(&config.staging_root, &policy.name);
    match machine {
        Some(m) => println!(
            "client {}: machine {m} is now its only recorded machine ({})",
            policy.name,
            file.display()
        ),
        None => println!(
            "client {}: no machine recorded any more; its next request records its machine ({})",
            policy.name,
            file.display()
        ),
    }
    for MachineEntry { id, recorded, .. } in old {
        let when = jiff::Timestamp::from_second(recorded)
            .map(|t| t.to_string())
            .unwrap_or_default();
        println!("  forgot machine {id} (recorded {when})");
    }
    Ok(Outcome::Ok)
}
