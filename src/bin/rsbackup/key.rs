//! `rsbackup key list | add-recipient R | remove-recipient R | rewrap --identity F`: the
//! repository's recipients after `init` (format-spec/keys.md "Changing recipients").

use std::path::PathBuf;

use anyhow::Result;
use rsbackup::crypto::wrap::{Identities, Recipients};
use rsbackup::gc::Failpoint;
use rsbackup::keys::{
    add_recipient, remove_recipient, rewrap, rewrap_pending, set_restore_recipients,
};

use crate::Outcome;

/// What to do with the keys.
#[derive(clap::Subcommand)]
pub enum What {
    /// Print the repository's recipients, one a line.
    List(ListArgs),
    /// Add a recipient (age1...); run `key rewrap` next so that existing keys open with it.
    AddRecipient(RecipientArgs),
    /// Remove a recipient (never the last); run `key rewrap` next so that its identity opens
    /// nothing.
    RemoveRecipient(RecipientArgs),
    /// Re-encrypt every wrapped data key and keys/secret.age to the current recipients; a
    /// rerun finishes an interrupted one.
    Rewrap(RewrapArgs),
}

/// `--repo` alone.
#[derive(clap::Args)]
pub struct RepoArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
}

/// Arguments of `key list`.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    at: RepoArgs,
    /// Print `{"recipients": [...], "rewrap_pending": BOOL}` as JSON.
    #[arg(long)]
    json: bool,
}

/// A recipient to add or remove.
#[derive(clap::Args)]
pub struct RecipientArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// The recipient (age1... public key).
    #[arg(value_name = "RECIPIENT")]
    recipient: String,
}

/// Arguments of `key rewrap`.
#[derive(clap::Args)]
pub struct RewrapArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// An age identity file that opens the keys as they are wrapped now; repeat it when keys
    /// are wrapped to different lists (a mirror that received keys before and after a change).
    #[arg(long, value_name = "FILE", env = "RSBACKUP_IDENTITY", required = true)]
    identity: Vec<PathBuf>,
    /// The server.toml whose clients' `restore-recipient` each client's own keys are wrapped
    /// to as well (recorded for the next rewraps); without it, the recipients recorded by
    /// earlier ingests and rewraps.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Run `key`.
pub fn run(what: What) -> Result<Outcome> {
    match what {
        What::List(a) => {
            let repo = crate::open::repo(&a.at.repo)?;
            let recipients = &repo.config().recipients;
            if a.json {
                crate::output::print_json(&serde_json::json!({
                    "recipients": recipients.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    "rewrap_pending": rewrap_pending(&repo),
                }))?;
            } else {
                for r in recipients {
                    println!("{r}");
                }
            }
            for (client, r) in repo.index()?.restore_recipients()? {
                println!("{r} (client {client}'s own sessions only)");
            }
            if rewrap_pending(&repo) {
                eprintln!("rsbackup: an interrupted `key rewrap` has not finished: run it again");
            }
        }
        What::AddRecipient(a) => {
            // Parse first: the error names a bad value before anything is locked.
            Recipients::parse(std::slice::from_ref(&a.recipient))?;
            let mut repo = crate::open::repo(&a.repo)?;
            add_recipient(&mut repo, &a.recipient)?;
            println!(
                "added {}; run `rsbackup key rewrap --repo {} --identity FILE` so that the \
                 existing keys open with it",
                a.recipient.trim(),
                a.repo.display()
            );
        }
        What::RemoveRecipient(a) => {
            let mut repo = crate::open::repo(&a.repo)?;
            remove_recipient(&mut repo, &a.recipient)?;
            println!(
                "removed {}; its identity still opens the existing keys until `rsbackup key \
                 rewrap --repo {} --identity FILE` has run",
                a.recipient.trim(),
                a.repo.display()
            );
        }
        What::Rewrap(a) => {
            let repo = crate::open::repo(&a.repo)?;
            if let Some(path) = &a.config {
                let config = rsbackup::config::ServerConfig::load(path)?;
                let clients: Vec<(String, Option<String>)> = config
                    .clients
                    .values()
                    .map(|p| (p.name.to_string(), p.restore_recipient.clone()))
                    .collect();
                set_restore_recipients(&repo, &clients)?;
            }
            let mut identities = Identities(Vec::new());
            for path in &a.identity {
                identities.0.extend(crate::open::identities(path)?.0);
            }
            // Crash tests only: abort at a named point, as for prune.
            let fail = Failpoint::new(std::env::var("RSBACKUP_FAILPOINT").ok().as_deref())?;
            let report = rewrap(&repo, &identities, &fail)?;
            println!(
                "rewrapped {} data keys and keys/secret.age to {} recipients ({} staged now, \
                 {} by an interrupted run)",
                report.replaced,
                report.recipients.len(),
                report.staged,
                report.resumed
            );
            for (client, r) in &report.client_recipients {
                println!("client {client}'s own keys are also wrapped to {r}");
            }
        }
    }
    Ok(Outcome::Ok)
}
