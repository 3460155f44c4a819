//! The server's hooks (`prepare-hooks`, `complete-hooks`): argv lists, never a shell, run with a
//! cleared environment, standard input closed, output kept (cut to [`MAX_HOOK_OUTPUT`]) and a
//! time limit after which the hook's whole process group is killed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Hook;

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
    let start = Instant::now();
    let mut result = HookResult {
        argv: hook.argv.clone(),
        ok: false,
        code: None,
        timed_out: false,
        output: String::new(),
        error: None,
        seconds: 0.0,
    };
    let Some(program) = hook.argv.first() else {
        result.error = Some("empty argv".into());
        return result;
    };
    let spawned = Command::new(program)
        .args(&hook.argv[1..])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            result.error = Some(format!("cannot start {program}: {e}"));
            result.seconds = start.elapsed().as_secs_f64();
            return result;
        }
    };
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut r) = r {
                let mut buf = [0u8; 8192];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = MAX_HOOK_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            kept
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let pgid = rustix::process::Pid::from_child(&child);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= hook.timeout => {
                result.timed_out = true;
                // The whole group: a script's children must not outlive it holding the pipes.
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                result.error = Some(format!("waiting for {program}: {e}"));
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    result.output = String::from_utf8_lossy(&stdout).into_owned();
    result.output.push_str(&String::from_utf8_lossy(&stderr));
    result.seconds = start.elapsed().as_secs_f64();
    result.code = status.and_then(|s| s.code());
    if result.timed_out {
        result.error = Some(format!(
            "{program} ran longer than {} s and was killed",
            hook.timeout.as_secs()
        ));
    } else if let Some(status) = status {
        result.ok = status.success();
        if !result.ok {
            result.error = Some(format!("{program} failed ({status})"));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(argv: &[&str], secs: u64) -> Hook {
        Hook {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(secs),
        }
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
