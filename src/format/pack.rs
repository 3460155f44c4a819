//! Pack file bytes (format-spec/pack.md): the 32-byte header and the 48-byte record header.

use crate::error::Result;
use crate::ids::{ChunkId, KeyId, PackName};

/// Pack magic.
pub const PACK_MAGIC: &[u8; 8] = b"RSBKPACK";
/// Pack version written by this build.
pub const PACK_VERSION: u32 = 1;
/// Length of the pack header.
pub const PACK_HEADER_LEN: usize = 32;
/// Record magic.
pub const RECORD_MAGIC: &[u8; 4] = b"RSBR";
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 48;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Length of the envelope that follows.
    pub envelope_len: u32,
    /// The chunk id.
    pub chunk_id: ChunkId,
    /// The data key id.
    pub key_id: KeyId,
}

/// Encode a pack header.
pub fn encode_pack_header(name: &PackName) -> [u8; PACK_HEADER_LEN] {
    let _ = name;
    todo!()
}

/// Decode a pack header; `UnsupportedVersion` for an unknown version, `Corrupt` otherwise.
pub fn decode_pack_header(bytes: &[u8]) -> Result<PackName> {
    let _ = bytes;
    todo!()
}

/// Encode a record header.
pub fn encode_record_header(header: &RecordHeader) -> [u8; RECORD_HEADER_LEN] {
    let _ = header;
    todo!()
}

/// Decode a record header; `Corrupt` on a bad magic or short input.
pub fn decode_record_header(bytes: &[u8]) -> Result<RecordHeader> {
    let _ = bytes;
    todo!()
}
