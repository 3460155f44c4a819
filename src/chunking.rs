//! Keyed FastCDC (format-spec/chunking.md): the `fastcdc` crate's 2020 cut function with a
//! gear table derived whole from the repository secret, run over a stream.
//!
//! The cut points are exactly those of `fastcdc::v2020::StreamCDC` when given the same gear
//! table (a golden test pins this), because both call `cut_gear` on the same windows: a window
//! is `max_size` bytes from the current offset, or what is left at end of input. Unlike
//! `StreamCDC`, this chunker does not shift its buffer after every chunk: it keeps a buffer of
//! twice `max_size` and moves the unread tail to the front only when less than one window is
//! left, so each input byte is copied at most about once, and chunks can be borrowed in place
//! ([`Chunker::next_slice`]).

use std::io::{ErrorKind as IoErrorKind, Read};

use fastcdc::v2020;

use crate::error::{Error, ErrorKind, Result};

/// Chunker parameters (repository.toml `[chunker]`), frozen at init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Minimum chunk size.
    pub min_size: u32,
    /// Average chunk size.
    pub avg_size: u32,
    /// Maximum chunk size.
    pub max_size: u32,
    /// Normalization level 0..=3.
    pub normalization: u32,
}

impl ChunkerParams {
    /// 32 KiB / 128 KiB / 512 KiB, level 1: the parameters of new repositories
    /// (format-spec/chunking.md, "Parameters").
    pub const DEFAULT: ChunkerParams = ChunkerParams {
        min_size: 32 << 10,
        avg_size: 128 << 10,
        max_size: 512 << 10,
        normalization: 1,
    };

    /// 64 KiB / 256 KiB / 1 MiB, level 1: the default of repositories made in 2026-12 before
    /// split extent lists, which keep them.
    pub const AVG_256_KIB: ChunkerParams = ChunkerParams {
        min_size: 64 << 10,
        avg_size: 256 << 10,
        max_size: 1 << 20,
        normalization: 1,
    };

    /// 256 KiB / 1 MiB / 4 MiB, level 1: the default of repositories made before 2026-12,
    /// which keep them (the parameters are frozen at init).
    pub const AVG_1_MIB: ChunkerParams = ChunkerParams {
        min_size: 256 << 10,
        avg_size: 1 << 20,
        max_size: 4 << 20,
        normalization: 1,
    };

    /// Check the sizes against the fastcdc crate's bounds and each other.
    ///
    /// Errors are [`ErrorKind::Config`]: the parameters come from `repository.toml`.
    pub fn validate(&self) -> Result<()> {
        // Messages name the repository.toml keys; the caller adds the file and section.
        let bad = |what: String| Err(Error::new(ErrorKind::Config, what));
        let range = |name: &str, v: u32, lo: u32, hi: u32| -> Result<()> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                bad(format!(
                    "{name} = {v} is outside the supported range {lo}..={hi}"
                ))
            }
        };
        range(
            "min-size",
            self.min_size,
            v2020::MINIMUM_MIN,
            v2020::MINIMUM_MAX,
        )?;
        range(
            "avg-size",
            self.avg_size,
            v2020::AVERAGE_MIN,
            v2020::AVERAGE_MAX,
        )?;
        range(
            "max-size",
            self.max_size,
            v2020::MAXIMUM_MIN,
            v2020::MAXIMUM_MAX,
        )?;
        if !(self.min_size < self.avg_size && self.avg_size < self.max_size) {
            return bad(format!(
                "sizes must satisfy min-size < avg-size < max-size, got {} / {} / {}",
                self.min_size, self.avg_size, self.max_size
            ));
        }
        if self.normalization > 3 {
            return bad(format!(
                "normalization = {} is outside the supported range 0..=3",
                self.normalization
            ));
        }
        Ok(())
    }

    /// The masks as `fastcdc::v2020::FastCDC::with_level` computes them:
    /// `(mask_s, mask_l, mask_s_ls, mask_l_ls)`.
    fn masks(&self) -> (u64, u64, u64, u64) {
        let bits = v2020::logarithm2(self.avg_size);
        let mask_s = v2020::MASKS[(bits + self.normalization) as usize];
        let mask_l = v2020::MASKS[(bits - self.normalization) as usize];
        (mask_s, mask_l, mask_s << 1, mask_l << 1)
    }
}

/// The gear table and its left-shifted twin.
pub struct GearTable {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl GearTable {
    /// The public table of the fastcdc crate (for tests against `StreamCDC`).
    pub fn standard() -> Self {
        let (gear, gear_ls) = v2020::get_gear_with_seed(0);
        GearTable { gear, gear_ls }
    }

    /// The table derived from the chunker gear key: entry `i` is the little-endian `u64` at
    /// bytes `8*i..8*i+8` of the keyed BLAKE3 XOF over the empty input; `gear_ls[i] = gear[i] << 1`.
    pub fn from_key(key: &[u8; 32]) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 256 * 8]);
        blake3::Hasher::new_keyed(key)
            .finalize_xof()
            .fill(&mut bytes[..]);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (i, word) in bytes.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(word.try_into().expect("chunks_exact(8)"));
            gear[i] = v;
            gear_ls[i] = v << 1;
        }
        GearTable { gear, gear_ls }
    }

    /// Entry `i` of the table (for vectors and tests).
    pub fn entry(&self, i: u8) -> u64 {
        self.gear[i as usize]
    }
}

impl std::fmt::Debug for GearTable {
    // The keyed table is derived from the secret and reveals where files are cut.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GearTable(..)")
    }
}

/// The cut point of the window `data` (at most `max_size` bytes are looked at).
fn cut(
    data: &[u8],
    params: &ChunkerParams,
    masks: (u64, u64, u64, u64),
    gear: &GearTable,
) -> usize {
    let (mask_s, mask_l, mask_s_ls, mask_l_ls) = masks;
    v2020::cut_gear(
        data,
        params.min_size as usize,
        params.avg_size as usize,
        params.max_size as usize,
        mask_s,
        mask_l,
        mask_s_ls,
        mask_l_ls,
        &gear.gear,
        &gear.gear_ls,
    )
    .1
}

/// First size of a chunker's buffer; it doubles as needed up to `2 * max_size`.
const INITIAL_BUFFER: usize = 64 << 10;

/// Cuts a reader into chunks; each call to [`Chunker::next_chunk`] returns the next chunk.
pub struct Chunker<'g, R: Read> {
    reader: R,
    gear: &'g GearTable,
    params: ChunkerParams,
    masks: (u64, u64, u64, u64),
    /// `buf[start..end]` is read but not yet returned; `buf.len()` is the capacity.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<'g, R: Read> Chunker<'g, R> {
    /// A chunker over `reader`.
    ///
    /// # Panics
    ///
    /// If `params` does not pass [`ChunkerParams::validate`] (a caller bug: parameters are
    /// validated when `repository.toml` is read).
    pub fn new(reader: R, params: ChunkerParams, gear: &'g GearTable) -> Self {
        if let Err(e) = params.validate() {
            panic!("Chunker::new called with invalid parameters: {e}");
        }
        Chunker {
            reader,
            gear,
            params,
            masks: params.masks(),
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Make sure `buf[start..end]` holds a whole window (`max_size` bytes) or the rest of the
    /// input. Short reads are normal (pipes, sockets); `Interrupted` is retried.
    ///
    /// The buffer starts small and doubles up to two windows, so chunking a small file (the
    /// common case on a file server) costs a small allocation, not `2 * max_size` bytes.
    fn fill(&mut self) -> std::io::Result<()> {
        let window = self.params.max_size as usize;
        if self.eof || self.end - self.start >= window {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            if self.end == self.buf.len() {
                if self.buf.len() >= 2 * window {
                    break;
                }
                let grown = (self.buf.len() * 2).max(INITIAL_BUFFER).min(2 * window);
                self.buf.resize(grown, 0);
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == IoErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, borrowed from the chunker's buffer, or `None` at end of input.
    /// This is the zero-copy form: the slice is valid until the next call.
    pub fn next_slice(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.fill()?;
        if self.start == self.end {
            return Ok(None);
        }
        let window = &self.buf[self.start..self.end];
        let len = cut(window, &self.params, self.masks, self.gear);
        // cut_gear returns 0 only for an empty window, and never more than the window.
        debug_assert!(len > 0 && len <= window.len());
        let chunk_start = self.start;
        self.start += len;
        Ok(Some(&self.buf[chunk_start..chunk_start + len]))
    }

    /// The next chunk copied into `out` (cleared first, its allocation reused); `false` at end
    /// of input.
    pub fn next_chunk_into(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        out.clear();
        match self.next_slice()? {
            Some(chunk) => {
                out.extend_from_slice(chunk);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The next chunk, or `None` at end of input.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.next_slice()?.map(<[u8]>::to_vec))
    }
}

/// Chunk lengths of an in-memory buffer (for tests and vectors).
///
/// # Panics
///
/// If `params` does not pass [`ChunkerParams::validate`].
pub fn chunk_lengths(data: &[u8], params: ChunkerParams, gear: &GearTable) -> Vec<usize> {
    if let Err(e) = params.validate() {
        panic!("chunk_lengths called with invalid parameters: {e}");
    }
    let masks = params.masks();
    let mut lengths = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let len = cut(&data[offset..], &params, masks, gear);
        lengths.push(len);
        offset += len;
    }
    lengths
}

#[cfg(test)]
mod tests;
