//! The client's run lease: one run (prepare, upload, complete) per client at a time.
//!
//! Every ssh request is its own process, so a `flock` held by `prepare` would die with it, long
//! before `complete` arrives. The lock is therefore a *lease* written to a small JSON file,
//! `staging-root/.leases/NAME.json` (a client name never starts with `.`, so no client's staging
//! directory can be that directory): the time of `prepare` and a random token, which `prepare`
//! returns in its JSON answer so that the client can name its run in reports. No process id is
//! kept: the requests of one run are different processes, and a pid says nothing about whether
//! the client will still come back.
//!
//! * `prepare` takes the lease when there is none, or when the existing one is older than the
//!   lease timeout (the client's `lease-hours`: a client that died between prepare and complete);
//!   otherwise it is refused with the age of the live lease.
//! * The upload needs a live lease in state `prepared`.
//! * `complete` needs a live lease, marks it `completing` (so a second `complete` or a `prepare`
//!   does not run beside it) and removes it when it is done, whatever the outcome. While it runs
//!   it holds `flock` on `staging-root/.leases/NAME.completing`: a `completing` lease is live for
//!   exactly as long as that lock is held, whatever its age (an ingest may outlast the lease
//!   timeout; a `prepare` must not take over staging under it), and dead as soon as the
//!   `complete` process is gone (killed or crashed: the next run need not wait for the timeout).
//!
//! The upload lock: every upload's rsync holds a shared `flock` on
//! `staging-root/.leases/NAME.uploading` for its whole life (the descriptor is inherited across
//! `exec`), and `complete`, once its lease is `completing` (so no new upload starts), waits for
//! the exclusive lock, bounded by [`UPLOAD_WAIT`], before it reads staging: it never ingests a
//! tree that a second connection inside the same lease is still writing, nor rsync's temporary
//! files (`.name.XXXXXX`). After the bound it gives up: it ingests nothing, ends the lease (as
//! every `complete` that ran does, which is what the client's resume note expects) and fails;
//! the next run's `complete` waits for that upload again if it still runs.
//!
//! Each read-modify-write of the file holds `flock` on it for a few milliseconds, so two requests
//! never both see "free". The file is replaced by rename, so a crash leaves the old or the new
//! lease, never half of one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ClientName;
use crate::error::{Error, ErrorKind, Result};

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseState {
    /// `prepare` succeeded; uploads may run.
    Prepared,
    /// `complete` is ingesting.
    Completing,
}

/// One run's lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Random, hex: names this run.
    pub token: String,
    /// When `prepare` took it (Unix seconds, server time).
    pub prepared: i64,
    /// Where the run is.
    pub state: LeaseState,
}

/// Held by a running `complete` (an `flock` on `NAME.completing`): its lease stays live until
/// this is dropped.
#[derive(Debug)]
pub struct Completing {
    _lock: std::fs::File,
}

/// How long `complete` waits for running uploads of its client to end (see the module docs).
pub const UPLOAD_WAIT: Duration = Duration::from_secs(5 * 60);

/// The longest pause between two looks at the upload lock while `complete` waits.
const UPLOAD_POLL_MAX: Duration = Duration::from_millis(200);

/// The shared upload lock on `NAME.uploading`, taken before the upload's lease check.
#[derive(Debug)]
pub struct UploadLock {
    file: std::fs::File,
}

impl UploadLock {
    /// Keep the lock for the life of the process this one `exec`s into (rsync): the descriptor
    /// is made inheritable and deliberately never closed here. The lock ends when the last
    /// process holding the descriptor exits.
    pub fn hand_to_exec(self) -> Result<()> {
        rustix::io::fcntl_setfd(&self.file, rustix::io::FdFlags::empty())
            .map_err(|e| Error::io("keeping the upload lock across exec", e.into()))?;
        let _kept_open = std::os::fd::IntoRawFd::into_raw_fd(self.file);
        Ok(())
    }
}

/// The lease file of one client.
#[derive(Debug, Clone)]
pub struct LeaseFile {
    path: PathBuf,
    client: ClientName,
    timeout: Duration,
}

impl LeaseFile {
    /// The lease of `client` under `staging_root`; the directory is created on first use.
    pub fn new(staging_root: &Path, client: &ClientName, timeout: Duration) -> LeaseFile {
        LeaseFile {
            path: staging_root
                .join(".leases")
                .join(format!("{}.json", client.as_str())),
            client: client.clone(),
            timeout,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `prepare`: take the lease. Returns it and the expired lease it replaced, if any.
    /// `ErrorKind::Locked` when a live lease exists.
    pub fn acquire(&self, now: i64) -> Result<(Lease, Option<Lease>)> {
        self.with_lock(|current| {
            if let Some(old) = current
                && self.is_live(old, now)
            {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "client {}: a run is already in progress (prepared {} s ago, state {:?}); it \
                         ends with complete, or expires {} s after prepare",
                        self.client,
                        now - old.prepared,
                        old.state,
                        self.timeout.as_secs()
                    ),
                ));
            }
            let mut raw = [0u8; 16];
            getrandom::fill(&mut raw).map_err(|e| {
                Error::new(ErrorKind::Internal, format!("no randomness for the lease: {e}"))
            })?;
            let lease = Lease {
                token: hex::encode(raw),
                prepared: now,
                state: LeaseState::Prepared,
            };
            let replaced = current.clone();
            *current = Some(lease.clone());
            Ok((lease, replaced))
        })
    }

    /// The upload: a live lease in state `prepared` must exist.
    pub fn check_prepared(&self, now: i64) -> Result<Lease> {
        self.with_lock(|current| match current {
            Some(l) if self.is_live(l, now) && l.state == LeaseState::Prepared => Ok(l.clone()),
            Some(l) if self.is_live(l, now) => Err(self.no_run("complete is running")),
            _ => Err(self.no_run("no prepare (or it expired)")),
        })
    }

    /// `complete`: mark the live lease `completing` and return it, with the lock that keeps it
    /// live until the [`Completing`] guard is dropped (after [`LeaseFile::release`]).
    pub fn begin_complete(&self, now: i64) -> Result<(Lease, Completing)> {
        let guard = self.lock_completer()?;
        let Some(guard) = guard else {
            return Err(self.no_run("complete is already running"));
        };
        let lease = self.with_lock(|current| match current {
            Some(l) if self.is_live(l, now) && l.state == LeaseState::Prepared => {
                l.state = LeaseState::Completing;
                Ok(l.clone())
            }
            Some(l) if self.is_live(l, now) => Err(self.no_run("complete is already running")),
            _ => Err(self.no_run("no prepare (or it expired)")),
        })?;
        Ok((lease, guard))
    }

    /// The upload: take the shared upload lock (waiting only while a `complete` briefly holds
    /// it exclusively), then check the lease is `prepared`, so that a `complete` which marked it
    /// `completing` in between is seen and the upload refused.
    pub fn begin_upload(&self, now: i64) -> Result<(Lease, UploadLock)> {
        let file = self.open_upload_lock()?;
        let path = self.upload_lock_path();
        // Never block behind a complete that is waiting for other uploads: try, and if it is
        // held exclusively, the lease is no longer `prepared` anyway.
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(self.no_run("complete is running"));
            }
            Err(e) => return Err(Error::io(format!("locking {}", path.display()), e.into())),
        }
        let lease = self.check_prepared(now)?;
        Ok((lease, UploadLock { file }))
    }

    /// `complete`, after [`LeaseFile::begin_complete`]: wait up to `limit` for every upload's
    /// rsync to end. `Ok(false)` when some still runs after `limit`.
    pub fn wait_for_uploads(&self, limit: Duration) -> Result<bool> {
        let file = self.open_upload_lock()?;
        let path = self.upload_lock_path();
        let deadline = std::time::Instant::now() + limit;
        // The usual wait is the upload's `serve` tidying up after its rsync, a few milliseconds
        // after the client's rsync ended and sent `complete`: look again soon, then less often.
        let mut pause = Duration::from_millis(2);
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                // Released when `file` is dropped: nothing can take it shared again, the lease
                // being `completing`.
                Ok(()) => return Ok(true),
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(e) => return Err(Error::io(format!("locking {}", path.display()), e.into())),
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(UPLOAD_POLL_MAX);
        }
    }

    fn upload_lock_path(&self) -> PathBuf {
        self.path.with_extension("uploading")
    }

    fn open_upload_lock(&self) -> Result<std::fs::File> {
        let path = self.upload_lock_path();
        if let Some(dir) = path.parent() {
            crate::server::staging_root::server_dir(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))
    }

    /// `staging-root/.leases/NAME.completing`, locked by the running `complete`.
    fn completer_path(&self) -> PathBuf {
        self.path.with_extension("completing")
    }

    /// Take the completer lock without waiting; `None` when a `complete` holds it.
    fn lock_completer(&self) -> Result<Option<Completing>> {
        let path = self.completer_path();
        if let Some(dir) = path.parent() {
            crate::server::staging_root::server_dir(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Completing { _lock: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::io(format!("locking {}", path.display()), e.into())),
        }
    }

    /// The live lease, if a run holds one now (for `status`).
    pub fn held(&self, now: i64) -> Result<Option<Lease>> {
        self.with_lock(|current| Ok(current.clone().filter(|l| self.is_live(l, now))))
    }

    /// Remove the lease if it is still the one named `token`.
    pub fn release(&self, token: &str) -> Result<()> {
        self.with_lock(|current| {
            if current.as_ref().is_some_and(|l| l.token == token) {
                *current = None;
            }
            Ok(())
        })
    }

    fn is_live(&self, lease: &Lease, now: i64) -> bool {
        if lease.state == LeaseState::Completing {
            // Live while its `complete` runs, however long; dead once that process is gone. A
            // lock that cannot be tried at all counts as held (never take over by mistake).
            return !matches!(self.lock_completer(), Ok(Some(_)));
        }
        // A lease from the future (the clock stepped back since prepare) is measured by how far
        // the clock moved: live while that is under the timeout, as a lease that old would be.
        // Taking it as expired would let the next prepare take staging over a running upload;
        // taking it as live until the clock catches up would lock the client out for as long
        // as the step was (days, after a bad NTP step).
        lease_age_is_live(now - lease.prepared, self.timeout)
    }

    fn no_run(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::Locked,
            format!("client {}: no run in progress to use ({why})", self.client),
        )
    }

    fn with_lock<T>(&self, change: impl FnOnce(&mut Option<Lease>) -> Result<T>) -> Result<T> {
        let what = |doing: &str| format!("{doing} lease {}", self.path.display());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::server::staging_root::server_dir(dir)?;
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(what("opening the lock of"), e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(what("locking"), e.into()))?;
        let before = match std::fs::read(&self.path) {
            Ok(bytes) => Some(serde_json::from_slice::<Lease>(&bytes).map_err(|e| {
                Error::corrupt(format!(
                    "{}: {e}; remove the file if no run of client {} is in progress",
                    self.path.display(),
                    self.client
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(what("reading"), e)),
        };
        let mut current = before.clone();
        let result = change(&mut current)?;
        if current != before {
            match &current {
                None => {
                    std::fs::remove_file(&self.path).map_err(|e| Error::io(what("removing"), e))?
                }
                Some(lease) => {
                    let tmp = self.path.with_extension("json.new");
                    let json = serde_json::to_vec(lease).map_err(|e| {
                        Error::new(ErrorKind::Internal, what("encoding")).with_source(e)
                    })?;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(true)
                        .write(true)
                        .mode(0o600)
                        .open(&tmp)
                        .map_err(|e| Error::io(what("writing"), e))?;
                    f.write_all(&json)
                        .and_then(|()| f.sync_all())
                        .and_then(|()| std::fs::rename(&tmp, &self.path))
                        .map_err(|e| Error::io(what("writing"), e))?;
                }
            }
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(result)
    }
}

/// Is a lease `age` seconds old (negative: from the future) live under `timeout`?
fn lease_age_is_live(age: i64, timeout: Duration) -> bool {
    age.unsigned_abs() < timeout.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_at_a_time_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let name = ClientName::parse("web1").unwrap();
        let f = LeaseFile::new(dir.path(), &name, Duration::from_secs(100));
        assert!(f.check_prepared(0).is_err(), "upload without prepare");
        assert!(f.begin_complete(0).is_err(), "complete without prepare");
        let (lease, replaced) = f.acquire(1000).unwrap();
        assert_eq!(replaced, None);
        assert_eq!(lease.token.len(), 32);
        let err = f.acquire(1050).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(err.message().contains("already in progress"), "{err}");
        assert_eq!(f.check_prepared(1050).unwrap().token, lease.token);
        let (c, running) = f.begin_complete(1060).unwrap();
        assert_eq!(c.state, LeaseState::Completing);
        assert!(f.begin_complete(1061).is_err(), "second complete");
        assert!(f.check_prepared(1061).is_err(), "upload during complete");
        f.release(&lease.token).unwrap();
        drop(running);
        assert!(!f.path().exists());
        // A dead run's lease expires and is replaced by the next prepare.
        let (a, _) = f.acquire(2000).unwrap();
        let (b, replaced) = f.acquire(2100).unwrap();
        assert_ne!(a.token, b.token);
        assert_eq!(replaced.unwrap().token, a.token);
        // Releasing an old token does not release the new lease.
        f.release(&a.token).unwrap();
        assert!(f.check_prepared(2101).is_ok());
        // A complete that outlasts the timeout keeps its lease; one that is gone frees it.
        f.release(&b.token).unwrap();
        let (c, _) = f.acquire(4000).unwrap();
        let (run, guard) = f.begin_complete(4010).unwrap();
        assert_eq!(run.token, c.token);
        let err = f.begin_complete(4011).unwrap_err();
        assert!(
            err.message().contains("complete is already running"),
            "{err}"
        );
        let late = 4000 + 100 * 50;
        let err = f.acquire(late).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Locked,
            "taken over under a running complete"
        );
        assert!(f.check_prepared(late).is_err());
        drop(guard); // the complete process died without releasing
        let (d, replaced) = f.acquire(4020).unwrap();
        assert_eq!(
            replaced.unwrap().token,
            c.token,
            "a dead complete frees the lease at once"
        );
        assert_ne!(d.token, c.token);
        // An upload holds its lock; a complete waits for it, and gives up after its bound.
        f.release(&d.token).unwrap();
        let (e, _) = f.acquire(5000).unwrap();
        let (_, upload) = f.begin_upload(5001).unwrap();
        let (run, guard) = f.begin_complete(5002).unwrap();
        assert!(
            f.begin_upload(5003).is_err(),
            "a new upload beside a complete"
        );
        assert!(!f.wait_for_uploads(Duration::from_millis(300)).unwrap());
        f.release(&run.token).unwrap();
        drop(guard);
        // The next run waits for the same upload, until its rsync ends.
        let (e2, _) = f.acquire(5004).unwrap();
        assert_ne!(e2.token, e.token);
        let (_, guard) = f.begin_complete(5005).unwrap();
        assert!(!f.wait_for_uploads(Duration::from_millis(300)).unwrap());
        drop(upload);
        assert!(f.wait_for_uploads(Duration::from_millis(300)).unwrap());
        f.release(&e2.token).unwrap();
        drop(guard);
        // A damaged file is reported, naming it.
        std::fs::write(f.path(), b"{").unwrap();
        assert!(
            f.acquire(3000)
                .unwrap_err()
                .message()
                .contains(".leases/web1.json")
        );
    }

    /// Regression: a clock stepped back since prepare makes the lease's age negative. Taken as
    /// expired (a negative age cast to a huge unsigned number, or compared the wrong way), the
    /// next prepare would take staging over a running upload.
    #[test]
    fn a_lease_from_the_future_stays_live_for_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let name = ClientName::parse("web1").unwrap();
        let f = LeaseFile::new(dir.path(), &name, Duration::from_secs(100));
        let (lease, _) = f.acquire(10_000).unwrap();
        for now in [9_999, 9_950, 9_901] {
            let err = f.acquire(now).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Locked, "at {now}");
            assert_eq!(f.check_prepared(now).unwrap().token, lease.token);
        }
        // A step back further than the timeout: as dead as a lease that old.
        let (next, replaced) = f.acquire(9_900).unwrap();
        assert_eq!(replaced.unwrap().token, lease.token);
        assert_ne!(next.token, lease.token);
        assert!(lease_age_is_live(0, Duration::from_secs(1)));
    }
}
