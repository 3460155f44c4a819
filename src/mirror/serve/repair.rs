//! Repair on the mirror: good copies of chunks that `check --read-data` found damaged are
//! written to a new pack (durable first), then in one transaction the chunk rows move to it,
//! the chunks leave `damaged_chunks`, and the pack is sealed. The damaged bytes stay in their
//! old pack, unreferenced, until garbage collection repacks it; an old pack whose file is gone
//! and that no chunk uses any more loses its row in the same transaction.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};

use rusqlite::{OptionalExtension, params};

use super::{Mirror, verify_record, write_tx};
use crate::error::{Error, Result};
use crate::format::pack::{PACK_HEADER_LEN, encode_pack_header};
use crate::format::records::{ManifestRefs, PackRefs};
use crate::ids::{ChunkId, PackName};
use crate::index::ChunkKind;
use crate::mirror::wire::WireRecord;
use crate::store::durable::{create_dir_synced, sync_dir};
use crate::store::records::write_refs;
use crate::store::{now, pack_path};

struct Moved {
    id: ChunkId,
    offset: u64,
    length: u64,
    stored_hash: [u8; 32],
    old_pack: i64,
}

impl Mirror<'_> {
    /// Replace damaged chunks with the primary's copies; returns how many moved.
    pub(super) fn repair(&mut self, records: &[WireRecord]) -> Result<u32> {
        let mut accepted = Vec::new();
        for r in records {
            let header = verify_record(r)?;
            let row: Option<(i64, i64, i64)> = self
                .index
                .conn()
                .query_row(
                    "SELECT key_id, kind, pack FROM chunks WHERE id = ?1",
                    [&header.chunk_id.0],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            // A chunk without a row is not repaired but stored by the normal path.
            let Some((key_id, kind, old_pack)) = row else {
                self.index.conn().execute(
                    "DELETE FROM damaged_chunks WHERE id = ?1",
                    [&header.chunk_id.0],
                )?;
                continue;
            };
            if key_id as u64 != header.key_id.0 || kind != i64::from(r.kind) {
                return Err(Error::corrupt(format!(
                    "repair of chunk {}: the primary's record (key {}, kind {}) does not match \
                     the mirror's row (key {key_id}, kind {kind})",
                    header.chunk_id, header.key_id.0, r.kind
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
            moved.push(Moved {
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
        write_tx(self.index.conn(), |conn| {
            for m in &moved {
                conn.execute(
                    "UPDATE chunks SET pack = ?1, offset = ?2, length = ?3, stored_hash = ?4 \
                     WHERE id = ?5",
                    params![
                        pack_row,
                        m.offset as i64,
                        m.length as i64,
                        &m.stored_hash,
                        &m.id.0
                    ],
                )?;
                conn.execute("DELETE FROM damaged_chunks WHERE id = ?1", [&m.id.0])?;
            }
            conn.execute(
                "UPDATE packs SET state = 'sealed', size = ?1, writer = NULL WHERE id = ?2",
                params![offset as i64, pack_row],
            )?;
            for row in &vanished {
                conn.execute(
                    "DELETE FROM packs WHERE id = ?1 \
                     AND NOT EXISTS (SELECT 1 FROM chunks WHERE pack = ?1)",
                    [row],
                )?;
            }
            Ok(())
        })?;
        // The reference lists of the packs whose file was gone and whose row went above.
        for row in &vanished {
            if let Some(name) = vanished_names.get(row) {
                crate::store::records::remove_refs(self.repo.root(), name)?;
            }
        }
        Ok(moved.len() as u32)
    }
}
