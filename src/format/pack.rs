//! Pack file bytes (format-spec/pack.md): the 32-byte header and the 48-byte record header.

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ChunkId, KeyId, PackName};

/// Pack magic.
pub const PACK_MAGIC: &[u8; 8] = b"RSBKPACK";
/// Pack version written by this build.
pub const PACK_VERSION: u32 = 1;
/// Length of the pack header.
pub const PACK_HEADER_LEN: usize = 32;
/// Record magic.
pub const RECORD_MAGIC: &[u8; 4] = b"RSBR";
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 48;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Length of the envelope that follows.
    pub envelope_len: u32,
    /// The chunk id.
    pub chunk_id: ChunkId,
    /// The data key id.
    pub key_id: KeyId,
}

impl RecordHeader {
    /// Total record length: header plus envelope.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.envelope_len)
    }
}

/// Encode a pack header.
pub fn encode_pack_header(name: &PackName) -> [u8; PACK_HEADER_LEN] {
    let mut out = [0u8; PACK_HEADER_LEN];
    out[0..8].copy_from_slice(PACK_MAGIC);
    out[8..12].copy_from_slice(&PACK_VERSION.to_le_bytes());
    // 12..16 reserved, zero.
    out[16..32].copy_from_slice(&name.0);
    out
}

/// Decode a pack header; `UnsupportedVersion` for an unknown version, `Corrupt` otherwise.
pub fn decode_pack_header(bytes: &[u8]) -> Result<PackName> {
    if bytes.len() < PACK_HEADER_LEN {
        return Err(Error::corrupt(format!(
            "pack header is truncated: {} of {PACK_HEADER_LEN} bytes",
            bytes.len()
        )));
    }
    if &bytes[0..8] != PACK_MAGIC {
        return Err(Error::corrupt(
            "pack header has a bad magic (not an rsbackup pack file)",
        ));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != PACK_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "pack format version {version} is not supported (this build reads version {PACK_VERSION})"
            ),
        ));
    }
    if bytes[12..16] != [0u8; 4] {
        return Err(Error::corrupt("pack header has non-zero reserved bytes"));
    }
    let mut name = [0u8; 16];
    name.copy_from_slice(&bytes[16..32]);
    Ok(PackName(name))
}

/// Encode a record header.
pub fn encode_record_header(header: &RecordHeader) -> [u8; RECORD_HEADER_LEN] {
    let mut out = [0u8; RECORD_HEADER_LEN];
    out[0..4].copy_from_slice(RECORD_MAGIC);
    out[4..8].copy_from_slice(&header.envelope_len.to_le_bytes());
    out[8..40].copy_from_slice(&header.chunk_id.0);
    out[40..48].copy_from_slice(&header.key_id.0.to_le_bytes());
    out
}

/// Decode a record header; `Corrupt` on a bad magic or short input.
pub fn decode_record_header(bytes: &[u8]) -> Result<RecordHeader> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(Error::corrupt(format!(
            "record header is truncated: {} of {RECORD_HEADER_LEN} bytes",
            bytes.len()
        )));
    }
    if &bytes[0..4] != RECORD_MAGIC {
        return Err(Error::corrupt("record header has a bad magic"));
    }
    let envelope_len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let mut id = [0u8; 32];
    id.copy_from_slice(&bytes[8..40]);
    let key_id = u64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes"));
    Ok(RecordHeader {
        envelope_len,
        chunk_id: ChunkId(id),
        key_id: KeyId(key_id),
    })
}

/// Helpers shared by the vector tests of the storage layer (pack, repository, index): the
/// vector file format of `format-spec/vectors/README.md` and the test pattern.
#[cfg(test)]
pub(crate) mod vector_file {
    use std::path::PathBuf;

    /// `P(seed, n)` of format-spec/vectors/README.md.
    pub fn pattern(seed: u8, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        blake3::Hasher::new_keyed(&[seed; 32])
            .finalize_xof()
            .fill(&mut out);
        out
    }

    /// Path of a vector file.
    pub fn path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("format-spec/vectors")
            .join(name)
    }

    /// Render a case: header lines, a blank line, hex in lines of 64 digits.
    pub fn render(headers: &[(&str, String)], data: &[u8]) -> String {
        let mut out = String::new();
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
        for line in data.chunks(32) {
            out.push_str(&hex::encode(line));
            out.push('\n');
        }
        out
    }

    /// Parse a case into its headers and data.
    pub fn parse(text: &str) -> (Vec<(String, String)>, Vec<u8>) {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let headers = head
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (k, v) = l.split_once(": ").expect("header line is `key: value`");
                (k.to_string(), v.to_string())
            })
            .collect();
        let hex: String = body.split_whitespace().collect();
        (headers, hex::decode(hex).expect("vector data is hex"))
    }

    /// The value of header `key`.
    pub fn header<'a>(headers: &'a [(String, String)], key: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// With `RSBACKUP_WRITE_VECTORS=1`, write the case; otherwise check the file holds it.
    pub fn check_or_write(name: &str, headers: &[(&str, String)], data: &[u8]) {
        let text = render(headers, data);
        let path = path(name);
        if std::env::var("RSBACKUP_WRITE_VECTORS").as_deref() == Ok("1") {
            std::fs::write(&path, &text).expect("write vector");
        } else {
            let stored = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("vector {} unreadable: {e}", path.display()));
            assert_eq!(
                stored, text,
                "vector {name} differs from what the code produces"
            );
        }
    }

    /// Names of the vector files starting with `prefix`, sorted.
    pub fn list(prefix: &str) -> Vec<String> {
        let dir = path("");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("vectors dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".txt"))
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::vector_file::{check_or_write, header, list, parse, path, pattern};
    use super::*;

    fn fixed_name() -> PackName {
        let mut n = [0u8; 16];
        n.copy_from_slice(&pattern(1, 16));
        PackName(n)
    }

    fn fixed_record_header(envelope_len: u32) -> RecordHeader {
        let mut id = [0u8; 32];
        id.copy_from_slice(&pattern(2, 32));
        RecordHeader {
            envelope_len,
            chunk_id: ChunkId(id),
            key_id: KeyId(0x0102_0304_0506_0708),
        }
    }

    /// A fixed envelope: version 1, flags 0, nonce P(3,24), "ciphertext" P(4,40). The pack layer
    /// does not open envelopes, so it need not authenticate.
    fn fixed_envelope() -> Vec<u8> {
        let mut env = vec![1u8, 0u8];
        env.extend_from_slice(&pattern(3, 24));
        env.extend_from_slice(&pattern(4, 40));
        env
    }

    #[test]
    fn pack_header_round_trip_and_layout() {
        let name = fixed_name();
        let bytes = encode_pack_header(&name);
        assert_eq!(&bytes[..8], b"RSBKPACK");
        assert_eq!(&bytes[8..12], &[1, 0, 0, 0]);
        assert_eq!(decode_pack_header(&bytes).unwrap(), name);
    }

    #[test]
    fn pack_header_refusals() {
        let good = encode_pack_header(&fixed_name());
        let mut bad_magic = good;
        bad_magic[0] ^= 1;
        assert_eq!(
            decode_pack_header(&bad_magic).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        let mut future = good;
        future[8] = 2;
        assert_eq!(
            decode_pack_header(&future).unwrap_err().kind(),
            ErrorKind::UnsupportedVersion
        );
        let mut reserved = good;
        reserved[13] = 1;
        assert_eq!(
            decode_pack_header(&reserved).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        let err = decode_pack_header(&good[..31]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("truncated"), "{}", err.message());
    }

    #[test]
    fn record_header_round_trip_and_refusals() {
        let h = fixed_record_header(42);
        let bytes = encode_record_header(&h);
        assert_eq!(&bytes[..4], b"RSBR");
        assert_eq!(&bytes[4..8], &[42, 0, 0, 0]);
        assert_eq!(&bytes[40..48], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(decode_record_header(&bytes).unwrap(), h);
        assert_eq!(h.record_len(), 90);
        let mut bad = bytes;
        bad[3] = b'X';
        assert_eq!(
            decode_record_header(&bad).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            decode_record_header(&bytes[..47]).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }

    /// The full one-record pack: header, then one record holding the fixed envelope.
    fn one_record_pack() -> (Vec<u8>, [u8; 32]) {
        let env = fixed_envelope();
        let mut pack = encode_pack_header(&fixed_name()).to_vec();
        let rec_start = pack.len();
        pack.extend_from_slice(&encode_record_header(
            &fixed_record_header(env.len() as u32),
        ));
        pack.extend_from_slice(&env);
        let stored_hash = *blake3::hash(&pack[rec_start..]).as_bytes();
        (pack, stored_hash)
    }

    #[test]
    fn vectors_reproduce() {
        let name = fixed_name();
        check_or_write(
            "pack-header.txt",
            &[
                ("expect", "success".into()),
                ("description", "pack header; name = P(1,16)".into()),
                ("pack-name", name.to_hex()),
            ],
            &encode_pack_header(&name),
        );
        let rh = fixed_record_header(66);
        check_or_write(
            "pack-record-header.txt",
            &[
                ("expect", "success".into()),
                (
                    "description",
                    "record header; chunk id = P(2,32), key id 0x0102030405060708".into(),
                ),
                ("envelope-len", "66".into()),
                ("chunk-id", rh.chunk_id.to_hex()),
                ("key-id", rh.key_id.0.to_string()),
            ],
            &encode_record_header(&rh),
        );
        let (pack, stored_hash) = one_record_pack();
        check_or_write(
            "pack-one-record.txt",
            &[
                ("expect", "success".into()),
                (
                    "description",
                    "pack with one record; envelope = 01 00 || P(3,24) || P(4,40) (not a valid AEAD)"
                        .into(),
                ),
                ("pack-name", name.to_hex()),
                ("record-offset", "32".into()),
                ("record-length", (pack.len() - 32).to_string()),
                ("stored-hash", hex::encode(stored_hash)),
            ],
            &pack,
        );
        let mut bad = encode_pack_header(&name);
        bad[8] = 2;
        check_or_write(
            "pack-header-future-version.txt",
            &[
                ("expect", "failure".into()),
                ("error", "unsupported-version".into()),
                ("description", "pack header with version 2".into()),
            ],
            &bad,
        );
    }

    /// Every pack vector on disk decodes as its header says (also those written by hand).
    #[test]
    fn vectors_decode_as_expected() {
        let names = list("pack-");
        assert!(names.len() >= 4, "pack vectors missing: {names:?}");
        for name in names {
            let (headers, data) = parse(&std::fs::read_to_string(path(&name)).unwrap());
            let ok = match header(&headers, "expect") {
                Some("success") => true,
                Some("failure") => false,
                other => panic!("{name}: bad expect {other:?}"),
            };
            if name.starts_with("pack-record-header") {
                let h = decode_record_header(&data);
                assert_eq!(h.is_ok(), ok, "{name}");
                if let Ok(h) = h {
                    assert_eq!(
                        Some(h.chunk_id.to_hex().as_str()),
                        header(&headers, "chunk-id")
                    );
                }
                continue;
            }
            let decoded = decode_pack_header(&data);
            assert_eq!(decoded.is_ok(), ok, "{name}: {decoded:?}");
            if let Err(e) = decoded {
                if header(&headers, "error") == Some("unsupported-version") {
                    assert_eq!(e.kind(), ErrorKind::UnsupportedVersion, "{name}");
                }
                continue;
            }
            if let Some(off) = header(&headers, "record-offset") {
                let off: usize = off.parse().unwrap();
                let len: usize = header(&headers, "record-length").unwrap().parse().unwrap();
                let rec = &data[off..off + len];
                let h = decode_record_header(rec).unwrap();
                assert_eq!(h.record_len() as usize, len, "{name}");
                assert_eq!(
                    Some(hex::encode(blake3::hash(rec).as_bytes()).as_str()),
                    header(&headers, "stored-hash"),
                    "{name}"
                );
            }
        }
    }
}
