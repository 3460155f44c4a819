//! The chunk envelope's bytes (format-spec/chunk.md): header layout and associated data.

/// Envelope version written by this build.
pub const ENVELOPE_VERSION: u8 = 1;
/// Flag bit: the body is a zstd frame.
pub const FLAG_ZSTD: u8 = 0b0000_0001;
/// Length of the envelope header (version, flags, nonce).
pub const ENVELOPE_HEADER_LEN: usize = 26;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its body.
pub const ENVELOPE_OVERHEAD: usize = ENVELOPE_HEADER_LEN + TAG_LEN;
