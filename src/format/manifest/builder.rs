//! The writer side: entries in, manifest chunks out, cut by the keyed rule of
//! format-spec/manifest.md "Cut rule". It holds at most the current chunk.

use super::entry::{self, Problem};
use super::order::{OrderCheck, show};
use super::{
    Body, Entry, Extent, MANIFEST_MAGIC, MAX_ENTRY_LEN, MAX_EXTENTS_PER_ENTRY, ManifestChunk,
    ManifestParams, magic_of, split_extents,
};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::ChunkId;

/// Splits a stream of entries into manifest chunks by the keyed cut rule.
///
/// It refuses ([`ErrorKind::Internal`]) any entry or order that a [`super::ManifestReader`]
/// would refuse, so that a bug in the tree walker cannot produce a manifest that restore
/// rejects. After any error the builder refuses every further call: its output would be
/// incomplete.
pub struct ManifestBuilder {
    params: ManifestParams,
    cut_key: [u8; 32],
    order: OrderCheck,
    /// The current chunk, starting with the magic.
    buf: Vec<u8>,
    /// The current chunk's length as the cut rule counts it: inline content left out.
    weight: u64,
    has_entry: bool,
    /// The version the current chunk needs (format-spec/manifest.md): 1, 2 or 3.
    version: u8,
    refs: Vec<ChunkId>,
    /// Reused encoding buffer for one entry.
    scratch: Vec<u8>,
    failed: bool,
}

impl ManifestBuilder {
    /// A builder with the repository's parameters and the manifest cut key
    /// (`derive_key("rsbackup 2026-11 manifest cut v1", secret)`).
    pub fn new(params: ManifestParams, cut_key: [u8; 32]) -> Self {
        ManifestBuilder {
            params,
            cut_key,
            order: OrderCheck::default(),
            buf: MANIFEST_MAGIC.to_vec(),
            weight: MANIFEST_MAGIC.len() as u64,
            has_entry: false,
            version: 1,
            refs: Vec::new(),
            scratch: Vec::new(),
            failed: false,
        }
    }

    /// Append an entry (in manifest order); returns the chunks completed by it (zero, one, or
    /// more when a long extent list is split).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] when the entry is too large to store (a path over
    /// 65,536 bytes, an encoded entry over 16 MiB): the builder is left unchanged, and the
    /// caller may push a replacement for that path (say, kind 10 without the xattrs) or skip it
    /// (and, for a directory, its contents). [`ErrorKind::Internal`] for anything a correct
    /// walker never produces (bad order, unsorted xattrs, extents not adding up to the size,
    /// bad parameters): the builder then refuses every further call.
    pub fn push(&mut self, entry: &Entry) -> Result<Vec<ManifestChunk>> {
        if self.failed {
            return Err(Error::new(
                ErrorKind::Internal,
                "manifest builder used after an earlier error",
            ));
        }
        let result = self.push_inner(entry);
        if let Err(err) = &result
            && err.kind() != ErrorKind::InvalidInput
        {
            self.failed = true;
        }
        result
    }

    fn push_inner(&mut self, entry: &Entry) -> Result<Vec<ManifestChunk>> {
        let p = self.params;
        if !(p.min_size < p.avg_size && p.avg_size <= p.max_size)
            || p.max_size as usize > MAX_ENTRY_LEN
        {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "manifest parameters min {} avg {} max {} break min < avg <= max <= 16 MiB",
                    p.min_size, p.avg_size, p.max_size
                ),
            ));
        }
        let path = &entry.path;
        let bug = |problem: Problem| {
            Error::new(
                ErrorKind::Internal,
                format!("refusing to write manifest entry {}: {problem}", show(path)),
            )
        };
        if path.len() > super::MAX_PATH_LEN {
            return Err(Error::invalid(format!(
                "cannot store path {}: longer than the manifest's limit of 65536 bytes",
                show(path)
            )));
        }
        entry::check_meta(&entry.meta).map_err(bug)?;
        let pieces: Vec<&[Extent]> = match &entry.body {
            Body::File { size, extents } => {
                let total = entry::extents_len(extents).map_err(bug)?;
                if total != *size {
                    return Err(bug(format!(
                        "extents add up to {total} bytes, the size is {size}"
                    )));
                }
                split_extents(extents)
            }
            _ => vec![&[]],
        };
        let (first, rest) = pieces.split_first().expect("at least one piece");
        let first: &[Extent] = first;
        // Encode before touching any state: an entry too large to store is refused with the
        // builder unchanged, so the caller can push a replacement for that path. Continuations
        // are at most 32768 extents and one path, far below the limit.
        let too_large = |what: String| {
            Error::invalid(format!(
                "cannot store manifest entry {}: {what} (too many or too large extended \
                 attributes?)",
                show(path)
            ))
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let encoded = entry::encode_entry(entry, first, &mut scratch).map_err(too_large);
        let encoded = encoded.and_then(|()| match scratch.len() {
            len if len > MAX_ENTRY_LEN => Err(too_large(format!(
                "it encodes to {len} bytes, more than the 16 MiB limit"
            ))),
            _ => Ok(()),
        });
        let result = encoded.and_then(|()| self.append_all(entry, &scratch, first, rest));
        self.scratch = scratch;
        result
    }

    /// Check the order and append an encoded entry and its continuations.
    fn append_all(
        &mut self,
        entry: &Entry,
        encoded: &[u8],
        first: &[Extent],
        rest: &[&[Extent]],
    ) -> Result<Vec<ManifestChunk>> {
        let path = &entry.path;
        let bug = |problem: Problem| {
            Error::new(
                ErrorKind::Internal,
                format!("refusing to write manifest entry {}: {problem}", show(path)),
            )
        };
        let hardlink = match &entry.body {
            Body::Hardlink { target } => Some(target.as_slice()),
            _ => None,
        };
        let is_dir = matches!(entry.body, Body::Dir);
        self.order.entry(path, is_dir, hardlink).map_err(bug)?;
        if let Body::File { size, .. } = &entry.body {
            self.order.file(path, *size, first).map_err(bug)?;
        }
        let mut out = Vec::new();
        self.append(encoded, first, path, 1, &mut out)?;
        let mut piece_bytes = Vec::new();
        let mut before = first.len();
        for &piece in rest {
            self.order.continued(path, piece, true).map_err(bug)?;
            piece_bytes.clear();
            entry::encode_continued(path, piece, &mut piece_bytes).map_err(bug)?;
            // A continuation of a short piece is what a version 3 chunk may hold; one after a
            // full entry of 32768 extents is what every version reads.
            let version = if before < MAX_EXTENTS_PER_ENTRY { 3 } else { 1 };
            self.append(&piece_bytes, piece, path, version, &mut out)?;
            before = piece.len();
        }
        Ok(out)
    }

    /// Apply the cut rule around one encoded entry.
    fn append(
        &mut self,
        encoded: &[u8],
        extents: &[Extent],
        path: &[u8],
        version: u8,
        out: &mut Vec<ManifestChunk>,
    ) -> Result<()> {
        let e = encoded.len() as u64;
        if encoded.len() > MAX_ENTRY_LEN {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "manifest entry {} of {e} bytes reached the cut rule",
                    show(path)
                ),
            ));
        }
        let (min, avg, max) = (
            u64::from(self.params.min_size),
            u64::from(self.params.avg_size),
            u64::from(self.params.max_size),
        );
        // Rule 1: never let a chunk grow past max, unless the entry alone does.
        if self.has_entry && self.buf.len() as u64 + e > max {
            out.push(self.emit());
        }
        // Inline content does not count for rule 2, so that an edit of a small file (new
        // content, size and mtime) never moves a cut: only its own chunk changes.
        let inline_bytes: u64 = extents
            .iter()
            .map(|x| match x {
                Extent::Inline { data } => data.len() as u64,
                _ => 0,
            })
            .sum();
        let (weight, hashed) = if extents.iter().any(Extent::is_inline) {
            // Kind, path length and path: the start of the encoding.
            (e - inline_bytes, &encoded[..5 + path.len()])
        } else {
            (e, encoded)
        };
        self.buf.extend_from_slice(encoded);
        self.weight += weight;
        self.has_entry = true;
        self.version = self.version.max(version);
        for extent in extents {
            match extent {
                Extent::Chunk { id, .. } => self.refs.push(*id),
                // A chunk holding inline content is version 2 (or 3); any other stays version
                // 1, byte for byte what earlier writers produced, so it still dedups with theirs.
                Extent::Inline { .. } => self.version = self.version.max(2),
                Extent::Hole { .. } => {}
            }
        }
        // Rule 2: a keyed hash of the entry, with a cut probability proportional to its length,
        // so that the expected chunk length past min is avg - min whatever the entry sizes.
        let hash = blake3::keyed_hash(&self.cut_key, hashed);
        let h = u32::from_le_bytes(hash.as_bytes()[..4].try_into().expect("4 bytes"));
        let p = ((u128::from(weight) << 32) / u128::from(avg - min)).min(u128::from(u32::MAX));
        if self.weight >= min && u128::from(h) < p {
            out.push(self.emit());
        }
        Ok(())
    }

    fn emit(&mut self) -> ManifestChunk {
        let mut bytes = std::mem::replace(&mut self.buf, MANIFEST_MAGIC.to_vec());
        bytes[..8].copy_from_slice(magic_of(self.version));
        self.version = 1;
        self.weight = MANIFEST_MAGIC.len() as u64;
        let mut refs = std::mem::take(&mut self.refs);
        refs.sort_unstable();
        refs.dedup();
        self.has_entry = false;
        ManifestChunk { bytes, refs }
    }

    /// Emit the last chunk, if any. After a `push` error there is none: the manifest is
    /// incomplete and no session may be recorded from it.
    pub fn finish(mut self) -> Option<ManifestChunk> {
        (self.has_entry && !self.failed).then(|| self.emit())
    }
}
