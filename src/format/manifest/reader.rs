//! The reader side: manifest chunk plaintexts in session order, complete entries out.

use super::entry::{Cursor, Piece, Problem};
use super::order::{OrderCheck, show};
use super::{
    Body, Entry, MANIFEST_MAGIC, MANIFEST_MAGIC_V2, MANIFEST_MAGIC_V3, MAX_CHUNK_LEN, MAX_ENTRY_LEN,
};
use crate::error::{Error, ErrorKind, Result};

/// Decodes manifest chunks in session order into entries, joining file continuations and
/// checking paths, order (pre-order, parent seen as a directory) and hard-link targets.
///
/// Every refusal is [`ErrorKind::Corrupt`] (or [`ErrorKind::UnsupportedVersion`] for an unknown
/// magic) with the chunk number (counting from 0), the byte offset and the entry's path. A
/// hard-link target is only checked to come earlier and not to be a directory above the link:
/// whether it exists as a file is left to restore, which keeps memory bounded.
pub struct ManifestReader {
    order: OrderCheck,
    chunks: u64,
    /// A file whose continuations are still to come.
    held: Option<Entry>,
    failed: bool,
    /// A chunk was lost just before: skip continuations of a file that began in it and take
    /// the next entry's ancestors as open.
    resync: bool,
    /// Chunks lost so far.
    lost: u64,
}

impl ManifestReader {
    /// A reader for one session.
    pub fn new() -> Self {
        ManifestReader {
            order: OrderCheck::default(),
            chunks: 0,
            held: None,
            failed: false,
            resync: false,
            lost: 0,
        }
    }

    /// Go on after a manifest chunk that could not be read or decoded (a damaged or missing
    /// chunk): its entries are lost and decoding resumes with the next chunk fed. `fed` says
    /// whether the lost chunk went through [`ManifestReader::feed`] (which failed) or was never
    /// read. Returns the path of a file held back for continuations, lost with the chunk.
    pub fn skip_chunk(&mut self, fed: bool) -> Option<Vec<u8>> {
        if !fed {
            self.chunks += 1;
        }
        self.failed = false;
        self.resync = true;
        self.lost += 1;
        self.order.drop_pending();
        self.held.take().map(|e| e.path)
    }

    /// Chunks skipped with [`ManifestReader::skip_chunk`].
    pub fn lost_chunks(&self) -> u64 {
        self.lost
    }

    /// Feed the next manifest chunk's plaintext; returns its complete entries. An entry whose
    /// continuations may follow in the next chunk is held back until then.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Entry>> {
        if self.failed {
            return Err(Error::new(
                ErrorKind::Internal,
                "manifest reader used after an earlier error",
            ));
        }
        let result = self.feed_inner(chunk);
        self.chunks += 1;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn corrupt(&self, offset: usize, path: Option<&[u8]>, problem: Problem) -> Error {
        let at = match path {
            Some(path) => format!(", entry {}", show(path)),
            None => String::new(),
        };
        Error::corrupt(format!(
            "manifest chunk {} (counting from 0), offset {offset}{at}: {problem}",
            self.chunks
        ))
    }

    fn feed_inner(&mut self, chunk: &[u8]) -> Result<Vec<Entry>> {
        if chunk.len() > MAX_CHUNK_LEN {
            let len = chunk.len();
            return Err(self.corrupt(0, None, format!("{len} bytes, more than 17 MiB")));
        }
        if chunk.len() < MANIFEST_MAGIC.len() {
            return Err(self.corrupt(0, None, "too short for the magic".into()));
        }
        let split = &chunk[..8] == MANIFEST_MAGIC_V3;
        let inline = &chunk[..8] == MANIFEST_MAGIC_V2 || split;
        if &chunk[..8] != MANIFEST_MAGIC && !inline {
            let what = if chunk[..7] == MANIFEST_MAGIC[..7] {
                format!("manifest version {:?}", char::from(chunk[7]))
            } else {
                format!("magic {:?}", String::from_utf8_lossy(&chunk[..8]))
            };
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "manifest chunk {} (counting from 0): {what} is not known to this build \
                     (expected {:?}, {:?} or {:?}); a newer rsbackup may read it",
                    self.chunks,
                    String::from_utf8_lossy(MANIFEST_MAGIC),
                    String::from_utf8_lossy(MANIFEST_MAGIC_V2),
                    String::from_utf8_lossy(MANIFEST_MAGIC_V3)
                ),
            ));
        }
        if chunk.len() == MANIFEST_MAGIC.len() {
            return Err(self.corrupt(8, None, "the chunk holds no entries".into()));
        }
        let mut out = Vec::new();
        let mut cur = Cursor::new(chunk, MANIFEST_MAGIC.len(), inline);
        while !cur.is_empty() {
            let start = cur.pos();
            let kind = cur
                .u8("the entry kind")
                .map_err(|p| self.corrupt(start, None, p))?;
            let path = cur
                .lp32("the path")
                .map_err(|p| self.corrupt(start, None, p))?;
            let piece = cur
                .entry_rest(kind, path)
                .map_err(|p| self.corrupt(start, Some(path), p))?;
            if self.resync {
                match &piece {
                    // The rest of a file whose first entry was lost.
                    Piece::Continued { .. } => continue,
                    Piece::Entry(entry) => {
                        self.order.resync(&entry.path);
                        self.resync = false;
                    }
                }
            }
            if cur.pos() - start > MAX_ENTRY_LEN {
                let len = cur.pos() - start;
                return Err(self.corrupt(start, Some(path), format!("{len} bytes, over 16 MiB")));
            }
            self.accept(piece, split, &mut out)
                .map_err(|p| self.corrupt(start, Some(path), p))?;
        }
        Ok(out)
    }

    fn accept(&mut self, piece: Piece, split: bool, out: &mut Vec<Entry>) -> Result<(), Problem> {
        match piece {
            Piece::Entry(entry) => {
                let hardlink = match &entry.body {
                    Body::Hardlink { target } => Some(target.as_slice()),
                    _ => None,
                };
                let is_dir = matches!(entry.body, Body::Dir);
                self.order.entry(&entry.path, is_dir, hardlink)?;
                if let Body::File { size, extents } = &entry.body {
                    self.order.file(&entry.path, *size, extents)?;
                    if self.order.file_pending() {
                        self.held = Some(entry);
                        return Ok(());
                    }
                }
                out.push(entry);
            }
            Piece::Continued { path, extents } => {
                self.order.continued(&path, &extents, split)?;
                let Some(Entry {
                    body: Body::File { extents: all, .. },
                    ..
                }) = &mut self.held
                else {
                    return Err("a continuation without a file before it".into());
                };
                all.extend(extents);
                if !self.order.file_pending() {
                    out.extend(self.held.take());
                }
            }
        }
        Ok(())
    }

    /// End of the session: returns any held-back entry. Fails when the manifest is empty or
    /// ends inside a file whose extents do not add up to its size.
    pub fn finish(self) -> Result<Vec<Entry>> {
        if self.lost > 0 {
            // After a gap the stream cannot be held to its end rules; what was held back is
            // complete as far as the reader knows only if nothing is pending.
            return Ok(if self.order.file_pending() {
                Vec::new()
            } else {
                self.held.into_iter().collect()
            });
        }
        if self.failed {
            return Err(Error::new(
                ErrorKind::Internal,
                "manifest reader finished after an earlier error",
            ));
        }
        self.order.finish().map_err(|p| {
            Error::corrupt(format!(
                "manifest of {} chunks is incomplete: {p}",
                self.chunks
            ))
        })?;
        Ok(self.held.into_iter().collect())
    }
}

impl Default for ManifestReader {
    fn default() -> Self {
        Self::new()
    }
}

/// The pieces of one manifest chunk, decoded on its own: entries, and continuations of a file
/// whose first entry came earlier (not joined). No order or path checks beyond what decoding an
/// entry needs: for a reader that has already read the session in order once (`mount`) or
/// that rebuilds lost reference lists. `Corrupt` if it does not decode.
pub fn decode_pieces(chunk: &[u8]) -> Result<Vec<Piece>> {
    let inline = chunk.len() > MANIFEST_MAGIC.len()
        && (&chunk[..8] == MANIFEST_MAGIC_V2 || &chunk[..8] == MANIFEST_MAGIC_V3);
    if chunk.len() <= MANIFEST_MAGIC.len() || (&chunk[..8] != MANIFEST_MAGIC && !inline) {
        return Err(Error::corrupt("not a manifest chunk"));
    }
    let mut pieces = Vec::new();
    let mut cur = Cursor::new(chunk, MANIFEST_MAGIC.len(), inline);
    while !cur.is_empty() {
        let start = cur.pos();
        let bad = |p: Problem| Error::corrupt(format!("manifest chunk, offset {start}: {p}"));
        let kind = cur.u8("the entry kind").map_err(bad)?;
        let path = cur.lp32("the path").map_err(bad)?;
        pieces.push(cur.entry_rest(kind, path).map_err(bad)?);
    }
    Ok(pieces)
}

/// The chunk ids named by the extents of one manifest chunk's entries (its references), sorted
/// and without repeats, decoded on its own (see [`decode_pieces`]). For rebuilding lost
/// reference lists; `Corrupt` if it does not decode.
pub fn chunk_references(chunk: &[u8]) -> Result<Vec<crate::ids::ChunkId>> {
    let mut refs = Vec::new();
    for piece in decode_pieces(chunk)? {
        let extents = match piece {
            Piece::Entry(Entry {
                body: Body::File { extents, .. },
                ..
            }) => extents,
            Piece::Continued { extents, .. } => extents,
            Piece::Entry(_) => continue,
        };
        refs.extend(extents.into_iter().filter_map(|e| match e {
            super::Extent::Chunk { id, .. } => Some(id),
            super::Extent::Hole { .. } | super::Extent::Inline { .. } => None,
        }));
    }
    refs.sort();
    refs.dedup();
    Ok(refs)
}
