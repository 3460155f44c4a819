//! Repacking: copy the live records of sparse packs, verbatim, into new packs, then move the
//! chunk rows and delete the old packs.
//!
//! A record is copied byte for byte (header and envelope), so its `stored_hash` stays valid
//! and no key is needed. Each new pack is written like an ingest's: `writing` row with the
//! collector's writer id, `O_EXCL` file, fsync of file and directory; then ONE transaction
//! points the moved chunk rows at it, seals it, and deletes the rows of the old packs whose
//! every live record has moved; only then are the old files unlinked. A crash before that
//! transaction leaves a dead writer's `writing` pack (cleaned up by the next writer) and the old
//! packs untouched; a crash after it leaves old files without rows (swept by the next collect).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::Failpoint;
use super::collect::{remove_pack_file, sync_dirs};
use crate::error::{Error, Result};
use crate::format::pack::{PACK_HEADER_LEN, encode_pack_header};
use crate::format::records::{ManifestRefs, PackRefs};
use crate::ids::{ChunkId, PackName, WriterId};
use crate::index::{ChunkKind, Index, MovedChunk, PackUse};
use crate::repo::Repo;
use crate::store::durable::create_dir_synced;
use crate::store::{PackReader, pack_path};

/// What repacking did.
#[derive(Debug, Default)]
pub(crate) struct RepackReport {
    pub packs_repacked: u64,
    pub packs_written: u64,
    pub bytes_removed: u64,
    pub bytes_written: u64,
    pub skipped: Vec<String>,
}

struct NewPack {
    row: i64,
    name: PackName,
    path: PathBuf,
    /// Its manifest chunks and what each names: its reference list (format-spec/records.md).
    manifests: Vec<ManifestRefs>,
    file: BufWriter<File>,
    len: u64,
    moved: Vec<MovedChunk>,
}

/// Copies records verbatim into new packs and moves their chunk rows; also used by
/// `repair chunks`, which appends good copies fetched from a mirror.
pub(crate) struct Repacker<'a> {
    repo: &'a Repo,
    index: &'a Index,
    writer: &'a WriterId,
    fail: &'a Failpoint,
    target: u64,
    open: Option<NewPack>,
    /// Old packs whose every live record is in the open pack or an earlier one.
    done_old: Vec<PackUse>,
    report: RepackReport,
}

pub(super) fn repack(
    repo: &Repo,
    index: &Index,
    writer: &WriterId,
    sparse: &[PackUse],
    fail: &Failpoint,
    progress: &dyn crate::progress::Progress,
) -> Result<RepackReport> {
    let mut r = Repacker::new(repo, index, writer, fail);
    progress.start("repacking", Some(sparse.iter().map(|p| p.size).sum()));
    for old in sparse {
        // Counted when the pack is done with, skipped or copied: the total is their sizes.
        let _done = Advance(progress, old.size);
        // Read and verify the whole old pack's live records before copying any: a record that
        // does not match its stored hash is left where it is, with its pack, for `check` to
        // report; copying it would hide the damage behind a fresh file.
        let reader = PackReader::new(repo.root());
        let mut records = Vec::new();
        let mut bad = None;
        for loc in index.chunks_in_pack(old.row)? {
            match reader.read_record(&loc) {
                Ok(rec) if *blake3::hash(&rec).as_bytes() == loc.stored_hash => {
                    records.push((loc, rec))
                }
                Ok(_) => {
                    bad = Some(format!(
                        "pack {} not repacked: the record of chunk {} does not match its \
                         stored hash (run rsbackup check)",
                        old.name, loc.id
                    ));
                    break;
                }
                Err(e) => {
                    bad = Some(format!("pack {} not repacked: {e}", old.name));
                    break;
                }
            }
        }
        if let Some(why) = bad {
            r.report.skipped.push(why);
            continue;
        }
        for (loc, rec) in records {
            let refs = match loc.kind {
                ChunkKind::Manifest => Some(index.chunk_refs(&loc.id)?),
                ChunkKind::Data => None,
            };
            r.append(loc.id, loc.pack_row, loc.offset, &rec, refs)?;
        }
        r.retire(old.clone());
    }
    r.finish()
}

/// Tells `progress` of `bytes` done when dropped, whichever way the loop body ends.
struct Advance<'p>(&'p dyn crate::progress::Progress, u64);

impl Drop for Advance<'_> {
    fn drop(&mut self) {
        self.0.advance(self.1);
    }
}

impl<'a> Repacker<'a> {
    /// A repacker writing as `writer` (whose lock the caller holds, with the exclusive
    /// repository lock).
    pub(crate) fn new(
        repo: &'a Repo,
        index: &'a Index,
        writer: &'a WriterId,
        fail: &'a Failpoint,
    ) -> Self {
        Repacker {
            repo,
            index,
            writer,
            fail,
            target: repo.config().pack_target_size,
            open: None,
            done_old: Vec::new(),
            report: RepackReport::default(),
        }
    }

    /// An old pack every chunk of which has been appended: its row goes with the next seal,
    /// its file after.
    pub(crate) fn retire(&mut self, old: PackUse) {
        self.done_old.push(old);
    }

    /// Seal what is open and return what was done.
    pub(crate) fn finish(mut self) -> Result<RepackReport> {
        self.seal()?;
        Ok(self.report)
    }

    /// Append one record (verified by the caller) of chunk `id`, now at `old_offset` of pack
    /// row `old_pack`; `refs` for a manifest chunk.
    pub(crate) fn append(
        &mut self,
        id: ChunkId,
        old_pack: i64,
        old_offset: u64,
        rec: &[u8],
        refs: Option<Vec<ChunkId>>,
    ) -> Result<()> {
        if self.open.is_none() {
            self.open = Some(self.start()?);
        }
        let pack = self.open.as_mut().expect("opened above");
        pack.file
            .write_all(rec)
            .map_err(|e| Error::io(format_args!("writing pack {}", pack.path.display()), e))?;
        if let Some(refs) = refs {
            pack.manifests.push(ManifestRefs { id, refs });
        }
        pack.moved.push(MovedChunk {
            id,
            old_pack,
            old_offset,
            new_offset: pack.len,
        });
        pack.len += rec.len() as u64;
        if pack.len >= self.target {
            self.seal()?;
        }
        Ok(())
    }

    fn start(&mut self) -> Result<NewPack> {
        let name = PackName::random();
        let row = self
            .index
            .begin_pack(&name, self.writer, crate::store::now())?;
        let path = pack_path(self.repo.root(), &name);
        let dir = path.parent().expect("pack path has a directory");
        if !dir.is_dir() {
            create_dir_synced(dir)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format_args!("creating pack {}", path.display()), e))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&encode_pack_header(&name))
            .map_err(|e| Error::io(format_args!("writing pack {}", path.display()), e))?;
        Ok(NewPack {
            row,
            name,
            path,
            manifests: Vec::new(),
            file,
            len: PACK_HEADER_LEN as u64,
            moved: Vec::new(),
        })
    }

    /// Make the open pack durable, move the rows to it, delete fully moved old packs (rows in
    /// the same transaction, files after).
    fn seal(&mut self) -> Result<()> {
        // With no open pack there may still be old packs to delete: the last new pack was
        // sealed by the very record that finished them.
        let (row, len, moved) = match self.open.take() {
            Some(pack) => {
                let NewPack {
                    row,
                    name,
                    path,
                    manifests,
                    file,
                    len,
                    moved,
                } = pack;
                let file = file.into_inner().map_err(|e| {
                    Error::io(
                        format_args!("writing pack {}", path.display()),
                        e.into_error(),
                    )
                })?;
                crate::store::records::write_refs(
                    self.repo.root(),
                    &PackRefs {
                        pack: name,
                        manifests,
                    },
                )?;
                crate::store::sync_pack(&file, &path)?;
                drop(file);
                self.fail.hit("after-pack-written");
                (Some(row), len, moved)
            }
            None if self.done_old.is_empty() => return Ok(()),
            None => (None, 0, Vec::new()),
        };

        let old = std::mem::take(&mut self.done_old);
        self.index
            .commit_repack(row.map(|r| (r, len)), &moved, &old)?;
        if row.is_some() {
            self.report.packs_written += 1;
            self.report.bytes_written += len;
        }
        self.fail.hit("after-move");

        let mut dirs = Vec::new();
        for p in &old {
            self.fail.hit("before-old-unlink");
            self.report.bytes_removed += remove_pack_file(self.repo.root(), &p.name, &mut dirs)?;
            self.report.packs_repacked += 1;
        }
        sync_dirs(&dirs)?;
        Ok(())
    }
}
