//! Keys and sealing: the repository secret and what is derived from it, data keys, age
//! wrapping, and the chunk envelope (format-spec/keys.md, format-spec/chunk.md).

pub mod dictionary;
pub mod envelope;
pub mod passphrase;
#[cfg(test)]
pub(crate) mod testvec;
pub mod wrap;

/// The secret string type of passphrases (age's re-export of `secrecy`).
pub use age::secrecy;

use zeroize::Zeroizing;

use crate::ids::ChunkId;

/// Context strings for BLAKE3 `derive_key` (format-spec/conventions.md). Never change these.
pub mod context {
    /// Chunk id key.
    pub const CHUNK_ID: &str = "rsbackup 2026-11 chunk id v1";
    /// Chunker gear table key.
    pub const CHUNKER_GEAR: &str = "rsbackup 2026-11 chunker gear v1";
    /// Manifest cut rule key.
    pub const MANIFEST_CUT: &str = "rsbackup 2026-11 manifest cut v1";
    /// Files-cache path hashing key.
    pub const FILES_CACHE_PATH: &str = "rsbackup 2026-11 files cache path v1";
    /// Secret check value.
    pub const SECRET_CHECK: &str = "rsbackup 2026-11 secret check v1";
    /// Key of the per-client chunk-id keys (keyed BLAKE3 of the client name).
    pub const CLIENT_CHUNK_ID: &str = "rsbackup 2026-12 client chunk id v1";
}

/// `N` random bytes from the operating system's CSPRNG.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

/// The 32-byte repository secret. Zeroized on drop; never printed.
pub struct RepoSecret(Zeroizing<[u8; 32]>);

impl RepoSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        RepoSecret(Zeroizing::new(random_array()))
    }

    /// A secret from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RepoSecret(Zeroizing::new(bytes))
    }

    /// The raw bytes (for writing `keys/secret` and wrapping only).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// `derive_key(context, secret)`.
    pub fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, &*self.0))
    }

    /// The 16-byte check value written to `repository.toml`.
    pub fn check_value(&self) -> [u8; 16] {
        let full = self.derive(context::SECRET_CHECK);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The key for chunk ids.
    pub fn chunk_id_key(&self) -> ChunkIdKey {
        ChunkIdKey(self.derive(context::CHUNK_ID))
    }

    /// The key for chunk ids in `client`'s own dedup scope (format-spec/conventions.md):
    /// `BLAKE3-keyed(derive_key(CLIENT_CHUNK_ID, secret), client name)`. A client that holds it
    /// can name its own chunks, and nothing about the repository-wide ids or other scopes.
    pub fn client_chunk_id_key(&self, client: &str) -> ChunkIdKey {
        let base = self.derive(context::CLIENT_CHUNK_ID);
        ChunkIdKey(Zeroizing::new(
            *blake3::keyed_hash(&base, client.as_bytes()).as_bytes(),
        ))
    }
}

impl std::fmt::Debug for RepoSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepoSecret(..)")
    }
}

/// The key that names chunks: keyed BLAKE3 over the plaintext.
#[derive(Clone)]
pub struct ChunkIdKey(Zeroizing<[u8; 32]>);

impl ChunkIdKey {
    /// A chunk-id key from its bytes (as a scoped data key carries it).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ChunkIdKey(Zeroizing::new(bytes))
    }

    /// The raw bytes (for wrapping only).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The chunk id of `plaintext`.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.0, plaintext).as_bytes())
    }
}

/// A 32-byte data key for XChaCha20-Poly1305, with the zstd dictionary its ingest trained, if
/// any (format-spec/keys.md "Dictionaries"). Zeroized on drop; never printed.
#[derive(Clone)]
pub struct DataKey(
    Zeroizing<[u8; 32]>,
    Option<std::sync::Arc<dictionary::Dictionary>>,
);

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Self {
        DataKey(Zeroizing::new(random_array()), None)
    }

    /// A data key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(Zeroizing::new(bytes), None)
    }

    /// The same key, carrying `dictionary`.
    pub fn with_dictionary(&self, dictionary: std::sync::Arc<dictionary::Dictionary>) -> Self {
        DataKey(self.0.clone(), Some(dictionary))
    }

    /// The raw bytes (for the AEAD and wrapping only).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The dictionary that envelopes of version 2 sealed under this key were compressed with.
    pub fn dictionary(&self) -> Option<&std::sync::Arc<dictionary::Dictionary>> {
        self.1.as_ref()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}
