//! What the server's answer to `complete` says about the run: a `partial` session, or problems
//! after a session recorded complete (warnings).

use super::Run;
use crate::client::remote::{ServerAnswer, server_label};
use crate::report::Failure;

impl Run<'_> {
    /// Note a partial session (with the server's reason) or the server's problems.
    pub(super) fn read_complete_answer(&mut self, answer: &ServerAnswer) {
        let state = answer.text(&["state"]).unwrap_or_default();
        let problems = answer.problems();
        if state == "partial" {
            self.partial = true;
        } else if !problems.is_empty() {
            // Recorded complete; what went wrong afterwards (a complete hook) is a warning.
            self.hook_failed = true;
        }
        if state == "partial" || !problems.is_empty() {
            let errors = answer.errors();
            let count = errors.len() as u64 + answer.errors_left_out();
            let what = if state == "partial" {
                let reason = answer.text(&["reason"]).unwrap_or_else(|| {
                    format!(
                        "{} path{} could not be stored{}",
                        count,
                        if count == 1 { "" } else { "s" },
                        errors
                            .first()
                            .map(|e| format!(", e.g. {e}"))
                            .unwrap_or_default()
                    )
                });
                format!("the session is partial: {reason}")
            } else {
                format!(
                    "the session was recorded, but the server reports: {}",
                    problems.join(" / ")
                )
            };
            self.failures.push(Failure {
                step: "complete".into(),
                what,
                location: server_label(self.config),
                action: "see the complete step's output in the job report for details".into(),
            });
        }
    }
}
