//! One cron run, step by step: lock, init hooks, `prepare`, rsync, `complete`, cleanup hooks;
//! then the reports (see [`super::summary`]) and their mailing.
//!
//! Every step is timed and its output kept. A failure stops the steps that depend on it (no
//! `complete` after a failed upload: staging keeps what arrived, and the next run resumes it),
//! but the cleanup hooks always run.

use std::path::PathBuf;

use jiff::Timestamp;

use super::diagnosis::{FailureKind, last_line, step_status_words};
use super::hooks::{OnFailure, hook_name, run_hook};
use super::identity::stated_identity;
use super::lock::ClientLock;
use super::remote::{
    Connection, ServerAnswer, master_failure, rsync_command, server_label, start_master,
};
use super::renames::{renames_to_send, session_recorded};
use super::resume::RunNote;
use super::stats::RsyncStats;
use super::summary;
use super::upload_plan::{UploadPlan, add_stats};
use crate::config::ClientConfig;
use crate::error::{Error, ErrorKind};
use crate::format::client_identity::StatedIdentity;
use crate::format::complete_args::CompleteArgs;
use crate::format::rename_list::encode;
use crate::report::{ErrorReport, Failure, JobReport, RunOutcome, StepReport, StepStatus};

#[path = "job_answer.rs"]
mod answer;
#[path = "job_guard_step.rs"]
mod guard_step;
#[path = "job_request.rs"]
mod request;
#[path = "job_upload.rs"]
mod upload;

/// How to run, besides the configuration file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// This machine's name, for the reports.
    pub host: String,
    /// The client lock file.
    pub lock_path: PathBuf,
    /// The note of a run in progress (see [`super::resume`]).
    pub note_path: PathBuf,
    /// Where the directories and large files of the last recorded run are kept, to send their
    /// renames with `prepare` ([`super::renames`]); `None`: no renames are sent.
    pub seen_path: Option<PathBuf>,
    /// No earlier run left state here (no lock file yet): nothing was pushed from this machine
    /// before sessions kept full paths, so no source is moved from its last component.
    pub first_run: bool,
    /// Timeouts and transfer options.
    pub connection: Connection,
    /// What a failing init hook does.
    pub init_hook_failure: OnFailure,
}

/// How the run ended, most important first; the binary turns it into the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Everything worked.
    Ok,
    /// The session was recorded `partial` (rsync 23/24, a source not sent, unreadable paths).
    Partial,
    /// Another run of this configuration holds the lock; nothing was done.
    Locked,
    /// The configuration cannot be used for a transfer (sources, excludes).
    Config,
    /// An init hook failed and the run was aborted (no backup).
    InitHookFailed,
    /// The server could not be reached.
    Unreachable,
    /// The server refused.
    Refused,
    /// A connection, transfer or step timed out.
    TimedOut,
    /// rsync failed.
    TransferFailed,
    /// The server's `prepare` or `complete` failed.
    ServerFailed,
    /// The session was recorded complete, but something warned: a hook failed (a cleanup
    /// hook, or an init hook with `on-failure = continue`), or the server reported a problem
    /// after the ingest (a complete hook).
    HookFailed,
    /// Something on this machine failed before anything ran (the lock file cannot be made).
    Failed,
    /// Every source failed its guard (or does not exist): nothing was sent.
    NothingToSend,
}

impl RunStatus {
    fn from_kind(kind: FailureKind) -> RunStatus {
        match kind {
            FailureKind::Partial => RunStatus::Partial,
            FailureKind::Unreachable => RunStatus::Unreachable,
            FailureKind::Refused => RunStatus::Refused,
            FailureKind::TimedOut => RunStatus::TimedOut,
            FailureKind::ServerFailed => RunStatus::ServerFailed,
            FailureKind::TransferFailed => RunStatus::TransferFailed,
        }
    }

    /// Did the backup itself succeed (fully or partly)?
    pub fn backup_made(self) -> bool {
        self.outcome().backup_made()
    }

    /// The outcome this status belongs to (docs/usage.md, "Outcomes").
    pub fn outcome(self) -> RunOutcome {
        match self {
            RunStatus::Ok => RunOutcome::Ok,
            RunStatus::HookFailed => RunOutcome::OkWithWarnings,
            RunStatus::Partial => RunOutcome::Partial,
            _ => RunOutcome::Failed,
        }
    }
}

/// How a `prepare` or `complete` went.
enum Remote {
    /// The server answered (exit 0, or complete's 3: recorded with problems).
    Answered(ServerAnswer),
    /// It failed (recorded in the run's failures).
    Failed {
        /// How.
        kind: FailureKind,
        /// What ssh and the server printed.
        output: String,
    },
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// How it ended.
    pub status: RunStatus,
    /// The job report (`None` when the run did nothing because another one holds the lock).
    pub job: Option<JobReport>,
    /// The error report, when anything failed.
    pub error: Option<ErrorReport>,
    /// rsync's statistics, if rsync ran and printed them.
    pub stats: Option<RsyncStats>,
    /// The server's answer to `complete`, if any.
    pub answer: Option<ServerAnswer>,
}

/// The run in progress.
struct Run<'a> {
    config: &'a ClientConfig,
    options: &'a RunOptions,
    started: Timestamp,
    steps: Vec<StepReport>,
    failures: Vec<Failure>,
    /// The first failure that stopped the backup.
    fatal: Option<RunStatus>,
    partial: bool,
    hook_failed: bool,
    /// The client name and machine every request states (set before the first request).
    identity: Option<StatedIdentity>,
    /// What `complete` is told about the transfer.
    complete_args: CompleteArgs,
    /// The shared connection could not be made: how ssh ended, reported as the first
    /// request's own attempt.
    connect_failure: Option<crate::process::Captured>,
}

/// Run the backup once. Never panics on a failing step: every outcome ends up in the result.
pub fn run(config: &ClientConfig, options: &RunOptions) -> RunResult {
    let mut run = Run {
        config,
        options,
        started: Timestamp::now(),
        steps: Vec::new(),
        failures: Vec::new(),
        fatal: None,
        partial: false,
        hook_failed: false,
        identity: None,
        complete_args: CompleteArgs::default(),
        connect_failure: None,
    };
    let lock = match ClientLock::acquire(&options.lock_path) {
        Ok(lock) => lock,
        Err(err) => return run.not_started(&err),
    };
    let (stats, answer) = run.steps(&lock);
    super::remote::close_master(config, &options.connection);
    for hook in &config.cleanup_hooks {
        let step = run_hook(hook, "cleanup");
        if step.status.is_failure() {
            run.hook_failed = true;
            run.failures.push(Failure {
                step: step.name.clone(),
                what: format!(
                    "{}{}",
                    step_status_words(&step.status),
                    last_line(&step.output)
                ),
                location: format!("on {}: {}", options.host, hook_name(hook)),
                action: "run the hook by hand as root to see why; cleanup hooks run after every \
                         backup, so whatever it should undo may still be in place"
                    .into(),
            });
        }
        run.steps.push(step);
    }
    drop(lock);
    run.finish(stats, answer)
}

impl Run<'_> {
    fn not_started(mut self, err: &Error) -> RunResult {
        let status = if err.kind() == ErrorKind::Locked {
            RunStatus::Locked
        } else {
            RunStatus::Failed
        };
        self.failures.push(Failure {
            step: "client lock".into(),
            what: err.message().to_owned(),
            location: format!(
                "on {}: {}",
                self.options.host,
                self.options.lock_path.display()
            ),
            action: if status == RunStatus::Locked {
                "nothing, if the previous run is just slow (it will mail its own report); if runs \
                 overlap every night, run the cron job less often"
                    .into()
            } else {
                "make the lock file's directory writable for the user cron runs rsbackup as".into()
            },
        });
        RunResult {
            status,
            job: None,
            error: Some(summary::error_report(
                self.config,
                &self.options.host,
                self.started,
                RunOutcome::Failed,
                self.failures,
            )),
            stats: None,
            answer: None,
        }
    }

    /// Init hooks, prepare, rsync, complete: stops at the first failure that forbids the next.
    fn steps(&mut self, lock: &ClientLock) -> (Option<RsyncStats>, Option<ServerAnswer>) {
        let rsync = match stated_identity(self.config).and_then(|identity| {
            let rsync = rsync_command(self.config, &self.options.connection, &identity);
            self.identity = Some(identity);
            rsync
        }) {
            Ok(c) => c,
            Err(err) => {
                self.config_unusable(&err);
                return (None, None);
            }
        };
        for hook in &self.config.init_hooks {
            let step = run_hook(hook, "init");
            let failed = step.status.is_failure();
            let name = step.name.clone();
            let what = format!(
                "{}{}",
                step_status_words(&step.status),
                last_line(&step.output)
            );
            self.steps.push(step);
            if !failed {
                continue;
            }
            let location = format!("on {}: {}", self.options.host, hook_name(hook));
            if self.options.init_hook_failure == OnFailure::Continue {
                self.hook_failed = true;
                self.failures.push(Failure {
                    step: name,
                    what,
                    location,
                    action: "run the hook by hand as root to see why; the backup was made anyway \
                             (init hooks are set to continue on failure), without what the hook \
                             should have prepared"
                        .into(),
                });
                continue;
            }
            self.fail(
                RunStatus::InitHookFailed,
                &name,
                what,
                location,
                "run the hook by hand as root to see why, fix it, then run rsbackup again (the \
                 cleanup hooks did run)"
                    .into(),
            );
            self.skip(&["prepare", "rsync", "complete"], "an init hook failed");
            return (None, None);
        }

        let Some(rsync) = self.guards(rsync) else {
            return (None, None);
        };

        // The connection is made while the sources are walked.
        let connecting = std::time::Instant::now();
        let master = start_master(self.config, &self.options.connection);
        let note_path = self.options.note_path.clone();
        let note = RunNote::load(&note_path);
        let (seen, renames) = renames_to_send(
            self.config,
            self.options.seen_path.as_deref(),
            self.options.first_run,
        );
        self.connect_failure = master.and_then(|m| master_failure(m, connecting));
        let prepare = if renames.is_empty() {
            self.remote("prepare", self.options.connection.prepare_timeout)
        } else {
            let body = self
                .options
                .seen_path
                .as_ref()
                .map(|p| (p, encode(&renames)));
            self.remote_body(
                "prepare renames",
                body,
                self.options.connection.prepare_timeout,
            )
        };
        // Only a server that answers whole_file knows `prepare renames`: the record is kept
        // for such a server alone, so that an older one never sees the word.
        let mut renames_known = false;
        // A resumed run has no answer: one plain pass, which is right for every staging mode.
        let mut plan = UploadPlan::default();
        match prepare {
            Remote::Answered(answer) => {
                plan = UploadPlan::from_answer(&answer);
                renames_known = answer.json.get("whole_file").is_some();
                if let (Some(token), Some(prepared)) =
                    (answer.text(&["token"]), answer.number(&["prepared"]))
                {
                    let note = RunNote {
                        token,
                        prepared: prepared as i64,
                        noted_at: Timestamp::now().as_second(),
                    };
                    // Without the note an interrupted run cannot be resumed before its lease
                    // expires; the backup itself is not affected.
                    if let Err(e) = note.save(&note_path)
                        && let Some(step) = self.steps.last_mut()
                    {
                        step.output.push_str(&format!("\n[rsbackup: {e}]\n"));
                    }
                }
            }
            Remote::Failed { output, .. }
                if note
                    .as_ref()
                    .is_some_and(|n| n.matches_refusal(&output, Timestamp::now().as_second())) =>
            {
                // Our own interrupted run still holds the lease: pick it up.
                self.failures.pop();
                self.fatal = None;
                if let Some(step) = self.steps.last_mut() {
                    step.status = StepStatus::Ok;
                    step.output.push_str(&format!(
                        "\n[rsbackup: resuming this client's interrupted run (lease {}, prepared \
                         at {}): rsync continues the transfer, complete ends the run]\n",
                        note.as_ref().map(|n| n.token.as_str()).unwrap_or_default(),
                        note.as_ref()
                            .and_then(|n| Timestamp::from_second(n.prepared).ok())
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    ));
                    step.name = "prepare (resumed)".into();
                }
            }
            Remote::Failed { .. } => {
                self.skip(&["rsync", "complete"], "prepare failed");
                return (None, None);
            }
        }

        let mut stats = None;
        for pass in plan.passes(&rsync) {
            stats = add_stats(stats, self.upload(pass, lock));
            if self.fatal.is_some() {
                break;
            }
        }
        if self.fatal.is_some() {
            self.skip(&["complete"], "the upload failed; the next run resumes it");
            return (stats, None);
        }

        let mut complete_words = vec!["complete".to_owned()];
        complete_words.extend(self.complete_args.to_words());
        let complete = self.remote(
            &complete_words.join(" "),
            self.options.connection.complete_timeout,
        );
        let answer = match complete {
            Remote::Answered(answer) => Some(answer),
            Remote::Failed { kind, .. } => {
                // The server ends the lease whenever complete ran at all; only when it was
                // never reached does the lease (and so the note) stay for the next run.
                if kind == FailureKind::ServerFailed {
                    let _ = RunNote::remove(&note_path);
                }
                return (stats, None);
            }
        };
        let _ = RunNote::remove(&note_path);
        if answer
            .as_ref()
            .is_some_and(|a| a.field("session").is_some())
            && let Some(path) = &self.options.seen_path
        {
            session_recorded(path, seen.as_ref().filter(|_| renames_known));
        }
        if let Some(answer) = &answer
            && let Some(recorded) = answer.text(&["client"])
            && recorded != self.config.name.as_str()
        {
            if let Some(step) = self.steps.last_mut() {
                step.status = StepStatus::Failed(format!("recorded under client {recorded:?}"));
            }
            self.fail(
                RunStatus::ServerFailed,
                "complete",
                format!(
                    "the server recorded this backup under client {:?}{}, not under this \
                     client's name {}",
                    recorded.chars().take(80).collect::<String>(),
                    answer
                        .text(&["session"])
                        .map(|s| format!(" (session {s})"))
                        .unwrap_or_default(),
                    self.config.name
                ),
                server_label(self.config),
                "this client's ssh key belongs to another client on the server: give this \
                 machine its own key and client entry"
                    .into(),
            );
            return (stats, Some(answer.clone()));
        }
        if let Some(answer) = &answer {
            self.read_complete_answer(answer);
        }
        (stats, answer)
    }

    /// client.toml cannot be used for a transfer: the run's first failure, every remote step
    /// skipped.
    fn config_unusable(&mut self, err: &Error) {
        self.fail(
            RunStatus::Config,
            "configuration",
            err.message().to_owned(),
            self.config.path.display().to_string(),
            "correct client.toml".into(),
        );
        self.skip(
            &["prepare", "rsync", "complete"],
            "the configuration is unusable",
        );
    }

    fn fail(
        &mut self,
        status: RunStatus,
        step: &str,
        what: String,
        location: String,
        action: String,
    ) {
        // The first failure that stops the run says so, for whoever reads only the error mail.
        let action = if self.fatal.is_none() {
            format!("{action}. No backup was made by this run.")
        } else {
            action
        };
        self.fatal.get_or_insert(status);
        self.failures.push(Failure {
            step: step.into(),
            what,
            location,
            action,
        });
    }

    fn skip(&mut self, names: &[&str], why: &str) {
        for name in names {
            self.steps.push(StepReport {
                name: (*name).into(),
                started: Timestamp::now(),
                duration: std::time::Duration::ZERO,
                status: StepStatus::Skipped(why.into()),
                output: String::new(),
            });
        }
    }

    fn finish(self, stats: Option<RsyncStats>, answer: Option<ServerAnswer>) -> RunResult {
        // The outcome is what the server recorded: no session, no backup, whatever else ran.
        let recorded = answer
            .as_ref()
            .is_some_and(|a| a.field("session").is_some());
        let status = match self.fatal {
            Some(s) => s,
            None if !recorded => RunStatus::ServerFailed,
            None if self.partial => RunStatus::Partial,
            None if self.hook_failed => RunStatus::HookFailed,
            None => RunStatus::Ok,
        };
        let outcome = status.outcome();
        let job = summary::job_report(
            self.config,
            &self.options.host,
            self.started,
            self.steps,
            stats.as_ref(),
            answer.as_ref(),
            outcome,
        );
        let error = (!self.failures.is_empty()).then(|| {
            summary::error_report(
                self.config,
                &self.options.host,
                self.started,
                outcome,
                self.failures,
            )
        });
        RunResult {
            status,
            job: Some(job),
            error,
            stats,
            answer,
        }
    }
}
