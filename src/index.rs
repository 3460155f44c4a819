//! The SQLite index (format-spec/index.md): schema, version check, and the queries the
//! operations need. Each `Index` is one connection; open one per thread.

use std::path::Path;

use crate::error::Result;
use crate::ids::{ChunkId, KeyId, PackName, SessionId, WriterId};

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// File content.
    Data = 0,
    /// A manifest chunk.
    Manifest = 1,
}

/// Where a chunk's record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLocation {
    /// The chunk.
    pub id: ChunkId,
    /// Data or manifest.
    pub kind: ChunkKind,
    /// Pack row id.
    pub pack_row: i64,
    /// Pack name (file name).
    pub pack: PackName,
    /// Record offset in the pack.
    pub offset: u64,
    /// Record length (header + envelope).
    pub length: u32,
    /// Data key id.
    pub key_id: KeyId,
    /// BLAKE3 of the record.
    pub stored_hash: [u8; 32],
}

/// A chunk to record when its pack is sealed.
#[derive(Debug, Clone)]
pub struct SealedChunk {
    /// The chunk.
    pub id: ChunkId,
    /// Data or manifest.
    pub kind: ChunkKind,
    /// Record offset.
    pub offset: u64,
    /// Record length.
    pub length: u32,
    /// Data key id.
    pub key_id: KeyId,
    /// BLAKE3 of the record.
    pub stored_hash: [u8; 32],
    /// For manifest chunks: the data chunks it names.
    pub refs: Vec<ChunkId>,
}

/// Session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Being written; invisible.
    Running,
    /// Everything went in.
    Complete,
    /// Committed, but some paths could not be read.
    Incomplete,
}

/// Statistics stored with a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionStats {
    /// Paths in the manifest.
    pub files: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
    /// Unreadable paths.
    pub errors: u64,
    /// Chunks added.
    pub new_chunks: u64,
    /// Record bytes added to packs.
    pub new_bytes: u64,
}

/// A session as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Id.
    pub id: i64,
    /// Client name.
    pub client: String,
    /// State.
    pub state: SessionState,
    /// Server time at start.
    pub started: i64,
    /// Server time at end.
    pub finished: Option<i64>,
    /// Statistics.
    #[serde(flatten)]
    pub stats: SessionStats,
    /// Pinned against roll-off.
    pub pinned: bool,
}

/// A pack row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// Row id.
    pub row: i64,
    /// Name.
    pub name: PackName,
    /// True once sealed.
    pub sealed: bool,
    /// Writer id while writing.
    pub writer: Option<String>,
    /// Size once sealed.
    pub size: u64,
}

/// One connection to `index.db`.
pub struct Index {
    conn: rusqlite::Connection,
}

impl Index {
    /// Create a new index with the v1 schema.
    pub fn create(path: &Path, repository_id: &str) -> Result<Index> {
        let _ = (path, repository_id);
        todo!()
    }

    /// Open an existing index, checking application id and version.
    pub fn open(path: &Path) -> Result<Index> {
        let _ = path;
        todo!()
    }

    /// The raw connection (for queries not wrapped here).
    pub fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    /// Where a chunk is, if stored.
    pub fn lookup_chunk(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        let _ = id;
        todo!()
    }

    /// Whether a chunk is stored (cheaper than [`Index::lookup_chunk`]).
    pub fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        let _ = id;
        todo!()
    }

    /// Commit a wrapped data key; returns its id.
    pub fn insert_data_key(&self, wrapped: &[u8], now: i64) -> Result<KeyId> {
        let _ = (wrapped, now);
        todo!()
    }

    /// The wrapped data key `id`.
    pub fn data_key(&self, id: KeyId) -> Result<Vec<u8>> {
        let _ = id;
        todo!()
    }

    /// Commit a pack row in state `writing`; returns its row id.
    pub fn begin_pack(&self, name: &PackName, writer: &WriterId, now: i64) -> Result<i64> {
        let _ = (name, writer, now);
        todo!()
    }

    /// In one transaction: insert the chunks (and manifest refs), mark the pack sealed.
    /// A chunk already present is left as it is (first copy wins).
    pub fn seal_pack(&self, pack_row: i64, size: u64, chunks: &[SealedChunk]) -> Result<()> {
        let _ = (pack_row, size, chunks);
        todo!()
    }

    /// Commit a session in state `running`.
    pub fn create_session(
        &self,
        client: &str,
        writer: &WriterId,
        started: i64,
    ) -> Result<SessionId> {
        let _ = (client, writer, started);
        todo!()
    }

    /// In one transaction: store the root and make the session visible.
    pub fn finish_session(
        &self,
        id: SessionId,
        state: SessionState,
        finished: i64,
        stats: &SessionStats,
        root: &[ChunkId],
    ) -> Result<()> {
        let _ = (id, state, finished, stats, root);
        todo!()
    }

    /// Visible sessions, oldest first, optionally of one client.
    pub fn sessions(&self, client: Option<&str>) -> Result<Vec<SessionInfo>> {
        let _ = client;
        todo!()
    }

    /// One visible session; `NotFound` otherwise.
    pub fn session(&self, id: SessionId) -> Result<SessionInfo> {
        let _ = id;
        todo!()
    }

    /// The session's manifest chunk ids, in order.
    pub fn session_root(&self, id: SessionId) -> Result<Vec<ChunkId>> {
        let _ = id;
        todo!()
    }

    /// The current gc generation.
    pub fn gc_generation(&self) -> Result<i64> {
        todo!()
    }

    /// All pack rows.
    pub fn packs(&self) -> Result<Vec<PackInfo>> {
        todo!()
    }

    /// Chunks stored in one pack, by offset.
    pub fn chunks_in_pack(&self, pack_row: i64) -> Result<Vec<ChunkLocation>> {
        let _ = pack_row;
        todo!()
    }

    /// Visible sessions whose root or whose manifest chunks' references include `id`.
    pub fn sessions_using_chunk(&self, id: &ChunkId) -> Result<Vec<SessionId>> {
        let _ = id;
        todo!()
    }

    /// Writer ids that own `writing` packs or `running` sessions.
    pub fn writers_with_leftovers(&self) -> Result<Vec<String>> {
        todo!()
    }

    /// Delete the rows of a dead writer (its writing packs, running sessions and their roots),
    /// in one transaction. Returns the names of the packs whose files the caller must have
    /// deleted before calling this.
    pub fn writing_packs_of(&self, writer: &str) -> Result<Vec<PackName>> {
        let _ = writer;
        todo!()
    }

    /// Delete the rows of a dead writer, in one transaction (after its pack files are gone).
    pub fn forget_writer(&self, writer: &str) -> Result<()> {
        let _ = writer;
        todo!()
    }
}
