//! zstd dictionaries of data keys (format-spec/keys.md "Dictionaries", chunk.md version 2).
//!
//! Small chunks (one small file each, manifest chunks) compress badly on their own: zstd has
//! nothing to refer back to. An ingest that stores many new small chunks trains a dictionary on
//! the first of them and compresses the rest against it. The dictionary is made of the backed-up
//! content, so it is as secret as the chunks: it travels inside the data key's wrapped form, and
//! lives, is mirrored, checked and fetched by a restoring client exactly as long as the key.
//! The server cannot open an earlier ingest's key, so each ingest trains its own.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Largest dictionary, in bytes (training asks for this size).
pub const MAX_DICTIONARY: usize = 64 << 10;
/// Largest stored form of a dictionary (a zstd frame) in a wrapped key: with the age header of
/// many recipients, the wrapped key stays under the 64 KiB the wire formats accept.
pub const MAX_DICTIONARY_FRAME: usize = 48 << 10;
/// Chunks of at most this many plaintext bytes are compressed with the dictionary: beyond it
/// a chunk has context enough of its own.
pub const DICTIONARY_INPUT_MAX: usize = 64 << 10;
/// Bytes of one chunk taken as a training sample.
pub const SAMPLE_MAX: usize = 16 << 10;
/// Sample bytes collected before training: an ingest with fewer new small chunks would not
/// earn back the dictionary's own size.
pub const SAMPLE_TARGET: usize = 2 << 20;
/// Fewest samples to train on.
pub const SAMPLE_MIN_COUNT: usize = 256;
/// zstd level of a dictionary's stored form (it is compressed once per ingest).
const STORE_LEVEL: i32 = 19;

/// A data key's dictionary, ready to decompress with, and its stored form. Zeroized on drop.
pub struct Dictionary {
    raw: Zeroizing<Vec<u8>>,
    stored: Zeroizing<Vec<u8>>,
    decoder: zstd::dict::DecoderDictionary<'static>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dictionary({} bytes)", self.raw.len())
    }
}

impl Dictionary {
    /// A dictionary from its bytes (1 to [`MAX_DICTIONARY`]); `None` when its stored form
    /// (one zstd frame) would be over [`MAX_DICTIONARY_FRAME`].
    pub fn new(raw: Vec<u8>) -> Result<Option<Arc<Dictionary>>> {
        check_len(raw.len())?;
        let stored = zstd::bulk::compress(&raw, STORE_LEVEL).map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Internal,
                format!("compressing a dictionary: {e}"),
            )
        })?;
        if stored.len() > MAX_DICTIONARY_FRAME {
            return Ok(None);
        }
        Ok(Some(Dictionary::assemble(raw, stored)))
    }

    fn assemble(raw: Vec<u8>, stored: Vec<u8>) -> Arc<Dictionary> {
        let decoder = zstd::dict::DecoderDictionary::copy(&raw);
        Arc::new(Dictionary {
            raw: Zeroizing::new(raw),
            stored: Zeroizing::new(stored),
            decoder,
        })
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Its stored form: one zstd frame of its bytes that declares their size.
    pub fn stored(&self) -> &[u8] {
        &self.stored
    }

    /// The prepared decompression dictionary.
    pub(crate) fn ddict(&self) -> &zstd::zstd_safe::DDict<'static> {
        self.decoder.as_ddict()
    }

    /// A dictionary from its stored form, refused as corrupt unless it is one zstd frame of at
    /// most [`MAX_DICTIONARY_FRAME`] bytes that declares and holds 1 to [`MAX_DICTIONARY`].
    pub fn decode(frame: &[u8]) -> Result<Arc<Dictionary>> {
        let bad = |why: String| Error::corrupt(format!("the key's dictionary {why}"));
        if frame.len() > MAX_DICTIONARY_FRAME {
            return Err(bad(format!(
                "is stored in {} bytes, more than {MAX_DICTIONARY_FRAME}",
                frame.len()
            )));
        }
        match zstd::zstd_safe::find_frame_compressed_size(frame) {
            Ok(n) if n == frame.len() => {}
            _ => return Err(bad("is not one zstd frame".into())),
        }
        match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) if n >= 1 && n <= MAX_DICTIONARY as u64 => {}
            _ => {
                return Err(bad(format!(
                    "does not declare a size of 1 to {MAX_DICTIONARY} bytes"
                )));
            }
        }
        let raw = zstd::bulk::decompress(frame, MAX_DICTIONARY)
            .map_err(|e| bad(format!("does not decompress: {e}")))?;
        check_len(raw.len())?;
        Ok(Dictionary::assemble(raw, frame.to_vec()))
    }
}

fn check_len(len: usize) -> Result<()> {
    if len == 0 || len > MAX_DICTIONARY {
        return Err(Error::corrupt(format!(
            "a dictionary of {len} bytes (1 to {MAX_DICTIONARY} allowed)"
        )));
    }
    Ok(())
}

/// Train a dictionary of at most [`MAX_DICTIONARY`] bytes on `samples`; `None` when zstd
/// finds too little in common to make one.
pub fn train(samples: &[Vec<u8>]) -> Option<Vec<u8>> {
    zstd::dict::from_samples(samples, MAX_DICTIONARY)
        .ok()
        .filter(|d| !d.is_empty() && d.len() <= MAX_DICTIONARY)
}

/// A dictionary prepared for compressing at one level (the writer's side).
pub struct DictionaryEncoder {
    cdict: zstd::dict::EncoderDictionary<'static>,
}

impl std::fmt::Debug for DictionaryEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DictionaryEncoder(..)")
    }
}

impl DictionaryEncoder {
    /// Prepare `dictionary` for compression at `level`.
    pub fn new(dictionary: &Dictionary, level: i32) -> DictionaryEncoder {
        DictionaryEncoder {
            cdict: zstd::dict::EncoderDictionary::copy(dictionary.bytes(), level),
        }
    }

    /// The prepared compression dictionary.
    pub(crate) fn cdict(&self) -> &zstd::zstd_safe::CDict<'static> {
        self.cdict.as_cdict()
    }
}

#[cfg(test)]
#[path = "dictionary_tests.rs"]
mod tests;
