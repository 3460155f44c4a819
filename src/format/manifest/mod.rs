//! Manifest bytes (format-spec/manifest.md): entries, extents, the keyed cut rule that splits the
//! entry stream into manifest chunks, and the reader that checks paths and order.
//!
//! A session's manifest is one stream of [`Entry`] values in depth-first pre-order.
//! [`ManifestBuilder`] encodes it and cuts it into [`ManifestChunk`]s where a keyed hash of an
//! entry says so, so that an unchanged stretch of a tree gives the same chunks in the next
//! session; [`ManifestReader`] turns the chunks back into entries.
//!
//! Both sides run the same checks (`entry` for one entry's fields, `order` for the stream):
//! what the builder writes, the reader accepts, and a walker bug that would produce a stream
//! restore must refuse is caught at ingest time instead, as [`crate::ErrorKind::Internal`].
//! Memory stays bounded on both sides: the builder holds one chunk, the reader one chunk plus
//! the file whose continuations are still to come, and the order check one path.

mod builder;
mod entry;
#[cfg(test)]
mod inline_tests;
mod order;
mod reader;
#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

pub use builder::ManifestBuilder;
pub use entry::Piece;
pub use order::cmp_paths;
pub use reader::{ManifestReader, chunk_references, decode_pieces};

use crate::error::{Error, Result};
use crate::ids::ChunkId;

/// Manifest chunk magic of version 1: a chunk without inline extents.
pub const MANIFEST_MAGIC: &[u8; 8] = b"RSBKMAN1";
/// Manifest chunk magic of version 2: a chunk holding at least one inline extent.
pub const MANIFEST_MAGIC_V2: &[u8; 8] = b"RSBKMAN2";
/// Manifest chunk magic of version 3: a chunk holding a kind-9 entry that continues an entry
/// of fewer than [`MAX_EXTENTS_PER_ENTRY`] extents (a file's extent list split by
/// [`split_extents`]); it may also hold inline extents.
pub const MANIFEST_MAGIC_V3: &[u8; 8] = b"RSBKMAN3";
/// The magic of the chunk version `v` (1, 2 or 3).
pub(crate) fn magic_of(v: u8) -> &'static [u8; 8] {
    match v {
        1 => MANIFEST_MAGIC,
        2 => MANIFEST_MAGIC_V2,
        _ => MANIFEST_MAGIC_V3,
    }
}
/// Longest inline extent a reader accepts (format-spec/manifest.md "Extent list").
pub const MAX_INLINE_LEN: usize = 4096;
/// Files of at most this many bytes are stored inline in their manifest entry by ingest:
/// below it, a stored chunk's fixed costs (index row, reference row, record header, envelope)
/// outweigh storing the content again when its manifest chunk changes (format-spec/manifest.md
/// "Inline content").
pub const INLINE_WRITE_MAX: u64 = 1024;
/// Most extents in one kind-2 or kind-9 entry.
pub const MAX_EXTENTS_PER_ENTRY: usize = 32768;
/// Fewest extents a piece of a split extent list holds before a content-defined cut
/// (format-spec/manifest.md "Split extent lists").
pub const PIECE_MIN_EXTENTS: usize = 16;
/// A piece is cut after a chunk extent whose id's first four bytes, as a little-endian u32,
/// are below this: one chunk extent in 128.
pub const PIECE_CUT_BELOW: u32 = 1 << 25;

/// Split a file's extent list into the pieces a writer stores as one kind-2 entry and kind-9
/// continuations (format-spec/manifest.md "Split extent lists"): a piece ends after a chunk
/// extent whose id is below [`PIECE_CUT_BELOW`] once it holds [`PIECE_MIN_EXTENTS`], and at
/// [`MAX_EXTENTS_PER_ENTRY`]. The cuts depend on the extents alone, so an edit of a large file
/// changes only the pieces around its new chunks, and only their manifest chunks are new.
pub fn split_extents(extents: &[Extent]) -> Vec<&[Extent]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, extent) in extents.iter().enumerate() {
        let len = i + 1 - start;
        let cut = match extent {
            Extent::Chunk { id, .. } => {
                len >= PIECE_MIN_EXTENTS
                    && u32::from_le_bytes(id.0[..4].try_into().expect("4 bytes")) < PIECE_CUT_BELOW
            }
            Extent::Hole { .. } | Extent::Inline { .. } => false,
        };
        if (cut || len == MAX_EXTENTS_PER_ENTRY) && i + 1 < extents.len() {
            pieces.push(&extents[start..=i]);
            start = i + 1;
        }
    }
    pieces.push(&extents[start..]);
    pieces
}
/// Largest encoded entry.
pub const MAX_ENTRY_LEN: usize = 16 << 20;
/// Largest manifest chunk a reader accepts.
pub const MAX_CHUNK_LEN: usize = 17 << 20;
/// Longest path, in bytes.
pub const MAX_PATH_LEN: usize = order::MAX_PATH_LEN;

/// Manifest cut parameters (repository.toml `[manifest]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestParams {
    /// Minimum chunk length before a hash cut.
    pub min_size: u32,
    /// Target average chunk length.
    pub avg_size: u32,
    /// Length past which no further entry is added.
    pub max_size: u32,
}

impl ManifestParams {
    /// 512 B / 1 KiB / 64 KiB, for new repositories (format-spec/manifest.md "Chunk sizes").
    /// Repositories made before keep the 16 KiB / 64 KiB / 1 MiB of their `repository.toml`.
    pub const DEFAULT: ManifestParams = ManifestParams {
        min_size: 512,
        avg_size: 1 << 10,
        max_size: 64 << 10,
    };
}

/// A piece of a regular file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extent {
    /// Stored chunk: plaintext length and id.
    Chunk {
        /// Plaintext length.
        len: u32,
        /// Chunk id.
        id: ChunkId,
    },
    /// A hole: `len` zero bytes, not stored.
    Hole {
        /// Length in bytes.
        len: u64,
    },
    /// Content kept in the manifest entry itself (manifest version 2): 1 to
    /// [`MAX_INLINE_LEN`] bytes. Never in the files cache or the placeholder table, which are
    /// not encrypted.
    Inline {
        /// The bytes.
        data: Vec<u8>,
    },
}

impl Extent {
    /// Length in bytes of the content it stands for.
    pub fn len(&self) -> u64 {
        match self {
            Extent::Chunk { len, .. } => u64::from(*len),
            Extent::Hole { len } => *len,
            Extent::Inline { data } => data.len() as u64,
        }
    }

    /// True for content kept in the manifest itself.
    pub fn is_inline(&self) -> bool {
        matches!(self, Extent::Inline { .. })
    }

    /// True when it stands for no bytes (never so in a valid list).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Metadata common to all kinds but "file continued".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// mtime seconds.
    pub mtime_sec: i64,
    /// mtime nanoseconds.
    pub mtime_nsec: u32,
    /// Extended attributes (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Kind 1.
    Dir,
    /// Kind 2: size and extents (the encoder splits more than [`MAX_EXTENTS_PER_ENTRY`]
    /// into kind-9 entries; [`ManifestReader`] joins them back).
    File {
        /// Logical size.
        size: u64,
        /// Extents; lengths add up to `size`.
        extents: Vec<Extent>,
    },
    /// Kind 3.
    Symlink {
        /// Link target, never followed.
        target: Vec<u8>,
    },
    /// Kind 4.
    Hardlink {
        /// Path of an earlier file entry.
        target: Vec<u8>,
    },
    /// Kind 5.
    CharDev {
        /// Device number.
        rdev: u64,
    },
    /// Kind 6.
    BlockDev {
        /// Device number.
        rdev: u64,
    },
    /// Kind 7.
    Fifo,
    /// Kind 8.
    Socket,
    /// Kind 10.
    Unreadable {
        /// Why it could not be backed up.
        message: String,
    },
}

/// One path of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path bytes; empty for the root.
    pub path: Vec<u8>,
    /// Metadata.
    pub meta: Meta,
    /// Kind and kind-specific data.
    pub body: Body,
}

/// One finished manifest chunk: its plaintext and the data chunk ids its entries name
/// (sorted, without duplicates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestChunk {
    /// Plaintext, starting with [`MANIFEST_MAGIC`].
    pub bytes: Vec<u8>,
    /// Referenced data chunks.
    pub refs: Vec<ChunkId>,
}

/// Check a path against the rules of format-spec/manifest.md "Paths": the root has the empty
/// path; any other path is relative, non-empty, at most [`MAX_PATH_LEN`] bytes, without NUL,
/// without empty, `.` or `..` components. Fails with [`crate::ErrorKind::InvalidInput`].
pub fn validate_path(path: &[u8], is_root: bool) -> Result<()> {
    match order::path_problem(path, is_root) {
        None => Ok(()),
        Some(problem) => Err(Error::invalid(format!(
            "path {}: {problem}",
            order::show(path)
        ))),
    }
}

/// Encode an extent list: `extent count u32`, then the extents (also used by the files cache).
pub fn encode_extents(extents: &[Extent], out: &mut Vec<u8>) {
    entry::put_extents(extents, out);
}

/// Decode an extent list encoded by [`encode_extents`]; the whole of `bytes` must be the list.
/// Refuses a truncated list, trailing bytes, an unknown tag, an inline extent (content is
/// never kept outside a manifest) and a zero-length extent ([`crate::ErrorKind::Corrupt`]).
/// The count is not limited to [`MAX_EXTENTS_PER_ENTRY`]: the files cache stores a whole
/// file's list.
pub fn decode_extents(bytes: &[u8]) -> Result<Vec<Extent>> {
    let mut cur = entry::Cursor::new(bytes, 0, false);
    let extents = cur
        .extents(None)
        .map_err(|p| Error::corrupt(format!("extent list: {p}")))?;
    if !cur.is_empty() {
        return Err(Error::corrupt(format!(
            "extent list: {} bytes after the last extent",
            bytes.len() - cur.pos()
        )));
    }
    Ok(extents)
}
