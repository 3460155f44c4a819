//! The repository: layout, `init`, `open`, locks and cleanup after dead writers
//! (format-spec/repository.md).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;
use zeroize::Zeroizing;

use crate::chunking::ChunkerParams;
use crate::crypto::RepoSecret;
use crate::crypto::wrap::{Identities, Recipients, SECRET_MAGIC, unwrap_secret, wrap_secret};
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::ManifestParams;
use crate::format::repository::RepoConfig;
use crate::ids::WriterId;
use crate::index::Index;
use crate::store::durable::{create_dir_synced, sync_dir, write_atomic, write_new_synced};
use crate::store::{now, pack_path};

/// zstd level of new repositories (of chunks over 64 KiB: smaller ones get at least level 3,
/// `envelope::SMALL_CHUNK_MIN_LEVEL`). Level 1 was measured against level 3 on the benchmark
/// corpus (1.27 GB, text-like and random files): 33% less ingest CPU for a repository 0.1%
/// larger; on a real source tree level 3 everywhere stores 3.7% less than level 1 for large
/// chunks and dictionaries for small ones, for about 12% more CPU (docs/architecture.md).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;
/// Pack target size of new repositories: large enough that a big repository is thousands of
/// files, not millions; small enough that a mirror re-sends little after an interruption.
pub const DEFAULT_PACK_TARGET_SIZE: u64 = 32 << 20;

const CONFIG_FILE: &str = "repository.toml";
const INDEX_FILE: &str = "index.db";
const SECRET_FILE: &str = "keys/secret";
const SECRET_AGE_FILE: &str = "keys/secret.age";
const LOCK_FILE: &str = "lock";
const LOCKS_DIR: &str = "locks";
/// `keys/mirror`: present in a mirror repository, which holds no `keys/secret`
/// (format-spec/repository.md).
pub const MIRROR_MARKER: &str = "mirror";

/// An opened repository.
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
    config: RepoConfig,
}

/// A held repository lock (shared or exclusive); released on drop.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

/// A live writer: holds the shared repository lock and its own writer lock. Dropping it
/// removes its lock file; anything it left in state `writing`/`running` is then cleaned up by
/// the next writer.
#[derive(Debug)]
pub struct Writer {
    /// This writer's id.
    pub id: WriterId,
    _repo_lock: RepoLock,
    _writer_lock: File,
    lock_path: PathBuf,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Removed while still locked, so no other process can mistake it for a dead writer's
        // file and clean up under us; a failure only leaves a stale file the next cleanup takes.
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// The outcome of a non-blocking flock.
enum Flock {
    Taken,
    HeldElsewhere,
}

fn try_flock(file: &File, op: FlockOperation, what: &Path) -> Result<Flock> {
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(Flock::Taken),
            Err(Errno::INTR) => continue,
            Err(Errno::WOULDBLOCK) => return Ok(Flock::HeldElsewhere),
            Err(e) => {
                return Err(Error::io(
                    format_args!("locking {}", what.display()),
                    std::io::Error::from(e),
                ));
            }
        }
    }
}

impl Repo {
    /// Whether this repository is a mirror (`keys/mirror` exists): it has no `keys/secret`
    /// by design.
    pub fn is_mirror(&self) -> bool {
        self.root.join("keys").join(MIRROR_MARKER).exists()
    }
}

/// What a writer does, written into its lock file so that what a dead writer left can be
/// named (format-spec/repository.md "Locks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// An ingest (`rsbackup ingest`, or `complete` of a push).
    Ingest,
    /// The repack step of prune's garbage collection (the only step of it that writes packs).
    Repack,
    /// A mirror run writing into this repository (the mirror's side, `mirror-serve`).
    Mirror,
    /// A repair that writes packs (`rsbackup repair chunks`).
    Repair,
}

impl Operation {
    /// The word in the lock file.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Ingest => "ingest",
            Operation::Repack => "repack",
            Operation::Mirror => "mirror",
            Operation::Repair => "repair",
        }
    }

    /// The operation a lock file's content names, if any.
    pub fn parse(text: &str) -> Option<Operation> {
        match text.trim_end_matches('\n') {
            "ingest" => Some(Operation::Ingest),
            "repack" => Some(Operation::Repack),
            "mirror" => Some(Operation::Mirror),
            "repair" => Some(Operation::Repair),
            _ => None,
        }
    }

    /// What the operation is, and what the next run does about what it left, in words.
    pub fn left_behind(op: Option<Operation>) -> &'static str {
        match op {
            Some(Operation::Ingest) => {
                "an interrupted ingest; the next ingest, mirror run or prune removes it, and the \
                 next prune collects what the ingest sealed before it stopped"
            }
            Some(Operation::Repack) => {
                "an interrupted repack, part of prune's garbage collection; the next prune \
                 removes it and finishes the collect (the old packs are still in use)"
            }
            Some(Operation::Mirror) => {
                "an interrupted mirror run writing into this repository; the next mirror run \
                 (or prune) removes it and sends again what was not committed"
            }
            Some(Operation::Repair) => {
                "an interrupted `repair chunks`; the next repair (or ingest, or prune) removes it, \
                 and running the repair again fetches what was not committed"
            }
            None => {
                "an interrupted operation whose lock file is gone or names none; the next \
                 ingest or prune removes it"
            }
        }
    }
}

/// The operation the (dead) writer `writer` recorded in its lock file, if it can be read.
pub fn writer_operation(root: &Path, writer: &str) -> Option<Operation> {
    if !is_writer_id(writer) {
        return None;
    }
    let path = root.join(LOCKS_DIR).join(format!("{writer}.lock"));
    let text = std::fs::read_to_string(path).ok()?;
    Operation::parse(&text)
}

/// A writer id is 32 lowercase hex digits; anything else read from the index must not be used
/// to build a path.
fn is_writer_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Repo {
    /// Create a repository at `root` (missing or empty directory) for `recipients`.
    pub fn init(root: &Path, recipients: &[String]) -> Result<Repo> {
        if recipients.is_empty() {
            return Err(Error::invalid(
                "a repository needs at least one age recipient (age1...)",
            ));
        }
        // Parse before touching the disk: a typo must not leave a half-made repository.
        let parsed = Recipients::parse(recipients)?;
        match std::fs::read_dir(root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::invalid(format!(
                        "cannot create a repository in {}: the directory is not empty",
                        root.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(root).map_err(|e| {
                    Error::io(format_args!("creating directory {}", root.display()), e)
                })?;
                if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(Error::invalid(format!(
                    "cannot create a repository at {}: it exists and is not a directory",
                    root.display()
                )));
            }
            Err(e) => {
                return Err(Error::io(format_args!("reading {}", root.display()), e));
            }
        }
        for dir in ["keys", LOCKS_DIR, "packs", "cache", "tmp"] {
            create_dir_synced(&root.join(dir))?;
        }
        // keys/ holds the secret in the clear: nobody but the repository's owner lists it.
        let keys = root.join("keys");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format_args!("restricting {}", keys.display()), e))?;
        write_new_synced(&root.join(LOCK_FILE), b"", 0o644)?;

        let secret = RepoSecret::generate();
        let mut plain = Zeroizing::new(Vec::with_capacity(40));
        plain.extend_from_slice(SECRET_MAGIC);
        plain.extend_from_slice(secret.expose());
        write_new_synced(&root.join(SECRET_FILE), &plain, 0o600)?;
        let wrapped = wrap_secret(&secret, &parsed)?;
        write_new_synced(&root.join(SECRET_AGE_FILE), &wrapped, 0o600)?;

        let config = RepoConfig {
            id: hex::encode(crate::crypto::random_array::<16>()),
            created: now(),
            recipients: recipients.iter().map(|r| r.trim().to_string()).collect(),
            secret_check: hex::encode(secret.check_value()),
            chunker: ChunkerParams::DEFAULT,
            manifest: ManifestParams::DEFAULT,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            pack_target_size: DEFAULT_PACK_TARGET_SIZE,
        };
        Index::create(&root.join(INDEX_FILE), &config.id)?;
        // repository.toml last: a directory is a repository only once everything else exists.
        write_atomic(&root.join(CONFIG_FILE), config.to_toml().as_bytes(), 0o644)?;
        Ok(Repo {
            root: root.to_path_buf(),
            config,
        })
    }

    /// Open a repository: `NotARepository` without `repository.toml`, `UnsupportedVersion`
    /// for an unknown version.
    pub fn open(root: &Path) -> Result<Repo> {
        let not_a_repo = |why: &str| {
            Error::new(
                ErrorKind::NotARepository,
                format!("{} is not an rsbackup repository: {why}", root.display()),
            )
        };
        if !root.exists() {
            return Err(not_a_repo("it does not exist"));
        }
        if !root.is_dir() {
            return Err(not_a_repo("it is not a directory"));
        }
        let path = root.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_a_repo("it has no repository.toml"));
            }
            Err(e) => return Err(Error::io(format_args!("reading {}", path.display()), e)),
        };
        let config = RepoConfig::parse(&text, &path.display().to_string())?;
        Ok(Repo {
            root: root.to_path_buf(),
            config,
        })
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// A new connection to the index, checked to belong to this repository.
    pub fn index(&self) -> Result<Index> {
        let index = Index::open(&self.root.join(INDEX_FILE))?;
        let id = index.repository_id()?;
        if id != self.config.id {
            return Err(Error::corrupt(format!(
                "{}: index.db belongs to repository {id}, but repository.toml says {}",
                self.root.display(),
                self.config.id
            )));
        }
        Ok(index)
    }

    /// The recipients from the configuration.
    pub fn recipients(&self) -> Result<Recipients> {
        Recipients::parse(&self.config.recipients)
            .map_err(|e| e.context(format_args!("{}", self.root.join(CONFIG_FILE).display())))
    }

    /// Replace the recipient list in `repository.toml` (atomically). Wrapped keys are not
    /// touched: `crate::keys::rewrap` brings them to the new list. The caller holds the
    /// exclusive repository lock.
    pub fn set_recipients(&mut self, recipients: &[String]) -> Result<()> {
        Recipients::parse(recipients)?;
        let mut config = self.config.clone();
        config.recipients = recipients.iter().map(|r| r.trim().to_string()).collect();
        write_atomic(
            &self.root.join(CONFIG_FILE),
            config.to_toml().as_bytes(),
            0o644,
        )?;
        self.config = config;
        Ok(())
    }

    /// Write `keys/secret.age` (atomically): the secret wrapped to the recipients.
    pub(crate) fn write_secret_age(&self, wrapped: &[u8]) -> Result<()> {
        write_atomic(&self.root.join(SECRET_AGE_FILE), wrapped, 0o600)
    }

    /// Refuse a secret that does not match `secret-check` (format-spec/keys.md).
    fn checked(&self, secret: RepoSecret, origin: &Path) -> Result<RepoSecret> {
        if hex::encode(secret.check_value()) != self.config.secret_check {
            return Err(Error::corrupt(format!(
                "{}: the secret does not match secret-check in repository.toml \
                 (wrong file, or from another repository)",
                origin.display()
            )));
        }
        Ok(secret)
    }

    /// The server-side secret (`keys/secret`), checked against `secret-check`.
    pub fn load_secret(&self) -> Result<RepoSecret> {
        let path = self.root.join(SECRET_FILE);
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| {
            Error::io(
                format_args!("reading the repository secret {}", path.display()),
                e,
            )
        })?);
        if bytes.len() != 40 || &bytes[..8] != SECRET_MAGIC {
            return Err(Error::corrupt(format!(
                "{} is not a repository secret file (expected 40 bytes starting with RSBKSEC1)",
                path.display()
            )));
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        raw.copy_from_slice(&bytes[8..]);
        self.checked(RepoSecret::from_bytes(*raw), &path)
    }

    /// The secret unwrapped from `keys/secret.age` with an identity; `WrongIdentity` if none fits.
    pub fn unlock_secret(&self, identities: &Identities) -> Result<RepoSecret> {
        let path = self.root.join(SECRET_AGE_FILE);
        let wrapped = std::fs::read(&path)
            .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
        let secret = unwrap_secret(&wrapped, identities)
            .map_err(|e| e.context(format_args!("{}", path.display())))?;
        self.checked(secret, &path)
    }

    fn open_lock_file(&self) -> Result<(File, PathBuf)> {
        let path = self.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format_args!("opening {}", path.display()), e))?;
        Ok((file, path))
    }

    /// Take the repository lock shared (blocking).
    pub fn lock_shared(&self) -> Result<RepoLock> {
        let (file, path) = self.open_lock_file()?;
        match try_flock(&file, FlockOperation::LockShared, &path)? {
            Flock::Taken => Ok(RepoLock { _file: file }),
            Flock::HeldElsewhere => Err(Error::new(
                ErrorKind::Internal,
                "blocking flock returned EWOULDBLOCK",
            )),
        }
    }

    /// Take the repository lock exclusively; `Locked` if `wait` is false and it is held.
    pub fn lock_exclusive(&self, wait: bool) -> Result<RepoLock> {
        let (file, path) = self.open_lock_file()?;
        let op = if wait {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        match try_flock(&file, op, &path)? {
            Flock::Taken => Ok(RepoLock { _file: file }),
            Flock::HeldElsewhere => Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "repository {} is locked by another process (an ingest or a prune is running)",
                    self.root.display()
                ),
            )),
        }
    }

    /// Start a writer for `op`: shared repository lock, own writer lock, then clean up dead
    /// writers.
    pub fn start_writer(&self, op: Operation) -> Result<Writer> {
        let repo_lock = self.lock_shared()?;
        let (file, lock_path, id) = self.create_writer_lock(op)?;
        let writer = Writer {
            id,
            _repo_lock: repo_lock,
            _writer_lock: file,
            lock_path,
        };
        self.cleanup_dead_writers(&self.index()?)?;
        Ok(writer)
    }

    /// Create and lock `locks/<id>.lock` for a fresh writer id, and write `op` into it.
    ///
    /// Between creating the file and locking it, another process's sweep of stale lock files
    /// may take the lock and unlink the file; this writer would then hold a lock on a file
    /// nobody can see, and be taken for dead. So once locked, the file at the path must still
    /// be the one we hold; otherwise try again with a new id.
    pub(crate) fn create_writer_lock(&self, op: Operation) -> Result<(File, PathBuf, WriterId)> {
        use std::io::Write;
        use std::os::unix::fs::MetadataExt;
        for _ in 0..5 {
            let id = WriterId::random();
            let path = self.root.join(LOCKS_DIR).join(format!("{id}.lock"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::io(format_args!("creating {}", path.display()), e))?;
            if let Flock::HeldElsewhere =
                try_flock(&file, FlockOperation::NonBlockingLockExclusive, &path)?
            {
                continue;
            }
            let ours = file
                .metadata()
                .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
            match std::fs::metadata(&path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                    // Never synced, like the file itself: it only names what a writer killed
                    // (not a machine that crashed) was doing.
                    let mut writing = &file;
                    writing
                        .write_all(format!("{}\n", op.as_str()).as_bytes())
                        .map_err(|e| Error::io(format_args!("writing {}", path.display()), e))?;
                    return Ok((file, path, id));
                }
                _ => continue,
            }
        }
        Err(Error::new(
            ErrorKind::Io,
            format!(
                "could not create a writer lock in {}: lock files keep disappearing",
                self.root.join(LOCKS_DIR).display()
            ),
        ))
    }

    /// Remove what dead writers left (format-spec/index.md "Cleanup"); returns how many
    /// writers were cleaned up. With an index opened read-only on a full disk only their files
    /// are removed (and 0 returned).
    pub fn cleanup_dead_writers(&self, index: &Index) -> Result<usize> {
        let locks = self.root.join(LOCKS_DIR);
        let mut cleaned = 0;
        for writer in index.writers_with_leftovers()? {
            if !is_writer_id(&writer) {
                return Err(Error::corrupt(format!(
                    "index: writer id {writer:?} is not 32 hex digits; refusing to clean up after it"
                )));
            }
            let lock_path = locks.join(format!("{writer}.lock"));
            // Held until the cleanup is done, so that two starting writers never clean up
            // after the same dead writer at once.
            let _held = match File::open(&lock_path) {
                Ok(file) => {
                    match try_flock(&file, FlockOperation::NonBlockingLockExclusive, &lock_path)? {
                        Flock::Taken => Some(file),
                        Flock::HeldElsewhere => continue, // alive
                    }
                }
                // A crash can lose the lock file itself (it is never synced): dead.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(Error::io(
                        format_args!("opening {}", lock_path.display()),
                        e,
                    ));
                }
            };
            // Reverse of the write order: files, then rows, then the lock file.
            let mut dirs = Vec::new();
            for name in index.writing_packs_of(&writer)? {
                let path = pack_path(&self.root, &name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::io(
                            format_args!(
                                "removing pack {} of dead writer {writer}",
                                path.display()
                            ),
                            e,
                        ));
                    }
                }
                crate::store::records::remove_refs(&self.root, &name)?;
                let dir = path
                    .parent()
                    .expect("pack path has a directory")
                    .to_path_buf();
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            for dir in dirs.iter().filter(|d| d.is_dir()) {
                sync_dir(dir)?;
            }
            // A session record written just before the writer died: before its row goes.
            for session in index.running_sessions_of(&writer)? {
                crate::store::records::remove_session_record(&self.root, session)?;
            }
            if index.opened_on_full_disk() {
                // Read-only on a full disk: only the files go now (which frees room); the rows
                // and the lock file wait for the next cleanup, which finds the files gone.
                continue;
            }
            index.forget_writer(&writer)?;
            match std::fs::remove_file(&lock_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format_args!("removing {}", lock_path.display()),
                        e,
                    ));
                }
            }
            cleaned += 1;
        }
        self.remove_stale_lock_files(&locks)?;
        Ok(cleaned)
    }

    /// Lock files of dead writers that left nothing in the index (a writer killed after its
    /// last commit): remove them so `locks/` does not grow forever.
    fn remove_stale_lock_files(&self, locks: &Path) -> Result<()> {
        let entries = match std::fs::read_dir(locks) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format_args!("reading {}", locks.display()), e)),
        };
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format_args!("reading {}", locks.display()), e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
                continue;
            };
            if !is_writer_id(id) {
                continue;
            }
            let path = entry.path();
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if let Flock::Taken = try_flock(&file, FlockOperation::NonBlockingLockExclusive, &path)?
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
