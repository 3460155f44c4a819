//! One session's manifest as a tree that is walked lazily.
//!
//! Opening a session reads its manifest once, in order, through [`ManifestReader`] (which checks
//! paths, order and continuations), and keeps only a small head per manifest chunk: the path of
//! its first piece and how many pieces it has, plus the number of hard links to each
//! hard-linked file. An entry is then named by its position (manifest chunk, piece within it);
//! finding a path is a binary search over the chunk heads and one chunk decoded, and listing a
//! directory skips over the subtrees of its subdirectories the same way. Decoded chunks come
//! from the caller (a bounded cache), so a session's memory is its heads, not its entries.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use crate::browse::under;
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::{
    Body, Entry, Extent, ManifestReader, Piece, cmp_paths, decode_pieces,
};
use crate::ids::{ChunkId, SessionId};
use crate::reader::{LostChunk, SessionReader, salvageable};

/// Most manifest chunks of a session the inode numbering can address.
pub(super) const MAX_CHUNKS: usize = 1 << 24;
/// Most pieces in one manifest chunk the inode numbering can address (a 17 MiB chunk of the
/// smallest pieces, 19 bytes each, holds fewer).
pub(super) const MAX_PIECES: usize = 1 << 20;

/// Where an entry is: manifest chunk `seq`, piece `idx` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub seq: u32,
    pub idx: u32,
}

/// The decoded pieces of one manifest chunk.
pub(super) type Pieces = Arc<Vec<Piece>>;

/// What a session keeps of a manifest chunk that could be read.
#[derive(Debug)]
struct Head {
    /// Path of its first piece.
    first: Vec<u8>,
    /// Its first piece continues a file of the chunk before.
    continued: bool,
    /// Number of pieces.
    pieces: u32,
}

/// One opened session.
#[derive(Debug)]
pub(super) struct SessionTree {
    pub session: SessionId,
    root: Vec<ChunkId>,
    /// By chunk: `None` for a chunk that could not be read or decoded.
    heads: Vec<Option<Head>>,
    /// Chunks that could be read, in order (what binary searches run over).
    good: Vec<u32>,
    /// Hard-linked file path → number of hard-link entries naming it.
    links: HashMap<Vec<u8>, u32>,
}

/// Decoded pieces of chunk `seq` of the session (from a cache, or read and decoded).
pub(super) type Load<'a> = dyn FnMut(&SessionTree, u32) -> Result<Pieces> + 'a;

/// Read and decode manifest chunk `seq` of `tree`'s session.
pub(super) fn read_pieces(reader: &SessionReader, tree: &SessionTree, seq: u32) -> Result<Pieces> {
    let id = tree.root[seq as usize];
    let bytes = reader.read_manifest_chunk(tree.session, seq as usize, &id)?;
    let pieces = decode_pieces(&bytes).map_err(|e| {
        e.context(format!(
            "session {}: decoding manifest chunk {seq}",
            tree.session
        ))
    })?;
    Ok(Arc::new(pieces))
}

impl SessionTree {
    /// Read `session`'s manifest once, in order. A manifest chunk that cannot be read or decoded
    /// is told to `lost` and its entries are missing from the tree; any other error fails.
    pub(super) fn open(
        reader: &SessionReader,
        session: SessionId,
        lost: &mut dyn FnMut(LostChunk),
    ) -> Result<SessionTree> {
        let root = reader.manifest_root(session)?;
        if root.len() > MAX_CHUNKS {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "session {session} has {} manifest chunks; mount handles at most {MAX_CHUNKS}",
                    root.len()
                ),
            ));
        }
        let mut manifest = ManifestReader::new();
        let mut heads = Vec::with_capacity(root.len());
        let mut links: HashMap<Vec<u8>, u32> = HashMap::new();
        for (seq, id) in root.iter().enumerate() {
            let (checked, fed) = match reader.read_manifest_chunk(session, seq, id) {
                Ok(bytes) => {
                    let checked = manifest.feed(&bytes).and_then(|entries| {
                        let pieces = decode_pieces(&bytes).map_err(|e| {
                            e.context(format!("session {session}, manifest chunk {seq}"))
                        })?;
                        Ok((entries, pieces))
                    });
                    (checked, true)
                }
                Err(e) => (Err(e), false),
            };
            match checked {
                Ok((entries, pieces)) => {
                    for entry in entries {
                        if let Body::Hardlink { target } = entry.body {
                            *links.entry(target).or_default() += 1;
                        }
                    }
                    heads.push(head_of(&pieces, session, seq)?);
                }
                Err(e) if !salvageable(&e) => return Err(e),
                Err(e) => {
                    lost(LostChunk::skip(&mut manifest, &root, seq, fed, &e));
                    heads.push(None);
                }
            }
        }
        for entry in manifest.finish()? {
            if let Body::Hardlink { target } = entry.body {
                *links.entry(target).or_default() += 1;
            }
        }
        let good = (0..heads.len() as u32)
            .filter(|&s| heads[s as usize].is_some())
            .collect();
        Ok(SessionTree {
            session,
            root,
            heads,
            good,
            links,
        })
    }

    /// The id of manifest chunk `seq`.
    pub(super) fn chunk_id(&self, seq: u32) -> ChunkId {
        self.root[seq as usize]
    }

    /// The root directory's position (the first piece of the manifest).
    pub(super) fn root_pos() -> Pos {
        Pos { seq: 0, idx: 0 }
    }

    /// Number of names of the file at `path` (itself and the hard links to it).
    pub(super) fn nlink(&self, path: &[u8]) -> u32 {
        1 + self.links.get(path).copied().unwrap_or(0)
    }

    /// The entry at `pos`; `None` if there is none (a lost chunk, a position past the end, or a
    /// continuation).
    pub(super) fn entry_at(&self, pos: Pos, load: &mut Load<'_>) -> Result<Option<Entry>> {
        if !self.readable(pos) {
            return Ok(None);
        }
        let pieces = load(self, pos.seq)?;
        Ok(match pieces.get(pos.idx as usize) {
            Some(Piece::Entry(entry)) => Some(entry.clone()),
            _ => None,
        })
    }

    fn readable(&self, pos: Pos) -> bool {
        matches!(self.heads.get(pos.seq as usize), Some(Some(h)) if pos.idx < h.pieces)
    }

    /// The position after `pos`, skipping chunks that could not be read; past the last piece,
    /// the end position (`seq` = number of chunks).
    pub(super) fn next(&self, pos: Pos) -> Pos {
        if let Some(Some(head)) = self.heads.get(pos.seq as usize)
            && pos.idx + 1 < head.pieces
        {
            return Pos {
                seq: pos.seq,
                idx: pos.idx + 1,
            };
        }
        self.chunk_start_from(pos.seq + 1)
    }

    /// The first piece of the first readable chunk at or after `seq`.
    fn chunk_start_from(&self, seq: u32) -> Pos {
        let at = self.good.partition_point(|&s| s < seq);
        Pos {
            seq: self
                .good
                .get(at)
                .copied()
                .unwrap_or(self.heads.len() as u32),
            idx: 0,
        }
    }

    /// The end position: past the last piece.
    pub(super) fn end(&self) -> Pos {
        Pos {
            seq: self.heads.len() as u32,
            idx: 0,
        }
    }

    /// The last readable chunk whose first piece satisfies `before` (a predicate true for a
    /// prefix of the chunks in order).
    fn last_chunk_where(&self, before: impl Fn(&Head) -> bool) -> Option<u32> {
        let n = self.good.partition_point(|&s| {
            before(
                self.heads[s as usize]
                    .as_ref()
                    .expect("good chunks have heads"),
            )
        });
        n.checked_sub(1).map(|i| self.good[i])
    }

    /// The position and entry of `path`, if the session has it.
    pub(super) fn find(&self, path: &[u8], load: &mut Load<'_>) -> Result<Option<(Pos, Entry)>> {
        let Some(seq) = self.last_chunk_where(|h| match cmp_paths(&h.first, path) {
            Ordering::Less => true,
            Ordering::Equal => !h.continued,
            Ordering::Greater => false,
        }) else {
            return Ok(None);
        };
        let pieces = load(self, seq)?;
        for (idx, piece) in pieces.iter().enumerate() {
            if let Piece::Entry(entry) = piece
                && entry.path == path
            {
                return Ok(Some((
                    Pos {
                        seq,
                        idx: idx as u32,
                    },
                    entry.clone(),
                )));
            }
        }
        Ok(None)
    }

    /// The entries directly inside the directory `dir` whose own entry is at `dir_pos`,
    /// starting at `from` (the position after `dir_pos` to start, or one `visit` returned), in
    /// order. `visit` gets each child with the position to resume after it, and returns `false`
    /// to stop (the child was not taken: resume at its own position). Returns where to resume,
    /// or the end position once the directory is exhausted.
    pub(super) fn children(
        &self,
        dir: &[u8],
        from: Pos,
        load: &mut Load<'_>,
        visit: &mut dyn FnMut(Pos, &Entry, Pos) -> Result<bool>,
    ) -> Result<Pos> {
        let mut pos = from;
        let mut pieces: Option<(u32, Pieces)> = None;
        while self.readable(pos) {
            let chunk = match &pieces {
                Some((seq, p)) if *seq == pos.seq => p.clone(),
                _ => {
                    let p = load(self, pos.seq)?;
                    pieces = Some((pos.seq, p.clone()));
                    p
                }
            };
            let Piece::Entry(entry) = &chunk[pos.idx as usize] else {
                pos = self.next(pos);
                continue;
            };
            if entry.path == dir {
                pos = self.next(pos);
                continue;
            }
            if !under(&entry.path, dir) {
                return Ok(self.end());
            }
            let rest = if dir.is_empty() {
                &entry.path[..]
            } else {
                &entry.path[dir.len() + 1..]
            };
            match rest.iter().position(|&b| b == b'/') {
                None => {
                    let after = self.next(pos);
                    if !visit(pos, entry, after)? {
                        return Ok(pos);
                    }
                    pos = after;
                }
                Some(slash) => {
                    // Inside a subdirectory (listed already, or its entry was in a chunk that
                    // could not be read): skip to the end of that subtree.
                    let sub = entry.path[..entry.path.len() - rest.len() + slash].to_vec();
                    pos = self.skip_subtree(&sub, pos);
                }
            }
        }
        Ok(self.end())
    }

    /// From `pos` (inside the subtree of `sub` or at its entry), the first position whose
    /// chunk may hold something after that subtree: the start of the last chunk that still
    /// begins inside or before it, if that is further on, else the next position.
    fn skip_subtree(&self, sub: &[u8], pos: Pos) -> Pos {
        let inside =
            |h: &Head| cmp_paths(&h.first, sub) != Ordering::Greater || under(&h.first, sub);
        match self.last_chunk_where(inside) {
            Some(seq) if seq > pos.seq => Pos { seq, idx: 0 },
            _ => self.next(pos),
        }
    }

    /// The whole extent list of the file whose entry is at `pos` (joining its continuations,
    /// which may be in the following chunks), each with its offset in the file.
    pub(super) fn file_extents(&self, pos: Pos, load: &mut Load<'_>) -> Result<Vec<(u64, Extent)>> {
        let Some(Entry {
            path,
            body: Body::File { size, extents },
            ..
        }) = self.entry_at(pos, load)?
        else {
            return Err(Error::new(ErrorKind::Internal, "not a file entry"));
        };
        let mut out = Vec::with_capacity(extents.len());
        let mut offset = 0u64;
        let push = |extents: Vec<Extent>, out: &mut Vec<(u64, Extent)>, offset: &mut u64| {
            for e in extents {
                let len = e.len();
                out.push((*offset, e));
                *offset += len;
            }
        };
        push(extents, &mut out, &mut offset);
        let mut at = self.next(pos);
        while offset < size {
            let continued = if self.readable(at) {
                match &load(self, at.seq)?[at.idx as usize] {
                    Piece::Continued { path: p, extents } if *p == path => Some(extents.clone()),
                    _ => None,
                }
            } else {
                None
            };
            let Some(extents) = continued else {
                return Err(Error::corrupt(format!(
                    "session {}: the rest of {:?} was in a manifest chunk that could not be read",
                    self.session,
                    String::from_utf8_lossy(&path)
                )));
            };
            push(extents, &mut out, &mut offset);
            at = self.next(at);
        }
        Ok(out)
    }
}

/// The head of a decoded chunk.
fn head_of(pieces: &[Piece], session: SessionId, seq: usize) -> Result<Option<Head>> {
    if pieces.len() > MAX_PIECES {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "session {session}: manifest chunk {seq} has {} entries; mount handles at most \
                 {MAX_PIECES}",
                pieces.len()
            ),
        ));
    }
    let (first, continued) = match pieces.first() {
        Some(Piece::Entry(e)) => (e.path.clone(), false),
        Some(Piece::Continued { path, .. }) => (path.clone(), true),
        None => return Ok(None),
    };
    Ok(Some(Head {
        first,
        continued,
        pieces: pieces.len() as u32,
    }))
}
