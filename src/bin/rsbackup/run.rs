//! `rsbackup run`: the client's backup run, from cron.
//!
//! Quiet when everything worked (cron mails whatever a job prints, and the job report is mailed
//! already); one `rsbackup: ...` line per problem on stderr otherwise. The exit code says what
//! happened (docs/usage.md, "rsbackup run"), and belongs to one of four outcomes, the same the
//! mail subject and `--json` name: ok (0), ok with warnings (20), partial (3), failed: no backup
//! made (every other code).

use std::path::PathBuf;
use std::time::Duration;

use rsbackup::client::hooks::OnFailure;
use rsbackup::client::remote::Connection;
use rsbackup::client::{RunOptions, RunStatus};
use rsbackup::config::ClientConfig;
use rsbackup::report::RunOutcome;

use crate::Outcome;
use crate::exit;

/// The outcomes, for `run --help` (the exit codes follow it, from [`crate::exit`];
/// docs/usage.md has the same table).
const RUN_HELP: &str = "\
Outcomes (the mail subject and --json say it): ok (exit 0), ok with warnings (20), partial (3),
FAILED: no backup made (every other code).";

/// Arguments of `rsbackup run`.
#[derive(clap::Args)]
#[command(after_help = RUN_HELP)]
pub struct Args {
    /// The client configuration file.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/rsbackup/client.toml",
        env = "RSBACKUP_CONFIG"
    )]
    config: PathBuf,
    /// Where the client lock (`client-NAME.lock`: two runs never overlap) and the note of a
    /// run in progress (`client-NAME.run`: an interrupted run is resumed) are kept; overrides
    /// `state-dir` of the configuration (default /var/lib/rsbackup).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// What a failing init hook does: `abort` (no backup; cleanup hooks still run) or
    /// `continue` (report it and back up anyway); overrides `on-init-hook-failure`.
    #[arg(long, value_name = "WHAT", value_parser = ["abort", "continue"])]
    on_init_hook_failure: Option<String>,
    /// ssh connect timeout, in seconds; overrides `[transfer] connect-timeout-seconds`.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    connect_timeout: Option<u64>,
    /// rsync I/O timeout: give up when no data moved for this long, in seconds; overrides
    /// `[transfer] io-timeout-seconds`.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    io_timeout: Option<u64>,
    /// rsync bandwidth limit in KiB/s; overrides `[transfer] bwlimit-kib`.
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(1..))]
    bwlimit: Option<u32>,
    /// Compress on the wire (rsync -z), whatever `[transfer] compress` says.
    #[arg(long)]
    compress: bool,
    /// Also print the job report (and the error report) on standard output.
    #[arg(long)]
    print: bool,
    /// Print the outcome as JSON on standard output: outcome, exit code, subject, session,
    /// its state and reason, and the failures.
    #[arg(long)]
    json: bool,
    /// Check everything up to the transfer (configuration and paths, the sources' guards, ssh
    /// login and authorization by the server's read-only `sessions` request) and run rsync with
    /// --dry-run into an empty local directory. No hooks, no session, no lease, no mail.
    #[arg(long)]
    dry_run: bool,
}

/// Run the backup, mail the reports, and exit with the code that says what happened.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let config = match ClientConfig::load(&args.config) {
        Ok(c) => c,
        Err(err) => {
            // No configuration, no mail: cron mails this line.
            eprintln!("rsbackup: {err}; no backup was made");
            if args.json {
                crate::output::print_json(&serde_json::json!({
                    "outcome": RunOutcome::Failed.name(),
                    "exit_code": exit::CONFIG,
                    "failures": [{"step": "configuration", "what": err.to_string()}],
                    "error": crate::output::json_error(exit::CONFIG, &err.to_string())["error"],
                }))?;
            }
            std::process::exit(exit::CONFIG.into());
        }
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| config.state_dir.clone());
    let transfer = &config.transfer;
    let lock_path = state_dir.join(format!("client-{}.lock", config.name));
    let options = RunOptions {
        host: host_name(),
        first_run: !lock_path.exists(),
        lock_path,
        note_path: rsbackup::client::resume::note_path(&state_dir, config.name.as_str()),
        seen_path: Some(rsbackup::client::renames::seen_path(
            &state_dir,
            config.name.as_str(),
        )),
        connection: Connection {
            connect_timeout: args
                .connect_timeout
                .map_or(transfer.connect_timeout, Duration::from_secs),
            io_timeout: args
                .io_timeout
                .map_or(transfer.io_timeout, Duration::from_secs),
            bwlimit_kib: args.bwlimit.or(transfer.bwlimit_kib),
            compress: args.compress || transfer.compress,
            control_path: rsbackup::client::remote::control_path(&state_dir, config.name.as_str()),
            ..Connection::default()
        },
        init_hook_failure: match args.on_init_hook_failure.as_deref() {
            Some("continue") => OnFailure::Continue,
            Some(_) => OnFailure::Abort,
            None if config.continue_after_init_hook_failure => OnFailure::Continue,
            None => OnFailure::Abort,
        },
    };
    if args.dry_run {
        return crate::run_dry::run(&config, &options.connection, args.json);
    }
    let result = rsbackup::client::run(&config, &options);
    if args.print {
        if let Some(error) = &result.error {
            println!("{}\n\n{}", error.subject(), error.render_text());
        }
        if let Some(job) = &result.job {
            println!("{}\n\n{}", job.subject(), job.render_text());
        }
    }
    if let Some(error) = &result.error {
        for failure in &error.failures {
            eprintln!(
                "rsbackup: {} failed: {} ({}); to do: {}",
                failure.step,
                one_line(&failure.what),
                one_line(&failure.location),
                one_line(&failure.action)
            );
        }
    }
    for problem in rsbackup::client::send_reports(&config, &result) {
        // The backup's own result stands: a mail problem does not change the exit code.
        eprintln!(
            "rsbackup: warning: a report could not be mailed: {}; {}",
            one_line(&problem.to_string()),
            if result.status.backup_made() {
                "the backup itself was made"
            } else {
                "the backup failed too (see the lines above)"
            }
        );
    }
    let code = exit_code(result.status);
    if args.json {
        let answer = result.answer.as_ref();
        let mut json = serde_json::json!({
            "outcome": result.status.outcome().name(),
            "exit_code": code,
            "client": config.name.as_str(),
            "subject": result.job.as_ref().map(|j| j.subject()),
            "session": answer.and_then(|a| a.field("session")),
            "state": answer.and_then(|a| a.text(&["state"])),
            "reason": answer.and_then(|a| a.text(&["reason"])),
            // What the server stored, as its answer to complete says.
            "stored": answer.map(|a| serde_json::json!({
                "entries": a.number(&["entries"]),
                "files": a.number(&["files"]),
                "bytes": a.number(&["bytes"]),
                "new_chunks": a.number(&["new_chunks"]),
                "new_stored_bytes": a.number(&["new_stored_bytes"]),
            })),
            // What rsync moved, from its --stats.
            "transfer": result.stats.as_ref().map(|t| serde_json::json!({
                "files": t.files,
                "files_transferred": t.files_transferred,
                "total_file_size": t.total_file_size,
                "transferred_file_size": t.transferred_file_size,
                "bytes_sent": t.bytes_sent,
                "bytes_received": t.bytes_received,
            })),
            "failures": result.error.as_ref().map(|e| e.failures.iter().map(|f| {
                serde_json::json!({"step": f.step, "what": f.what, "where": f.location,
                                   "to_do": f.action})
            }).collect::<Vec<_>>()).unwrap_or_default(),
        });
        if !result.status.backup_made() {
            // No backup: the same `error` object as any failing command in --json mode.
            let first = result.error.as_ref().and_then(|e| e.failures.first());
            let message = first.map_or_else(
                || "no backup was made".to_owned(),
                |f| {
                    format!(
                        "{} failed: {}; no backup was made",
                        f.step,
                        one_line(&f.what)
                    )
                },
            );
            json["error"] = crate::output::json_error(code, &message)["error"].take();
        }
        crate::output::print_json(&json)?;
    }
    end(code)
}

/// End a run (or a dry run) with its exit code: 0 and 3 through [`Outcome`], the others here.
pub(crate) fn end(code: u8) -> anyhow::Result<Outcome> {
    match code {
        0 => Ok(Outcome::Ok),
        3 => Ok(Outcome::Partial),
        other => {
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            std::process::exit(other.into());
        }
    }
}

/// The exit code of a run (see [`crate::exit`]).
pub(crate) fn exit_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Ok => exit::OK,
        RunStatus::Partial => exit::PARTIAL,
        RunStatus::Config => exit::CONFIG,
        RunStatus::Locked => exit::RUN_LOCKED,
        RunStatus::InitHookFailed => exit::INIT_HOOK,
        RunStatus::Unreachable => exit::UNREACHABLE,
        RunStatus::Refused => exit::REFUSED,
        RunStatus::TimedOut => exit::TIMED_OUT,
        RunStatus::TransferFailed => exit::TRANSFER,
        RunStatus::ServerFailed => exit::SERVER,
        RunStatus::HookFailed => exit::WARNINGS,
        RunStatus::Failed => exit::FAILURE,
        RunStatus::NothingToSend => exit::NOTHING_TO_SEND,
    }
}

/// This machine's name for the reports (the kernel's host name).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
