//! The chunk envelope's bytes (format-spec/chunk.md): header layout and associated data.
//!
//! Bytes only: the sealing itself (zstd, XChaCha20-Poly1305) is in [`crate::crypto::envelope`].

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ChunkId, KeyId};

/// Envelope version of a chunk stored raw or compressed on its own.
pub const ENVELOPE_VERSION: u8 = 1;
/// Envelope version of a chunk compressed with its data key's dictionary (the body is always
/// a zstd frame: `flags` is exactly [`FLAG_ZSTD`]).
pub const ENVELOPE_VERSION_DICTIONARY: u8 = 2;
/// Flag bit: the body is a zstd frame.
pub const FLAG_ZSTD: u8 = 0b0000_0001;
/// Length of the envelope header (version, flags, nonce).
pub const ENVELOPE_HEADER_LEN: usize = 26;
/// Length of the nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its body.
pub const ENVELOPE_OVERHEAD: usize = ENVELOPE_HEADER_LEN + TAG_LEN;
/// The fixed prefix of the associated data (17 bytes, no terminator).
pub const AAD_PREFIX: &[u8; 17] = b"rsbackup chunk v1";
/// Length of the associated data: prefix, chunk id, key id, version, flags.
pub const AAD_LEN: usize = 17 + 32 + 8 + 1 + 1;

/// The associated data that binds an envelope to its chunk id, key id, version and flags.
pub fn associated_data(id: &ChunkId, key_id: KeyId, version: u8, flags: u8) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[..17].copy_from_slice(AAD_PREFIX);
    aad[17..49].copy_from_slice(&id.0);
    aad[49..57].copy_from_slice(&key_id.0.to_le_bytes());
    aad[57] = version;
    aad[58] = flags;
    aad
}

/// The decoded fixed part of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// Format version ([`ENVELOPE_VERSION`] or [`ENVELOPE_VERSION_DICTIONARY`] once parsed).
    pub version: u8,
    /// Flags (only [`FLAG_ZSTD`] may be set once parsed).
    pub flags: u8,
    /// The 24-byte nonce (public: it is stored in the clear).
    pub nonce: [u8; NONCE_LEN],
}

impl EnvelopeHeader {
    /// The header's 26 bytes.
    pub fn encode(&self) -> [u8; ENVELOPE_HEADER_LEN] {
        let mut out = [0u8; ENVELOPE_HEADER_LEN];
        out[0] = self.version;
        out[1] = self.flags;
        out[2..].copy_from_slice(&self.nonce);
        out
    }

    /// Split an envelope into its checked header and the ciphertext with its tag.
    ///
    /// The version is checked first, so that an envelope of a newer format is reported as
    /// unsupported even if its layout differs; then the length and the reserved flag bits.
    /// `id` only names the chunk in error messages.
    pub fn parse<'a>(envelope: &'a [u8], id: &ChunkId) -> Result<(EnvelopeHeader, &'a [u8])> {
        let Some(&version) = envelope.first() else {
            return Err(Error::corrupt(format!("chunk {id}: envelope is empty")));
        };
        if version != ENVELOPE_VERSION && version != ENVELOPE_VERSION_DICTIONARY {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "chunk {id}: envelope version {version} is not supported by this build \
                     (it reads versions {ENVELOPE_VERSION} and {ENVELOPE_VERSION_DICTIONARY}); \
                     upgrade rsbackup"
                ),
            ));
        }
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(Error::corrupt(format!(
                "chunk {id}: envelope is truncated ({} bytes, at least {ENVELOPE_OVERHEAD} needed)",
                envelope.len()
            )));
        }
        let flags = envelope[1];
        if flags & !FLAG_ZSTD != 0 {
            return Err(Error::corrupt(format!(
                "chunk {id}: envelope has reserved flag bits set (flags {flags:#04x})"
            )));
        }
        if version == ENVELOPE_VERSION_DICTIONARY && flags != FLAG_ZSTD {
            return Err(Error::corrupt(format!(
                "chunk {id}: envelope of version {version} without its zstd flag"
            )));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&envelope[2..ENVELOPE_HEADER_LEN]);
        Ok((
            EnvelopeHeader {
                version,
                flags,
                nonce,
            },
            &envelope[ENVELOPE_HEADER_LEN..],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_layout_is_as_specified() {
        let aad = associated_data(&ChunkId([7; 32]), KeyId(0x0102_0304_0506_0708), 1, 1);
        assert_eq!(&aad[..17], b"rsbackup chunk v1");
        assert_eq!(&aad[17..49], &[7; 32]);
        assert_eq!(&aad[49..57], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(aad[57..], [1, 1]);
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let id = ChunkId([1; 32]);
        let h = EnvelopeHeader {
            version: 1,
            flags: FLAG_ZSTD,
            nonce: [9; 24],
        };
        let mut env = h.encode().to_vec();
        env.extend_from_slice(&[0; TAG_LEN]);
        let (parsed, rest) = EnvelopeHeader::parse(&env, &id).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(rest.len(), TAG_LEN);

        let short = &env[..ENVELOPE_OVERHEAD - 1];
        assert_eq!(
            EnvelopeHeader::parse(short, &id).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            EnvelopeHeader::parse(&[], &id).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        let mut v3 = env.clone();
        v3[0] = 3;
        assert_eq!(
            EnvelopeHeader::parse(&v3, &id).unwrap_err().kind(),
            ErrorKind::UnsupportedVersion
        );
        // Version 2 (dictionary) is read, and its body is always a zstd frame.
        let mut v2 = env.clone();
        v2[0] = 2;
        assert_eq!(EnvelopeHeader::parse(&v2, &id).unwrap().0.version, 2);
        v2[1] = 0;
        let err = EnvelopeHeader::parse(&v2, &id).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("without its zstd flag"), "{err}");
        let mut bad_flags = env.clone();
        bad_flags[1] = 0x80;
        let err = EnvelopeHeader::parse(&bad_flags, &id).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("reserved flag"), "{err}");
    }
}
