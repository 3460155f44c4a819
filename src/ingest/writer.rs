//! The one thread that owns the pack writer: appends chunks in the order they were submitted
//! and, as packs get committed, tells the in-flight map to forget their chunks.

use std::collections::VecDeque;

use crossbeam_channel::Receiver;

use super::Shared;
use crate::error::Result;
use crate::ids::{ChunkId, WriterId};
use crate::index::ChunkKind;
use crate::store::{PackWriter, PendingChunk};

/// A sealed chunk on its way to the pack writer.
pub(super) struct WriteMsg {
    pub chunk: PendingChunk,
    /// Plaintext length (for statistics).
    pub plain_len: u64,
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
pub(super) fn run(sh: &Shared<'_>, writer: &WriterId, rx: Receiver<WriteMsg>) -> Written {
    match write_all(sh, writer, &rx) {
        Ok(w) => w,
        Err(e) => {
            sh.abort.fail(e);
            for _ in rx {}
            Written::default()
        }
    }
}

fn write_all(sh: &Shared<'_>, writer: &WriterId, rx: &Receiver<WriteMsg>) -> Result<Written> {
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
    let mut appended = 0u64;
    let mut uncommitted: VecDeque<ChunkId> = VecDeque::new();
    for msg in rx.iter() {
        if sh.abort.is_set() {
            // Drain; the session will not be committed.
            continue;
        }
        let id = msg.chunk.id;
        let data = msg.chunk.kind == ChunkKind::Data;
        if packs.append(msg.chunk)? {
            plain_bytes += msg.plain_len;
            appended += 1;
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
