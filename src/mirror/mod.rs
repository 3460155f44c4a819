//! The offsite mirror (format-spec/wire.md): a chunk-level copy of a repository on another box.
//!
//! The mirror is a full repository with the same `repository.toml` and `keys/secret.age` but no
//! `keys/secret`: it never ingests, and needs no key to hold, verify ([`crate::check`] without
//! an identity) or serve its chunks; `restore` there unwraps `secret.age` with the identity.
//!
//! [`push`] is the primary's side, [`serve`] the mirror's; both speak the framed protocol of
//! [`wire`] over any byte stream (ssh's standard input and output, or a socket pair to a thread
//! for a local target), so there is one code path. What the mirror lacks is found cheaply: the
//! primary remembers, per target, a pack watermark and the count and order-independent digest
//! (XOR of BLAKE3(chunk id)) of the chunks the mirror holds; the mirror reports its own count and
//! digest on every connection. When they agree only packs above the watermark are candidates;
//! when they do not (an interrupted run, the mirror's own roll-off, tampering) every chunk id is
//! offered again. Either way only the chunks the mirror lacks travel, as the verbatim stored
//! records. The write order is the ingest's: keys, then chunks (data before manifests, each pack
//! durable before its rows), then sessions, so a session is visible on the mirror only once all
//! it needs is there.

mod create;
pub mod fetch;
pub mod push;
pub mod serve;
mod state;
pub mod trigger;
pub mod wire;

use crate::error::Result;
use crate::ids::ChunkId;
use crate::index::Index;

pub use push::{PushOptions, PushReport, push, push_with_progress};
pub use serve::{ServeOptions, ServeReport, serve};
pub use trigger::{after_complete_command, spawn_after_complete};

/// The order-independent digest of a set of chunk ids: XOR of BLAKE3 of each id, with a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkSetDigest {
    /// How many chunks.
    pub count: u64,
    /// XOR of BLAKE3(chunk id).
    pub digest: [u8; 32],
}

impl ChunkSetDigest {
    /// Add (or remove: XOR is its own inverse) one chunk id.
    pub fn toggle(&mut self, id: &ChunkId, added: bool) {
        let h = blake3::hash(&id.0);
        for (d, b) in self.digest.iter_mut().zip(h.as_bytes()) {
            *d ^= b;
        }
        if added {
            self.count += 1;
        } else {
            self.count = self.count.saturating_sub(1);
        }
    }

    /// The digest of every chunk in an index (a scan of the ids: about a second per million).
    pub fn of_index(index: &Index) -> Result<ChunkSetDigest> {
        let mut out = ChunkSetDigest::default();
        index.for_each_chunk_id(|id| out.toggle(id, true))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
