//! Running one child process for a step: its output captured and bounded in size, with a time
//! limit. The client runs ssh, rsync and its hooks on it; the server its hooks ([`crate::hooks`]).
//!
//! A hook runs in its own process group, so that on timeout the whole group is killed: a hook
//! that is a shell script waiting on `pg_dump` must not leave `pg_dump` running. ssh and rsync
//! stay in rsbackup's own group, so that a Ctrl-C or a `kill` of the group reaches them too.
//!
//! How output is kept is the caller's [`Capture`]. The client's steps ([`run_captured`]) take
//! stdout and stderr together, in the order they were written, through one pipe, read by a thread
//! into a buffer that keeps the first and the last [`MAX_CAPTURE_BYTES`]`/2` bytes (rsync's
//! statistics come last); when the child is gone but a process it left behind still holds the
//! pipe open (a hook that started a daemon), the output is taken as it is after [`PIPE_GRACE`]
//! rather than waited for. The server's hooks keep stdout, then stderr, each cut to its first
//! bytes ([`Capture::Separate`]), with the same grace.

use std::io::{PipeReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
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
    /// It was started, but waiting for it failed.
    WaitFailed(String),
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
            // Word for word as when a wait failure was reported as `NotStarted`.
            Ended::WaitFailed(why) => format!("could not be started: waiting for it failed: {why}"),
        }
    }

    pub(crate) fn from_status(status: ExitStatus) -> Ended {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ended::Exited(code),
            (None, Some(sig)) => Ended::Signaled(sig),
            (None, None) => Ended::Exited(-1),
        }
    }
}

/// What a child did.
#[derive(Debug, Clone)]
pub struct Captured {
    /// How it ended.
    pub ended: Ended,
    /// Its wait status as the system gave it, when it was waited for (also after a timeout's
    /// kill): for a caller that reports it as it is.
    pub status: Option<ExitStatus>,
    /// stdout and stderr as the [`Capture`] keeps them, lossy UTF-8, bounded.
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

/// How a child's output is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// stdout and stderr through one pipe, in the order they were written; the first and the
    /// last [`MAX_CAPTURE_BYTES`]`/2` bytes kept, a marker where bytes were left out; not waited
    /// for longer than [`PIPE_GRACE`] once the child has ended. The client's steps.
    Interleaved,
    /// stdout, then stderr, each through its own pipe and cut to its first `max_each` bytes
    /// (without a marker); not waited for longer than [`PIPE_GRACE`] once the child has ended.
    /// The server's hooks.
    Separate {
        /// Bytes kept of each stream.
        max_each: usize,
    },
}

impl Capture {
    /// Point the command's stdout and stderr at new pipes; returns their read ends, in the
    /// order their text is joined, each with its empty buffer.
    fn connect(self, command: &mut Command) -> std::io::Result<Vec<(PipeReader, Kept)>> {
        match self {
            Capture::Interleaved => {
                let (reader, writer) = std::io::pipe()?;
                let writer2 = writer.try_clone()?;
                command.stdout(writer).stderr(writer2);
                Ok(vec![(reader, Kept::HeadAndTail(Bounded::default()))])
            }
            Capture::Separate { max_each } => {
                let (out, out_writer) = std::io::pipe()?;
                let (err, err_writer) = std::io::pipe()?;
                command.stdout(out_writer).stderr(err_writer);
                let head = || Kept::Head {
                    bytes: Vec::new(),
                    max: max_each,
                };
                Ok(vec![(out, head()), (err, head())])
            }
        }
    }

    /// How long to wait for the pipes to close once the child has ended (`None`: as long as
    /// it takes).
    fn grace(self) -> Option<Duration> {
        // Both: a hook that started a daemon (which keeps the pipes open) must not hold the
        // step, on the client or on the server, for as long as the daemon lives.
        Some(PIPE_GRACE)
    }
}

/// Run `command` (stdin from /dev/null) and capture its output, [`Capture::Interleaved`].
/// `inherit`, if given, is a descriptor the child inherits (it must not be close-on-exec); the
/// parent's copy is closed as soon as the child runs.
pub fn run_captured(command: Command, limits: Limits, inherit: Option<OwnedFd>) -> Captured {
    run_capturing(command, limits, Capture::Interleaved, inherit)
}

/// [`run_captured`], keeping the output as `capture` says.
pub fn run_capturing(
    command: Command,
    limits: Limits,
    capture: Capture,
    inherit: Option<OwnedFd>,
) -> Captured {
    run_captured_from(command, limits, capture, inherit, Stdio::null())
}

/// [`run_capturing`] with `stdin` as the child's standard input (a file, for a request body).
pub fn run_captured_from(
    mut command: Command,
    limits: Limits,
    capture: Capture,
    inherit: Option<OwnedFd>,
    stdin: Stdio,
) -> Captured {
    let start = Instant::now();
    let not_started = |why: String| Captured {
        ended: Ended::NotStarted(why),
        status: None,
        output: String::new(),
        elapsed: start.elapsed(),
    };
    let pipes = match capture.connect(&mut command) {
        Ok(pipes) => pipes,
        Err(e) => return not_started(format!("cannot create a pipe: {e}")),
    };
    command.stdin(stdin);
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

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let buffers: Vec<Arc<Mutex<Kept>>> = pipes
        .into_iter()
        .map(|(mut reader, kept)| {
            let buffer = Arc::new(Mutex::new(kept));
            let filled = Arc::clone(&buffer);
            let done_tx = done_tx.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    match reader.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Ok(mut b) = filled.lock() {
                                b.push(&chunk[..n]);
                            }
                        }
                    }
                }
                let _ = done_tx.send(());
            });
            buffer
        })
        .collect();
    // Only the readers may hold a sender: a reader that died must not be waited for forever.
    drop(done_tx);

    let exited = exit_signal(&child);
    let (ended, status) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (Ended::from_status(status), Some(status)),
            Ok(None) => {}
            Err(e) => break (Ended::WaitFailed(e.to_string()), None),
        }
        if let Some(limit) = limits.timeout
            && start.elapsed() >= limit
        {
            kill(&mut child, limits.own_group);
            let status = child.wait().ok();
            break (Ended::TimedOut(limit), status);
        }
        wait_for_exit(&exited, Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let closed = match capture.grace() {
        Some(grace) => {
            let deadline = Instant::now() + grace;
            buffers.iter().all(|_| {
                done_rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .is_ok()
            })
        }
        None => buffers.iter().all(|_| done_rx.recv().is_ok()),
    };
    let mut output: String = buffers
        .iter()
        .map(|b| b.lock().map(|b| b.text()).unwrap_or_default())
        .collect();
    if !closed {
        output.push_str(
            "\n[rsbackup: output not waited for: a process left behind still holds it open]\n",
        );
    }
    Captured {
        ended,
        status,
        output,
        elapsed,
    }
}

/// Says once that `child` has ended, without reaping it (its status stays for `try_wait`), so
/// that a loop polling the child wakes when it ends instead of at its next poll: every step
/// of a run (each ssh request, each rsync pass) would otherwise end on average half a poll late.
pub(crate) fn exit_signal(child: &std::process::Child) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        std::thread::spawn(move || {
            use rustix::process::{WaitId, WaitIdOptions, waitid};
            let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
            while let Err(rustix::io::Errno::INTR) = waitid(WaitId::Pid(pid), options) {}
            let _ = tx.send(());
        });
    }
    rx
}

/// Wait at most `poll` for [`exit_signal`]'s word (a plain sleep once it has been given).
pub(crate) fn wait_for_exit(exited: &mpsc::Receiver<()>, poll: Duration) {
    if let Err(mpsc::RecvTimeoutError::Disconnected) = exited.recv_timeout(poll) {
        std::thread::sleep(poll);
    }
}

fn kill(child: &mut std::process::Child, group: bool) {
    if group && let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
}

/// What is kept of one output pipe.
enum Kept {
    /// [`Capture::Interleaved`].
    HeadAndTail(Bounded),
    /// [`Capture::Separate`]: the first `max` bytes; the rest is read and dropped.
    Head { bytes: Vec<u8>, max: usize },
}

impl Kept {
    fn push(&mut self, data: &[u8]) {
        match self {
            Kept::HeadAndTail(bounded) => bounded.push(data),
            Kept::Head { bytes, max } => {
                let room = max.saturating_sub(bytes.len());
                bytes.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Kept::HeadAndTail(bounded) => bounded.text(),
            Kept::Head { bytes, .. } => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
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
    fn separate_capture_keeps_stdout_then_stderr_each_cut() {
        let separate = |max_each| Capture::Separate { max_each };
        let got = run_capturing(sh("echo err >&2; echo out"), NO_LIMIT, separate(1024), None);
        assert_eq!(got.ended, Ended::Exited(0));
        assert_eq!(got.output, "out\nerr\n");
        let got = run_capturing(
            sh("printf 0123456789; printf abcdefghij >&2; exit 2"),
            NO_LIMIT,
            separate(4),
            None,
        );
        assert_eq!(
            got.output, "0123abcd",
            "each stream cut to its first bytes, unmarked"
        );
        assert_eq!(got.ended, Ended::Exited(2));
        assert_eq!(got.status.and_then(|s| s.code()), Some(2));
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
