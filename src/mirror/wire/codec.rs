//! The field codec of the mirror and restore-fetch protocols (format-spec/wire.md "Frames"):
//! little-endian integers, u32 counts and lengths, each checked against its limit and the bytes
//! left in the frame before anything is allocated.

use super::{MAX_ERROR_MESSAGE, MAX_FRAME_PAYLOAD, MAX_IDS, WireRecord, bad};
use crate::error::{Error, Result};
use crate::ids::ChunkId;

/// Encodes a message's fields (format-spec/wire.md "Frames"): little-endian, u32 counts.
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Lengths and counts are u32 on the wire; the senders keep them within the limits.
    pub(crate) fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    /// An `Error` message's payload: the code, and the message cut to
    /// [`MAX_ERROR_MESSAGE`] bytes at a character boundary.
    pub(crate) fn error(&mut self, code: u16, message: &str) {
        self.u16(code);
        let mut cut = message.len().min(MAX_ERROR_MESSAGE);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        self.bytes(&message.as_bytes()[..cut]);
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.0.extend_from_slice(b);
    }
    pub(crate) fn ids(&mut self, ids: &[ChunkId]) {
        self.count(ids.len());
        for id in ids {
            self.0.extend_from_slice(&id.0);
        }
    }
    pub(crate) fn u64s(&mut self, ids: &[u64]) {
        self.count(ids.len());
        ids.iter().for_each(|v| self.u64(*v));
    }
    pub(crate) fn i64s(&mut self, ids: &[i64]) {
        self.count(ids.len());
        ids.iter().for_each(|v| self.i64(*v));
    }
    pub(crate) fn records(&mut self, records: &[WireRecord]) {
        self.count(records.len());
        for r in records {
            self.u8(r.kind);
            self.0.extend_from_slice(&r.stored_hash);
            self.ids(&r.refs);
            self.bytes(&r.record);
        }
    }
}

/// Decodes a message's fields, every count checked against its limit and the bytes left.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    what: &'static str,
    protocol: &'static str,
}

impl<'a> Dec<'a> {
    /// A decoder of `buf`, the payload of `what`, in the protocol named `protocol`.
    pub(crate) fn new(buf: &'a [u8], what: &'static str, protocol: &'static str) -> Self {
        Dec {
            buf,
            what,
            protocol,
        }
    }
    fn bad(&self, what: std::fmt::Arguments<'_>) -> Error {
        Error::protocol(format!("{} protocol: {what}", self.protocol))
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.bad(format_args!("{} is truncated", self.what)));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub(crate) fn hash(&mut self) -> Result<[u8; 32]> {
        Ok(self.take(32)?.try_into().expect("32"))
    }
    /// A count of items of `item` bytes each, checked against `max` and what is left.
    pub(crate) fn count(&mut self, max: u32, item: usize) -> Result<usize> {
        let n = self.u32()?;
        if n > max {
            return Err(self.bad(format_args!("{}: {n} items, more than {max}", self.what)));
        }
        let n = n as usize;
        if n.saturating_mul(item) > self.buf.len() {
            return Err(self.bad(format_args!(
                "{}: {n} items do not fit the frame",
                self.what
            )));
        }
        Ok(n)
    }
    pub(crate) fn bytes(&mut self, max: u32) -> Result<&'a [u8]> {
        let n = self.count(max, 1)?;
        self.take(n)
    }
    pub(crate) fn ids(&mut self) -> Result<Vec<ChunkId>> {
        let n = self.count(MAX_IDS, 32)?;
        (0..n).map(|_| Ok(ChunkId(self.hash()?))).collect()
    }
    pub(crate) fn u64s(&mut self) -> Result<Vec<u64>> {
        let n = self.count(MAX_IDS, 8)?;
        (0..n).map(|_| self.u64()).collect()
    }
    pub(crate) fn i64s(&mut self) -> Result<Vec<i64>> {
        let n = self.count(MAX_IDS, 8)?;
        (0..n).map(|_| self.i64()).collect()
    }
    pub(super) fn records(&mut self) -> Result<Vec<WireRecord>> {
        let n = self.count(MAX_IDS, 1 + 32 + 4 + 4)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = self.u8()?;
            if kind > 1 {
                return Err(bad(format_args!("unknown chunk kind {kind}")));
            }
            let stored_hash = self.hash()?;
            let refs = self.ids()?;
            let record = self.bytes(MAX_FRAME_PAYLOAD)?.to_vec();
            out.push(WireRecord {
                kind,
                stored_hash,
                refs,
                record,
            });
        }
        Ok(out)
    }
    /// A session's sources: each a non-empty absolute path, as its sources record allows.
    pub(super) fn sources(&mut self) -> Result<Vec<Vec<u8>>> {
        use crate::format::records::{MAX_SOURCE_LEN, MAX_SOURCES};
        let n = self.count(MAX_SOURCES as u32, 4)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.bytes(MAX_SOURCE_LEN as u32)?.to_vec());
        }
        crate::format::records::encode_sources(&out)
            .map_err(|e| bad(format_args!("{}: sources: {}", self.what, e.message())))?;
        Ok(out)
    }
    pub(super) fn text(&mut self, max: u32) -> Result<String> {
        String::from_utf8(self.bytes(max)?.to_vec())
            .map_err(|_| bad(format_args!("{}: text is not UTF-8", self.what)))
    }
    pub(super) fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(bad(format_args!(
                "{}: flag {v} is neither 0 nor 1",
                self.what
            ))),
        }
    }
    pub(crate) fn end(&self) -> Result<()> {
        if !self.buf.is_empty() {
            return Err(self.bad(format_args!(
                "{}: {} bytes after the message",
                self.what,
                self.buf.len()
            )));
        }
        Ok(())
    }
}
