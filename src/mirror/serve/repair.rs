//! Repair on the mirror: good copies of chunks that `check --read-data` found damaged are
//! written to a new pack (durable first), then in one transaction the chunk rows move to it,
//! the chunks leave `damaged_chunks`, and the pack is sealed. The damaged bytes stay in their
//! old pack, unreferenced, until garbage collection repacks it; an old pack whose file is gone
//! and that no chunk uses any more loses its row in the same transaction.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};

use super::{Mirror, verify_record};
use crate::error::{Error, Result};
use crate::format::pack::{PACK_HEADER_LEN, encode_pack_header};
use crate::format::records::{ManifestRefs, PackRefs};
use crate::ids::PackName;
use crate::index::{ChunkKind, RepairedChunk};
use crate::mirror::wire::WireRecord;
use crate::store::durable::{create_dir_synced, sync_dir};
use crate::store::records::write_refs;
use crate::store::{now, pack_path};

impl Mirror<'_> {
    /// Replace damaged chunks with the primary's copies; returns how many moved.
    pub(super) fn repair(&mut self, records: &[WireRecord]) -> Result<u32> {
        let mut accepted = Vec::new();
        for r in records {
            let header = verify_record(r)?;
            // A chunk without a row is not repaired but stored by the normal path.
            let Some((key_id, kind, old_pack)) =
                self.index.chunk_key_kind_pack(&header.chunk_id)?
            else {
                self.index.clear_damaged(&[header.chunk_id])?;
                continue;
            };
            if key_id != header.key_id || kind != i64::from(r.kind) {
                return Err(Error::corrupt(format!(
                    "repair of chunk {}: the primary's record (key {}, kind {}) does not match \
                     the mirror's row (key {}, kind {kind})",
                    header.chunk_id, header.key_id.0, r.kind, key_id.0
                )));
            }
            accepted.push((header.chunk_id, old_pack, r));
        }
        if accepted.is_empty() {
            return Ok(0);
        }
        let name = PackName::random();
        let pack_row = self.index.begin_pack(&name, &self.writer.id, now())?;
        let path = pack_path(self.repo.root(), &name);
        let dir = path.parent().expect("pack path has a directory");
        if !dir.is_dir() {
            create_dir_synced(dir)?;
        }
        let io = |e| Error::io(format_args!("writing repair pack {}", path.display()), e);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        let mut out = BufWriter::new(file);
        out.write_all(&encode_pack_header(&name)).map_err(io)?;
        let mut offset = PACK_HEADER_LEN as u64;
        let mut moved = Vec::new();
        let mut manifests = Vec::new();
        for (id, old_pack, r) in accepted {
            out.write_all(&r.record).map_err(io)?;
            if i64::from(r.kind) == ChunkKind::Manifest as i64 {
                manifests.push(ManifestRefs {
                    id,
                    refs: self.index.chunk_refs(&id)?,
                });
            }
            moved.push(RepairedChunk {
                id,
                offset,
                length: r.record.len() as u64,
                stored_hash: r.stored_hash,
                old_pack,
            });
            offset += r.record.len() as u64;
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        write_refs(
            self.repo.root(),
            &PackRefs {
                pack: name,
                manifests,
            },
        )?;
        file.sync_all().map_err(io)?;
        sync_dir(dir)?;
        let mut old_packs: Vec<i64> = moved.iter().map(|m| m.old_pack).collect();
        old_packs.sort_unstable();
        old_packs.dedup();
        let mut vanished = Vec::new();
        let mut vanished_names = std::collections::HashMap::new();
        for pack in self.index.packs()? {
            if old_packs.contains(&pack.row) && !pack_path(self.repo.root(), &pack.name).exists() {
                vanished.push(pack.row);
                vanished_names.insert(pack.row, pack.name);
            }
        }
        self.index
            .commit_mirror_repair(pack_row, offset, &moved, &vanished)?;
        // The reference lists of the packs whose file was gone and whose row went above.
        for row in &vanished {
            if let Some(name) = vanished_names.get(row) {
                crate::store::records::remove_refs(self.repo.root(), name)?;
            }
        }
        Ok(moved.len() as u32)
    }
}
