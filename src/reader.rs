//! Reading a session back: locate, read, open and verify chunks; decode its manifest. Shared by
//! restore, ls, cat and check.
//!
//! A [`SessionReader`] is shared by many threads at once (restore writes files in parallel), so
//! everything in it is `Sync`: SQLite connections are not, hence a small pool of them, one taken
//! per call; unwrapped data keys are cached behind a read-write lock because every chunk of an
//! ingest shares one key and unwrapping (an X25519 operation) per chunk would be wasteful.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use crate::crypto::wrap::{Identities, unwrap_data_key_scoped};
use crate::crypto::{ChunkIdKey, DataKey, envelope};
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::{Entry, ManifestReader};
use crate::ids::{ChunkId, KeyId, SessionId};
use crate::index::{ChunkKind, ChunkLocation, Index, SessionInfo};
use crate::repo::Repo;
use crate::store::PackReader;

/// Largest manifest chunk plaintext a reader accepts (format-spec/manifest.md "Limits": the
/// manifest max-size plus one entry's bound).
pub const MAX_MANIFEST_CHUNK: usize = 17 << 20;

/// A pool of index connections: `rusqlite::Connection` is `Send` but not `Sync`, so each call
/// borrows one connection for its duration and gives it back. The pool grows to the number of
/// threads that use it at once.
pub(crate) struct IndexPool {
    path: PathBuf,
    free: Mutex<Vec<Index>>,
}

impl IndexPool {
    /// An empty pool for the index of `repo`.
    pub(crate) fn new(repo: &Repo) -> Self {
        IndexPool {
            path: repo.root().join("index.db"),
            free: Mutex::new(Vec::new()),
        }
    }

    /// Run `f` with a connection of the pool (opening one if none is free).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Index) -> Result<T>) -> Result<T> {
        let taken = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let index = match taken {
            Some(index) => index,
            None => Index::open(&self.path)?,
        };
        let result = f(&index);
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(index);
        result
    }
}

/// Where a session's chunks come from: the repository on this machine ([`SessionReader`]) or a
/// server through `serve` (`client::restore_fetch`). Restore, `cat` and the manifest walk read
/// through it, so that one restore serves both; every implementation opens and verifies each
/// chunk (AEAD, then its id) before returning its plaintext.
pub trait ChunkSource: Sync {
    /// The manifest chunks of a visible session's root, in order; `NotFound` otherwise.
    fn session_root(&self, session: SessionId) -> Result<Vec<ChunkId>>;

    /// Read, open and verify a chunk of the kind `kind`: a chunk stored as another kind is
    /// corrupt.
    fn read_chunk_of(&self, id: &ChunkId, kind: ChunkKind) -> Result<Vec<u8>>;

    /// A hint: these chunks (a file's data chunks, or the next manifest chunks of a walk) are
    /// read next, in this order. A source over a network fetches them in one request (the reads
    /// then find them); the local one needs nothing.
    fn prefetch(&self, _ids: &[ChunkId]) {}

    /// The bytes of a session's regular files, when this source knows them (a progress total).
    fn session_bytes(&self, _session: SessionId) -> Option<u64> {
        None
    }
}

/// Reads chunks and manifests with the administrator's identity. Cheap to share across threads.
pub struct SessionReader {
    repo: Repo,
    pool: IndexPool,
    identities: Identities,
    id_key: ChunkIdKey,
    packs: PackReader,
    keys: RwLock<HashMap<KeyId, (DataKey, Option<ChunkIdKey>)>>,
}

impl std::fmt::Debug for SessionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionReader")
            .field("repo", &self.repo.root())
            .finish_non_exhaustive()
    }
}

/// A manifest chunk [`SessionReader::walk_salvaging`] could not read or decode.
#[derive(Debug, Clone)]
pub struct LostChunk {
    /// Its place in the session's root, from 0.
    pub seq: usize,
    /// How many manifest chunks the session has.
    pub count: usize,
    /// Its id.
    pub id: ChunkId,
    /// Why it could not be read.
    pub error: String,
    /// A file that began in an earlier chunk and whose remaining extents were in this one:
    /// lost with it.
    pub held: Option<Vec<u8>>,
}

/// Damage confined to one manifest chunk; a wrong identity or a bug is not.
pub(crate) fn salvageable(e: &Error) -> bool {
    !matches!(
        e.kind(),
        crate::error::ErrorKind::WrongIdentity | crate::error::ErrorKind::Internal
    )
}

impl LostChunk {
    /// Go on past manifest chunk `seq` of `root`, which failed with `error` (`fed`: it went
    /// through `manifest.feed`); what was lost with it.
    pub(crate) fn skip(
        manifest: &mut ManifestReader,
        root: &[ChunkId],
        seq: usize,
        fed: bool,
        error: &Error,
    ) -> LostChunk {
        let held = manifest.skip_chunk(fed);
        LostChunk {
            seq,
            count: root.len(),
            id: root[seq],
            error: error.message().to_string(),
            held,
        }
    }
}

impl SessionReader {
    /// Unlock the repository secret with `identities` and prepare to read.
    /// `WrongIdentity` when none of the identities is a recipient of the repository.
    pub fn new(repo: &Repo, identities: Identities) -> Result<SessionReader> {
        let secret = repo.unlock_secret(&identities)?;
        let id_key = secret.chunk_id_key();
        // A `Repo` of our own (it is not `Clone`) so that callers need not keep theirs alive.
        let repo = Repo::open(repo.root())?;
        Ok(SessionReader {
            packs: PackReader::new(repo.root()),
            pool: IndexPool::new(&repo),
            repo,
            identities,
            id_key,
            keys: RwLock::new(HashMap::new()),
        })
    }

    /// The repository this reader reads.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// Visible sessions, oldest first, optionally of one client.
    pub fn sessions(&self, client: Option<&str>) -> Result<Vec<SessionInfo>> {
        self.pool.with(|index| index.sessions(client))
    }

    /// One visible session; `NotFound` otherwise.
    pub fn session(&self, session: SessionId) -> Result<SessionInfo> {
        self.pool.with(|index| index.session(session))
    }

    /// Where a chunk is stored; `Corrupt` naming it when the index does not have it (something
    /// that should exist does not).
    pub fn locate(&self, id: &ChunkId) -> Result<ChunkLocation> {
        self.pool
            .with(|index| index.lookup_chunk(id))?
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "chunk {id} is needed but the index has no record of it \
                     (run `rsbackup check` to see what else is missing)"
                ))
            })
    }

    /// Read, decrypt, decompress a chunk and verify its id.
    pub fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        self.read_located(&loc)
    }

    /// Read the chunk at `loc` from its pack, open it and verify its id.
    pub fn read_located(&self, loc: &ChunkLocation) -> Result<Vec<u8>> {
        let envelope = self.packs.read_envelope(loc).map_err(|e| {
            e.context(format!(
                "reading chunk {} from pack {} at offset {}",
                loc.id, loc.pack, loc.offset
            ))
        })?;
        self.open_envelope(loc, &envelope)
    }

    /// Open an envelope already read from `loc` (check reads packs sequentially itself): unwrap
    /// its data key, authenticate, decrypt, decompress within the size bound of its kind, and
    /// verify that the keyed hash of the plaintext is the chunk id.
    pub fn open_envelope(&self, loc: &ChunkLocation, envelope_bytes: &[u8]) -> Result<Vec<u8>> {
        let (key, scoped) = self
            .data_key(loc.key_id)
            .map_err(|e| e.context(format!("chunk {} in pack {}", loc.id, loc.pack)))?;
        let max = match loc.kind {
            ChunkKind::Data => self.repo.config().chunker.max_size as usize,
            ChunkKind::Manifest => MAX_MANIFEST_CHUNK,
        };
        let plaintext =
            envelope::open(&key, loc.key_id, &loc.id, envelope_bytes, max).map_err(|e| {
                e.context(format!(
                    "opening chunk {} (pack {}, offset {})",
                    loc.id, loc.pack, loc.offset
                ))
            })?;
        // A chunk of a client's own scope is named with that scope's key (keys.md).
        let actual = scoped.as_ref().unwrap_or(&self.id_key).chunk_id(&plaintext);
        if actual != loc.id {
            return Err(Error::corrupt(format!(
                "chunk {} (pack {}, offset {}) decrypted but its content hashes to {actual}: \
                 the stored chunk is not the one its id names",
                loc.id, loc.pack, loc.offset
            )));
        }
        Ok(plaintext)
    }

    /// The data key `id` and its scope's chunk-id key, unwrapped once and cached.
    fn data_key(&self, id: KeyId) -> Result<(DataKey, Option<ChunkIdKey>)> {
        if let Some(key) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(key.clone());
        }
        let wrapped = self.pool.with(|index| index.data_key(id)).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::corrupt(format!("data key {} is missing from the index", id.0))
            } else {
                e.context(format!("reading data key {}", id.0))
            }
        })?;
        let unwrapped = unwrap_data_key_scoped(&wrapped, &self.identities)
            .map_err(|e| e.context(format!("unwrapping data key {}", id.0)))?;
        let key = (unwrapped.key, unwrapped.scope.map(|s| s.id_key));
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, key.clone());
        Ok(key)
    }

    /// Visit the session's entries in manifest order.
    pub fn for_each_entry(
        &self,
        session: SessionId,
        visit: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        self.walk(session, &mut |entry| {
            visit(entry)?;
            Ok(ControlFlow::Continue(()))
        })
    }

    /// Visit the session's entries in manifest order until `visit` breaks. Only one manifest
    /// chunk is decoded at a time, so memory stays bounded whatever the session's size.
    /// `NotFound` for a session that does not exist or is not visible.
    pub fn walk(
        &self,
        session: SessionId,
        visit: &mut dyn FnMut(Entry) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        self.walk_inner(session, visit, None)
    }

    /// [`SessionReader::walk`], going on past a manifest chunk that cannot be read or decoded
    /// (damaged, or its pack missing): `lost` hears of each such chunk, and the walk resumes with
    /// the next one, so only the entries the damaged chunk described are missing. A wrong
    /// identity, or an error of `visit` or `lost`, still ends the walk.
    pub fn walk_salvaging(
        &self,
        session: SessionId,
        visit: &mut dyn FnMut(Entry) -> Result<ControlFlow<()>>,
        lost: &mut dyn FnMut(LostChunk) -> Result<()>,
    ) -> Result<()> {
        self.walk_inner(session, visit, Some(lost))
    }

    /// The session's root: its manifest chunk ids in order. `NotFound` for a session that does
    /// not exist or is not visible.
    pub fn manifest_root(&self, session: SessionId) -> Result<Vec<ChunkId>> {
        self.pool.with(|index| {
            index.session(session)?;
            index.session_root(session)
        })
    }

    /// The plaintext of manifest chunk `seq` (`id`) of `session`, for a reader that decodes
    /// manifest chunks out of order (`mount`); errors name the session and the chunk.
    pub fn read_manifest_chunk(
        &self,
        session: SessionId,
        seq: usize,
        id: &ChunkId,
    ) -> Result<Vec<u8>> {
        self.locate(id)
            .and_then(|loc| {
                if loc.kind != ChunkKind::Manifest {
                    return Err(Error::corrupt(format!(
                        "manifest chunk {seq} ({id}) is recorded as a data chunk"
                    )));
                }
                self.read_located(&loc)
            })
            .map_err(|e| e.context(format!("session {session}, manifest chunk {seq}")))
    }

    fn walk_inner(
        &self,
        session: SessionId,
        visit: &mut dyn FnMut(Entry) -> Result<ControlFlow<()>>,
        lost: Option<&mut dyn FnMut(LostChunk) -> Result<()>>,
    ) -> Result<()> {
        walk_source(self, session, visit, lost)
    }

    /// The entry of `path` in `session`, if any (stops reading at it).
    pub fn find_entry(&self, session: SessionId, path: &[u8]) -> Result<Option<Entry>> {
        find_entry(self, session, path)
    }
}

impl ChunkSource for SessionReader {
    fn session_bytes(&self, session: SessionId) -> Option<u64> {
        self.session(session).ok().map(|info| info.stats.bytes)
    }

    fn session_root(&self, session: SessionId) -> Result<Vec<ChunkId>> {
        self.pool.with(|index| {
            index.session(session)?;
            index.session_root(session)
        })
    }

    fn read_chunk_of(&self, id: &ChunkId, kind: ChunkKind) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        if loc.kind != kind {
            return Err(Error::corrupt(format!(
                "chunk {id} is recorded as a {} chunk, where a {} chunk is needed",
                kind_name(loc.kind),
                kind_name(kind)
            )));
        }
        self.read_located(&loc)
    }
}

fn kind_name(kind: ChunkKind) -> &'static str {
    match kind {
        ChunkKind::Data => "data",
        ChunkKind::Manifest => "manifest",
    }
}

/// The entry of `path` in `session` of `source`, if any (stops reading at it).
pub fn find_entry(
    source: &dyn ChunkSource,
    session: SessionId,
    path: &[u8],
) -> Result<Option<Entry>> {
    let mut found = None;
    walk_source(
        source,
        session,
        &mut |entry| {
            if entry.path == path {
                found = Some(entry);
                Ok(ControlFlow::Break(()))
            } else {
                Ok(ControlFlow::Continue(()))
            }
        },
        None,
    )?;
    Ok(found)
}

/// Manifest chunks a walk asks its source for at once ([`ChunkSource::prefetch`]).
const MANIFEST_AHEAD: usize = 64;

/// Walk the manifest of `session` from `source` in order (see [`SessionReader::walk`]); with
/// `lost`, going on past a manifest chunk that cannot be read or decoded.
pub fn walk_source(
    source: &dyn ChunkSource,
    session: SessionId,
    visit: &mut dyn FnMut(Entry) -> Result<ControlFlow<()>>,
    mut lost: Option<&mut dyn FnMut(LostChunk) -> Result<()>>,
) -> Result<()> {
    let root = source.session_root(session)?;
    let mut manifest = ManifestReader::new();
    for (seq, id) in root.iter().enumerate() {
        if seq % MANIFEST_AHEAD == 0 {
            // One request for the next window of manifest chunks, not one each.
            source.prefetch(&root[seq..root.len().min(seq + MANIFEST_AHEAD)]);
        }
        let read = source
            .read_chunk_of(id, ChunkKind::Manifest)
            .map_err(|e| e.context(format!("session {session}, manifest chunk {seq}")));
        let (result, fed) = match read {
            Ok(bytes) => (
                manifest.feed(&bytes).map_err(|e| {
                    e.context(format!(
                        "session {session}: decoding manifest chunk {seq} ({id})"
                    ))
                }),
                true,
            ),
            Err(e) => (Err(e), false),
        };
        let entries = match (result, lost.as_mut()) {
            (Ok(entries), _) => entries,
            (Err(e), Some(lost)) if salvageable(&e) => {
                lost(LostChunk::skip(&mut manifest, &root, seq, fed, &e))?;
                continue;
            }
            (Err(e), _) => return Err(e),
        };
        for entry in entries {
            if visit(entry)?.is_break() {
                return Ok(());
            }
        }
    }
    let rest = manifest
        .finish()
        .map_err(|e| e.context(format!("session {session}: end of manifest")))?;
    for entry in rest {
        if visit(entry)?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

// A reader is shared by restore's worker threads.
const _: fn() = || {
    fn assert_sync<T: Sync + Send>() {}
    assert_sync::<SessionReader>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::wrap::keygen;
    use crate::restore::testutil::{SessionBuilder, TestRepo};

    #[test]
    fn chunks_and_entries_read_back() {
        let t = TestRepo::new();
        let mut s = SessionBuilder::new(&t);
        s.dir(b"d").file(b"d/f", b"hello");
        let id = s.chunk(b"hello");
        let session = s.commit();
        let reader = t.reader();
        assert_eq!(reader.read_chunk(&id).unwrap(), b"hello");
        let mut paths = Vec::new();
        reader
            .for_each_entry(session, &mut |e| {
                paths.push(e.path);
                Ok(())
            })
            .unwrap();
        assert_eq!(paths, vec![b"".to_vec(), b"d".to_vec(), b"d/f".to_vec()]);
        assert_eq!(
            reader.find_entry(session, b"d/f").unwrap().unwrap().path,
            b"d/f"
        );
        assert!(reader.find_entry(session, b"d/g").unwrap().is_none());
    }

    #[test]
    fn unknown_things_are_named() {
        let t = TestRepo::new();
        let session = SessionBuilder::new(&t).file(b"f", b"x").commit();
        let reader = t.reader();
        let missing = ChunkId([7; 32]);
        let err = reader.read_chunk(&missing).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains(&missing.to_hex()), "{err}");
        let err = reader
            .for_each_entry(SessionId(session.0 + 100), &mut |_| Ok(()))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn a_wrong_identity_cannot_read() {
        let t = TestRepo::new();
        let (other, _) = keygen();
        let ids = Identities::parse(&other, "other").unwrap();
        let err = SessionReader::new(&t.repo, ids).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongIdentity);
    }

    #[test]
    fn a_chunk_under_another_id_is_refused() {
        let t = TestRepo::new();
        let mut s = SessionBuilder::new(&t);
        s.file(b"a", b"first").file(b"b", b"second");
        let (a, b) = (s.chunk(b"first"), s.chunk(b"second"));
        s.commit();
        // Make a's row point at b's record: the record header check refuses it.
        let index = t.repo.index().unwrap();
        let loc_b = index.lookup_chunk(&b).unwrap().unwrap();
        index
            .conn()
            .execute(
                "UPDATE chunks SET offset = ?1, length = ?2 WHERE id = ?3",
                rusqlite::params![loc_b.offset as i64, loc_b.length, a.0.to_vec()],
            )
            .unwrap();
        let err = t.reader().read_chunk(&a).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.message().contains(&a.to_hex()), "{err}");
    }
}
