//! The run's guard step (see [`crate::client::guards`]): after the init hooks, before
//! `prepare`, decide which sources are sent, and tell `complete` which were not.

use std::process::Command;

use jiff::Timestamp;

use super::{Run, RunStatus};
use crate::client::guards;
use crate::client::remote::{rsync_command, staging_path, transfer_sources};
use crate::report::{Failure, StepReport, StepStatus};

/// Longest `complete` command line the client sends: the server takes 1024 bytes, and the
/// identity words come first.
const MAX_COMPLETE_BYTES: usize = 800;

impl Run<'_> {
    /// Check the guards; returns the rsync command for the sources to send, or `None` when
    /// nothing can be sent (the failure is recorded, later steps skipped).
    pub(super) fn guards(&mut self, rsync: Command) -> Option<Command> {
        let guarded = self
            .config
            .source_guards
            .iter()
            .any(|g| *g != Default::default());
        let plan = guards::plan(self.config, &guards::mount_points());
        if !guarded && plan.failed.is_empty() && plan.absent.is_empty() {
            // Nothing to say, nothing changed: the command as configured.
            self.name_sources(&self.config.sources.clone());
            return Some(rsync);
        }
        let started = Timestamp::now();
        let ok = plan.failed.is_empty();
        self.steps.push(StepReport {
            name: "source guards".into(),
            started,
            duration: std::time::Duration::ZERO,
            status: if ok {
                StepStatus::Ok
            } else {
                StepStatus::Failed(format!(
                    "{} source{} not sent",
                    plan.failed.len(),
                    if plan.failed.len() == 1 { "" } else { "s" }
                ))
            },
            output: plan.lines.join("\n") + "\n",
        });
        for (source, why) in &plan.failed {
            self.failures.push(Failure {
                step: "source guards".into(),
                what: format!("source {} was not sent: it {why}", source.display()),
                location: format!("on {}: {}", self.options.host, self.config.path.display()),
                action: "mount or restore it (or correct its entry in sources); the other \
                         sources were backed up, and its earlier copies stay in older sessions"
                    .into(),
            });
            let path = staging_path(source);
            if !path.is_empty() {
                self.complete_args.skipped.push(path);
            }
        }
        if plan.sending.sources.is_empty() {
            self.fail(
                RunStatus::NothingToSend,
                "source guards",
                "no source can be sent".into(),
                format!("on {}: {}", self.options.host, self.config.path.display()),
                "see the sources named above".into(),
            );
            self.skip(&["prepare", "rsync", "complete"], "no source can be sent");
            return None;
        }
        self.name_sources(&plan.sending.sources.clone());
        let identity = self.identity.clone()?;
        let command = match rsync_command(&plan.sending, &self.options.connection, &identity) {
            Ok(c) => c,
            Err(err) => {
                self.config_unusable(&err);
                return None;
            }
        };
        if !ok {
            self.partial = true;
        }
        Some(command)
    }

    /// Tell `complete` that sources are at their full paths, and which are sent (not for the
    /// whole tree, `/`).
    fn name_sources(&mut self, sources: &[std::path::PathBuf]) {
        self.complete_args.full_paths = true;
        let Ok(sent) = transfer_sources(sources) else {
            return;
        };
        let names: Vec<Vec<u8>> = sent
            .iter()
            .map(|p| staging_path(p))
            .filter(|p| !p.is_empty())
            .collect();
        self.complete_args.sources = (names.len() == sent.len()).then_some(names);
        let length: usize = self
            .complete_args
            .to_words()
            .iter()
            .map(|w| w.len() + 1)
            .sum();
        if length > MAX_COMPLETE_BYTES {
            // Too many names to list: the server then keeps stale top-level entries (see
            // docs/configuration.md), but still leaves out the skipped ones.
            self.complete_args.sources = None;
        }
    }
}
