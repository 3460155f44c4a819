//! `rsbackup watch --config server.toml`: the timer run (see `rsbackup::watch`). Prints what it
//! mailed; exits 1 when a mail could not be sent (it is tried again next run), 0 otherwise,
//! overdue clients or not (`status` reports those by its exit code).

use anyhow::Result;
use rsbackup::config::ServerConfig;

use crate::Outcome;
use crate::log::{Level, Log};

/// Arguments of `watch`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: crate::open::ServerConfigArg,
}

/// Run `watch`.
pub fn run(args: Args) -> Result<Outcome> {
    let config = ServerConfig::load(&args.server.path)?;
    let mut log = Log::open(&config.log, true);
    let host = crate::serve::host_name();
    let now = crate::status::now()?;
    let ran = crate::open::repo(&config.repository)
        .and_then(|repo| Ok(repo.index()?))
        .and_then(|index| Ok(rsbackup::watch::run(&config, &index, now, &host)?));
    let (report, _) = match ran {
        Ok(r) => r,
        Err(e) => {
            log.event(
                Level::Error,
                &format!("watch failed: {}", crate::one_line(&e)),
                &[("command", "watch")],
            );
            return Err(e);
        }
    };
    if report.busy {
        println!("another watch run holds the lock; nothing done");
        return Ok(Outcome::Ok);
    }
    for subject in &report.sent {
        println!("mailed: {subject}");
        log.event(
            Level::Info,
            &format!("mailed: {subject}"),
            &[("command", "watch")],
        );
    }
    for failed in &report.failed {
        log.event(
            Level::Error,
            &format!("mail not sent: {failed}"),
            &[("command", "watch")],
        );
    }
    if report.failed.is_empty() {
        Ok(Outcome::Ok)
    } else {
        anyhow::bail!(
            "{} mails could not be sent: {}",
            report.failed.len(),
            report.failed.join("; ")
        )
    }
}
