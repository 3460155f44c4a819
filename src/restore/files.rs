//! Writing one regular file's content: chunks at their offsets, holes and all-zero blocks
//! skipped so sparse files stay sparse, then the size and the metadata.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use crate::format::manifest::{Extent, Meta};
use crate::index::ChunkKind;
use crate::reader::ChunkSource;
use crate::restore::fsops;

/// Granularity of hole detection: a filesystem block on every common Linux filesystem.
const BLOCK: u64 = 4096;
/// Most plaintext bytes and chunks of a file handed to [`ChunkSource::prefetch`] at once: one
/// request instead of one per chunk over a network, with memory bounded per worker.
const PREFETCH_BYTES: u64 = 8 << 20;
const PREFETCH_CHUNKS: usize = 32;

/// A file created (empty, `O_EXCL`) by the walker and handed to a worker to fill.
pub(super) struct FileJob {
    /// Its path in the session (for messages).
    pub path: Vec<u8>,
    /// The new file, open for writing.
    pub file: File,
    /// Logical size.
    pub size: u64,
    /// Its content.
    pub extents: Vec<Extent>,
    /// Metadata to apply when written.
    pub meta: Meta,
}

/// What filling a file produced: the problems, each naming the chunk where one is concerned.
#[derive(Default)]
pub(super) struct FileOutcome {
    pub problems: Vec<String>,
    /// Writing failed: the file was emptied (a truncated file must not pass for the original,
    /// and its blocks are given back), so it is not restored at all.
    pub not_written: bool,
    /// ... because the target's file system is full (or over quota).
    pub disk_full: bool,
}

impl FileOutcome {
    /// A write into `file` failed with `e` at `offset`: empty the file and say so.
    fn write_failed(mut self, file: &File, what: String, e: &io::Error) -> FileOutcome {
        let emptied = file.set_len(0).is_ok();
        self.problems.push(format!(
            "{what}: {e}{}",
            if emptied {
                " (the file was left empty)"
            } else {
                ""
            }
        ));
        self.not_written = true;
        self.disk_full = is_disk_full(e);
        self
    }
}

/// `e` says the file system has no room left for this user (ENOSPC, EDQUOT).
pub(super) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Fill `job.file`. A chunk that cannot be read is reported and its range left as zeros; the
/// other chunks are still written, so that as much of the file as exists comes back.
pub(super) fn fill(
    reader: &dyn ChunkSource,
    job: FileJob,
    restore_owner: bool,
    progress: &dyn crate::progress::Progress,
) -> FileOutcome {
    let mut outcome = FileOutcome::default();
    let problems = &mut outcome.problems;
    let mut offset = 0u64;
    let mut ahead = 0;
    for (i, extent) in job.extents.iter().enumerate() {
        if i >= ahead {
            ahead = prefetch_window(reader, &job.extents, i);
        }
        match extent {
            Extent::Hole { len } => {
                offset += len;
                progress.advance(*len);
            }
            Extent::Inline { data } => {
                if let Err(e) = write_sparse(&job.file, offset, data) {
                    return outcome.write_failed(
                        &job.file,
                        format!("writing at offset {offset}"),
                        &e,
                    );
                }
                offset += data.len() as u64;
                progress.advance(data.len() as u64);
            }
            Extent::Chunk { len, id } => {
                let len = u64::from(*len);
                progress.advance(len);
                match reader.read_chunk_of(id, ChunkKind::Data) {
                    Ok(data) if data.len() as u64 == len => {
                        if let Err(e) = write_sparse(&job.file, offset, &data) {
                            // A write error (disk full...) would repeat for every chunk.
                            return outcome.write_failed(
                                &job.file,
                                format!("writing at offset {offset}"),
                                &e,
                            );
                        }
                    }
                    Ok(data) => problems.push(format!(
                        "chunk {id} holds {} bytes but the manifest says {len}; bytes \
                         {offset}..{} were left as zeros",
                        data.len(),
                        offset + len
                    )),
                    Err(e) => problems.push(format!(
                        "bytes {offset}..{} were left as zeros: {e}",
                        offset + len
                    )),
                }
                offset += len;
            }
        }
    }
    if let Err(e) = job.file.set_len(job.size) {
        return outcome.write_failed(&job.file, format!("setting the size to {}", job.size), &e);
    }
    // A damaged file keeps the time of the restore, so that it does not pass for the original.
    let complete = problems.is_empty();
    if let Err(e) = fsops::apply_meta_fd(job.file.as_fd(), &job.meta, restore_owner, complete) {
        problems.push(e.to_string());
    }
    outcome
}

/// Hand `reader` the data chunks from extent `from` on, up to [`PREFETCH_BYTES`] of plaintext
/// or [`PREFETCH_CHUNKS`] chunks; returns the index after the last extent handed over.
fn prefetch_window(reader: &dyn ChunkSource, extents: &[Extent], from: usize) -> usize {
    let mut ids = Vec::new();
    let mut bytes = 0u64;
    let mut end = from;
    for extent in &extents[from..] {
        if let Extent::Chunk { len, id } = extent {
            let len = u64::from(*len);
            if !ids.is_empty() && (bytes + len > PREFETCH_BYTES || ids.len() == PREFETCH_CHUNKS) {
                break;
            }
            ids.push(*id);
            bytes += len;
        }
        end += 1;
    }
    if ids.len() > 1 {
        reader.prefetch(&ids);
    }
    end
}

/// Write `data` at `offset` of a file that is new (all zeros so far), skipping every all-zero
/// block (aligned to file offsets) so that they stay holes, and coalescing the rest into as few
/// writes as possible.
pub(super) fn write_sparse(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    let end = offset + data.len() as u64;
    let mut pos = offset;
    // Start of the run of non-zero blocks not yet written.
    let mut run: Option<u64> = None;
    while pos < end {
        let block_end = ((pos / BLOCK) + 1).saturating_mul(BLOCK).min(end);
        let block = &data[(pos - offset) as usize..(block_end - offset) as usize];
        if is_zero(block) {
            if let Some(start) = run.take() {
                file.write_all_at(
                    &data[(start - offset) as usize..(pos - offset) as usize],
                    start,
                )?;
            }
        } else if run.is_none() {
            run = Some(pos);
        }
        pos = block_end;
    }
    if let Some(start) = run {
        file.write_all_at(&data[(start - offset) as usize..], start)?;
    }
    Ok(())
}

fn is_zero(block: &[u8]) -> bool {
    let mut words = block.chunks_exact(8);
    words
        .by_ref()
        .all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_blocks_stay_holes_and_content_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        // 1 MiB of zeros with a few bytes set around unaligned offsets.
        let mut data = vec![0u8; 1 << 20];
        data[10] = 1;
        data[5000] = 2;
        data[(1 << 20) - 1] = 3;
        write_sparse(&file, 100, &data).unwrap();
        file.set_len(100 + data.len() as u64).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[100..], &data[..]);
        assert!(back[..100].iter().all(|&b| b == 0));
        // Three touched blocks, perhaps a fourth at a boundary: far below 1 MiB allocated.
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        assert!(blocks * 512 <= 64 << 10, "{blocks} blocks allocated");
    }

    #[test]
    fn is_zero_sees_a_single_bit() {
        let mut b = vec![0u8; 4096];
        assert!(is_zero(&b));
        b[4095] = 0x80;
        assert!(!is_zero(&b));
        assert!(!is_zero(&[0, 0, 1]));
    }
}
