//! `rsbackup prune --repo R [--config server.toml] [--client NAME] [--dry-run] [--json]`
//! `[--keep-last N ... --keep-within SPAN]`: roll sessions off by the retention rules, then
//! collect what no kept session needs.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use jiff::tz::TimeZone;
use rsbackup::config::ServerConfig;
use rsbackup::config::retention::parse_span;
use rsbackup::gc::{ClientRules, PruneOptions, PruneReport, Rules, prune_with_progress};
use rsbackup::ingest::validate_client_name;
use rsbackup::retention::Policy;

use crate::output::{size_exact, time};
use crate::{Outcome, UsageError};

/// Arguments of `prune`.
#[derive(clap::Args)]
pub struct Args {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// Take the rules from server.toml ([retention] and [clients.NAME.retention]).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only this client's sessions (collect still covers the whole repository).
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// Print what would be kept and removed, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar, and nothing printed when all went well (for a timer); a pack that
    /// could not be repacked is still a warning on standard error.
    #[arg(long)]
    quiet: bool,
    /// Keep the N newest complete sessions.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest session of each of the last N hours.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest session of each of the last N days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest session of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest session of each of the last N months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the newest session of each of the last N years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep every session newer than this (e.g. 30d, 36h).
    #[arg(long, value_name = "SPAN")]
    keep_within: Option<String>,
    /// Count days, weeks, months and years in this zone (default UTC).
    #[arg(long, value_name = "ZONE")]
    timezone: Option<String>,
    /// Rewrite packs whose live fraction is below this (0 never; default 0.5 or server.toml's).
    #[arg(long, value_name = "FRACTION")]
    repack_threshold: Option<f64>,
}

impl Args {
    fn has_rule_flags(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
            || self.timezone.is_some()
    }

    /// Rules and repack threshold from server.toml, or from the flags.
    fn rules(&self) -> Result<(Rules, f64)> {
        if let Some(path) = &self.config {
            if self.has_rule_flags() {
                return Err(UsageError(
                    "give the rules either in --config or as --keep-* flags, not both".into(),
                )
                .into());
            }
            let config = ServerConfig::load(path)?;
            let threshold = self
                .repack_threshold
                .unwrap_or(config.retention.repack_threshold);
            return Ok((config.retention.rules(), threshold));
        }
        let keep_within = match &self.keep_within {
            Some(s) => {
                Some(parse_span(s).map_err(|e| UsageError(format!("--keep-within {s:?}: {e}")))?)
            }
            None => None,
        };
        let policy = Policy {
            keep_last: self.keep_last.unwrap_or(0),
            keep_hourly: self.keep_hourly.unwrap_or(0),
            keep_daily: self.keep_daily.unwrap_or(0),
            keep_weekly: self.keep_weekly.unwrap_or(0),
            keep_monthly: self.keep_monthly.unwrap_or(0),
            keep_yearly: self.keep_yearly.unwrap_or(0),
            keep_within,
        };
        if policy.is_empty() {
            // Refuse rather than guess: "no rules" could mean "keep everything" (a no-op that
            // looks like success) or "remove everything" (a disaster).
            return Err(UsageError(
                "no retention rule given: use --config server.toml or at least one of \
                 --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, \
                 --keep-yearly, --keep-within"
                    .into(),
            )
            .into());
        }
        let timezone = match &self.timezone {
            Some(z) => TimeZone::get(z)
                .map_err(|e| UsageError(format!("--timezone {z:?} is not a known zone: {e}")))?,
            None => TimeZone::UTC,
        };
        Ok((
            Rules::same(ClientRules { policy, timezone }),
            self.repack_threshold
                .unwrap_or(rsbackup::gc::DEFAULT_REPACK_THRESHOLD),
        ))
    }
}

/// Run `prune`.
pub fn run(args: Args) -> Result<Outcome> {
    if let Some(client) = &args.client {
        validate_client_name(client)?;
    }
    let (rules, threshold) = args.rules()?;
    let repo = crate::open::repo(&args.repo)?;
    let mut opts = PruneOptions::new(rules);
    opts.client = args.client.clone();
    opts.dry_run = args.dry_run;
    opts.repack_threshold = threshold;
    // Crash tests only: abort at a named point of the prune.
    opts.failpoint = std::env::var("RSBACKUP_FAILPOINT").ok();
    let bar = crate::progress::Bar::new(args.quiet);
    let report = prune_with_progress(&repo, &opts, &bar)?;
    drop(bar);
    if args.json {
        crate::output::print_json(&report)?;
    } else if args.quiet {
        for skipped in report.collect.iter().flat_map(|c| &c.skipped) {
            eprintln!("rsbackup: warning: {skipped}");
        }
    } else {
        print_human(&report)?;
    }
    Ok(Outcome::Ok)
}

fn print_human(report: &PruneReport) -> Result<()> {
    let mut out = crate::output::Stdout::new();
    for f in &report.sessions {
        let verdict = if f.keep {
            if report.dry_run { "keep" } else { "kept" }
        } else if report.dry_run {
            "remove"
        } else {
            "removed"
        };
        let why: Vec<&str> = f.reasons.iter().map(|r| r.name()).collect();
        writeln!(
            out,
            "session {:>6}  {:<16} {}  {:<8} {}{}",
            f.id,
            f.client,
            time(f.started),
            verdict,
            why.join(", "),
            if f.state == rsbackup::index::SessionState::Partial {
                " (partial)"
            } else {
                ""
            }
        )?;
    }
    let removed = report.sessions.iter().filter(|f| !f.keep).count();
    if report.dry_run {
        writeln!(
            out,
            "dry run: {removed} of {} sessions would be removed; nothing was changed",
            report.sessions.len()
        )?;
    } else {
        writeln!(
            out,
            "removed {} of {} sessions",
            report.removed,
            report.sessions.len()
        )?;
    }
    if let Some(c) = &report.collect {
        writeln!(
            out,
            "collected: {} chunks, {} empty packs, {} packs rewritten into {}, {} keys, {} stray \
             files; reclaimed {}",
            c.chunks_deleted,
            c.packs_emptied,
            c.packs_repacked,
            c.packs_written,
            c.keys_deleted,
            c.stray_files,
            size_exact(c.bytes_reclaimed)
        )?;
        for s in &c.skipped {
            writeln!(out, "warning: {s}")?;
        }
    } else if report.gc_pending {
        writeln!(
            out,
            "garbage collection is pending (the repository was busy); the next prune does it"
        )?;
    }
    out.flush()?;
    Ok(())
}
