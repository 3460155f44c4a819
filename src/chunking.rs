//! Keyed FastCDC (format-spec/chunking.md): the `fastcdc` crate's 2020 cut function with a
//! gear table derived whole from the repository secret, run over a stream.

use std::io::Read;

use crate::error::Result;

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
    /// 256 KiB / 1 MiB / 4 MiB, level 1.
    pub const DEFAULT: ChunkerParams = ChunkerParams {
        min_size: 256 << 10,
        avg_size: 1 << 20,
        max_size: 4 << 20,
        normalization: 1,
    };

    /// Check the sizes against the fastcdc crate's bounds and each other.
    pub fn validate(&self) -> Result<()> {
        todo!()
    }
}

/// The gear table and its left-shifted twin.
pub struct GearTable {
    _private: (),
}

impl GearTable {
    /// The public table of the fastcdc crate (for tests against `StreamCDC`).
    pub fn standard() -> Self {
        todo!()
    }

    /// The table derived from the chunker gear key.
    pub fn from_key(key: &[u8; 32]) -> Self {
        let _ = key;
        todo!()
    }
}

/// Cuts a reader into chunks; each call to [`Chunker::next_chunk`] returns the next chunk.
pub struct Chunker<'g, R: Read> {
    _reader: R,
    _gear: &'g GearTable,
}

impl<'g, R: Read> Chunker<'g, R> {
    /// A chunker over `reader`.
    pub fn new(reader: R, params: ChunkerParams, gear: &'g GearTable) -> Self {
        let _ = params;
        Chunker {
            _reader: reader,
            _gear: gear,
        }
    }

    /// The next chunk, or `None` at end of input.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        todo!()
    }
}

/// Chunk lengths of an in-memory buffer (for tests and vectors).
pub fn chunk_lengths(data: &[u8], params: ChunkerParams, gear: &GearTable) -> Vec<usize> {
    let _ = (data, params, gear);
    todo!()
}
