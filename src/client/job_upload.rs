//! The run's upload step: one rsync pass (of the passes [`crate::client::upload_plan`] makes),
//! its step report, its statistics and what its exit code means for the run.

use jiff::Timestamp;

use super::{Run, RunStatus};
use crate::client::diagnosis::{
    FailureKind, classify_rsync, rsync_exit_words, server_lines, ssh_advice,
};
use crate::client::lock::ClientLock;
use crate::client::remote::server_label;
use crate::client::stats::RsyncStats;
use crate::client::upload_plan::Pass;
use crate::process::{Ended, Limits, run_captured};
use crate::report::{Failure, StepReport, StepStatus};

impl Run<'_> {
    /// The rsync upload; records its step and any failure, returns its statistics.
    pub(super) fn upload(&mut self, pass: Pass, lock: &ClientLock) -> Option<RsyncStats> {
        let Pass {
            name,
            command: rsync,
        } = pass;
        let started = Timestamp::now();
        // rsync holds a copy of the lock: a killed run's rsync keeps the next run out.
        let inherit = lock.inheritable().ok();
        let got = run_captured(
            rsync,
            Limits {
                timeout: None,
                own_group: false,
            },
            inherit,
        );
        let stats = RsyncStats::parse(&got.output);
        let stats = (!stats.is_empty()).then_some(stats);
        if let Ended::Exited(code) = got.ended {
            // The worst of the passes' codes.
            let code = u8::try_from(code).ok();
            self.complete_args.rsync_exit = self.complete_args.rsync_exit.max(code);
        }
        let server = server_label(self.config);
        let (status, failure) = match &got.ended {
            Ended::Exited(0) => (StepStatus::Ok, None),
            Ended::Exited(code) => {
                let (words, todo) = rsync_exit_words(*code);
                let kind = classify_rsync(*code, &got.output);
                let action = match kind {
                    FailureKind::Refused | FailureKind::Unreachable => {
                        ssh_advice(kind, &got.output, &server)
                    }
                    _ => todo.to_owned(),
                };
                (
                    StepStatus::Failed(format!("rsync exit code {code}: {words}")),
                    Some((
                        kind,
                        format!(
                            "rsync exit code {code}: {words}{}",
                            server_lines(&got.output)
                        ),
                        action,
                    )),
                )
            }
            other => (
                StepStatus::Failed(other.describe()),
                Some((
                    FailureKind::TransferFailed,
                    format!("rsync {}", other.describe()),
                    "rsync was killed: rerun; the next run resumes the transfer".into(),
                )),
            ),
        };
        self.steps.push(StepReport {
            name: name.into(),
            started,
            duration: got.elapsed,
            status,
            output: got.output,
        });
        if let Some((kind, what, action)) = failure {
            if kind == FailureKind::Partial {
                self.partial = true;
                self.failures.push(Failure {
                    step: "rsync".into(),
                    what,
                    location: format!("from {} to {server}", self.options.host),
                    action,
                });
            } else {
                self.fail(
                    RunStatus::from_kind(kind),
                    "rsync",
                    what,
                    format!("from {} to {server}", self.options.host),
                    action,
                );
            }
        }
        stats
    }
}
