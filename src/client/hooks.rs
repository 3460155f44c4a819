//! Client hooks (`init-hooks`, `cleanup-hooks`): run by [`crate::hooks`] with stdout and stderr
//! interleaved like the other steps' output, each reported as a step of the job report.

use jiff::Timestamp;

use crate::config::Hook;
use crate::process::{Capture, Ended};
use crate::report::{StepReport, StepStatus};

/// What a failing init hook does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Stop: no backup (cleanup hooks still run). The default: a failed database dump must not
    /// be silently replaced by yesterday's in the backup.
    #[default]
    Abort,
    /// Report the failure and back up anyway.
    Continue,
}

/// Run one hook; `kind` is `init` or `cleanup`, for the step's name.
pub fn run_hook(hook: &Hook, kind: &str) -> StepReport {
    let started = Timestamp::now();
    let got = crate::hooks::run_hook(hook, Capture::Interleaved);
    let status = match &got.ended {
        Ended::Exited(0) => StepStatus::Ok,
        Ended::TimedOut(limit) => StepStatus::TimedOut(*limit),
        other => StepStatus::Failed(other.describe()),
    };
    StepReport {
        // Short enough for the report's step table; the failure names the whole argv.
        name: format!("{kind} hook {}", shorten(&hook_name(hook), 30)),
        started,
        duration: got.elapsed,
        status,
        output: got.output,
    }
}

/// The hook as one short line: its argv, cut to 80 characters.
pub fn hook_name(hook: &Hook) -> String {
    shorten(&hook.argv.join(" "), 80)
}

/// `line` cut to `max` characters, `...` marking a cut.
fn shorten(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        format!("{}...", line.chars().take(max - 3).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::tests::hook;
    use std::time::Duration;

    #[test]
    fn success_failure_and_timeout() {
        let ok = run_hook(&hook(&["/bin/echo", "dumped"], 10), "init");
        assert_eq!(ok.status, StepStatus::Ok);
        assert_eq!(ok.output, "dumped\n");
        assert_eq!(ok.name, "init hook /bin/echo dumped");

        let failed = run_hook(
            &hook(&["/bin/sh", "-c", "echo no space >&2; exit 4"], 10),
            "init",
        );
        assert_eq!(failed.status, StepStatus::Failed("exit code 4".into()));
        assert_eq!(failed.output, "no space\n");

        let slow = run_hook(&hook(&["/bin/sleep", "30"], 1), "cleanup");
        assert_eq!(slow.status, StepStatus::TimedOut(Duration::from_secs(1)));
        assert!(
            slow.duration < Duration::from_secs(5),
            "{:?}",
            slow.duration
        );
        assert!(slow.status.is_failure());

        let missing = run_hook(&hook(&["/no/such/hook"], 10), "init");
        assert!(
            matches!(missing.status, StepStatus::Failed(ref w) if w.contains("could not be started"))
        );
    }

    #[test]
    fn environment_is_cleared() {
        let env = run_hook(&hook(&["/usr/bin/env"], 10), "init");
        assert_eq!(env.status, StepStatus::Ok);
        assert_eq!(env.output, "");
        let long = hook(&["/bin/echo", &"x".repeat(200)], 10);
        assert!(hook_name(&long).len() <= 80);
    }
}
