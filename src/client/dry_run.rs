//! `rsbackup run --dry-run`: everything a run checks before it sends anything, and what it
//! would send, without a session, a lease, hooks or mail.
//!
//! The server accepts an upload only inside a `prepare`d lease, and `prepare` locks the client's
//! staging and runs the server's hooks: a dry run cannot ask for one. So it proves the way to the
//! server with the read-only `sessions` request instead (the same ssh, key, identity, source
//! address and time window as a run; audited on the server like any request), and runs rsync
//! with `--dry-run` against an empty local directory: that reads every source as a first run
//! would and counts what it would send. No init or cleanup hook runs (they dump databases and
//! mount disks), no client lock is taken, nothing is mailed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::RunStatus;
use super::diagnosis::{FailureKind, classify_rsync, classify_ssh, last_line, ssh_advice};
use super::guards::{mount_points, plan};
use super::identity::stated_identity;
use super::remote::{Connection, rsync_command, server_label, ssh_command};
use super::stats::RsyncStats;
use crate::config::ClientConfig;
use crate::config::preflight::check_client;
use crate::process::{Ended, Limits, run_captured};

/// One checked step.
#[derive(Debug, Clone)]
pub struct DryStep {
    /// `configuration`, `sources`, `server`, `rsync --dry-run`.
    pub name: &'static str,
    /// Passed?
    pub ok: bool,
    /// What was found, one line each.
    pub lines: Vec<String>,
}

/// What a dry run found.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The steps, in order; a failed step stops the ones after it.
    pub steps: Vec<DryStep>,
    /// What a real run would most likely end as, as far as a dry run can tell.
    pub status: RunStatus,
    /// rsync's statistics of the dry run (what a first run would send).
    pub stats: Option<RsyncStats>,
}

/// Check `config` (read from `text`) up to the transfer, and dry-run rsync into `scratch`
/// (an empty directory).
pub fn dry_run(config: &ClientConfig, text: &str, conn: &Connection, scratch: &Path) -> DryRun {
    let mut run = DryRun {
        steps: Vec::new(),
        status: RunStatus::Ok,
        stats: None,
    };
    let findings = check_client(config, text);
    let identity = stated_identity(config);
    let mut lines: Vec<String> = findings
        .iter()
        .map(|f| match f.line {
            Some(line) => format!("{}:{line}: {}", config.path.display(), f.what),
            None => format!("{}: {}", config.path.display(), f.what),
        })
        .collect();
    if let Err(e) = &identity {
        lines.push(e.to_string());
    }
    let ok = lines.is_empty();
    if ok {
        lines.push(format!("{}: ok", config.path.display()));
    }
    if !run.push("configuration", ok, lines, RunStatus::Config) {
        return run;
    }
    let Ok(identity) = identity else {
        return run;
    };

    let plan = plan(config, &mount_points());
    let mut lines = plan.lines.clone();
    lines.extend(
        plan.failed
            .iter()
            .map(|(source, why)| format!("{}: would not be sent: {why}", source.display())),
    );
    let nothing = plan.sending.sources.is_empty();
    let status = if nothing {
        RunStatus::NothingToSend
    } else {
        RunStatus::Partial
    };
    if !run.push("sources", plan.failed.is_empty() && !nothing, lines, status) && nothing {
        return run;
    }

    let server = server_label(config);
    let got = run_captured(
        ssh_command(config, conn, &identity, "sessions"),
        Limits {
            timeout: Some(conn.prepare_timeout),
            own_group: false,
        },
        None,
    );
    let (ok, lines, status) = match &got.ended {
        Ended::Exited(0) => (
            true,
            vec![format!(
                "{server}: logged in and authorized (the `sessions` request)"
            )],
            RunStatus::Ok,
        ),
        Ended::TimedOut(_) => (
            false,
            vec![format!("{server}: no answer in time")],
            RunStatus::TimedOut,
        ),
        _ => {
            let kind = classify_ssh(&got.output).unwrap_or(FailureKind::ServerFailed);
            (
                false,
                vec![
                    format!("{server}: {}", last_line(&got.output)),
                    format!("to do: {}", ssh_advice(kind, &got.output, &server)),
                ],
                match kind {
                    FailureKind::Refused => RunStatus::Refused,
                    FailureKind::Unreachable => RunStatus::Unreachable,
                    FailureKind::TimedOut => RunStatus::TimedOut,
                    _ => RunStatus::ServerFailed,
                },
            )
        }
    };
    if !run.push("server", ok, lines, status) {
        return run;
    }

    let command = match rsync_command(&plan.sending, conn, &identity) {
        Ok(c) => local_dry_run(c, scratch),
        Err(e) => {
            run.push(
                "rsync --dry-run",
                false,
                vec![e.to_string()],
                RunStatus::Config,
            );
            return run;
        }
    };
    let got = run_captured(
        command,
        Limits {
            timeout: None,
            own_group: true,
        },
        None,
    );
    let stats = RsyncStats::parse(&got.output);
    let (ok, status, mut lines) = match got.ended {
        Ended::Exited(0) => (true, RunStatus::Ok, Vec::new()),
        Ended::Exited(code) => {
            let status = match classify_rsync(code, &got.output) {
                FailureKind::Partial => RunStatus::Partial,
                _ => RunStatus::TransferFailed,
            };
            (
                false,
                status,
                vec![format!(
                    "rsync exit code {code}: {}",
                    last_line(&got.output)
                )],
            )
        }
        _ => (false, RunStatus::TransferFailed, vec![got.ended.describe()]),
    };
    lines.push(format!(
        "a first run would send {} files, {} bytes (later runs send only what changed)",
        stats.files.map_or("?".into(), |n| n.to_string()),
        stats.total_file_size.map_or("?".into(), |n| n.to_string()),
    ));
    run.stats = Some(stats);
    run.push("rsync --dry-run", ok, lines, status);
    run
}

impl DryRun {
    /// Record a step; a failed step sets the status (the first failure's, except that a later
    /// failure outranks a partial one). Returns `ok`.
    fn push(
        &mut self,
        name: &'static str,
        ok: bool,
        lines: Vec<String>,
        failed: RunStatus,
    ) -> bool {
        if !ok && matches!(self.status, RunStatus::Ok | RunStatus::Partial) {
            self.status = failed;
        }
        self.steps.push(DryStep { name, ok, lines });
        ok
    }
}

/// The run's rsync command, with `--dry-run` and an empty local directory instead of the server
/// (`-e` and `--rsync-path` mean nothing to a local transfer).
fn local_dry_run(command: Command, scratch: &Path) -> Command {
    let mut args: Vec<OsString> = command.get_args().map(|a| a.to_owned()).collect();
    args.pop(); // user@host:
    let mut local = Command::new(command.get_program());
    local.arg("--dry-run").args(args).arg(dir_arg(scratch));
    local.env_clear();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            local.env(key, value);
        }
    }
    local
}

fn dir_arg(dir: &Path) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push("/");
    PathBuf::from(s)
}
