//! Pack files on disk (format-spec/pack.md): one sequential writer that makes packs durable
//! before the index points at them, and a reader that checks each record against the index.
//!
//! Write order (format-spec/index.md): the pack row is committed in state `writing` before the
//! file exists, so a crash at any point leaves either nothing or a row that names the file and
//! its writer, which the next writer cleans up. The chunk rows are committed only after the
//! file and its directory entry are on disk.

pub mod durable;
pub mod records;
pub mod space;

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{
    PACK_HEADER_LEN, RECORD_HEADER_LEN, RecordHeader, decode_pack_header, decode_record_header,
    encode_pack_header, encode_record_header,
};
use crate::ids::{ChunkId, KeyId, PackName, WriterId};
use crate::index::{ChunkKind, ChunkLocation, Index, SealedChunk};

/// Buffer of the pack writer: records are written in large sequential pieces.
const WRITE_BUFFER: usize = 1 << 20;

/// How often (in bytes appended) the pack writer asks how much room is left.
const HEADROOM_CHECK_EVERY: u64 = 4 << 20;

/// Pack files a reader keeps open (restore reads packs in bursts, mostly one at a time).
const OPEN_FILES: usize = 16;

/// Path of a pack file under the repository root.
pub fn pack_path(root: &Path, name: &PackName) -> PathBuf {
    let hex = name.to_hex();
    root.join("packs")
        .join(&hex[..2])
        .join(format!("{hex}.pack"))
}

/// Server time, Unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A chunk handed to the writer.
#[derive(Debug)]
pub struct PendingChunk {
    /// The chunk id.
    pub id: ChunkId,
    /// Data or manifest.
    pub kind: ChunkKind,
    /// The data key id it was sealed with.
    pub key_id: KeyId,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// For manifest chunks: the data chunks it names.
    pub refs: Vec<ChunkId>,
}

/// What a writer wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Chunks written.
    pub chunks: u64,
    /// Record bytes written.
    pub bytes: u64,
    /// Packs sealed.
    pub packs: u64,
}

/// The pack being written.
struct OpenPack {
    row: i64,
    name: PackName,
    path: PathBuf,
    file: BufWriter<File>,
    len: u64,
    chunks: Vec<SealedChunk>,
}

/// A sealed pack whose `fsync`s run on a helper thread; its chunks are committed once they
/// are done.
struct Syncing {
    row: i64,
    name: PackName,
    len: u64,
    chunks: Vec<SealedChunk>,
    sync: JoinHandle<Result<()>>,
}

/// Appends chunks to packs, sealing each when it reaches the target size (fsync file and
/// directory, then commit its chunk rows). Used from one thread.
///
/// With [`PackWriter::overlap_syncs`], the `fsync`s of a sealed pack run on a helper thread
/// while the next pack is written; packs are still committed one at a time, in the order they
/// were sealed, each only after its own file and directory are durable. So a chunk is in the
/// index only once its pack is durable, and a chunk appended after another is committed no
/// earlier than it.
///
/// After any error the writer refuses further work: the pack it was writing stays in state
/// `writing` and is removed by the cleanup of the next writer, never sealed half written.
pub struct PackWriter<'a> {
    root: PathBuf,
    index: &'a Index,
    writer: WriterId,
    target_size: u64,
    open: Option<OpenPack>,
    /// Ids in the open pack and in the sealed packs not yet committed: the ingest relies on
    /// this for dedup within one run, before the index knows the chunks.
    seen: HashSet<ChunkId>,
    /// The first 8 bytes of each id this writer committed, a quarter of the memory of the
    /// whole ids on a run of millions of chunks; a match is confirmed in the index.
    committed: HashSet<u64>,
    stats: WriteStats,
    failed: bool,
    /// Sealed packs whose syncs may still run, oldest first (committed in this order).
    syncing: VecDeque<Syncing>,
    /// How many packs may wait for their syncs; 0 = seal synchronously.
    overlap: usize,
    /// Bytes appended since free space was last asked for.
    unchecked: u64,
}

impl<'a> PackWriter<'a> {
    /// A writer for the repository at `root`, recording into `index` as `writer`.
    pub fn new(root: &Path, index: &'a Index, writer: &WriterId, target_size: u64) -> Self {
        PackWriter {
            root: root.to_path_buf(),
            index,
            writer: writer.clone(),
            target_size,
            open: None,
            seen: HashSet::new(),
            committed: HashSet::new(),
            stats: WriteStats::default(),
            failed: false,
            syncing: VecDeque::new(),
            overlap: 0,
            unchecked: 0,
        }
    }

    /// Let up to `packs` sealed packs wait for their `fsync`s on helper threads while the
    /// next pack is written (0, the default, seals synchronously). Their chunks are committed
    /// in seal order as the syncs complete, at the latest in [`PackWriter::finish`]; an error
    /// committing them is then reported by a later `append` or by `finish`.
    pub fn overlap_syncs(&mut self, packs: usize) {
        self.overlap = packs;
    }

    /// Append a chunk. A chunk id already appended by this writer is skipped (returns false),
    /// unless a garbage collection has deleted it from the index since.
    pub fn append(&mut self, chunk: PendingChunk) -> Result<bool> {
        let hash = record_hash(&chunk)?;
        self.append_hashed(chunk, hash)
    }

    /// [`PackWriter::append`] with the record's BLAKE3 computed by the caller with
    /// [`record_hash`] (so that many threads can hash while one writes).
    pub fn append_hashed(&mut self, chunk: PendingChunk, hash: [u8; 32]) -> Result<bool> {
        self.check_usable()?;
        if self.seen.contains(&chunk.id)
            || self.committed.contains(&id_prefix(&chunk.id)) && self.index.has_chunk(&chunk.id)?
        {
            return Ok(false);
        }
        let result = self
            .commit_synced(false)
            .and_then(|()| self.append_inner(chunk, hash));
        if result.is_err() {
            self.failed = true;
        }
        result.map(|()| true)
    }

    fn append_inner(&mut self, chunk: PendingChunk, stored_hash: [u8; 32]) -> Result<()> {
        let envelope_len = envelope_len(&chunk)?;
        self.keep_headroom(u64::from(envelope_len))?;
        if self.open.is_none() {
            self.open = Some(self.start_pack()?);
        }
        let pack = self.open.as_mut().expect("opened above");
        let header = encode_record_header(&RecordHeader {
            envelope_len,
            chunk_id: chunk.id,
            key_id: chunk.key_id,
        });
        pack.file
            .write_all(&header)
            .and_then(|()| pack.file.write_all(&chunk.envelope))
            .map_err(|e| Error::io(format_args!("writing pack {}", pack.path.display()), e))?;
        let length = RECORD_HEADER_LEN as u32 + envelope_len;
        pack.chunks.push(SealedChunk {
            id: chunk.id,
            kind: chunk.kind,
            offset: pack.len,
            length,
            key_id: chunk.key_id,
            stored_hash,
            refs: chunk.refs,
        });
        pack.len += u64::from(length);
        self.seen.insert(chunk.id);
        self.stats.chunks += 1;
        self.stats.bytes += u64::from(length);
        if pack.len >= self.target_size {
            self.seal_open()?;
        }
        Ok(())
    }

    /// Stop before the disk is full: the index must keep room to grow, or not even a prune
    /// could reclaim what this writer sealed (format-spec/repository.md "Full disks"). Asked
    /// of the filesystem once per [`HEADROOM_CHECK_EVERY`] bytes written.
    fn keep_headroom(&mut self, next: u64) -> Result<()> {
        self.unchecked += next;
        if self.unchecked < HEADROOM_CHECK_EVERY && self.stats.bytes > 0 {
            return Ok(());
        }
        self.unchecked = 0;
        let Some(free) = space::free_bytes(&self.root) else {
            return Ok(());
        };
        if free < space::INDEX_HEADROOM + HEADROOM_CHECK_EVERY + next {
            return Err(space::disk_full(
                &self.root,
                format_args!(
                    "the pack writer stopped with {free} bytes free, keeping {} for the index",
                    space::INDEX_HEADROOM
                ),
            ));
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::new(
                ErrorKind::Internal,
                "the pack writer failed earlier; its pack was not sealed",
            ));
        }
        Ok(())
    }

    /// Commit the pack row, then create the file exclusively and write its header.
    fn start_pack(&mut self) -> Result<OpenPack> {
        let name = PackName::random();
        let row = self.index.begin_pack(&name, &self.writer, now())?;
        let path = pack_path(&self.root, &name);
        let dir = path.parent().expect("pack path has a directory");
        if !dir.is_dir() {
            durable::create_dir_synced(dir)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format_args!("creating pack {}", path.display()), e))?;
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, file);
        file.write_all(&encode_pack_header(&name))
            .map_err(|e| Error::io(format_args!("writing pack {}", path.display()), e))?;
        Ok(OpenPack {
            row,
            name,
            path,
            file,
            len: PACK_HEADER_LEN as u64,
            chunks: Vec::new(),
        })
    }

    /// Make the open pack durable (file, then directory entry), then commit its chunks.
    fn seal_open(&mut self) -> Result<()> {
        let Some(pack) = self.open.take() else {
            return Ok(());
        };
        let OpenPack {
            row,
            name,
            path,
            file,
            len,
            chunks,
        } = pack;
        let file = file.into_inner().map_err(|e| {
            Error::io(
                format_args!("writing pack {}", path.display()),
                e.into_error(),
            )
        })?;
        // The reference list goes first: once the pack's chunks are in the index, a rebuild
        // must be able to tell its manifest chunks and what they name (format-spec/records.md).
        records::write_refs(&self.root, &pack_refs(&name, &chunks))?;
        if self.overlap == 0 {
            sync_pack(&file, &path)?;
            return self.commit_pack(row, &name, len, &chunks);
        }
        let sync = std::thread::Builder::new()
            .name("rsbackup-pack-sync".into())
            .spawn(move || sync_pack(&file, &path))
            .map_err(|e| Error::io("starting a pack sync thread", e))?;
        self.syncing.push_back(Syncing {
            row,
            name,
            len,
            chunks,
            sync,
        });
        self.commit_synced(false)
    }

    /// Commit the packs whose syncs are done, oldest first, stopping at the first still
    /// running; waits for the oldest while more than `overlap` are pending (all of them when
    /// `all`).
    fn commit_synced(&mut self, all: bool) -> Result<()> {
        while let Some(front) = self.syncing.front() {
            let must_wait = all || self.syncing.len() > self.overlap;
            if !must_wait && !front.sync.is_finished() {
                break;
            }
            let Syncing {
                row,
                name,
                len,
                chunks,
                sync,
            } = self.syncing.pop_front().expect("front exists");
            sync.join().map_err(|_| {
                Error::new(
                    ErrorKind::Internal,
                    format!("the sync thread of pack {name} panicked (a bug)"),
                )
            })??;
            self.commit_pack(row, &name, len, &chunks)?;
        }
        Ok(())
    }

    fn commit_pack(
        &mut self,
        row: i64,
        name: &PackName,
        len: u64,
        chunks: &[SealedChunk],
    ) -> Result<()> {
        self.index
            .seal_pack(row, len, chunks)
            .map_err(|e| e.context(format_args!("sealing pack {name}")))?;
        for c in chunks {
            self.seen.remove(&c.id);
            self.committed.insert(id_prefix(&c.id));
        }
        self.stats.packs += 1;
        Ok(())
    }

    /// Seal the open pack, if any, commit every sealed pack, and return what was written.
    pub fn finish(mut self) -> Result<WriteStats> {
        self.check_usable()?;
        let result = self.seal_open().and_then(|()| self.commit_synced(true));
        if result.is_err() {
            self.failed = true;
        }
        result?;
        Ok(std::mem::take(&mut self.stats))
    }
}

impl Drop for PackWriter<'_> {
    /// Packs not committed stay in state `writing` (the next writer removes them); only wait
    /// for their sync threads, so none outlives the writer.
    fn drop(&mut self) {
        for s in self.syncing.drain(..) {
            let _ = s.sync.join();
        }
    }
}

/// The first 8 bytes of a chunk id (ids are keyed hashes: evenly spread).
fn id_prefix(id: &ChunkId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b)
}

/// The reference list of a pack holding `chunks`: its manifest chunks and what each names.
pub fn pack_refs(name: &PackName, chunks: &[SealedChunk]) -> crate::format::records::PackRefs {
    crate::format::records::PackRefs {
        pack: *name,
        manifests: chunks
            .iter()
            .filter(|c| c.kind == ChunkKind::Manifest)
            .map(|c| crate::format::records::ManifestRefs {
                id: c.id,
                refs: c.refs.clone(),
            })
            .collect(),
    }
}

/// Make a written pack durable: its data, then its directory entry (format-spec/index.md).
/// The envelope length as the record header stores it; an error if it does not fit.
fn envelope_len(chunk: &PendingChunk) -> Result<u32> {
    u32::try_from(chunk.envelope.len())
        .ok()
        .filter(|n| *n <= u32::MAX - RECORD_HEADER_LEN as u32)
        .ok_or_else(|| {
            Error::invalid(format!(
                "chunk {}: envelope of {} bytes is too large for a pack record",
                chunk.id,
                chunk.envelope.len()
            ))
        })
}

/// BLAKE3 of the record `chunk` becomes in a pack (header, then envelope): the index's
/// `stored_hash` (format-spec/index.md).
pub fn record_hash(chunk: &PendingChunk) -> Result<[u8; 32]> {
    let header = encode_record_header(&RecordHeader {
        envelope_len: envelope_len(chunk)?,
        chunk_id: chunk.id,
        key_id: chunk.key_id,
    });
    let mut hasher = blake3::Hasher::new();
    hasher.update(&header);
    hasher.update(&chunk.envelope);
    Ok(*hasher.finalize().as_bytes())
}

pub(crate) fn sync_pack(file: &File, path: &Path) -> Result<()> {
    file.sync_all()
        .map_err(|e| Error::io(format_args!("syncing pack {}", path.display()), e))?;
    durable::sync_dir(path.parent().expect("pack path has a directory"))
}

/// Reads records from packs, keeping a few files open. Shared between threads.
pub struct PackReader {
    root: PathBuf,
    /// Most recently used last.
    files: Mutex<Vec<(PackName, Arc<File>)>>,
}

impl PackReader {
    /// A reader for the repository at `root`.
    pub fn new(root: &Path) -> Self {
        PackReader {
            root: root.to_path_buf(),
            files: Mutex::new(Vec::new()),
        }
    }

    /// The open file of a pack, opening it (and checking its header) when it is not cached.
    fn file(&self, name: &PackName) -> Result<Arc<File>> {
        // The cache holds only file handles: a panic elsewhere cannot leave it inconsistent.
        {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pos) = files.iter().position(|(n, _)| n == name) {
                let entry = files.remove(pos);
                let file = entry.1.clone();
                files.push(entry);
                return Ok(file);
            }
        }
        let path = pack_path(&self.root, name);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::corrupt(format!("pack {name} is missing ({})", path.display()))
            } else {
                Error::io(format_args!("opening pack {}", path.display()), e)
            }
        })?;
        let mut header = [0u8; PACK_HEADER_LEN];
        read_exact_at(&file, &mut header, 0, name)?;
        let in_file =
            decode_pack_header(&header).map_err(|e| e.context(format_args!("pack {name}")))?;
        if in_file != *name {
            return Err(Error::corrupt(format!(
                "pack {name}: the file's header names pack {in_file}"
            )));
        }
        let file = Arc::new(file);
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if files.len() >= OPEN_FILES {
            files.remove(0);
        }
        files.push((*name, file.clone()));
        Ok(file)
    }

    /// Read a record and check its header against `loc`; returns the envelope. Does not hash.
    pub fn read_envelope(&self, loc: &ChunkLocation) -> Result<Vec<u8>> {
        let mut record = self.read_record(loc)?;
        record.drain(..RECORD_HEADER_LEN);
        Ok(record)
    }

    /// Read the whole record (header + envelope) as stored, after checking its header against
    /// `loc` (chunk id, key id, length).
    pub fn read_record(&self, loc: &ChunkLocation) -> Result<Vec<u8>> {
        let name = &loc.pack;
        if (loc.length as usize) < RECORD_HEADER_LEN || loc.offset < PACK_HEADER_LEN as u64 {
            return Err(Error::corrupt(format!(
                "index: chunk {} has an impossible location in pack {name} \
                 (offset {}, length {})",
                loc.id, loc.offset, loc.length
            )));
        }
        let file = self.file(name)?;
        // Check the extent against the file before allocating: a damaged index row must not
        // make a restore allocate gigabytes.
        let size = file
            .metadata()
            .map_err(|e| Error::io(format_args!("reading pack {name}"), e))?
            .len();
        if loc.offset + u64::from(loc.length) > size {
            return Err(Error::corrupt(format!(
                "pack {name} is truncated: chunk {} (offset {}, length {}) runs past its end \
                 ({size} bytes)",
                loc.id, loc.offset, loc.length
            )));
        }
        let mut record = vec![0u8; loc.length as usize];
        read_exact_at(&file, &mut record, loc.offset, name).map_err(|e| {
            e.context(format_args!(
                "chunk {} (offset {}, length {})",
                loc.id, loc.offset, loc.length
            ))
        })?;
        let header = decode_record_header(&record).map_err(|e| {
            e.context(format_args!(
                "pack {name}, offset {}, chunk {}",
                loc.offset, loc.id
            ))
        })?;
        if header.chunk_id != loc.id
            || header.key_id != loc.key_id
            || header.record_len() != u64::from(loc.length)
        {
            return Err(Error::corrupt(format!(
                "pack {name}, offset {}: the record header (chunk {}, key {}, length {}) \
                 does not match the index (chunk {}, key {}, length {})",
                loc.offset,
                header.chunk_id,
                header.key_id.0,
                header.record_len(),
                loc.id,
                loc.key_id.0,
                loc.length
            )));
        }
        Ok(record)
    }
}

/// `pread` the whole buffer; a short file is `Corrupt` ("truncated").
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64, name: &PackName) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Error::corrupt(format!(
                "pack {name} is truncated: {} bytes at offset {offset} run past its end ({size} bytes)",
                buf.len()
            ))
        } else {
            Error::io(format_args!("reading pack {name}"), e)
        }
    })
}

#[cfg(test)]
mod tests;
