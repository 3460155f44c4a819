//! Lost stretches of a manifest: runs of manifest chunks that could not be read, each reported
//! once as the range of paths between the last entry before it and the first entry after it
//! (manifest order), so that the administrator knows what a restore could not bring back.

use crate::ingest::PathError;
use crate::reader::LostChunk;
use crate::restore::display;

/// Collects lost chunks as the walk meets them.
#[derive(Default)]
pub(super) struct Gaps {
    /// The last entry seen before the open gap (or so far).
    last: Option<Vec<u8>>,
    /// The gap being met: its chunks and first error.
    open: Option<Open>,
    /// Finished ranges.
    pub(super) errors: Vec<PathError>,
    /// Manifest chunks lost in all.
    pub(super) chunks: u64,
}

struct Open {
    after: Option<Vec<u8>>,
    seqs: Vec<usize>,
    count: usize,
    error: String,
}

impl Gaps {
    /// A chunk could not be read.
    pub(super) fn lost(&mut self, chunk: LostChunk) {
        self.chunks += 1;
        if let Some(held) = &chunk.held {
            self.errors.push(PathError {
                path: display(held),
                message: format!(
                    "the rest of its content was described by manifest chunk {}, which could \
                     not be read",
                    chunk.seq
                ),
            });
        }
        match &mut self.open {
            Some(open) => open.seqs.push(chunk.seq),
            None => {
                self.open = Some(Open {
                    after: self.last.clone(),
                    seqs: vec![chunk.seq],
                    count: chunk.count,
                    error: chunk.error,
                });
            }
        }
    }

    /// An entry was read (call before handing it on).
    pub(super) fn entry(&mut self, path: &[u8]) {
        self.close(Some(path));
        self.last = Some(path.to_vec());
    }

    /// The walk ended.
    pub(super) fn finish(&mut self) {
        self.close(None);
    }

    fn close(&mut self, before: Option<&[u8]>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let from = open
            .after
            .as_deref()
            .map_or("the start of the session".to_string(), display);
        let to = before.map_or("the end of the session".to_string(), display);
        let chunks = if open.seqs.len() == 1 {
            format!("manifest chunk {}", open.seqs[0])
        } else {
            format!(
                "manifest chunks {}-{}",
                open.seqs[0],
                open.seqs[open.seqs.len() - 1]
            )
        };
        self.errors.push(PathError {
            path: format!("{from} .. {to}"),
            message: format!(
                "every entry after {from} and before {to} is lost: {chunks} of {} (counting \
                 from 0) could not be read ({})",
                open.count, open.error
            ),
        });
    }
}
