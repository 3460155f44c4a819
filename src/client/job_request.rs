//! The run's `prepare` and `complete` requests: one ssh session each (over the run's shared
//! connection), the step report, and what a failure means for the run.

use std::path::PathBuf;

use jiff::Timestamp;

use super::{Remote, Run, RunStatus};
use crate::client::diagnosis::{FailureKind, classify_ssh, last_line, ssh_advice};
use crate::client::remote::{ServerAnswer, server_label, server_problem, ssh_command};
use crate::process::{Capture, Ended, Limits, run_captured_from};
use crate::report::{StepReport, StepStatus};

impl Run<'_> {
    /// `prepare` or `complete [ARGS]` over ssh; records the step, and the failure if any.
    pub(super) fn remote(&mut self, command: &str, timeout: std::time::Duration) -> Remote {
        self.remote_body(command, None, timeout)
    }

    /// [`Self::remote`] with a body on the command's standard input, written first to a file
    /// beside `at` (`(path, bytes)`).
    pub(super) fn remote_body(
        &mut self,
        command: &str,
        body: Option<(&PathBuf, Vec<u8>)>,
        timeout: std::time::Duration,
    ) -> Remote {
        let word = command.split(' ').next().unwrap_or(command);
        let started = Timestamp::now();
        let Some(identity) = self.identity.clone() else {
            // steps() sets it before the first request; never send a made-up machine id.
            let what = format!("{word}: no client identity (a bug)");
            self.fail(
                RunStatus::Failed,
                word,
                what.clone(),
                self.options.host.clone(),
                "report this bug".into(),
            );
            return Remote::Failed {
                kind: FailureKind::ServerFailed,
                output: what,
            };
        };
        let stdin = body
            .and_then(|(at, bytes)| {
                let file = at.with_extension("renames");
                std::fs::write(&file, bytes).ok()?;
                std::fs::File::open(&file).ok()
            })
            .map_or_else(std::process::Stdio::null, std::process::Stdio::from);
        let got = self.connect_failure.take().unwrap_or_else(|| {
            run_captured_from(
                ssh_command(self.config, &self.options.connection, &identity, command),
                Limits {
                    timeout: Some(timeout),
                    own_group: false,
                },
                Capture::Interleaved,
                None,
                stdin,
            )
        });
        let server = server_label(self.config);
        let answer = ServerAnswer::parse(&got.output);
        // complete answers 3 when the session was recorded but something was left out.
        let recorded = word == "complete"
            && got.ended == Ended::Exited(3)
            && answer
                .as_ref()
                .is_some_and(|a| a.field("session").is_some());
        let (status, failure) = match &got.ended {
            Ended::Exited(0) => (StepStatus::Ok, None),
            Ended::Exited(3) if recorded => (
                StepStatus::Failed("exit code 3: recorded with problems".into()),
                None,
            ),
            Ended::TimedOut(limit) => (
                StepStatus::TimedOut(*limit),
                Some((
                    FailureKind::TimedOut,
                    format!("{word} did not finish in time"),
                    format!(
                        "the server took longer than {}: check its load and the step's output",
                        crate::report::human_duration(*limit)
                    ),
                )),
            ),
            other => {
                let kind = match classify_ssh(&got.output) {
                    Some(kind) => kind,
                    None if matches!(other, Ended::Exited(255)) => FailureKind::Unreachable,
                    None => FailureKind::ServerFailed,
                };
                let (what, advice) = if kind == FailureKind::ServerFailed {
                    (
                        format!(
                            "the server's {word} failed: {}",
                            server_problem(&got.output)
                        ),
                        format!(
                            "see the {word} step's output in the job report (the server keeps \
                             no other log of it: its audit table has the request, not the \
                             failure); staging keeps what was sent, and the next run resumes"
                        ),
                    )
                } else {
                    (
                        format!("ssh {word}: {}{}", other.describe(), last_line(&got.output)),
                        ssh_advice(kind, &got.output, &server),
                    )
                };
                (
                    StepStatus::Failed(other.describe()),
                    Some((kind, what, advice)),
                )
            }
        };
        self.steps.push(StepReport {
            name: word.into(),
            started,
            duration: got.elapsed,
            status,
            output: got.output.clone(),
        });
        if let Some((kind, what, action)) = failure {
            self.fail(RunStatus::from_kind(kind), word, what, server, action);
            return Remote::Failed {
                kind,
                output: got.output,
            };
        }
        Remote::Answered(answer.unwrap_or_default())
    }
}
