//! Sealing and opening chunk envelopes (format-spec/chunk.md): zstd if it pays, then
//! XChaCha20-Poly1305 with a random 24-byte nonce and the chunk id bound as associated data.
//!
//! Sealing writes the header, compresses straight into the output buffer and encrypts that
//! buffer in place, so a chunk is copied once (into the envelope) apart from compression itself.
//! zstd contexts are cached per thread: creating one per chunk costs more than compressing a
//! small chunk.

use std::cell::RefCell;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};

use crate::crypto::dictionary::{DICTIONARY_INPUT_MAX, Dictionary, DictionaryEncoder};
use crate::crypto::{DataKey, random_array};
use crate::error::{Error, Result};
use crate::format::chunk::{
    ENVELOPE_HEADER_LEN, ENVELOPE_OVERHEAD, ENVELOPE_VERSION, ENVELOPE_VERSION_DICTIONARY,
    EnvelopeHeader, FLAG_ZSTD, NONCE_LEN, TAG_LEN, associated_data,
};
use crate::ids::{ChunkId, KeyId};

thread_local! {
    static CCTX: RefCell<Option<zstd::zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
    static PROBE: RefCell<Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>> =
        const { RefCell::new(None) };
    /// The context for decompressing with a dictionary.
    static DICT_DCTX: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// Chunks up to this size are always given to zstd: the probe would cost about as much.
const PROBE_MIN_LEN: usize = 16 << 10;
/// Bytes in one probe sample.
const PROBE_SAMPLE: usize = 4 << 10;
/// One sample per this many bytes of chunk, between 2 and [`PROBE_MAX_SAMPLES`].
const PROBE_STRIDE: usize = 32 << 10;
const PROBE_MAX_SAMPLES: usize = 16;
/// zstd level of the probe: the fastest regular level.
const PROBE_LEVEL: i32 = 1;

/// Seal `plaintext` (the chunk named `id`) under `key`/`key_id`, compressing with zstd at
/// `zstd_level` (at least [`SMALL_CHUNK_MIN_LEVEL`] for a small chunk) when that makes it
/// strictly shorter. Returns the envelope bytes.
///
/// The nonce is 24 fresh bytes from the operating system's CSPRNG (the nonce rule of
/// format-spec/chunk.md): with a fresh data key per ingest a repeat is negligible.
pub fn seal(
    key: &DataKey,
    key_id: KeyId,
    id: &ChunkId,
    plaintext: &[u8],
    zstd_level: i32,
) -> Result<Vec<u8>> {
    seal_with(key, key_id, id, plaintext, zstd_level, None)
}

/// [`seal`], compressing a chunk of at most [`DICTIONARY_INPUT_MAX`] bytes against
/// `dictionary` (which MUST be the one `key` carries, prepared at
/// `level_for(DICTIONARY_INPUT_MAX, zstd_level)`): an envelope
/// of version 2 (format-spec/chunk.md). A larger chunk, or one the frame would not shorten, is
/// sealed as [`seal`] does.
pub fn seal_with(
    key: &DataKey,
    key_id: KeyId,
    id: &ChunkId,
    plaintext: &[u8],
    zstd_level: i32,
    dictionary: Option<&DictionaryEncoder>,
) -> Result<Vec<u8>> {
    seal_with_nonce(
        key,
        key_id,
        id,
        plaintext,
        zstd_level,
        dictionary,
        random_array(),
    )
}

/// [`seal_with`] with a caller-chosen nonce. For test vectors only: reusing a nonce under one
/// key destroys confidentiality and authenticity, so production code MUST call [`seal`] or
/// [`seal_with`].
#[doc(hidden)]
pub fn seal_with_nonce(
    key: &DataKey,
    key_id: KeyId,
    id: &ChunkId,
    plaintext: &[u8],
    zstd_level: i32,
    dictionary: Option<&DictionaryEncoder>,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    let n = plaintext.len();
    let dictionary = dictionary.filter(|_| n <= DICTIONARY_INPUT_MAX);
    // Room for the largest envelope (raw body), so appending the tag never reallocates.
    let mut out = vec![0u8; ENVELOPE_OVERHEAD + n];
    // A frame is only worth it when strictly shorter: give zstd a destination one byte
    // shorter than the plaintext and let "destination too small" mean "store raw".
    let compressed_len = if n > 1 && worth_compressing(plaintext) {
        let dst = &mut out[ENVELOPE_HEADER_LEN..ENVELOPE_HEADER_LEN + n - 1];
        match dictionary {
            Some(d) => compress_with_dictionary(plaintext, dst, d)?.map(|len| (len, true)),
            None => {
                compress_into(plaintext, dst, level_for(n, zstd_level))?.map(|len| (len, false))
            }
        }
    } else {
        None
    };
    let (version, flags, body_len) = match compressed_len {
        Some((len, true)) => (ENVELOPE_VERSION_DICTIONARY, FLAG_ZSTD, len),
        Some((len, false)) => (ENVELOPE_VERSION, FLAG_ZSTD, len),
        None => {
            out[ENVELOPE_HEADER_LEN..ENVELOPE_HEADER_LEN + n].copy_from_slice(plaintext);
            (ENVELOPE_VERSION, 0, n)
        }
    };
    out.truncate(ENVELOPE_HEADER_LEN + body_len);
    // Give back the room the plaintext needed: an envelope waits in the pack writer's queue,
    // and text compressed 4:1 would otherwise hold four times its size there.
    out.shrink_to(ENVELOPE_HEADER_LEN + body_len + TAG_LEN);
    encrypt_envelope(key, key_id, id, version, flags, nonce, out)
}

/// The lowest zstd level a chunk of at most [`DICTIONARY_INPUT_MAX`] bytes is compressed at:
/// on inputs that small, level 3 is as fast as level 1 (the crates of a source tree, files of
/// 1 to 64 KiB: 258 against 234 MB/s) and stores 3.4% less.
pub const SMALL_CHUNK_MIN_LEVEL: i32 = 3;

/// The level a chunk of `len` bytes is compressed at, in a repository of level `zstd_level`.
pub fn level_for(len: usize, zstd_level: i32) -> i32 {
    if len <= DICTIONARY_INPUT_MAX {
        zstd_level.max(SMALL_CHUNK_MIN_LEVEL)
    } else {
        zstd_level
    }
}

/// Seal `body` as it is, with `flags` saying what it is (a zstd frame or raw bytes), without
/// compressing it: for the fuzz targets, which hand the decoder bodies this build would never
/// write. Production code MUST call [`seal`].
#[doc(hidden)]
pub fn seal_body(
    key: &DataKey,
    key_id: KeyId,
    id: &ChunkId,
    flags: u8,
    nonce: [u8; NONCE_LEN],
    body: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(ENVELOPE_OVERHEAD + body.len());
    out.extend_from_slice(&[0; ENVELOPE_HEADER_LEN]);
    out.extend_from_slice(body);
    encrypt_envelope(key, key_id, id, ENVELOPE_VERSION, flags, nonce, out)
}

/// Write the header into `out` (header space, then the body), encrypt the body in place and
/// append the tag.
fn encrypt_envelope(
    key: &DataKey,
    key_id: KeyId,
    id: &ChunkId,
    version: u8,
    flags: u8,
    nonce: [u8; NONCE_LEN],
    mut out: Vec<u8>,
) -> Result<Vec<u8>> {
    let body_len = out.len() - ENVELOPE_HEADER_LEN;
    let header = EnvelopeHeader {
        version,
        flags,
        nonce,
    };
    out[..ENVELOPE_HEADER_LEN].copy_from_slice(&header.encode());
    let aad = associated_data(id, key_id, version, flags);
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let tag = cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &aad,
            &mut out[ENVELOPE_HEADER_LEN..],
        )
        .map_err(|_| {
            Error::new(
                crate::error::ErrorKind::Internal,
                format!("chunk {id}: encryption refused a {body_len}-byte body"),
            )
        })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The "compress if that pays" heuristic (format-spec/chunk.md "Skipping compression"):
/// false only when every one of a few 4 KiB samples, spread evenly over the chunk, fails to
/// shrink by at least 1/32 under zstd level 1. Random or already-compressed data (most of a
/// backup's bytes, by volume: media, archives) then costs a probe of about 6% of the chunk
/// at the fastest level instead of a full compression at the repository's level that is
/// thrown away. A chunk with any compressible region is compressed whole, so mixed chunks
/// lose nothing; the rule "raw unless the frame is strictly shorter" still decides.
fn worth_compressing(plaintext: &[u8]) -> bool {
    let n = plaintext.len();
    if n <= PROBE_MIN_LEN {
        return true;
    }
    let count = (n / PROBE_STRIDE).clamp(2, PROBE_MAX_SAMPLES);
    let step = (n - PROBE_SAMPLE) / (count - 1);
    PROBE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match zstd::bulk::Compressor::new(PROBE_LEVEL) {
                Ok(c) => {
                    *slot = Some((c, vec![0u8; zstd::zstd_safe::compress_bound(PROBE_SAMPLE)]))
                }
                // No probe: compress as if there were no heuristic.
                Err(_) => return true,
            }
        }
        let (compressor, scratch) = slot.as_mut().expect("probe was just set");
        (0..count).any(|i| {
            let sample = &plaintext[i * step..i * step + PROBE_SAMPLE];
            match compressor.compress_to_buffer(sample, scratch.as_mut_slice()) {
                Ok(len) => len * 32 < PROBE_SAMPLE * 31,
                Err(_) => true,
            }
        })
    })
}

/// Compress into `dst`; `Ok(None)` when the frame does not fit (it would not be shorter).
fn compress_into(src: &[u8], dst: &mut [u8], level: i32) -> Result<Option<usize>> {
    compress_with(src, dst, |cctx| {
        cctx.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(level))
            .map(|_| ())
            .map_err(|_| Error::invalid(format!("zstd compression level {level} is not usable")))
    })
}

/// Compress into `dst` against a dictionary, without its 4-byte dictionary id in the frame
/// (the key names the dictionary); `Ok(None)` when the frame does not fit.
fn compress_with_dictionary(
    src: &[u8],
    dst: &mut [u8],
    dictionary: &DictionaryEncoder,
) -> Result<Option<usize>> {
    compress_with(src, dst, |cctx| {
        cctx.ref_cdict(dictionary.cdict())
            .and_then(|_| cctx.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false)))
            .map(|_| ())
            .map_err(|code| {
                Error::new(
                    crate::error::ErrorKind::Internal,
                    format!(
                        "zstd refused the dictionary: {}",
                        zstd::zstd_safe::get_error_name(code)
                    ),
                )
            })
    })
}

/// Compress one frame (with its content size) into `dst` with this thread's context, set up by
/// `setup`; `Ok(None)` when the frame does not fit (it would not be shorter). One context per
/// thread serves both kinds: a second one per sealing thread cost 10 MiB of peak RSS.
fn compress_with(
    src: &[u8],
    dst: &mut [u8],
    setup: impl FnOnce(&mut zstd::zstd_safe::CCtx<'static>) -> Result<()>,
) -> Result<Option<usize>> {
    CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let cctx = slot.get_or_insert_with(zstd::zstd_safe::CCtx::create);
        // Parameters and any dictionary of the previous call are dropped here, not kept.
        let _ = cctx.reset(zstd::zstd_safe::ResetDirective::SessionAndParameters);
        setup(cctx)?;
        // Any failure here is "does not fit": storing raw is always correct.
        Ok(cctx.compress2(dst, src).ok())
    })
}

/// Open an envelope: check version and flags, authenticate and decrypt, decompress (refusing
/// output over `max_plaintext` bytes). Does not verify the chunk id: see [`crate::crypto::ChunkIdKey`].
///
/// A wrong key, key id or chunk id, and any changed byte, all fail authentication and are
/// reported as `Corrupt`: the AEAD cannot tell them apart.
pub fn open(
    key: &DataKey,
    key_id: KeyId,
    id: &ChunkId,
    envelope: &[u8],
    max_plaintext: usize,
) -> Result<Vec<u8>> {
    let (header, sealed) = EnvelopeHeader::parse(envelope, id)?;
    let dictionary = if header.version == ENVELOPE_VERSION_DICTIONARY {
        Some(key.dictionary().ok_or_else(|| {
            Error::corrupt(format!(
                "chunk {id}: envelope was compressed with the dictionary of data key {}, \
                 which carries none",
                key_id.0
            ))
        })?)
    } else {
        None
    };
    let body_len = sealed.len() - TAG_LEN;
    if header.flags & FLAG_ZSTD == 0 && body_len > max_plaintext {
        return Err(Error::corrupt(format!(
            "chunk {id}: stored body of {body_len} bytes exceeds the limit of {max_plaintext}"
        )));
    }
    let mut body = sealed[..body_len].to_vec();
    let tag = Tag::from_slice(&sealed[body_len..]);
    let aad = associated_data(id, key_id, header.version, header.flags);
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(&header.nonce), &aad, &mut body, tag)
        .map_err(|_| {
            Error::corrupt(format!(
                "chunk {id}: envelope failed authentication (damaged, or not sealed under \
                 data key {} for this chunk id)",
                key_id.0
            ))
        })?;
    if header.flags & FLAG_ZSTD == 0 {
        return Ok(body);
    }
    decompress_bounded(&body, max_plaintext, id, dictionary.map(|d| &**d))
}

/// Decompress a frame without a declared size, reading at most `max + 1` bytes of output.
fn decompress_stream_bounded(frame: &[u8], max: usize, id: &ChunkId) -> Result<Vec<u8>> {
    use std::io::Read;
    let bad = |what: String| Error::corrupt(format!("chunk {id}: compressed body {what}"));
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| bad(format!("cannot be decompressed: zstd: {e}")))?
        .single_frame();
    // The frame's window is allocated up front (up to 128 MiB by default): no larger than the
    // plaintext may be, so a small record cannot make the reader allocate a large window.
    let window_log =
        (usize::BITS - max.max(1 << 10).saturating_sub(1).leading_zeros()).clamp(10, 31);
    decoder
        .window_log_max(window_log)
        .map_err(|e| bad(format!("cannot be decompressed: zstd: {e}")))?;
    let mut out = Vec::new();
    decoder
        .take((max as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("cannot be decompressed: zstd: {e}")))?;
    if out.len() > max {
        return Err(bad(format!(
            "decompresses to more than the limit of {max} bytes"
        )));
    }
    Ok(out)
}

/// Decompress one zstd frame into at most `max` bytes. The buffer is sized from the frame's
/// declared content size (checked against `max`) so a frame cannot make us allocate more.
/// With `dictionary` (an envelope of version 2) the frame MUST declare its size.
fn decompress_bounded(
    frame: &[u8],
    max: usize,
    id: &ChunkId,
    dictionary: Option<&Dictionary>,
) -> Result<Vec<u8>> {
    let bad = |what: String| Error::corrupt(format!("chunk {id}: compressed body {what}"));
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(len) if len == frame.len() => {}
        Ok(len) => {
            return Err(bad(format!(
                "is not a single zstd frame ({len} of {} bytes)",
                frame.len()
            )));
        }
        Err(_) => return Err(bad("is not a valid zstd frame".into())),
    }
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .map_err(|_| bad("has an invalid zstd frame header".into()))?;
    let capacity = match declared {
        Some(n) if n > max as u64 => {
            return Err(bad(format!(
                "declares {n} bytes, more than the limit of {max}"
            )));
        }
        Some(n) => n as usize,
        None if dictionary.is_some() => {
            return Err(bad(
                "was compressed with a dictionary but does not declare its size".into(),
            ));
        }
        // rsbackup's writer always declares the size; a frame that does not is decoded as a
        // stream that stops one byte past the limit, so no buffer of `max` is allocated up
        // front (a caller may pass a generous limit).
        None => return decompress_stream_bounded(frame, max, id),
    };
    let mut out = Vec::with_capacity(capacity);
    if let Some(dictionary) = dictionary {
        DICT_DCTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            let dctx = slot.get_or_insert_with(zstd::zstd_safe::DCtx::create);
            dctx.decompress_using_ddict(&mut out, frame, dictionary.ddict())
                .map_err(|code| {
                    bad(format!(
                        "does not decompress with its key's dictionary to its declared \
                         {capacity} bytes: {}",
                        zstd::zstd_safe::get_error_name(code)
                    ))
                })
        })?;
    } else {
        DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                let d = zstd::bulk::Decompressor::new()
                    .map_err(|e| bad(format!("cannot be decompressed: zstd: {e}")))?;
                *slot = Some(d);
            }
            let d = slot.as_mut().expect("decompressor was just set");
            // The destination is a Vec with `capacity` spare bytes: zstd fails rather than grow it.
            d.decompress_to_buffer(frame, &mut out).map_err(|e| {
                bad(format!(
                    "does not decompress to its declared {capacity} bytes: {e}"
                ))
            })
        })?;
    }
    if out.len() > max {
        return Err(bad(format!(
            "decompressed to {} bytes, more than the limit of {max}",
            out.len()
        )));
    }
    if let Some(n) = declared
        && out.len() as u64 != n
    {
        return Err(bad(format!(
            "decompressed to {} bytes but declares {n}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
