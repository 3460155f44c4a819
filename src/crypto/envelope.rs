//! Sealing and opening chunk envelopes (format-spec/chunk.md): zstd if it pays, then
//! XChaCha20-Poly1305 with a random 24-byte nonce and the chunk id bound as associated data.

use crate::crypto::DataKey;
use crate::error::Result;
use crate::ids::{ChunkId, KeyId};

/// Seal `plaintext` (the chunk named `id`) under `key`/`key_id`, compressing with zstd at
/// `zstd_level` when that makes it strictly shorter. Returns the envelope bytes.
pub fn seal(
    key: &DataKey,
    key_id: KeyId,
    id: &ChunkId,
    plaintext: &[u8],
    zstd_level: i32,
) -> Result<Vec<u8>> {
    let _ = (key, key_id, id, plaintext, zstd_level);
    todo!()
}

/// Open an envelope: check version and flags, authenticate and decrypt, decompress (refusing
/// output over `max_plaintext` bytes). Does not verify the chunk id: see [`crate::crypto::ChunkIdKey`].
pub fn open(
    key: &DataKey,
    key_id: KeyId,
    id: &ChunkId,
    envelope: &[u8],
    max_plaintext: usize,
) -> Result<Vec<u8>> {
    let _ = (key, key_id, id, envelope, max_plaintext);
    todo!()
}
