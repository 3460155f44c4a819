//! Ingest: walk a staged tree, chunk, deduplicate, compress, seal and store it as a new session
//! (the server's `complete` step).
//!
//! The pipeline, every stage joined by a bounded channel:
//!
//! ```text
//! probes (lstat, xattrs, files-cache lookup; see walk.rs)
//!    ▲ │
//!    │ ▼
//! walker ──files to read──▶ workers (N threads) ──sealed chunks──▶ pack writer (1 thread)
//!    │                         │   └─ big files: windows sealed on a rayon pool      ▲
//!    │                         ▼                                                      │
//!    └──other entries, cache hits──▶ consumer: reorder by sequence number, build the
//!                                    manifest, submit manifest chunks after the data ┘
//! ```
//!
//! The walker emits entries in manifest order and takes a place in a [`Window`] per entry; the
//! consumer gives places back as it consumes entries, so at most `reorder_window()` entries are
//! in flight. The walker's own entries (directories, cache hits, ...) reach the consumer in
//! batches of up to [`RESULT_BATCH`], a worker's one at a time.
//! Write order (format-spec/index.md): data key, running session, packs (each sealed then
//! committed), then the session's root and state in one transaction. The files cache is
//! renamed into place only after that.

mod consume;
mod dictionary;
mod fake_acl;
mod inflight;
pub(crate) mod meta;
mod read;
mod scope;
pub mod staging;
mod walk;
mod writer;

#[cfg(test)]
mod dictionary_tests;
#[cfg(test)]
mod inline_tests;
#[cfg(test)]
mod split_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::chunking::{ChunkerParams, GearTable};
use crate::crypto::{ChunkIdKey, DataKey, context};
use crate::error::{Error, ErrorKind, Result};
use crate::files_cache::{CacheReader, CacheWriter, CachedFile, PathHasher, cache_path};
use crate::format::manifest::{Body, Entry, Meta};
use crate::ids::{KeyId, SessionId};
use crate::index::{Index, SessionState, SessionStats};
use crate::repo::Repo;

/// Entries between the walker and the consumer at most (bounds the reorder buffer). Large,
/// because a big file holds the consumer back for as long as it is read, while the other
/// workers go on with the small files behind it: with 512, they sat idle after the first 512
/// and a first ingest used about 1.3 of 2 cores. An entry in flight costs a few hundred bytes
/// and may keep its directory open, so the window also stays under half the process's
/// open-file limit (see [`reorder_window`]).
const REORDER_WINDOW: usize = 8192;

/// Entries the walker sends the consumer at once: one channel message and at most one wake-up
/// per batch instead of per entry (on an unchanged tree, nearly every entry is the walker's).
const RESULT_BATCH: usize = 64;

/// Results on their way to the consumer: (sequence number, entry or `None` when aborting).
type Results = Vec<(u64, Option<Done>)>;

/// Counts the entries in flight between the walker and the consumer.
struct Window {
    cap: usize,
    /// Entries in flight, and whether the consumer is gone.
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Window {
    fn new(cap: usize) -> Window {
        Window {
            cap,
            state: Mutex::new((0, false)),
            freed: Condvar::new(),
        }
    }

    /// Take a place if one is free.
    fn try_take(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 < self.cap && !st.1 {
            st.0 += 1;
            return true;
        }
        false
    }

    /// Take a place, waiting for one; `false` once the consumer is gone.
    fn take(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.0 >= self.cap && !st.1 {
            st = self.freed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.1 {
            return false;
        }
        st.0 += 1;
        true
    }

    /// Give back `n` places.
    fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let was_full = st.0 >= self.cap;
        st.0 = st.0.saturating_sub(n);
        if was_full {
            self.freed.notify_all();
        }
    }

    /// The consumer is gone: nobody will give places back.
    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.freed.notify_all();
    }
}

/// [`REORDER_WINDOW`], or less when the open-file limit is low (each entry in flight may hold
/// its directory's descriptor).
fn reorder_window() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let budget = usize::try_from(soft / 2).unwrap_or(usize::MAX);
    budget.clamp(256, REORDER_WINDOW)
}

/// What to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Client name (validated: `[a-z0-9][a-z0-9._-]{0,63}`).
    pub client: String,
    /// The staged tree.
    pub source: PathBuf,
    /// Worker threads (default: a few more than cores, to overlap I/O).
    pub threads: Option<usize>,
    /// Use and write the files cache.
    pub files_cache: bool,
    /// The client's sources (absolute paths) when the staged tree holds them at their full
    /// paths: written as the session's sources record (format-spec/records.md). `None`: paths
    /// are as staged, no record.
    pub sources: Option<Vec<Vec<u8>>>,
    /// The client's own age recipient (`restore-recipient` of server.toml): the session goes
    /// into the client's own dedup scope, its data key is wrapped to this recipient too
    /// (format-spec/keys.md "Client scopes"). `None`: the repository-wide scope.
    pub restore_recipient: Option<String>,
}

/// A path that could not be backed up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathError {
    /// Path relative to the source (lossy UTF-8 for display).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The result of an ingest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestReport {
    /// The new session.
    pub session: i64,
    /// Complete or partial.
    pub state: SessionState,
    /// Why the session is partial (as recorded in the index); `None` when complete.
    pub reason: Option<String>,
    /// Entries in the manifest.
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
    /// Files read (not proven unchanged by the files cache).
    pub files_read: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Chunks added to the store.
    pub new_chunks: u64,
    /// Plaintext bytes of the chunks added.
    pub new_plain_bytes: u64,
    /// Record bytes added to packs.
    pub new_stored_bytes: u64,
    /// Paths that could not be read.
    pub errors: Vec<PathError>,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl IngestReport {
    /// The session id.
    pub fn session_id(&self) -> SessionId {
        SessionId(self.session)
    }
}

/// Check a client name: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn validate_client_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(format!(
            "client name {name:?} is invalid: use 1-64 of a-z 0-9 . _ -, starting with a letter or digit"
        )))
    }
}

/// Ingest `opts.source` into `repo` as a new session of `opts.client`.
///
/// Unreadable paths do not fail the run: each becomes an "unreadable" entry, a
/// [`PathError`] in the report, and the session is committed as partial. Any other error
/// (index, packs, keys) fails the run; its running session stays invisible and the next writer
/// removes what it left.
pub fn ingest(repo: &Repo, opts: &IngestOptions) -> Result<IngestReport> {
    ingest_with(repo, opts, &Hooks::default())
}

/// [`ingest`], reporting the bytes read from files as they are read (one phase, `reading
/// files`, of unknown total: the walk runs beside the reading). Files the files cache proves
/// unchanged are not read and not counted.
pub fn ingest_with_progress(
    repo: &Repo,
    opts: &IngestOptions,
    progress: &dyn crate::progress::Progress,
) -> Result<IngestReport> {
    let decode = staging::StagingDecode::default();
    ingest_inner(repo, opts, &Hooks::default(), &decode, progress)
}

/// [`ingest`] of a staging area written by the server's rsync receiver: `staging` says how to
/// decode it (munged symlinks, `--fake-super` metadata, hollow placeholders; see
/// [`staging`]). A separate entry point, so that [`IngestOptions`] and plain `ingest` stay as
/// they are.
pub fn ingest_staged(
    repo: &Repo,
    opts: &IngestOptions,
    staging: &staging::StagingDecode,
) -> Result<IngestReport> {
    ingest_inner(
        repo,
        opts,
        &Hooks::default(),
        staging,
        &crate::progress::NoProgress,
    )
}

/// Why a session is `partial`, or `None` when it is complete: what the caller says went wrong
/// with the transfer into staging, then how many paths could not be read (and the first).
fn partial_reason(transfer_problem: Option<&str>, errors: &[PathError]) -> Option<String> {
    let unreadable = errors.first().map(|first| {
        format!(
            "{} path{} could not be read (first: {}: {})",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            first.path,
            first.message
        )
    });
    match (transfer_problem, unreadable) {
        (None, None) => None,
        (Some(t), None) => Some(t.to_owned()),
        (None, Some(u)) => Some(u),
        (Some(t), Some(u)) => Some(format!("{t}; {u}")),
    }
}

/// Test seams; empty in production.
#[derive(Default)]
pub(crate) struct Hooks {
    /// Called with a file's path just before it is opened for reading.
    #[allow(clippy::type_complexity)]
    pub before_open: Option<Box<dyn Fn(&[u8]) + Send + Sync>>,
    /// Called with a directory's path after the walker's `lstat` of it and before it is
    /// opened to be listed.
    #[allow(clippy::type_complexity)]
    pub before_open_dir: Option<Box<dyn Fn(&[u8]) + Send + Sync>>,
}

fn unix_now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

pub(crate) fn ingest_with(
    repo: &Repo,
    opts: &IngestOptions,
    hooks: &Hooks,
) -> Result<IngestReport> {
    ingest_inner(
        repo,
        opts,
        hooks,
        &staging::StagingDecode::default(),
        &crate::progress::NoProgress,
    )
}

fn ingest_inner(
    repo: &Repo,
    opts: &IngestOptions,
    hooks: &Hooks,
    decode: &staging::StagingDecode,
    progress: &dyn crate::progress::Progress,
) -> Result<IngestReport> {
    let clock = Instant::now();
    validate_client_name(&opts.client)?;
    let root_fd = walk::open_root(&opts.source)?;

    let writer = repo.start_writer(crate::repo::Operation::Ingest)?;
    let started_ns = unix_now_ns();
    let started = started_ns.div_euclid(1_000_000_000);
    let index = repo.index()?;
    let secret = repo.load_secret()?;
    let data_key = DataKey::generate();
    let scope::IngestScope {
        wrapped,
        wrap,
        id_key,
        cache_name,
    } = scope::choose(
        repo,
        &index,
        &secret,
        &opts.client,
        opts.restore_recipient.as_deref(),
        &data_key,
    )?;
    let key_id = index.insert_data_key(&wrapped, started)?;
    // Durable beside the packs before anything is sealed with it (format-spec/records.md):
    // the key outlives this session in every chunk it seals.
    crate::store::records::write_data_key(repo.root(), key_id, &wrapped)?;
    let session = index.create_session(&opts.client, &writer.id, started)?;
    let gc_generation = index.gc_generation()?;

    let final_cache = cache_path(repo.root(), &cache_name);
    let (cache_read, cache_trusted, cache_writer) = if opts.files_cache {
        let reader = CacheReader::open(&final_cache);
        let trusted = reader
            .as_ref()
            .is_some_and(|r| r.gc_generation() == gc_generation);
        // A cache that cannot be written costs the next run a re-read, nothing more.
        let w = CacheWriter::create(&final_cache, gc_generation)
            .ok()
            .flatten();
        (reader, trusted, w)
    } else {
        (None, false, None)
    };

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Enough readers to keep a virtual disk busy on a cold cache of small files (each worker
    // waits on one read at a time); big files are sealed on the rayon pool, not by workers.
    let workers = opts.threads.unwrap_or((2 * cores).max(8)).max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .thread_name(|i| format!("rsbackup-seal-{i}"))
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("starting threads: {e}")))?;
    let config = repo.config();
    let sh = Shared {
        repo,
        params: config.chunker,
        gear: GearTable::from_key(&secret.derive(context::CHUNKER_GEAR)),
        id_key,
        manifest_cut_key: secret.derive(context::MANIFEST_CUT),
        data_key,
        key_id,
        zstd_level: config.zstd_level,
        wrap_key: wrap,
        dictionary: dictionary::Trainer::default(),
        inline_max: if decode.ingested.is_some() {
            0
        } else {
            crate::format::manifest::INLINE_WRITE_MAX
        },
        hasher: PathHasher::new(&secret),
        cache: cache_read,
        cache_trusted,
        indexes: IndexPool {
            repo,
            free: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
        },
        inflight: inflight::InFlight::default(),
        abort: Abort::default(),
        pool,
        hooks,
        started_ns,
        decode,
        progress,
    };
    drop(secret);
    progress.start("reading files", None);

    let (consumed, written) = run_pipeline(&sh, root_fd, opts, &writer.id, workers, cache_writer)?;

    let errors = consumed.errors;
    let reason = partial_reason(decode.transfer_problem.as_deref(), &errors);
    let state = if reason.is_none() {
        SessionState::Complete
    } else {
        SessionState::Partial
    };
    let stats = SessionStats {
        files: consumed.entries,
        bytes: consumed.bytes,
        errors: errors.len() as u64,
        new_chunks: written.chunks,
        new_bytes: written.stored_bytes,
    };
    let finished = unix_now_ns().div_euclid(1_000_000_000);
    // The record after the data it names, before the row that makes the session visible.
    let record = crate::format::records::SessionRecord {
        id: session.0,
        client: opts.client.clone(),
        state: match state {
            SessionState::Complete => crate::format::records::RecordState::Complete,
            _ => crate::format::records::RecordState::Incomplete,
        },
        reason: reason
            .as_deref()
            .map(crate::index::cut_reason)
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        pinned: false,
        started,
        finished,
        files: stats.files,
        bytes: stats.bytes,
        errors: stats.errors,
        new_chunks: stats.new_chunks,
        new_bytes: stats.new_bytes,
        root: consumed.root.clone(),
    };
    if let Some(sources) = &opts.sources {
        crate::store::records::write_session_sources(repo.root(), session, sources).map_err(
            |e| {
                e.context(format!(
                    "recording the sources of session {session} of client {}",
                    opts.client
                ))
            },
        )?;
    }
    crate::store::records::write_session_record(repo.root(), &record).map_err(|e| {
        e.context(format!(
            "recording session {session} of client {}",
            opts.client
        ))
    })?;
    index
        .finish_session_with_reason(
            session,
            state,
            finished,
            &stats,
            &consumed.root,
            reason.as_deref(),
        )
        .map_err(|e| {
            e.context(format!(
                "committing session {session} of client {}",
                opts.client
            ))
        })?;
    if let Some(w) = consumed.cache {
        // The session is committed; a cache that fails to land only costs a re-read.
        let _ = w.commit();
    }
    drop(writer);
    Ok(IngestReport {
        session: session.0,
        state,
        reason,
        entries: consumed.entries,
        files: consumed.files,
        bytes: consumed.bytes,
        files_read: consumed.files_read,
        bytes_read: consumed.bytes_read,
        new_chunks: written.chunks,
        new_plain_bytes: written.plain_bytes,
        new_stored_bytes: written.stored_bytes,
        errors,
        seconds: clock.elapsed().as_secs_f64(),
    })
}

fn run_pipeline(
    sh: &Shared<'_>,
    root_fd: std::os::fd::OwnedFd,
    opts: &IngestOptions,
    writer_id: &crate::ids::WriterId,
    workers: usize,
    cache_writer: Option<CacheWriter>,
) -> Result<(consume::Consumed, writer::Written)> {
    let (write_tx, write_rx) = writer::queue();
    let (job_tx, job_rx) = crossbeam_channel::unbounded::<(u64, walk::FileJob)>();
    let (res_tx, res_rx) = crossbeam_channel::unbounded::<Results>();
    let window = Window::new(reorder_window());
    let consumer = consume::Consumer::new(sh, write_tx.clone(), cache_writer)?;

    let named = |name: String| std::thread::Builder::new().name(name);
    let (walked, consumed, written) = std::thread::scope(|s| {
        // The first thread that fails to start fails the run; those started end as the
        // channels close.
        let mut spawn_error = None;
        let writer_h = started(
            named("rsbackup-write".into())
                .spawn_scoped(s, move || writer::run(sh, writer_id, write_rx)),
            &mut spawn_error,
        );
        let consumer_h = started(
            named("rsbackup-manifest".into()).spawn_scoped(s, || consumer.run(res_rx, &window)),
            &mut spawn_error,
        );
        for i in 0..workers {
            if spawn_error.is_some() {
                break;
            }
            let (jobs, results, tx) = (job_rx.clone(), res_tx.clone(), write_tx.clone());
            started(
                named(format!("rsbackup-read-{i}"))
                    .spawn_scoped(s, move || read::worker(sh, jobs, results, tx)),
                &mut spawn_error,
            );
        }
        drop((job_rx, write_tx));
        let mut seq = 0u64;
        let mut batch: Results = Vec::with_capacity(RESULT_BATCH);
        let flush = |batch: &mut Results| {
            if !batch.is_empty() {
                let full = std::mem::replace(batch, Vec::with_capacity(RESULT_BATCH));
                let _ = res_tx.send(full);
            }
        };
        let walked = match spawn_error {
            Some(e) => Err(Error::io("starting the ingest's threads", e)),
            None => walk::walk(root_fd, &opts.source, sh, &mut |item| {
                // The consumer frees places only for entries it has: hand over the batch
                // before waiting for one.
                if !window.try_take() {
                    flush(&mut batch);
                    if !window.take() {
                        return;
                    }
                }
                let s = seq;
                seq += 1;
                match item {
                    walk::Item::Done(done) => {
                        batch.push((s, Some(done)));
                        if batch.len() >= RESULT_BATCH {
                            flush(&mut batch);
                        }
                    }
                    walk::Item::File(job) => {
                        let _ = job_tx.send((s, job));
                    }
                }
            }),
        };
        flush(&mut batch);
        drop((job_tx, res_tx));
        let consumed = consumer_h.ok_or(()).and_then(|h| h.join().map_err(|_| ()));
        let written = writer_h.ok_or(()).and_then(|h| h.join().map_err(|_| ()));
        (walked.map(|()| seq), consumed, written)
    });
    let consumed = consumed.map_err(|_| panicked("manifest builder"))?;
    let written = written.map_err(|_| panicked("pack writer"))?;
    if let Some(e) = sh.abort.take() {
        if let Some(w) = consumed.cache {
            w.abandon();
        }
        return Err(e.context(format!(
            "ingest of {} for client {} failed",
            opts.source.display(),
            opts.client
        )));
    }
    let emitted = walked?;
    if consumed.consumed != emitted {
        // Never commit a manifest with a silently missing entry.
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "ingest of {}: {emitted} paths walked but {} recorded (a bug)",
                opts.source.display(),
                consumed.consumed
            ),
        ));
    }
    Ok((consumed, written))
}

/// A started thread's handle; or `None`, keeping the first start error in `first`.
fn started<H>(spawned: std::io::Result<H>, first: &mut Option<std::io::Error>) -> Option<H> {
    spawned.map_err(|e| first.get_or_insert(e)).ok()
}

fn panicked(what: &str) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("the {what} thread panicked (a bug)"),
    )
}

impl Shared<'_> {
    /// Seal a new chunk (one the index does not have): under this ingest's dictionary key once
    /// it has one (compressed with the dictionary when small enough), else under its first
    /// key. Returns the envelope and the id of the key it was sealed under.
    fn seal_new(&self, id: &crate::ids::ChunkId, plaintext: &[u8]) -> Result<(Vec<u8>, KeyId)> {
        let place = dictionary::KeyPlace {
            repo: self.repo,
            zstd_level: self.zstd_level,
            wrap: &*self.wrap_key,
        };
        let (key, key_id, encoder) = match self.dictionary.for_new_chunk(plaintext, &place)? {
            Some(d) => (&d.key, d.key_id, Some(&d.encoder)),
            None => (&self.data_key, self.key_id, None),
        };
        let envelope = crate::crypto::envelope::seal_with(
            key,
            key_id,
            id,
            plaintext,
            self.zstd_level,
            encoder,
        )?;
        Ok((envelope, key_id))
    }
}

/// What every thread of one ingest shares (read-only, or internally synchronised).
pub(super) struct Shared<'r> {
    repo: &'r Repo,
    params: ChunkerParams,
    gear: GearTable,
    id_key: ChunkIdKey,
    manifest_cut_key: Zeroizing<[u8; 32]>,
    data_key: DataKey,
    key_id: KeyId,
    zstd_level: i32,
    /// Wraps a data key as this ingest's scope wants (the dictionary key).
    wrap_key: scope::WrapKey,
    /// This ingest's dictionary, once trained.
    dictionary: dictionary::Trainer,
    /// Regular files of 1 to this many bytes are kept inline in the manifest; 0 in hollow mode,
    /// whose placeholder table would otherwise need their content in the clear.
    inline_max: u64,
    hasher: PathHasher,
    /// The existing files cache, if it opened, shared by the probe threads.
    cache: Option<CacheReader>,
    /// The cache was written at the index's current gc generation: no chunk it names can
    /// have been deleted since.
    cache_trusted: bool,
    indexes: IndexPool<'r>,
    inflight: inflight::InFlight,
    abort: Abort,
    pool: rayon::ThreadPool,
    hooks: &'r Hooks,
    started_ns: i64,
    /// How to decode a staging area (off for a plain directory).
    decode: &'r staging::StagingDecode,
    /// Told the bytes of every file read.
    progress: &'r dyn crate::progress::Progress,
}

/// The first fatal error of the run; once raised, every stage drains and stops.
#[derive(Default)]
struct Abort {
    flag: AtomicBool,
    first: Mutex<Option<Error>>,
}

impl Abort {
    fn fail(&self, e: Error) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e);
        }
        self.flag.store(true, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    fn take(&self) -> Option<Error> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Index connections for threads that only look chunks up (a connection is not `Sync`).
///
/// Each connection keeps one read transaction open across lookups: a lookup in its own
/// transaction takes and drops SQLite's shared lock (`fcntl`) every time, which cost about a
/// tenth of a first ingest of small files. A connection's snapshot is renewed when the pack
/// writer has bumped [`IndexPool::epoch`] since (it does so before telling the in-flight map to
/// forget committed chunks, so a chunk this run committed is never looked up in a snapshot
/// older than its commit), and at least every [`SNAPSHOT_MAX_AGE`], so that chunks another
/// ingest commits are seen soon (a chunk two concurrent ingests both store is harmless: the
/// index keeps one, the other record is dead space for repacking).
struct IndexPool<'r> {
    repo: &'r Repo,
    free: Mutex<Vec<Snapshot>>,
    epoch: AtomicU64,
}

/// Page cache of a lookup connection: a lookup reads one path down the chunks table, whose
/// upper pages fit easily; the leaves come from the operating system's cache.
const LOOKUP_PAGE_CACHE_KIB: u32 = 512;

/// Longest a lookup connection keeps one snapshot.
const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(500);

/// A connection inside a read transaction since `since`, begun at writer epoch `epoch`.
struct Snapshot {
    index: Index,
    epoch: u64,
    since: Instant,
}

struct PooledIndex<'p> {
    pool: &'p Mutex<Vec<Snapshot>>,
    index: Option<Snapshot>,
}

impl IndexPool<'_> {
    fn get(&self) -> Result<PooledIndex<'_>> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        // Read the epoch before (re)starting a snapshot: it is then at least that new.
        let epoch = self.epoch.load(Ordering::SeqCst);
        let snap = match reused {
            Some(s) if s.epoch == epoch && s.since.elapsed() <= SNAPSHOT_MAX_AGE => s,
            Some(s) => {
                s.index.end_read()?;
                s.index.begin_read()?;
                Snapshot {
                    epoch,
                    since: Instant::now(),
                    ..s
                }
            }
            None => {
                let index = self.repo.index()?;
                index.limit_page_cache(LOOKUP_PAGE_CACHE_KIB)?;
                index.begin_read()?;
                Snapshot {
                    index,
                    epoch,
                    since: Instant::now(),
                }
            }
        };
        Ok(PooledIndex {
            pool: &self.free,
            index: Some(snap),
        })
    }

    /// Chunks were committed: later lookups must see them.
    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

impl std::ops::Deref for PooledIndex<'_> {
    type Target = Index;
    fn deref(&self) -> &Index {
        &self.index.as_ref().expect("present until drop").index
    }
}

impl Drop for PooledIndex<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.index.take() {
            self.pool.lock().unwrap_or_else(|p| p.into_inner()).push(i);
        }
    }
}

/// One path's outcome, in manifest order, for the consumer.
pub(super) struct Done {
    /// Manifest path.
    path: Vec<u8>,
    /// The entry; `None` for a path that cannot be represented at all.
    entry: Option<Entry>,
    /// Why the path could not be backed up.
    error: Option<String>,
    /// Files-cache row to write for this path.
    cache: Option<([u8; 16], CachedFile)>,
    /// Bytes read, when the file was read (not a cache hit).
    bytes_read: Option<u64>,
    /// Later paths are hard links to this one.
    link_target: bool,
}

impl Done {
    fn entry(path: Vec<u8>, meta: Meta, body: Body) -> Done {
        Done {
            entry: Some(Entry {
                path: path.clone(),
                meta,
                body,
            }),
            path,
            error: None,
            cache: None,
            bytes_read: None,
            link_target: false,
        }
    }

    fn unreadable(path: Vec<u8>, meta: Meta, message: String) -> Done {
        let mut d = Done::entry(
            path,
            meta,
            Body::Unreadable {
                message: message.clone(),
            },
        );
        d.error = Some(message);
        d
    }

    fn skipped(path: Vec<u8>, message: String) -> Done {
        Done {
            path,
            entry: None,
            error: Some(message),
            cache: None,
            bytes_read: None,
            link_target: false,
        }
    }
}
