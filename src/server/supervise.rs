//! The server's rsync for one request, run and watched rather than exec'd.
//!
//! `serve` stays alive beside the confined rsync daemon ([`crate::server::rsync_daemon`]):
//!
//! * rsync runs in its own process group, with resource limits ([`Limits`]: CPU time, address
//!   space, open files) set on it right after it starts, before it has read a byte from the
//!   client;
//! * two threads copy the ssh channel to rsync and back; when the client hangs up (its input
//!   ends while rsync still runs, or its output cannot be written), or nothing moves for the
//!   idle timeout, the whole group is killed and every process of it reaped (`serve` is the
//!   child subreaper of its request, so a forked rsync helper cannot escape to init);
//! * during an upload the staging directory is measured again and again: once it holds more
//!   than the client's quota, the transfer is stopped ([`RunEnd::OverQuota`]).
//!
//! The upload's lease file and anything else the caller holds stay held while [`RsyncRun::run`]
//! runs: rsync never outlives it. After an upload, however it ended, the client's staging
//! directory is set back to 0700 ([`crate::server::staging_root::own_client_staging`]).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Resource, Rlimit, Signal};

use crate::error::{Error, ErrorKind, Result};
use crate::server::rsync_daemon::{Module, handshake};

/// Resource limits of the rsync a client's request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU seconds (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Address space in bytes (`RLIMIT_AS`).
    pub address_space: u64,
    /// Open files (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Nothing moved in either direction for this long: the client is gone.
    pub idle: Duration,
    /// The client's input ended but rsync still runs this long after: it is killed.
    pub hangup_grace: Duration,
}

impl Limits {
    /// The configured limits (`[rsync-limits]`), with a 2 s grace after the client's input ends.
    pub fn from_config(config: &crate::config::RsyncLimits) -> Limits {
        Limits {
            cpu_seconds: config.cpu_seconds,
            address_space: config.memory,
            open_files: config.open_files,
            idle: config.idle,
            hangup_grace: Duration::from_secs(2),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_config(&crate::config::RsyncLimits::default())
    }
}

/// How often the watcher checks the quota when the stream is quiet, and the least pause between
/// two walks of staging as a multiple of the time one took (a large tree is walked less often).
const QUOTA_INTERVAL: Duration = Duration::from_millis(500);
const QUOTA_PAUSE_FACTOR: u32 = 10;
/// The client's bytes forwarded between two checks made in the stream itself: data is held back
/// while staging is checked, so a fast transfer cannot finish (and rsync put its delayed updates
/// in place) before it has been checked.
const QUOTA_STREAM_BYTES: u64 = 64 << 10;
/// How often the watcher looks at the client's channel and the quota when nothing happens
/// (rsync's end wakes it at once).
const WATCH_POLL: Duration = Duration::from_millis(10);

/// The quota watch shared by the stream and the watcher.
///
/// Walking staging costs a walk of the whole tree, so it is not done on every check: a check
/// first asks the filesystem (one `statvfs`) how much its used space grew since the last walk.
/// Only when the last walk's figure plus that growth passes the quota (the growth may be other
/// writers' too, so it can only overstate this client's) is staging walked again, at most once
/// per ten times a walk takes; a walk under the quota becomes the new base.
struct QuotaWatch {
    staging: PathBuf,
    quota: u64,
    base: std::sync::Mutex<QuotaBase>,
    /// Allocated bytes measured over the quota, 0 while under it.
    over: AtomicU64,
}

struct QuotaBase {
    /// Allocated bytes in staging at the last walk.
    allocated: u64,
    /// Free bytes of the filesystem at the last walk.
    free: u64,
    /// No walk before this instant.
    next_walk: Instant,
}

impl QuotaWatch {
    /// The base: `allocated`, what the walk before the upload measured in staging (nothing
    /// writes there between that walk and the transfer: the run's upload lock is held), and
    /// the filesystem's free space now, which can only overstate the growth since; `None`
    /// when that cannot be measured.
    fn new(staging: &Path, quota: u64, allocated: u64) -> Option<QuotaWatch> {
        let free = crate::server::staging::free_space(staging).ok()?;
        Some(QuotaWatch {
            staging: staging.to_owned(),
            quota,
            base: std::sync::Mutex::new(QuotaBase {
                allocated,
                free,
                next_walk: Instant::now(),
            }),
            over: AtomicU64::new(if allocated > quota { allocated } else { 0 }),
        })
    }

    /// True when staging is over the quota. `force`: walk now if the growth says it may be.
    fn check(&self, force: bool) -> bool {
        if self.over.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let Ok(mut base) = self.base.lock() else {
            return false;
        };
        let Ok(free) = crate::server::staging::free_space(&self.staging) else {
            return false;
        };
        let grown = base.free.saturating_sub(free);
        if base.allocated.saturating_add(grown) <= self.quota {
            return false;
        }
        let began = Instant::now();
        if !force && began < base.next_walk {
            return false;
        }
        // A tree changing under the walk may fail it; the next check tries again.
        let Ok((_, allocated)) = crate::server::staging::staging_usage(&self.staging) else {
            return false;
        };
        if allocated > self.quota {
            self.over.store(allocated, Ordering::Relaxed);
            return true;
        }
        *base = QuotaBase {
            allocated,
            free,
            next_walk: Instant::now() + began.elapsed() * QUOTA_PAUSE_FACTOR,
        };
        false
    }

    fn end(&self) -> Option<RunEnd> {
        match self.over.load(Ordering::Relaxed) {
            0 => None,
            allocated => Some(RunEnd::OverQuota {
                allocated,
                quota: self.quota,
            }),
        }
    }
}

/// How a watched rsync ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// rsync exited by itself with this code (`None`: killed by a signal it got elsewhere).
    Exited(Option<i32>),
    /// The client's connection ended while rsync still ran; the group was killed.
    ClientGone,
    /// Nothing moved for [`Limits::idle`]; the group was killed.
    Idle,
    /// Staging grew past the quota during the upload; the group was killed.
    OverQuota {
        /// Allocated bytes measured.
        allocated: u64,
        /// The client's quota.
        quota: u64,
    },
}

impl RunEnd {
    /// The exit code `serve` ends with: rsync's own, or 20 (rsync's "received a signal") for
    /// a run the watcher stopped.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunEnd::Exited(Some(code)) => *code,
            _ => 20,
        }
    }
}

/// One request's confined rsync, ready to run.
#[derive(Debug)]
pub struct RsyncRun {
    /// `rsync --server --daemon --config=FILE .`, environment cleared.
    pub(crate) command: Command,
    /// The generated daemon configuration (removed when the run ends).
    pub(crate) config_file: PathBuf,
    /// Upload or download.
    pub(crate) module: Module,
    /// The argument list the bridge sends the daemon.
    pub(crate) args: Vec<OsString>,
    /// The staging directory.
    pub(crate) staging: PathBuf,
    /// Stop the upload past this many allocated bytes in staging.
    pub(crate) quota: Option<u64>,
    /// Allocated bytes in staging before the upload (measured by the walk that stripped it:
    /// [`crate::server::staging_clean::strip_transport_xattrs`]), the quota watch's base.
    pub(crate) allocated_before: u64,
    /// Resource limits.
    pub(crate) limits: Limits,
    /// An upload's lock (`complete` waits for it), held until the run and its processes end.
    pub(crate) upload_lock: Option<crate::server::lock::UploadLock>,
}

impl Drop for RsyncRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config_file);
    }
}

struct Shared {
    /// Milliseconds since `start` of the last byte moved.
    last_activity: AtomicU64,
    client_eof: AtomicBool,
    client_gone: AtomicBool,
    start: Instant,
    quota: Option<QuotaWatch>,
}

impl Shared {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

impl RsyncRun {
    /// The staging directory this run writes or reads.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Run rsync between the client's channel (`client_in`, `client_out`) and the confined
    /// daemon until it ends; kill and reap its whole process group whatever happens.
    ///
    /// The channel is put in blocking mode first: the peer that created it (sshd, or an rsync
    /// `-e` program) may have left it non-blocking, and a copy that meets `EAGAIN` would take
    /// a full pipe for a client that went away.
    pub fn run<I, O>(mut self, client_in: I, client_out: O) -> Result<RunEnd>
    where
        I: Read + std::os::fd::AsFd + Send + 'static,
        O: Write + std::os::fd::AsFd + Send + 'static,
    {
        for fd in [client_in.as_fd(), client_out.as_fd()] {
            let flags = rustix::fs::fcntl_getfl(fd)
                .map_err(|e| Error::io("reading the ssh channel's flags", e.into()))?;
            if flags.contains(rustix::fs::OFlags::NONBLOCK) {
                rustix::fs::fcntl_setfl(fd, flags - rustix::fs::OFlags::NONBLOCK)
                    .map_err(|e| Error::io("making the ssh channel blocking", e.into()))?;
            }
        }
        // Orphans of the request (rsync forks its generator) are re-parented here, not to
        // init, so they can be reaped. Failure only weakens the reaping.
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut self.command, 0);
        let mut child = self
            .command
            .spawn()
            .map_err(|e| Error::io("starting the server's rsync", e))?;
        let group = Pid::from_child(&child);
        let result = self.pump_and_watch(&mut child, group, client_in, client_out);
        kill_and_reap(group, &mut child);
        if self.module == Module::Upload {
            // The receiver gives staging the client's root mode: back to the server's 0700,
            // however the upload ended.
            crate::server::staging_root::own_client_staging(&self.staging)?;
        }
        result
    }

    fn pump_and_watch<I, O>(
        &self,
        child: &mut Child,
        group: Pid,
        mut client_in: I,
        mut client_out: O,
    ) -> Result<RunEnd>
    where
        I: Read + Send + 'static,
        O: Write + Send + 'static,
    {
        set_limits(group, &self.limits)?;
        let (Some(mut daemon_in), Some(mut daemon_out)) = (child.stdin.take(), child.stdout.take())
        else {
            return Err(Error::new(
                ErrorKind::Internal,
                "rsync started without pipes",
            ));
        };
        // A client that never speaks must not hold the daemon: the idle limit applies to the
        // handshake too.
        let shaken = Arc::new(AtomicBool::new(false));
        {
            let shaken = Arc::clone(&shaken);
            let idle = self.limits.idle;
            std::thread::spawn(move || {
                std::thread::sleep(idle);
                if !shaken.load(Ordering::Relaxed) {
                    let _ = rustix::process::kill_process_group(group, Signal::KILL);
                }
            });
        }
        handshake(
            &mut client_in,
            &mut client_out,
            &mut daemon_in,
            &mut daemon_out,
            self.module,
            &self.args,
        )?;
        shaken.store(true, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            last_activity: AtomicU64::new(0),
            client_eof: AtomicBool::new(false),
            client_gone: AtomicBool::new(false),
            start: Instant::now(),
            quota: self
                .quota
                .and_then(|quota| QuotaWatch::new(&self.staging, quota, self.allocated_before)),
        });
        // Client to rsync. This thread may stay blocked on a client that never sends again;
        // the process exits without waiting for it.
        {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut unmeasured = 0u64;
                loop {
                    match client_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            shared.touch();
                            unmeasured += n as u64;
                            if let Some(q) = &shared.quota
                                && unmeasured >= QUOTA_STREAM_BYTES
                            {
                                unmeasured = 0;
                                if q.check(false) {
                                    // Nothing more reaches rsync; the watcher kills it.
                                    return;
                                }
                            }
                            if daemon_in.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                shared.client_eof.store(true, Ordering::Relaxed);
                drop(daemon_in);
            });
        }
        // rsync to the client; says when rsync's output has ended and been passed on.
        let (out_done, out_finished) = std::sync::mpsc::channel::<()>();
        {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match daemon_out.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            shared.touch();
                            if client_out
                                .write_all(&buf[..n])
                                .and_then(|()| client_out.flush())
                                .is_err()
                            {
                                shared.client_gone.store(true, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
                let _ = out_done.send(());
            });
        }
        let end = self.watch(child, group, &shared)?;
        // The client should get rsync's last words, but a client that does not read must not
        // hold the request open.
        if matches!(end, RunEnd::Exited(_)) {
            let _ = out_finished.recv_timeout(Duration::from_secs(5));
        }
        Ok(end)
    }

    /// Poll rsync, the client's channel and the staging size until one of them ends the run.
    fn watch(&self, child: &mut Child, group: Pid, shared: &Shared) -> Result<RunEnd> {
        let exited = crate::process::exit_signal(child);
        let mut eof_seen: Option<Instant> = None;
        let mut next_measure = Instant::now();
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| Error::io("waiting for the server's rsync", e))?
            {
                // A transfer quicker than the measurements is measured once more at its end.
                if let Some(q) = &shared.quota
                    && q.check(true)
                    && let Some(end) = q.end()
                {
                    return Ok(end);
                }
                return Ok(RunEnd::Exited(status.code()));
            }
            let stop = if shared.client_gone.load(Ordering::Relaxed) {
                Some(RunEnd::ClientGone)
            } else if shared.idle_for() >= self.limits.idle {
                Some(RunEnd::Idle)
            } else if shared.client_eof.load(Ordering::Relaxed)
                && eof_seen.get_or_insert_with(Instant::now).elapsed() >= self.limits.hangup_grace
            {
                Some(RunEnd::ClientGone)
            } else {
                None
            };
            if let Some(end) = stop {
                let _ = rustix::process::kill_process_group(group, Signal::KILL);
                return Ok(end);
            }
            if let Some(q) = &shared.quota
                && Instant::now() >= next_measure
            {
                next_measure = Instant::now() + QUOTA_INTERVAL;
                if q.check(false)
                    && let Some(end) = q.end()
                {
                    let _ = rustix::process::kill_process_group(group, Signal::KILL);
                    return Ok(end);
                }
            }
            crate::process::wait_for_exit(&exited, WATCH_POLL);
        }
    }
}

fn set_limits(pid: Pid, limits: &Limits) -> Result<()> {
    for (resource, value) in [
        (Resource::Cpu, limits.cpu_seconds),
        (Resource::As, limits.address_space),
        (Resource::Nofile, limits.open_files),
    ] {
        let limit = Rlimit {
            current: Some(value),
            maximum: Some(value),
        };
        rustix::process::prlimit(Some(pid), resource, limit).map_err(|e| {
            Error::io(
                format!("limiting the server's rsync ({resource:?} = {value})"),
                e.into(),
            )
        })?;
    }
    Ok(())
}

/// Kill the whole group (whatever is left of it) and reap rsync and every orphan of it.
fn kill_and_reap(group: Pid, child: &mut Child) {
    let _ = rustix::process::kill_process_group(group, Signal::KILL);
    let _ = child.wait();
    // Orphans re-parented to this process (the subreaper): reap until none is left, but
    // never wait long for one that is not ours to kill.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
            Ok(Some(_)) => continue,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
}
