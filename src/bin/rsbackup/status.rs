//! `rsbackup status --config server.toml [--json] [--html FILE] [--prometheus FILE]`: one line
//! per client (and per mirror target); exit code 22 when a client is overdue or a mirror lags.
//! `stats --repo R [--client NAME] [--json]`: what the repository holds.
//!
//! The clock is the system's, or `RSBACKUP_NOW` (Unix seconds) when set: tests move time with
//! it; it is read here, never in the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rsbackup::config::ServerConfig;
use rsbackup::repo::Repo;
use rsbackup::status::{fleet_status, html, prometheus, stats, text};
use rsbackup::store::durable::write_atomic;

use crate::Outcome;

/// Arguments of `status`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: crate::open::ServerConfigArg,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the status page (one self-contained HTML file) here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Also write node_exporter textfile metrics here (atomically).
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,
}

/// Arguments of `stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// Only this client.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// Print the statistics as JSON.
    #[arg(long)]
    json: bool,
}

/// Now, or `RSBACKUP_NOW` (Unix seconds).
pub fn now() -> Result<jiff::Timestamp> {
    match std::env::var("RSBACKUP_NOW") {
        Ok(text) => {
            let secs: i64 = text
                .trim()
                .parse()
                .with_context(|| format!("RSBACKUP_NOW={text:?} is not Unix seconds"))?;
            Ok(jiff::Timestamp::from_second(secs)?)
        }
        Err(_) => Ok(jiff::Timestamp::now()),
    }
}

/// Run `status`.
pub fn run(args: Args) -> Result<Outcome> {
    let config = ServerConfig::load(&args.server.path)?;
    let repo = crate::open::repo(&config.repository)?;
    let index = repo.index()?;
    let fleet = fleet_status(&config, &index, now()?)?;
    // Absolute: the file's directory is synced after the rename.
    let absolute = |p: &PathBuf| std::path::absolute(p).with_context(|| format!("{}", p.display()));
    if let Some(path) = &args.html.as_ref().map(absolute).transpose()? {
        let page = html::render(&fleet, &crate::serve::host_name(), &config.watch.timezone);
        write_atomic(path, page.as_bytes(), 0o644)?;
    }
    if let Some(path) = &args.prometheus.as_ref().map(absolute).transpose()? {
        write_atomic(path, prometheus::render(&fleet).as_bytes(), 0o644)?;
    }
    if args.json {
        crate::output::print_json(&fleet)?;
    } else {
        use std::io::Write;
        let mut out = crate::output::Stdout::new();
        out.write_all(text::render(&fleet, &config.watch.timezone).as_bytes())?;
        out.flush()?;
    }
    Ok(if fleet.alarm() {
        Outcome::Alarm
    } else {
        Outcome::Ok
    })
}

/// Run `stats`.
pub fn stats(args: StatsArgs) -> Result<Outcome> {
    if let Some(client) = &args.client {
        rsbackup::ingest::validate_client_name(client)?;
    }
    let repo: Repo = crate::open::repo(&args.repo)?;
    let index = repo.index()?;
    let s = stats::repo_stats(
        &index,
        &repo.root().join("index.db"),
        args.client.as_deref(),
        now()?.as_second(),
    )?;
    if args.json {
        crate::output::print_json(&s)?;
        return Ok(Outcome::Ok);
    }
    use rsbackup::status::fmt::size;
    use std::io::Write;
    let mut out = crate::output::Stdout::new();
    for c in &s.clients {
        writeln!(
            out,
            "client {}: {} sessions, newest {}, {} logical in all; reaches {} chunks, {} stored \
             (x{:.2}); {} added in 30 days",
            c.client,
            c.sessions,
            size(c.latest_bytes),
            size(c.logical_bytes),
            c.chunks,
            size(c.stored_bytes),
            c.reduction,
            size(c.new_bytes_30d)
        )?;
    }
    writeln!(
        out,
        "total: {} sessions, {} logical; {} chunks, {} stored (x{:.2} by dedup and compression \
         together); {} packs, {} on disk; index {}; {} added in 30 days",
        s.sessions,
        size(s.logical_bytes),
        s.store.chunks,
        size(s.store.chunk_bytes),
        s.reduction,
        s.store.packs,
        size(s.store.pack_bytes),
        size(s.index_bytes),
        size(s.growth_30d.iter().sum())
    )?;
    out.flush()?;
    Ok(Outcome::Ok)
}
