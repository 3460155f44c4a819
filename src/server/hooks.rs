//! The server's hooks (`prepare-hooks`, `complete-hooks`): run by [`crate::hooks`], stdout then
//! stderr kept (each cut to [`MAX_HOOK_OUTPUT`]), each reported as a [`HookResult`] in the JSON
//! answer of `prepare` or `complete`.

use serde::Serialize;

use crate::config::Hook;
use crate::process::{Capture, Ended};

/// Bytes of a hook's output kept (standard output and error, each).
pub const MAX_HOOK_OUTPUT: usize = 64 * 1024;

/// What one hook did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookResult {
    /// The argv as configured.
    pub argv: Vec<String>,
    /// Did it exit 0 within its time?
    pub ok: bool,
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// Killed at its time limit?
    pub timed_out: bool,
    /// Standard output then standard error (lossy UTF-8, each cut).
    pub output: String,
    /// Why it failed, in words, when it did.
    pub error: Option<String>,
    /// Seconds it ran.
    pub seconds: f64,
}

/// Run `hooks` in order; stops at the first that fails (its result is the last in the list).
pub fn run_hooks(hooks: &[Hook]) -> Vec<HookResult> {
    let mut results = Vec::new();
    for hook in hooks {
        let r = run_hook(hook);
        let ok = r.ok;
        results.push(r);
        if !ok {
            break;
        }
    }
    results
}

/// Run one hook.
pub fn run_hook(hook: &Hook) -> HookResult {
    let Some(program) = hook.argv.first() else {
        return HookResult {
            argv: Vec::new(),
            ok: false,
            code: None,
            timed_out: false,
            output: String::new(),
            error: Some("empty argv".into()),
            seconds: 0.0,
        };
    };
    let got = crate::hooks::run_hook(
        hook,
        Capture::Separate {
            max_each: MAX_HOOK_OUTPUT,
        },
    );
    let error = match &got.ended {
        Ended::Exited(0) => None,
        Ended::NotStarted(why) => Some(format!("cannot start {program}: {why}")),
        Ended::WaitFailed(why) => Some(format!("waiting for {program}: {why}")),
        Ended::TimedOut(limit) => Some(format!(
            "{program} ran longer than {} s and was killed",
            limit.as_secs()
        )),
        Ended::Exited(_) | Ended::Signaled(_) => Some(format!(
            "{program} failed ({})",
            got.status.map(|s| s.to_string()).unwrap_or_default()
        )),
    };
    HookResult {
        argv: hook.argv.clone(),
        ok: got.ended.success(),
        code: got.status.and_then(|s| s.code()),
        timed_out: matches!(got.ended, Ended::TimedOut(_)),
        output: got.output,
        error,
        seconds: got.elapsed.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::tests::hook;
    use std::time::{Duration, Instant};

    #[test]
    fn a_hook_that_leaves_a_daemon_behind_does_not_hold_prepare_or_complete() {
        // e.g. a complete hook that starts a mirror run in the background: the daemon keeps
        // the output pipes open, but the hook itself has ended.
        let start = Instant::now();
        let r = run_hook(&hook(&["/bin/sh", "-c", "sleep 20 & echo started"], 60));
        assert!(r.ok, "{r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waited for the daemon: {:?}",
            start.elapsed()
        );
        assert!(r.output.starts_with("started\n"), "{}", r.output);
        assert!(r.output.contains("not waited for"), "{}", r.output);
    }

    #[test]
    fn output_exit_codes_environment_and_timeout() {
        let r = run_hook(&hook(&["/bin/sh", "-c", "echo out; echo err >&2; env"], 10));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.code, Some(0));
        // The environment is cleared (sh adds only PWD and the like, never PATH from us).
        assert!(r.output.starts_with("out\n"), "{}", r.output);
        assert!(r.output.contains("err\n"));
        assert!(!r.output.contains("CARGO"), "{}", r.output);

        let r = run_hook(&hook(&["/bin/sh", "-c", "exit 3"], 10));
        assert!(!r.ok);
        assert_eq!(r.code, Some(3));

        let start = Instant::now();
        let r = run_hook(&hook(&["/bin/sh", "-c", "sleep 30 & sleep 30"], 1));
        assert!(r.timed_out && !r.ok, "{r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the group was killed"
        );

        let r = run_hook(&hook(&["/nonexistent/hook"], 1));
        assert!(!r.ok && r.error.unwrap().contains("cannot start"));

        let all = run_hooks(&[
            hook(&["/bin/true"], 5),
            hook(&["/bin/false"], 5),
            hook(&["/bin/true"], 5),
        ]);
        assert_eq!(all.len(), 2, "stops at the first failure");
    }
}
