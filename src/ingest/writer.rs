//! The one thread that owns the pack writer: appends chunks in the order they were submitted
//! and, as packs get committed, tells the in-flight map to forget their chunks.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::Shared;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ChunkId, WriterId};
use crate::index::ChunkKind;
use crate::store::{PackWriter, PendingChunk};

/// A sealed chunk on its way to the pack writer.
pub(super) struct WriteMsg {
    pub chunk: PendingChunk,
    /// The record's BLAKE3, computed by the sender (the writer is one thread; the senders are
    /// many).
    pub record_hash: [u8; 32],
    /// Plaintext length (for statistics).
    pub plain_len: u64,
}

impl WriteMsg {
    pub fn new(chunk: PendingChunk, plain_len: u64) -> Result<WriteMsg> {
        Ok(WriteMsg {
            record_hash: crate::store::record_hash(&chunk)?,
            chunk,
            plain_len,
        })
    }
}

/// Envelope bytes that may wait for the pack writer. Generous, so that sealing goes on while
/// the writer commits a pack or waits for its fsync (a count of 8 chunks stalled every worker
/// behind each commit of a pack of small files); bounded, so memory is.
const WRITE_BUDGET: usize = 12 << 20;

/// Bytes queued for the writer, and whether it has stopped taking any.
#[derive(Default)]
struct Budget {
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side of the writer's queue (one per worker and the consumer).
#[derive(Clone)]
pub(super) struct WriteQueue {
    tx: Sender<WriteMsg>,
    budget: Arc<Budget>,
}

/// The writer's side of the queue. Dropping it (the writer is done, or panicked) releases
/// every sender waiting for room.
pub(super) struct WriteInbox {
    rx: Receiver<WriteMsg>,
    budget: Arc<Budget>,
}

/// A queue of sealed chunks for the pack writer, bounded by [`WRITE_BUDGET`] bytes.
pub(super) fn queue() -> (WriteQueue, WriteInbox) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let budget = Arc::new(Budget::default());
    (
        WriteQueue {
            tx,
            budget: Arc::clone(&budget),
        },
        WriteInbox { rx, budget },
    )
}

impl WriteQueue {
    /// Queue a chunk, waiting while the queue holds [`WRITE_BUDGET`] bytes (a chunk always
    /// fits an empty queue). `Err` once the writer is gone.
    pub fn send(&self, msg: WriteMsg) -> std::result::Result<(), ()> {
        // What the envelope holds in memory, which may exceed its length.
        let n = msg.chunk.envelope.capacity();
        let mut state = self.budget.lock();
        loop {
            if state.1 {
                return Err(());
            }
            if state.0 == 0 || state.0 + n <= WRITE_BUDGET {
                break;
            }
            state = self
                .budget
                .freed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.0 += n;
        drop(state);
        self.tx.send(msg).map_err(|_| ())
    }
}

impl WriteInbox {
    fn recv(&self) -> Option<WriteMsg> {
        let msg = self.rx.recv().ok()?;
        self.budget.lock().0 -= msg.chunk.envelope.capacity();
        self.budget.freed.notify_all();
        Some(msg)
    }
}

impl Drop for WriteInbox {
    fn drop(&mut self) {
        self.budget.lock().1 = true;
        self.budget.freed.notify_all();
    }
}

/// What the writer added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Written {
    pub chunks: u64,
    pub stored_bytes: u64,
    pub plain_bytes: u64,
}

// Check for committed chunks only once this many are waiting, and then every CHECK_EVERY
// appends: one indexed lookup per check.
const FORGET_AFTER: usize = 1024;
const CHECK_EVERY: u64 = 64;
/// Sealed packs whose fsyncs may run behind the writer (each holds only its chunk rows).
const SYNCS_IN_FLIGHT: usize = 2;

/// Run until every sender is gone. After an error (recorded in `sh.abort`) the channel is
/// still drained, so no worker blocks on a full channel.
pub(super) fn run(sh: &Shared<'_>, writer: &WriterId, rx: WriteInbox) -> Written {
    match write_all(sh, writer, &rx) {
        Ok(w) => w,
        Err(e) => {
            sh.abort.fail(e);
            while rx.recv().is_some() {}
            Written::default()
        }
    }
}

fn write_all(sh: &Shared<'_>, writer: &WriterId, rx: &WriteInbox) -> Result<Written> {
    let index = sh.repo.index()?;
    let mut packs = PackWriter::new(
        sh.repo.root(),
        &index,
        writer,
        sh.repo.config().pack_target_size,
    );
    // Write the next pack while the last one's fsyncs run: on a slow disk they would otherwise
    // stall every worker behind this thread. Packs are still committed in order.
    packs.overlap_syncs(SYNCS_IN_FLIGHT);
    let mut plain_bytes = 0u64;
    // Record bytes appended so far, for the quota.
    let mut stored_bytes = 0u64;
    let mut appended = 0u64;
    let mut uncommitted: VecDeque<ChunkId> = VecDeque::new();
    while let Some(msg) = rx.recv() {
        if sh.abort.is_set() {
            // Drain; the session will not be committed.
            continue;
        }
        let id = msg.chunk.id;
        let data = msg.chunk.kind == ChunkKind::Data;
        let stored = msg.chunk.envelope.len() as u64;
        if packs.append_hashed(msg.chunk, msg.record_hash)? {
            plain_bytes += msg.plain_len;
            stored_bytes += stored;
            appended += 1;
            if let Some(limit) = sh.decode.new_bytes_limit
                && stored_bytes > limit
            {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "the session's new data crossed {limit} bytes (the client's quota) in \
                         the repository"
                    ),
                ));
            }
            if data {
                uncommitted.push_back(id);
            }
        }
        if uncommitted.len() >= FORGET_AFTER && appended.is_multiple_of(CHECK_EVERY) {
            // Packs are committed in append order, so committed chunks are a prefix.
            let mut done = Vec::new();
            while let Some(front) = uncommitted.front() {
                if !index.has_chunk(front)? {
                    break;
                }
                done.push(*front);
                uncommitted.pop_front();
            }
            // Lookups renew their snapshots before they can miss what is forgotten here.
            sh.indexes.bump();
            sh.inflight.forget(&done);
        }
    }
    if sh.abort.is_set() {
        return Ok(Written::default());
    }
    let stats = packs.finish()?;
    Ok(Written {
        chunks: stats.chunks,
        stored_bytes: stats.bytes,
        plain_bytes,
    })
}
