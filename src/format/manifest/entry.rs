//! Entry and extent bytes (format-spec/manifest.md "Entry"): encoders, a bounds-checked cursor
//! for decoding, and the per-entry checks shared by the builder and the reader so that both
//! accept exactly the same entries.

use super::{Body, Entry, Extent, MAX_EXTENTS_PER_ENTRY, MAX_INLINE_LEN, Meta};
use crate::ids::ChunkId;

pub(super) const KIND_DIR: u8 = 1;
pub(super) const KIND_FILE: u8 = 2;
pub(super) const KIND_SYMLINK: u8 = 3;
pub(super) const KIND_HARDLINK: u8 = 4;
pub(super) const KIND_CHARDEV: u8 = 5;
pub(super) const KIND_BLOCKDEV: u8 = 6;
pub(super) const KIND_FIFO: u8 = 7;
pub(super) const KIND_SOCKET: u8 = 8;
pub(super) const KIND_CONTINUED: u8 = 9;
pub(super) const KIND_UNREADABLE: u8 = 10;

const TAG_CHUNK: u8 = 0;
const TAG_HOLE: u8 = 1;
const TAG_INLINE: u8 = 2;
/// Smallest encoded extent (a hole): bounds preallocation by the bytes actually present.
const MIN_EXTENT_LEN: usize = 9;

/// What is wrong with an entry, in words; the caller adds where and picks the error kind.
pub(super) type Problem = String;

/// One decoded manifest entry as stored: a kind-2 entry carries only its own extents; a kind-9
/// entry is a continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// An entry of kinds 1-8 or 10 (a file with only the extents of this entry).
    Entry(Entry),
    /// A kind-9 entry: more extents of the file entry before it.
    Continued {
        /// The file's path.
        path: Vec<u8>,
        /// Its further extents.
        extents: Vec<Extent>,
    },
}

/// The kind byte of a body.
pub(super) fn kind_of(body: &Body) -> u8 {
    match body {
        Body::Dir => KIND_DIR,
        Body::File { .. } => KIND_FILE,
        Body::Symlink { .. } => KIND_SYMLINK,
        Body::Hardlink { .. } => KIND_HARDLINK,
        Body::CharDev { .. } => KIND_CHARDEV,
        Body::BlockDev { .. } => KIND_BLOCKDEV,
        Body::Fifo => KIND_FIFO,
        Body::Socket => KIND_SOCKET,
        Body::Unreadable { .. } => KIND_UNREADABLE,
    }
}

fn put_lp32(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), Problem> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| format!("{what} is {} bytes, more than a u32 length", bytes.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_extent(extent: &Extent, out: &mut Vec<u8>) {
    match extent {
        Extent::Chunk { len, id } => {
            out.push(TAG_CHUNK);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&id.0);
        }
        Extent::Hole { len } => {
            out.push(TAG_HOLE);
            out.extend_from_slice(&len.to_le_bytes());
        }
        Extent::Inline { data } => {
            out.push(TAG_INLINE);
            // check_extent refuses longer ones before anything is encoded.
            let len = u16::try_from(data.len()).expect("inline extent over 65535 bytes");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(data);
        }
    }
}

/// `extent count u32, extents`.
pub(super) fn put_extents(extents: &[Extent], out: &mut Vec<u8>) {
    // A list of 2^32 extents would need more than 150 GiB of memory to exist at all.
    let count = u32::try_from(extents.len()).expect("extent list longer than u32::MAX");
    out.extend_from_slice(&count.to_le_bytes());
    for extent in extents {
        put_extent(extent, out);
    }
}

/// Encode a non-continuation entry; for a file, `extents` are the extents of this piece (at
/// most [`MAX_EXTENTS_PER_ENTRY`]), the rest going into kind-9 entries.
pub(super) fn encode_entry(
    entry: &Entry,
    extents: &[Extent],
    out: &mut Vec<u8>,
) -> Result<(), Problem> {
    out.push(kind_of(&entry.body));
    put_lp32(out, &entry.path, "the path")?;
    let m = &entry.meta;
    out.extend_from_slice(&m.mode.to_le_bytes());
    out.extend_from_slice(&m.uid.to_le_bytes());
    out.extend_from_slice(&m.gid.to_le_bytes());
    out.extend_from_slice(&m.mtime_sec.to_le_bytes());
    out.extend_from_slice(&m.mtime_nsec.to_le_bytes());
    let count = u32::try_from(m.xattrs.len()).map_err(|_| "too many xattrs".to_string())?;
    out.extend_from_slice(&count.to_le_bytes());
    for (name, value) in &m.xattrs {
        let len = u16::try_from(name.len())
            .map_err(|_| format!("xattr name is {} bytes, more than 65535", name.len()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(name);
        put_lp32(out, value, "an xattr value")?;
    }
    match &entry.body {
        Body::Dir | Body::Fifo | Body::Socket => {}
        Body::File { size, .. } => {
            out.extend_from_slice(&size.to_le_bytes());
            put_extents(extents, out);
        }
        Body::Symlink { target } => put_lp32(out, target, "the symlink target")?,
        Body::Hardlink { target } => put_lp32(out, target, "the hard link target")?,
        Body::CharDev { rdev } | Body::BlockDev { rdev } => {
            out.extend_from_slice(&rdev.to_le_bytes())
        }
        Body::Unreadable { message } => put_lp32(out, message.as_bytes(), "the message")?,
    }
    Ok(())
}

/// Encode a kind-9 continuation.
pub(super) fn encode_continued(
    path: &[u8],
    extents: &[Extent],
    out: &mut Vec<u8>,
) -> Result<(), Problem> {
    out.push(KIND_CONTINUED);
    put_lp32(out, path, "the path")?;
    put_extents(extents, out);
    Ok(())
}

/// Checks on metadata that the encoding alone does not enforce.
pub(super) fn check_meta(meta: &Meta) -> Result<(), Problem> {
    if meta.mode & !0o7777 != 0 {
        return Err(format!(
            "mode {:o} has bits outside 0o7777 (the file type is the entry kind)",
            meta.mode
        ));
    }
    if meta.mtime_nsec >= 1_000_000_000 {
        return Err(format!(
            "mtime nanoseconds {} out of range (must be below 10^9)",
            meta.mtime_nsec
        ));
    }
    for (i, (name, _)) in meta.xattrs.iter().enumerate() {
        if name.is_empty() || name.contains(&0) {
            return Err(format!(
                "xattr name {:?} is empty or contains a NUL byte",
                String::from_utf8_lossy(name)
            ));
        }
        if i > 0 && meta.xattrs[i - 1].0 >= *name {
            return Err(format!(
                "xattr names not sorted and unique: {:?} after {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&meta.xattrs[i - 1].0)
            ));
        }
    }
    Ok(())
}

/// Checks on one extent: no empty extent, no inline extent over [`MAX_INLINE_LEN`].
pub(super) fn check_extent(extent: &Extent) -> Result<(), Problem> {
    match extent {
        Extent::Chunk { len: 0, .. } => Err("a chunk extent has length 0".into()),
        Extent::Hole { len: 0 } => Err("a hole extent has length 0".into()),
        Extent::Inline { data } if data.is_empty() => Err("an inline extent has length 0".into()),
        Extent::Inline { data } if data.len() > MAX_INLINE_LEN => Err(format!(
            "an inline extent of {} bytes, at most {MAX_INLINE_LEN} allowed",
            data.len()
        )),
        _ => Ok(()),
    }
}

/// Sum of extent lengths, refusing overflow.
pub(super) fn extents_len(extents: &[Extent]) -> Result<u64, Problem> {
    extents.iter().try_fold(0u64, |sum, e| {
        check_extent(e)?;
        sum.checked_add(e.len())
            .ok_or_else(|| "extent lengths add up to more than 2^64 bytes".to_string())
    })
}

/// A bounds-checked reader over one manifest chunk (or one extent list).
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Inline extents are allowed (a version 2 manifest chunk).
    inline: bool,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8], pos: usize, inline: bool) -> Self {
        Cursor { buf, pos, inline }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Problem> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: {what} needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Problem> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, Problem> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, Problem> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, Problem> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, Problem> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &str) -> Result<i64, Problem> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub(super) fn lp32(&mut self, what: &str) -> Result<&'a [u8], Problem> {
        let len = self.u32(what)?;
        // A u32 always fits a usize on the 32- and 64-bit targets we build for.
        self.take(len as usize, what)
    }
    fn lp16(&mut self, what: &str) -> Result<&'a [u8], Problem> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    fn extent(&mut self) -> Result<Extent, Problem> {
        let extent = match self.u8("an extent tag")? {
            TAG_CHUNK => {
                let len = self.u32("a chunk extent length")?;
                let id = ChunkId(self.array("a chunk id")?);
                Extent::Chunk { len, id }
            }
            TAG_HOLE => Extent::Hole {
                len: self.u64("a hole length")?,
            },
            TAG_INLINE if self.inline => {
                let len = self.u16("an inline extent length")?;
                Extent::Inline {
                    data: self.take(usize::from(len), "inline content")?.to_vec(),
                }
            }
            TAG_INLINE => {
                return Err(
                    "an inline extent (tag 2) outside a version 2 or 3 manifest chunk".into(),
                );
            }
            tag => return Err(format!("unknown extent tag {tag}")),
        };
        check_extent(&extent)?;
        Ok(extent)
    }

    /// `extent count u32, extents`, with at most `max` extents (`None`: no limit but the
    /// bytes present).
    pub(super) fn extents(&mut self, max: Option<usize>) -> Result<Vec<Extent>, Problem> {
        let count = self.u32("the extent count")?;
        let count = count as usize;
        if let Some(max) = max
            && count > max
        {
            return Err(format!(
                "{count} extents in one entry, at most {max} allowed"
            ));
        }
        let mut out = Vec::with_capacity(count.min(self.remaining() / MIN_EXTENT_LEN));
        for _ in 0..count {
            out.push(self.extent()?);
        }
        Ok(out)
    }

    /// The rest of an entry after its kind and path.
    pub(super) fn entry_rest(&mut self, kind: u8, path: &[u8]) -> Result<Piece, Problem> {
        if kind == KIND_CONTINUED {
            let extents = self.extents(Some(MAX_EXTENTS_PER_ENTRY))?;
            return Ok(Piece::Continued {
                path: path.to_vec(),
                extents,
            });
        }
        if !(KIND_DIR..=KIND_UNREADABLE).contains(&kind) {
            return Err(format!("unknown entry kind {kind}"));
        }
        let mut meta = Meta {
            mode: self.u32("the mode")?,
            uid: self.u32("the uid")?,
            gid: self.u32("the gid")?,
            mtime_sec: self.i64("the mtime")?,
            mtime_nsec: self.u32("the mtime nanoseconds")?,
            xattrs: Vec::new(),
        };
        let count = self.u32("the xattr count")? as usize;
        // Each xattr takes at least 6 bytes: do not trust the count for allocation.
        meta.xattrs.reserve(count.min(self.remaining() / 6));
        for _ in 0..count {
            let name = self.lp16("an xattr name")?.to_vec();
            let value = self.lp32("an xattr value")?.to_vec();
            meta.xattrs.push((name, value));
        }
        check_meta(&meta)?;
        let body = match kind {
            KIND_DIR => Body::Dir,
            KIND_FILE => {
                let size = self.u64("the file size")?;
                let extents = self.extents(Some(MAX_EXTENTS_PER_ENTRY))?;
                Body::File { size, extents }
            }
            KIND_SYMLINK => Body::Symlink {
                target: self.lp32("the symlink target")?.to_vec(),
            },
            KIND_HARDLINK => Body::Hardlink {
                target: self.lp32("the hard link target")?.to_vec(),
            },
            KIND_CHARDEV => Body::CharDev {
                rdev: self.u64("the device number")?,
            },
            KIND_BLOCKDEV => Body::BlockDev {
                rdev: self.u64("the device number")?,
            },
            KIND_FIFO => Body::Fifo,
            KIND_SOCKET => Body::Socket,
            _ => {
                let bytes = self.lp32("the unreadable message")?;
                let message = String::from_utf8(bytes.to_vec())
                    .map_err(|_| "the unreadable message is not UTF-8".to_string())?;
                Body::Unreadable { message }
            }
        };
        Ok(Piece::Entry(Entry {
            path: path.to_vec(),
            meta,
            body,
        }))
    }
}
