//! With the identity: tell the manifest chunks of a pack whose reference list is missing or
//! damaged by opening every record (format-spec/records.md "Rebuilding the index").

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::crypto::DataKey;
use crate::crypto::envelope;
use crate::crypto::wrap::{Identities, unwrap_data_key};
use crate::error::{Error, Result};
use crate::format::manifest::chunk_references;
use crate::format::pack::RECORD_HEADER_LEN;
use crate::format::records::ManifestRefs;
use crate::ids::KeyId;
use crate::reader::MAX_MANIFEST_CHUNK;

use super::scan::ScannedPack;

/// Unwraps data keys on demand and keeps them for the rest of the rebuild.
pub(super) struct Opener<'a> {
    pub identities: &'a Identities,
    pub wrapped: HashMap<KeyId, Vec<u8>>,
    pub keys: HashMap<KeyId, DataKey>,
    /// Largest plaintext a data chunk may have (the chunker's maximum).
    pub max_data: usize,
}

impl Opener<'_> {
    fn key(&mut self, id: KeyId) -> Result<&DataKey> {
        if !self.keys.contains_key(&id) {
            let wrapped = self
                .wrapped
                .get(&id)
                .ok_or_else(|| Error::corrupt(format!("data key {} has no file", id.0)))?;
            let key = unwrap_data_key(wrapped, self.identities)
                .map_err(|e| e.context(format!("data key {}", id.0)))?;
            self.keys.insert(id, key);
        }
        Ok(&self.keys[&id])
    }

    /// Open every record of `pack`: the ones that decode as manifest chunks are marked, with
    /// their references, and returned; a record that does not open is dropped and reported.
    pub(super) fn classify(
        &mut self,
        pack: &mut ScannedPack,
        path: &Path,
        problems: &mut Vec<String>,
    ) -> Result<Vec<ManifestRefs>> {
        let file = File::open(path)
            .map_err(|e| Error::io(format_args!("opening pack {}", path.display()), e))?;
        let mut manifests = Vec::new();
        let mut keep = Vec::with_capacity(pack.chunks.len());
        for mut c in std::mem::take(&mut pack.chunks) {
            let mut env = vec![0u8; c.length as usize - RECORD_HEADER_LEN];
            file.read_exact_at(&mut env, c.offset + RECORD_HEADER_LEN as u64)
                .map_err(|e| Error::io(format_args!("reading pack {}", path.display()), e))?;
            let max = self.max_data.max(MAX_MANIFEST_CHUNK);
            // A key that does not unwrap is the identity's fault, not the pack's: stop.
            let key = self.key(c.key_id)?;
            let plain = match envelope::open(key, c.key_id, &c.id, &env, max) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!(
                        "pack {}: record at offset {} does not open ({}); left out",
                        pack.name,
                        c.offset,
                        e.message()
                    ));
                    continue;
                }
            };
            // A data chunk that happens to decode as a manifest chunk only gains references:
            // a collect then keeps more, never less.
            if let Ok(refs) = chunk_references(&plain) {
                c.manifest = true;
                manifests.push(ManifestRefs { id: c.id, refs });
            }
            keep.push(c);
        }
        pack.chunks = keep;
        Ok(manifests)
    }
}
