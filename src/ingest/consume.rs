//! The consumer: puts results back in manifest order, builds the manifest, submits manifest
//! chunks (after the data chunks they name), and writes the next files cache.

use std::collections::{HashMap, HashSet};

use crossbeam_channel::Receiver;

use super::writer::{WriteMsg, WriteQueue};
use super::{Done, PathError, Results, Shared, Window};
use crate::error::Result;
use crate::files_cache::{CacheWriter, RECENT_MTIME_NS};
use crate::format::manifest::{Body, ManifestBuilder, ManifestChunk};
use crate::ids::ChunkId;
use crate::index::{ChunkKind, Index};
use crate::store::PendingChunk;

/// Closes the window when the consumer ends, however it ends, so the walker never waits for a
/// place that will not come back.
struct CloseOnDrop<'w>(&'w Window);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What the consumer saw.
#[derive(Default)]
pub(super) struct Consumed {
    pub root: Vec<ChunkId>,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub files_read: u64,
    pub bytes_read: u64,
    pub errors: Vec<PathError>,
    /// Results consumed in order (must equal what the walker emitted).
    pub consumed: u64,
    pub cache: Option<CacheWriter>,
}

pub(super) struct Consumer<'s, 'r> {
    sh: &'s Shared<'r>,
    tx: WriteQueue,
    index: Index,
    builder: Option<ManifestBuilder>,
    // Hard-link targets that turned out unreadable: their links cannot point at them.
    failed_links: HashSet<Vec<u8>>,
    submitted_manifests: HashSet<ChunkId>,
    out: Consumed,
}

impl<'s, 'r> Consumer<'s, 'r> {
    pub fn new(sh: &'s Shared<'r>, tx: WriteQueue, cache: Option<CacheWriter>) -> Result<Self> {
        let secret_cut = *sh.manifest_cut_key;
        Ok(Consumer {
            sh,
            tx,
            index: sh.repo.index()?,
            builder: Some(ManifestBuilder::new(sh.repo.config().manifest, secret_cut)),
            failed_links: HashSet::new(),
            submitted_manifests: HashSet::new(),
            out: Consumed {
                cache,
                ..Consumed::default()
            },
        })
    }

    /// Consume until every producer is gone, giving the walker a place in `window` back per
    /// entry consumed.
    pub fn run(mut self, results: Receiver<Results>, window: &Window) -> Consumed {
        let _close = CloseOnDrop(window);
        let mut next = 0u64;
        let mut early: HashMap<u64, Option<Done>> = HashMap::new();
        for batch in results.iter() {
            let before = next;
            for (seq, done) in batch {
                if seq != next {
                    early.insert(seq, done);
                    continue;
                }
                self.consume(done);
                next += 1;
                while !early.is_empty()
                    && let Some(done) = early.remove(&next)
                {
                    self.consume(done);
                    next += 1;
                }
            }
            window.give_back((next - before) as usize);
        }
        self.out.consumed = next;
        if !self.sh.abort.is_set()
            && let Err(e) = self.finish_manifest()
        {
            self.sh.abort.fail(e);
        }
        // Make the next files cache durable now, while the writer syncs the last pack; it is
        // renamed into place only after the session commits.
        if !self.sh.abort.is_set()
            && let Some(w) = self.out.cache.as_mut()
            && w.prepare().is_err()
            && let Some(w) = self.out.cache.take()
        {
            w.abandon();
        }
        self.out
    }

    /// The next entry in manifest order (`None`: the run is aborting).
    fn consume(&mut self, done: Option<Done>) {
        if self.sh.abort.is_set() {
            return;
        }
        let Some(done) = done else { return };
        super::staging::report_ingested(self.sh.decode, &done);
        if let Err(e) = self.handle(done) {
            self.sh.abort.fail(e);
        }
    }

    fn handle(&mut self, done: Done) -> Result<()> {
        let Done {
            path,
            entry,
            error,
            cache,
            bytes_read,
            link_target,
        } = done;
        if let Some(message) = error {
            self.path_error(&path, message);
        }
        let Some(mut entry) = entry else {
            if link_target {
                self.failed_links.insert(path);
            }
            return Ok(());
        };
        if let Some(n) = bytes_read {
            self.out.files_read += 1;
            self.out.bytes_read += n;
        }
        match &entry.body {
            Body::Hardlink { target } if self.failed_links.contains(target) => {
                let message = format!(
                    "hard link to {}, which could not be read",
                    String::from_utf8_lossy(target)
                );
                self.path_error(&path, message.clone());
                entry.body = Body::Unreadable { message };
            }
            Body::Unreadable { .. } if link_target => {
                self.failed_links.insert(path.clone());
            }
            Body::File { size, .. } => {
                self.out.files += 1;
                self.out.bytes += size;
            }
            _ => {}
        }
        self.out.entries += 1;
        if let (Some((hash, row)), Some(w)) = (cache, self.out.cache.as_mut())
            && row.mtime_ns <= self.sh.started_ns - RECENT_MTIME_NS
            && w.insert(&hash, &row).is_err()
            && let Some(w) = self.out.cache.take()
        {
            // The cache is only an optimization: on failure stop writing it, go on.
            w.abandon();
        }
        let builder = self.builder.as_mut().expect("builder present until finish");
        for chunk in builder.push(&entry)? {
            self.submit(chunk)?;
        }
        Ok(())
    }

    fn path_error(&mut self, path: &[u8], message: String) {
        self.out.errors.push(PathError {
            path: String::from_utf8_lossy(path).into_owned(),
            message,
        });
    }

    fn finish_manifest(&mut self) -> Result<()> {
        if let Some(builder) = self.builder.take()
            && let Some(chunk) = builder.finish()
        {
            self.submit(chunk)?;
        }
        Ok(())
    }

    /// Add a manifest chunk to the root; store it unless it exists. Its references must all
    /// be with the writer first (the writer appends in order, so they become durable no later
    /// than it).
    fn submit(&mut self, chunk: ManifestChunk) -> Result<()> {
        let sh = self.sh;
        let id = sh.id_key.chunk_id(&chunk.bytes);
        self.out.root.push(id);
        if !self.submitted_manifests.insert(id) || self.index.has_chunk(&id)? {
            return Ok(());
        }
        if !sh.inflight.wait_submitted(&chunk.refs, &sh.abort.flag) {
            return Err(super::read::aborted());
        }
        let (envelope, key_id) = sh.seal_new(&id, &chunk.bytes)?;
        let plain_len = chunk.bytes.len() as u64;
        let pending = PendingChunk {
            id,
            kind: ChunkKind::Manifest,
            key_id,
            envelope,
            refs: chunk.refs,
        };
        let msg = WriteMsg::new(pending, plain_len)?;
        self.tx.send(msg).map_err(|_| super::read::aborted())
    }
}
