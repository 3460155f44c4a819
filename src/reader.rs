//! Reading a session back: locate, read, open and verify chunks; decode its manifest. Shared by
//! restore, ls, cat and check.

use crate::crypto::wrap::Identities;
use crate::error::Result;
use crate::format::manifest::Entry;
use crate::ids::{ChunkId, SessionId};
use crate::repo::Repo;

/// Reads chunks and manifests with the administrator's identity. Cheap to share across threads.
pub struct SessionReader {
    _private: (),
}

impl SessionReader {
    /// Unlock the repository secret with `identities` and prepare to read.
    pub fn new(repo: &Repo, identities: Identities) -> Result<SessionReader> {
        let _ = (repo, identities);
        todo!()
    }

    /// Read, decrypt, decompress a chunk and verify its id.
    pub fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let _ = id;
        todo!()
    }

    /// Visit the session's entries in manifest order.
    pub fn for_each_entry(
        &self,
        session: SessionId,
        visit: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        let _ = (session, visit);
        todo!()
    }
}
