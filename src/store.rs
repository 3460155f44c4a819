//! Pack files on disk (format-spec/pack.md): one sequential writer that makes packs durable
//! before the index points at them, and a reader that checks each record against the index.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::ids::{ChunkId, KeyId, PackName, WriterId};
use crate::index::{ChunkKind, ChunkLocation, Index};

/// Path of a pack file under the repository root.
pub fn pack_path(root: &Path, name: &PackName) -> PathBuf {
    let hex = name.to_hex();
    root.join("packs")
        .join(&hex[..2])
        .join(format!("{hex}.pack"))
}

/// A chunk handed to the writer.
#[derive(Debug)]
pub struct PendingChunk {
    /// The chunk id.
    pub id: ChunkId,
    /// Data or manifest.
    pub kind: ChunkKind,
    /// The data key id it was sealed with.
    pub key_id: KeyId,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// For manifest chunks: the data chunks it names.
    pub refs: Vec<ChunkId>,
}

/// What a writer wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Chunks written.
    pub chunks: u64,
    /// Record bytes written.
    pub bytes: u64,
    /// Packs sealed.
    pub packs: u64,
}

/// Appends chunks to packs, sealing each when it reaches the target size (fsync file and
/// directory, then commit its chunk rows). Used from one thread.
pub struct PackWriter<'a> {
    _index: &'a Index,
}

impl<'a> PackWriter<'a> {
    /// A writer for the repository at `root`, recording into `index` as `writer`.
    pub fn new(root: &Path, index: &'a Index, writer: &WriterId, target_size: u64) -> Self {
        let _ = (root, writer, target_size);
        PackWriter { _index: index }
    }

    /// Append a chunk. A chunk id already appended by this writer is skipped (returns false).
    pub fn append(&mut self, chunk: PendingChunk) -> Result<bool> {
        let _ = chunk;
        todo!()
    }

    /// Seal the open pack, if any, and return what was written.
    pub fn finish(self) -> Result<WriteStats> {
        todo!()
    }
}

/// Reads records from packs, keeping a few files open.
pub struct PackReader {
    _root: PathBuf,
}

impl PackReader {
    /// A reader for the repository at `root`.
    pub fn new(root: &Path) -> Self {
        PackReader {
            _root: root.to_path_buf(),
        }
    }

    /// Read a record and check its header against `loc`; returns the envelope. Does not hash.
    pub fn read_envelope(&self, loc: &ChunkLocation) -> Result<Vec<u8>> {
        let _ = loc;
        todo!()
    }

    /// Read the whole record (header + envelope) as stored.
    pub fn read_record(&self, loc: &ChunkLocation) -> Result<Vec<u8>> {
        let _ = loc;
        todo!()
    }
}
