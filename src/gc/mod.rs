//! Roll-off and garbage collection: retention applied to the index (*forget*), then chunks,
//! packs and keys that no kept session needs removed (*collect*).
//!
//! Two phases, so that the cheap, frequent one never waits for the expensive one:
//!
//! * **Forget** (shared repository lock, like an ingest): per client, [`crate::retention::decide`]
//!   over its visible sessions; the removed sessions' rows go in one transaction that also sets
//!   `meta.gc-pending = 1`. An ingest dedups against chunks, never against sessions, so removing
//!   session rows under it cannot hurt it.
//! * **Collect** (exclusive repository lock: no ingest runs): the live set is computed in SQL on
//!   disk, dead chunk rows are deleted, empty packs removed (row, then file), sparse packs copied
//!   verbatim into new packs (no key needed) and removed, unused data keys deleted, stray pack
//!   files swept, and `gc-pending` cleared last. A crash anywhere leaves `gc-pending` set, so
//!   the next prune finishes the work. See docs/architecture.md "Roll-off and garbage
//!   collection" for why every step is crash safe and safe against a concurrent ingest.
//!
//! Nothing here needs the private key: only the plaintext reference lists of the index.

pub(crate) mod collect;
mod forget;
pub(crate) mod lock;
pub(crate) mod repack;
mod sweep_records;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::SessionId;
use crate::index::SessionState;
use crate::repo::Repo;
use crate::retention::{Policy, Reason};
use crate::store::records;

pub use collect::CollectReport;

/// Default live fraction under which a pack is rewritten.
pub const DEFAULT_REPACK_THRESHOLD: f64 = 0.5;

/// The retention rules of one client and the zone its periods are counted in.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRules {
    /// The keep-* rules.
    pub policy: Policy,
    /// Days, weeks, months and years are counted in this zone.
    pub timezone: TimeZone,
}

impl ClientRules {
    /// Rules in UTC.
    pub fn utc(policy: Policy) -> ClientRules {
        ClientRules {
            policy,
            timezone: TimeZone::UTC,
        }
    }
}

/// Which rules apply to which client.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// For every client without its own entry.
    pub default: ClientRules,
    /// Per client.
    pub clients: BTreeMap<String, ClientRules>,
}

impl Rules {
    /// The same rules for every client.
    pub fn same(rules: ClientRules) -> Rules {
        Rules {
            default: rules,
            clients: BTreeMap::new(),
        }
    }

    /// The rules of `client`.
    pub fn for_client(&self, client: &str) -> &ClientRules {
        self.clients.get(client).unwrap_or(&self.default)
    }
}

/// What `prune` does.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The retention rules.
    pub rules: Rules,
    /// Only this client's sessions (collect is repository-wide regardless).
    pub client: Option<String>,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Packs whose live fraction is below this are rewritten (0 disables repacking).
    pub repack_threshold: f64,
    /// Server time used by the rules.
    pub now: Timestamp,
    /// Wait for the exclusive lock; if false and it is busy, collect is left pending.
    pub wait: bool,
    /// Test seam: abort the process at this named point (see [`FAILPOINTS`]).
    pub failpoint: Option<String>,
}

impl PruneOptions {
    /// Options with the defaults: wait for the lock, repack below 50% live, now.
    pub fn new(rules: Rules) -> PruneOptions {
        PruneOptions {
            rules,
            client: None,
            dry_run: false,
            repack_threshold: DEFAULT_REPACK_THRESHOLD,
            now: Timestamp::now(),
            wait: true,
            failpoint: None,
        }
    }
}

/// The named points where a failpoint can abort a prune, in the order they are reached.
/// `NAME` aborts at the first hit, `NAME#N` at the N-th.
pub const FAILPOINTS: &[&str] = &[
    "after-forget",
    "after-cleanup",
    "after-chunk-delete",
    "before-empty-unlink",
    "after-empty-unlink",
    "after-pack-written",
    "after-move",
    "before-old-unlink",
    "after-keys-delete",
    "before-sweep-unlink",
    "before-clear-pending",
];

/// The named points where a failpoint can abort `repair index`.
pub const REPAIR_FAILPOINTS: &[&str] = &[
    "repair-after-packs",
    "repair-after-build",
    "repair-before-rename",
];

/// The named points where a failpoint can abort `repair chunks` (besides the repacker's
/// `after-pack-written`, `after-move` and `before-old-unlink`, which it reaches too).
pub const HEAL_FAILPOINTS: &[&str] = &[
    "heal-after-cleanup",
    "heal-after-fetch",
    "heal-before-clear",
    "heal-after-records",
];

/// Aborts the process at a named point; counts hits for `NAME#N`.
#[derive(Debug, Default)]
pub struct Failpoint {
    name: Option<String>,
    nth: u64,
    hits: AtomicU64,
}

impl Failpoint {
    /// The failpoint `spec` (`NAME` or `NAME#N`), or none.
    pub fn new(spec: Option<&str>) -> Result<Failpoint> {
        let Some(spec) = spec else {
            return Ok(Failpoint::default());
        };
        let (name, nth) = match spec.split_once('#') {
            Some((n, k)) => (
                n,
                k.parse::<u64>()
                    .ok()
                    .filter(|k| *k > 0)
                    .ok_or_else(|| Error::invalid(format!("failpoint {spec:?}: bad count")))?,
            ),
            None => (spec, 1),
        };
        if !FAILPOINTS.contains(&name)
            && !REPAIR_FAILPOINTS.contains(&name)
            && !HEAL_FAILPOINTS.contains(&name)
            && !crate::keys::REWRAP_FAILPOINTS.contains(&name)
        {
            return Err(Error::invalid(format!(
                "unknown failpoint {name:?} (known: {}, {}, {}, {})",
                FAILPOINTS.join(", "),
                REPAIR_FAILPOINTS.join(", "),
                HEAL_FAILPOINTS.join(", "),
                crate::keys::REWRAP_FAILPOINTS.join(", ")
            )));
        }
        Ok(Failpoint {
            name: Some(name.to_string()),
            nth,
            hits: AtomicU64::new(0),
        })
    }

    /// Abort here if this is the chosen point (a test of crash safety; never set in production).
    pub(crate) fn hit(&self, name: &str) {
        if self.name.as_deref() == Some(name)
            && self.hits.fetch_add(1, Ordering::SeqCst) + 1 == self.nth
        {
            std::process::abort();
        }
    }
}

/// One session's fate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionFate {
    /// Session id.
    pub id: i64,
    /// Client.
    pub client: String,
    /// Server start time (Unix seconds).
    pub started: i64,
    /// Complete or partial.
    pub state: SessionState,
    /// Pinned.
    pub pinned: bool,
    /// Kept or removed.
    pub keep: bool,
    /// Every rule that keeps it; empty when removed.
    pub reasons: Vec<Reason>,
}

/// What a prune did (or, with `dry_run`, would do to sessions).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    /// Every session considered, per client oldest first.
    pub sessions: Vec<SessionFate>,
    /// Sessions removed (0 in a dry run).
    pub removed: u64,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// What collect did, if it ran.
    pub collect: Option<CollectReport>,
    /// Collect is still owed (the exclusive lock was busy, or this was a dry run).
    pub gc_pending: bool,
}

/// What the automatic roll-off after an ingest did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AfterIngestReport {
    /// Sessions of the client removed.
    pub removed: Vec<i64>,
    /// What collect did, if it ran.
    pub collect: Option<CollectReport>,
    /// Collect was owed but the repository was busy: the next `rsbackup prune` does it.
    pub gc_pending: bool,
}

/// Apply retention, then collect if anything is owed. With nothing to forget and no collect
/// pending this returns after reading the session list.
pub fn prune(repo: &Repo, opts: &PruneOptions) -> Result<PruneReport> {
    prune_with_progress(repo, opts, &crate::progress::NoProgress)
}

/// [`prune`], reporting the repack of sparse packs (phase `repacking`, whose total is their
/// sizes), the one part of a prune that reads and writes much.
pub fn prune_with_progress(
    repo: &Repo,
    opts: &PruneOptions,
    progress: &dyn crate::progress::Progress,
) -> Result<PruneReport> {
    check_threshold(opts.repack_threshold)?;
    let fail = Failpoint::new(opts.failpoint.as_deref())?;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    {
        let _shared = repo.lock_shared()?;
        let mut index = repo.index()?;
        if index.opened_on_full_disk() && !opts.dry_run {
            // The unsealed packs of dead writers can go before the index knows (files first,
            // then rows): that may give the index the room it needs to do the rest.
            repo.cleanup_dead_writers(&index)?;
            index = repo.index()?;
        }
        let clients = match &opts.client {
            Some(c) => vec![c.clone()],
            None => index.clients_with_sessions()?,
        };
        for client in clients {
            let rules = opts.rules.for_client(&client);
            let fates = forget::forget(&index, &client, rules, opts.now, opts.dry_run)?;
            if !opts.dry_run {
                // Reverse of the write order: the rows are gone, now their records. A crash
                // before this leaves records without rows: collect sweeps them before it
                // deletes any chunk, so a rebuild never brings back a half-collected session.
                for f in fates.iter().filter(|f| !f.keep) {
                    records::remove_session_record(repo.root(), SessionId(f.id))?;
                }
            }
            report.removed += fates.iter().filter(|f| !f.keep).count() as u64;
            report.sessions.extend(fates);
        }
        if opts.dry_run {
            report.removed = 0;
            report.gc_pending = index.gc_pending()?;
            return Ok(report);
        }
        if report.removed > 0 {
            fail.hit("after-forget");
        }
        // A dead ingest may have sealed packs before it died: their chunks are named by no
        // session and only a collect removes them, so cleaning up after it makes one owed.
        // (Forgetting a dead writer's running session marks it owed too, so a cleanup done
        // at the start of an ingest leaves the same debt.)
        if repo.cleanup_dead_writers(&index)? > 0 {
            index.set_gc_pending(true)?;
        }
        if !index.gc_pending()? {
            return Ok(report);
        }
    }
    // The shared lock is released first: our own shared lock would block the exclusive one.
    let lock = match repo.lock_exclusive(opts.wait) {
        Ok(lock) => lock,
        Err(e) if e.kind() == ErrorKind::Locked => {
            report.gc_pending = true;
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    report.collect = Some(collect::collect(
        repo,
        &lock,
        opts.repack_threshold,
        &fail,
        progress,
    )?);
    Ok(report)
}

/// The automatic roll-off at the end of `complete`, after the ingest has ended (its writer
/// dropped): forget for `client`, then collect only if the exclusive lock is free at once (an
/// ingest of another client may be running); otherwise collect stays pending for the next
/// `rsbackup prune`. The caller checks the client's `auto` setting; `repack_threshold` is the
/// repository-wide one from `[retention]`.
pub fn after_ingest(
    repo: &Repo,
    client: &str,
    rules: &ClientRules,
    repack_threshold: f64,
    now: Timestamp,
) -> Result<AfterIngestReport> {
    let mut opts = PruneOptions::new(Rules::same(rules.clone()));
    opts.client = Some(client.to_string());
    opts.repack_threshold = repack_threshold;
    opts.now = now;
    opts.wait = false;
    let report = prune(repo, &opts)?;
    Ok(AfterIngestReport {
        removed: report
            .sessions
            .iter()
            .filter(|f| !f.keep)
            .map(|f| f.id)
            .collect(),
        collect: report.collect,
        gc_pending: report.gc_pending,
    })
}

/// Pin (or unpin) a visible session: a pinned session is kept whatever the rules.
pub fn set_pinned(repo: &Repo, session: crate::ids::SessionId, pinned: bool) -> Result<()> {
    let index = repo.index()?;
    let not_found = || {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "session {session} not found in repository {}",
                repo.root().display()
            ),
        )
    };
    let mut info = index.session(session).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            not_found()
        } else {
            e
        }
    })?;
    // The record first (format-spec/records.md): a crash between the two leaves the record
    // pinned and the row not, so a rebuild keeps the session rather than losing it.
    info.pinned = pinned;
    let record = records::session_record(&info, index.session_root(session)?)?;
    records::write_session_record(repo.root(), &record)?;
    if !index.set_pinned(session, pinned)? {
        return Err(not_found());
    }
    Ok(())
}

fn check_threshold(t: f64) -> Result<()> {
    if !(0.0..1.0).contains(&t) {
        return Err(Error::invalid(format!(
            "repack threshold {t} is out of range: give a live fraction from 0 (never repack) to \
             below 1, e.g. 0.5"
        )));
    }
    Ok(())
}
