//! Running one child process for a step: stdout and stderr captured together (in the order they
//! were written, through one pipe), bounded in size, with a time limit.
//!
//! A hook runs in its own process group, so that on timeout the whole group is killed: a hook
//! that is a shell script waiting on `pg_dump` must not leave `pg_dump` running. ssh and rsync
//! stay in rsbackup's own group, so that a Ctrl-C or a `kill` of the group reaches them too.
//!
//! Output is read by a thread into a buffer that keeps the first and the last
//! [`MAX_CAPTURE_BYTES`]`/2` bytes (rsync's statistics come last). When the child is gone but a
//! process it left behind still holds the pipe open (a hook that started a daemon), the output is
//! taken as it is after [`PIPE_GRACE`] rather than waited for.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Most output bytes kept per step: the first and last half of this.
pub const MAX_CAPTURE_BYTES: usize = 256 * 1024;

/// How long to wait for the output pipe to close once the child has ended.
pub const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How a child process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (not our timeout).
    Signaled(i32),
    /// It ran past its time limit and was killed.
    TimedOut(Duration),
    /// It could not be started.
    NotStarted(String),
}

impl Ended {
    /// Exit code 0?
    pub fn success(&self) -> bool {
        *self == Ended::Exited(0)
    }

    /// In words, for a report: `exit code 3`, `killed by signal 9`, ...
    pub fn describe(&self) -> String {
        match self {
            Ended::Exited(code) => format!("exit code {code}"),
            Ended::Signaled(sig) => format!("killed by signal {sig}"),
            Ended::TimedOut(limit) => format!(
                "still running after its time limit of {}; killed",
                crate::report::human_duration(*limit)
            ),
            Ended::NotStarted(why) => format!("could not be started: {why}"),
        }
    }
}

/// What a child did.
#[derive(Debug, Clone)]
pub struct Captured {
    /// How it ended.
    pub ended: Ended,
    /// stdout and stderr, interleaved, lossy UTF-8, bounded (a marker shows a cut).
    pub output: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// How to run a child.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Kill it after this long (`None`: no limit).
    pub timeout: Option<Duration>,
    /// Put it in its own process group and kill the whole group on timeout.
    pub own_group: bool,
}

/// Run `command` (stdin from /dev/null) and capture its output. `inherit`, if given, is a
/// descriptor the child inherits (it must not be close-on-exec); the parent's copy is closed
/// as soon as the child runs.
pub fn run_captured(mut command: Command, limits: Limits, inherit: Option<OwnedFd>) -> Captured {
    let start = Instant::now();
    let not_started = |why: String| Captured {
        ended: Ended::NotStarted(why),
        output: String::new(),
        elapsed: start.elapsed(),
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(e) => return not_started(format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return not_started(format!("cannot create a pipe: {e}")),
    };
    command.stdin(Stdio::null()).stdout(writer).stderr(writer2);
    if limits.own_group {
        command.process_group(0);
    }
    let spawned = command.spawn();
    // The Command holds the pipe's write ends: drop it, or the reader never sees end of file.
    drop(command);
    drop(inherit);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return not_started(e.to_string()),
    };

    let buffer = Arc::new(Mutex::new(Bounded::default()));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    {
        let buffer = Arc::clone(&buffer);
        let mut reader = reader;
        std::thread::spawn(move || {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut b) = buffer.lock() {
                            b.push(&chunk[..n]);
                        }
                    }
                }
            }
            let _ = done_tx.send(());
        });
    }

    let ended = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break match (status.code(), status.signal()) {
                    (Some(code), _) => Ended::Exited(code),
                    (None, Some(sig)) => Ended::Signaled(sig),
                    (None, None) => Ended::Exited(-1),
                };
            }
            Ok(None) => {}
            Err(e) => break Ended::NotStarted(format!("waiting for it failed: {e}")),
        }
        if let Some(limit) = limits.timeout
            && start.elapsed() >= limit
        {
            kill(&mut child, limits.own_group);
            let _ = child.wait();
            break Ended::TimedOut(limit);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let closed = done_rx.recv_timeout(PIPE_GRACE).is_ok();
    let mut output = buffer.lock().map(|b| b.text()).unwrap_or_default();
    if !closed {
        output.push_str(
            "\n[rsbackup: output not waited for: a process left behind still holds it open]\n",
        );
    }
    Captured {
        ended,
        output,
        elapsed,
    }
}

fn kill(child: &mut std::process::Child, group: bool) {
    if group && let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
}

/// The first and the last `MAX_CAPTURE_BYTES / 2` bytes, and how many were dropped between.
#[derive(Default)]
struct Bounded {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: u64,
}

impl Bounded {
    fn push(&mut self, mut data: &[u8]) {
        let half = MAX_CAPTURE_BYTES / 2;
        if self.head.len() < half {
            let take = data.len().min(half - self.head.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        self.tail.extend(data);
        let over = self.tail.len().saturating_sub(half);
        if over > 0 {
            self.tail.drain(..over);
            self.dropped += over as u64;
        }
    }

    fn text(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            out.push_str(&format!(
                "\n[rsbackup: {} bytes of output left out]\n",
                self.dropped
            ));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    const NO_LIMIT: Limits = Limits {
        timeout: None,
        own_group: false,
    };

    #[test]
    fn captures_both_streams_in_order() {
        let got = run_captured(
            sh("echo one; echo two >&2; echo three; exit 3"),
            NO_LIMIT,
            None,
        );
        assert_eq!(got.ended, Ended::Exited(3));
        assert_eq!(got.output, "one\ntwo\nthree\n");
        assert!(!got.ended.success());
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-survived");
        // The grandchild would write the marker after 2 s if it survived its group's kill.
        let script = format!(
            "(sleep 2; touch {}) & echo started; sleep 30",
            marker.display()
        );
        let limits = Limits {
            timeout: Some(Duration::from_millis(500)),
            own_group: true,
        };
        let got = run_captured(sh(&script), limits, None);
        assert_eq!(got.ended, Ended::TimedOut(Duration::from_millis(500)));
        assert!(got.elapsed < Duration::from_secs(5), "{:?}", got.elapsed);
        assert!(got.output.starts_with("started\n"), "{:?}", got.output);
        assert!(got.ended.describe().contains("killed"));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            !marker.exists(),
            "a process of the hook's group outlived the timeout"
        );
    }

    #[test]
    fn a_daemon_left_behind_does_not_hold_the_run() {
        let limits = Limits {
            timeout: Some(Duration::from_secs(20)),
            own_group: true,
        };
        let start = Instant::now();
        let got = run_captured(sh("sleep 6 & echo bye"), limits, None);
        assert_eq!(got.ended, Ended::Exited(0));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(got.output.starts_with("bye\n"), "{:?}", got.output);
        assert!(got.output.contains("not waited for"), "{:?}", got.output);
    }

    #[test]
    fn long_output_keeps_head_and_tail() {
        let got = run_captured(
            sh("echo FIRST; head -c 1000000 /dev/zero | tr '\\0' x; echo; echo LAST"),
            NO_LIMIT,
            None,
        );
        assert!(got.ended.success());
        assert!(got.output.starts_with("FIRST\n"));
        assert!(got.output.ends_with("LAST\n"));
        assert!(got.output.contains("bytes of output left out"));
        assert!(got.output.len() < MAX_CAPTURE_BYTES + 100);
    }

    #[test]
    fn missing_program_and_signals() {
        let got = run_captured(Command::new("/nonexistent/program"), NO_LIMIT, None);
        assert!(matches!(got.ended, Ended::NotStarted(_)), "{:?}", got.ended);
        assert!(got.ended.describe().contains("could not be started"));
        let got = run_captured(sh("kill -9 $$"), NO_LIMIT, None);
        assert_eq!(got.ended, Ended::Signaled(9));
    }
}
