//! `rsbackup config check --server FILE | --client FILE`: load and validate a configuration,
//! then check the paths, owners and modes the account that uses it needs. Problems are printed
//! as `FILE:LINE: what` on stderr; the exit code is non-zero when there is any.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rsbackup::config::preflight::{Finding, check_client, check_server};
use rsbackup::config::{ClientConfig, ServerConfig};

use crate::Outcome;

/// `rsbackup config ...`.
#[derive(clap::Subcommand)]
pub enum What {
    /// Validate server.toml or client.toml and check the paths the account needs (run it as
    /// that account: `runuser -u rsbackup -- rsbackup config check --server FILE`).
    Check(CheckArgs),
}

/// Arguments of `config check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    which: Which,
    /// Print `{file, findings: [{line, what}]}` as JSON (with an `error` member when there are
    /// findings).
    #[arg(long)]
    json: bool,
}

/// Which file `config check` reads: exactly one of the two.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// A server configuration (server.toml).
    #[arg(long, value_name = "FILE")]
    server: Option<PathBuf>,
    /// A client configuration (client.toml).
    #[arg(long, value_name = "FILE")]
    client: Option<PathBuf>,
}

/// Run `config check`.
pub fn run(what: What) -> Result<Outcome> {
    let What::Check(args) = what;
    let (path, findings) = match (&args.which.server, &args.which.client) {
        (Some(path), _) => {
            let config = ServerConfig::load(path)?;
            for warning in config.warnings() {
                eprintln!("rsbackup: warning: {warning}");
            }
            (path, check_server(&config, &read(path)?))
        }
        (None, Some(path)) => {
            let config = ClientConfig::load(path)?;
            (path, check_client(&config, &read(path)?))
        }
        (None, None) => unreachable!("clap requires --server or --client"),
    };
    let summary = format!(
        "{}: {} problem{} (above)",
        path.display(),
        findings.len(),
        if findings.len() == 1 { "" } else { "s" }
    );
    if args.json {
        let mut json = serde_json::json!({
            "file": path,
            "findings": findings.iter().map(|f| serde_json::json!({
                "line": f.line, "what": f.what,
            })).collect::<Vec<_>>(),
        });
        if !findings.is_empty() {
            // One JSON document: the findings with their error, not one after the other.
            json["error"] =
                crate::output::json_error(crate::exit::CONFIG, &summary)["error"].take();
        }
        crate::output::print_json(&json)?;
    } else if findings.is_empty() {
        println!("{}: ok", path.display());
    }
    if findings.is_empty() {
        return Ok(Outcome::Ok);
    }
    for Finding { line, what } in &findings {
        match line {
            Some(line) => eprintln!("{}:{line}: {what}", path.display()),
            None => eprintln!("{}: {what}", path.display()),
        }
    }
    if args.json {
        eprintln!("rsbackup: {summary}");
        std::process::exit(crate::exit::CONFIG.into());
    }
    // The configuration is wrong, as when it does not load: the same exit code (12).
    Err(rsbackup::Error::new(rsbackup::ErrorKind::Config, summary).into())
}

fn read(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)?)
}
