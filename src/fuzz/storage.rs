//! Targets for the repository's own files: pack headers, chunk envelopes, manifests, records,
//! wrapped keys, the files cache and `repository.toml`. A server reads these back from its
//! disk, and a mirror receives records and keys from the primary over the wire.

use super::{selector, vector_data};
use crate::crypto::DataKey;
use crate::crypto::envelope;
use crate::crypto::wrap::{
    Identities, Recipients, unwrap_data_key, unwrap_secret, wrap_data_key, wrap_secret,
};
use crate::files_cache::CacheReader;
use crate::format::chunk::{EnvelopeHeader, FLAG_ZSTD};
use crate::format::manifest::{
    Body, Entry, Extent, MANIFEST_MAGIC, ManifestBuilder, ManifestParams, ManifestReader, Meta,
    chunk_references,
};
use crate::format::pack::{
    RecordHeader, decode_pack_header, decode_record_header, encode_pack_header,
    encode_record_header,
};
use crate::format::records::{
    SESSION_RECORD_VERSION, decode_refs, decode_session, encode_refs, encode_session,
};
use crate::format::repository::RepoConfig;
use crate::ids::{ChunkId, KeyId, PackName};

/// The throwaway identity of format-spec/vectors/keys-wrapped-data-key.txt, so that the
/// committed corpus holds keys it unwraps.
const IDENTITY: &str = "AGE-SECRET-KEY-1ZYR49R0WHCXV34RDE59LJCP8N2FRK40DY5Q8QRU6S5FRXETMYTTSN4YV5X";
/// Plaintext limit the envelope target opens with: small, so that a bomb shows.
const ENVELOPE_MAX: usize = 64 << 10;
const KEY_ID: KeyId = KeyId(3);
const CHUNK_ID: ChunkId = ChunkId([5; 32]);

/// Pack header (selector even) or record header (odd); accepted input re-encodes to itself.
pub fn pack(data: &[u8]) {
    let (s, rest) = selector(data);
    if s & 1 == 0 {
        if let Ok(name) = decode_pack_header(rest) {
            assert_eq!(encode_pack_header(&name)[..], rest[..32]);
        }
    } else if let Ok(header) = decode_record_header(rest) {
        assert_eq!(encode_record_header(&header)[..], rest[..48]);
        assert_eq!(header.record_len(), 48 + u64::from(header.envelope_len));
    }
}

/// Seeds for [`pack`].
pub fn pack_seeds() -> Vec<Vec<u8>> {
    let record = encode_record_header(&RecordHeader {
        envelope_len: 1234,
        chunk_id: CHUNK_ID,
        key_id: KEY_ID,
    });
    vec![
        [&[0u8][..], &encode_pack_header(&PackName([9; 16]))].concat(),
        [&[1u8][..], &record].concat(),
    ]
}

fn data_key() -> DataKey {
    DataKey::from_bytes([0x42; 32])
}

/// Selector 0: the bytes as a stored envelope, opened under a fixed key (the header checks
/// and authentication). 1: sealed by this build, opened back equal. 2 and 3: the bytes as an
/// envelope body (2 a zstd frame, 3 raw) sealed under the key, so that the decompression
/// limits are reached as a holder of the data key could reach them.
pub fn envelope(data: &[u8]) {
    let key = data_key();
    let (s, rest) = selector(data);
    match s % 4 {
        0 => {
            if let Ok((header, sealed)) = EnvelopeHeader::parse(rest, &CHUNK_ID) {
                assert_eq!(header.encode()[..], rest[..26]);
                assert_eq!(sealed.len(), rest.len() - 26);
            }
            let _ = envelope::open(&key, KEY_ID, &CHUNK_ID, rest, ENVELOPE_MAX);
        }
        1 => {
            let sealed = envelope::seal_with_nonce(&key, KEY_ID, &CHUNK_ID, rest, 3, None, [7; 24])
                .expect("sealing never fails");
            let back = envelope::open(&key, KEY_ID, &CHUNK_ID, &sealed, rest.len())
                .expect("a sealed chunk opens");
            assert_eq!(back, rest);
        }
        other => {
            let flags = if other == 2 { FLAG_ZSTD } else { 0 };
            let sealed = envelope::seal_body(&key, KEY_ID, &CHUNK_ID, flags, [7; 24], rest)
                .expect("sealing never fails");
            match envelope::open(&key, KEY_ID, &CHUNK_ID, &sealed, ENVELOPE_MAX) {
                Ok(plain) => {
                    assert!(plain.len() <= ENVELOPE_MAX, "{} bytes out", plain.len());
                    if flags == 0 {
                        assert_eq!(plain, rest);
                    }
                }
                Err(e) => assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}"),
            }
        }
    }
}

/// Seeds for [`envelope`].
pub fn envelope_seeds() -> Vec<Vec<u8>> {
    let text = b"a backup chunk, a backup chunk, a backup chunk, a backup chunk".to_vec();
    let sealed = envelope::seal_with_nonce(&data_key(), KEY_ID, &CHUNK_ID, &text, 3, None, [1; 24])
        .expect("seal");
    let frame = zstd::bulk::compress(&text, 3).expect("zstd");
    let mut streamed = Vec::new();
    {
        // A frame without a declared content size: the stream path of the decoder.
        let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 3).expect("zstd");
        enc.include_contentsize(false).expect("zstd");
        std::io::Write::write_all(&mut enc, &text).expect("zstd");
        enc.finish().expect("zstd");
    }
    vec![
        [&[0u8][..], &sealed].concat(),
        [&[1u8][..], &text].concat(),
        [&[2u8][..], &frame].concat(),
        [&[2u8][..], &streamed].concat(),
        [&[3u8][..], &text].concat(),
    ]
}

/// The bytes as manifest chunks (split before each `RSBKMAN1`), fed to a reader; an accepted
/// stream is built again and read back equal.
pub fn manifest(data: &[u8]) {
    let chunks = split_manifest_chunks(data);
    let mut reader = ManifestReader::new();
    let mut entries = Vec::new();
    for chunk in &chunks {
        let _ = chunk_references(chunk);
        match reader.feed(chunk) {
            Ok(more) => entries.extend(more),
            Err(_) => return,
        }
    }
    match reader.finish() {
        Ok(more) => entries.extend(more),
        Err(_) => return,
    }
    let rebuilt = build_manifest(&entries).expect("entries the reader accepted build again");
    let mut reader = ManifestReader::new();
    let mut back = Vec::new();
    for chunk in &rebuilt {
        back.extend(reader.feed(chunk).expect("rebuilt chunk reads"));
    }
    back.extend(reader.finish().expect("rebuilt manifest finishes"));
    assert_eq!(back, entries);
}

fn split_manifest_chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<usize> = data
        .windows(MANIFEST_MAGIC.len())
        .enumerate()
        .filter(|(_, w)| w == MANIFEST_MAGIC)
        .map(|(i, _)| i)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    starts.push(data.len());
    starts
        .windows(2)
        .map(|w| &data[w[0]..w[1]])
        .filter(|c| !c.is_empty())
        .collect()
}

fn build_manifest(entries: &[Entry]) -> crate::Result<Vec<Vec<u8>>> {
    // Small cut sizes, so that the seeds span several chunks and continuations.
    let params = ManifestParams {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
    };
    let mut builder = ManifestBuilder::new(params, [0x11; 32]);
    let mut out = Vec::new();
    for entry in entries {
        out.extend(builder.push(entry)?.into_iter().map(|c| c.bytes));
    }
    out.extend(builder.finish().map(|c| c.bytes));
    Ok(out)
}

/// Seeds for [`manifest`]: one entry of every kind.
pub fn manifest_seeds() -> Vec<Vec<u8>> {
    let meta = |mode: u32| Meta {
        mode,
        uid: 1000,
        gid: 100,
        mtime_sec: 1_795_675_200,
        mtime_nsec: 5,
        xattrs: vec![(b"user.note".to_vec(), b"v".to_vec())],
    };
    let entry = |path: &str, mode: u32, body: Body| Entry {
        path: path.as_bytes().to_vec(),
        meta: meta(mode),
        body,
    };
    let extents: Vec<Extent> = (0..40u8)
        .map(|i| Extent::Chunk {
            len: 100,
            id: ChunkId([i; 32]),
        })
        .chain([Extent::Hole { len: 4096 }])
        .collect();
    let entries = vec![
        entry("", 0o755, Body::Dir),
        entry("d", 0o700, Body::Dir),
        entry(
            "d/f",
            0o644,
            Body::File {
                size: 40 * 100 + 4096,
                extents,
            },
        ),
        entry(
            "d/g",
            0o644,
            Body::Hardlink {
                target: b"d/f".to_vec(),
            },
        ),
        entry(
            "d/l",
            0o777,
            Body::Symlink {
                target: b"../x".to_vec(),
            },
        ),
        entry("d/p", 0o600, Body::Fifo),
        entry("d/s", 0o600, Body::Socket),
        entry("d/t", 0o600, Body::CharDev { rdev: 0x0501 }),
        entry("d/u", 0o600, Body::BlockDev { rdev: 0x0801 }),
        entry(
            "d/v",
            0o600,
            Body::Unreadable {
                message: "permission denied".into(),
            },
        ),
    ];
    vec![
        build_manifest(&entries).expect("seed builds").concat(),
        build_manifest(&entries[..1]).expect("seed builds").concat(),
    ]
}

/// Selector even: a session record, odd: a reference list. The trailing checksum is made
/// right first (unless selector bit 1 is set), so that mutation reaches the fields behind it;
/// an accepted record re-encodes to the same bytes.
pub fn records(data: &[u8]) {
    let (s, rest) = selector(data);
    let mut bytes = rest.to_vec();
    if s & 2 == 0 && bytes.len() >= 32 {
        let n = bytes.len() - 32;
        let sum = blake3::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(sum.as_bytes());
    }
    if s & 1 == 0 {
        if let Ok(record) = decode_session(&bytes) {
            let encoded = encode_session(&record).expect("a decoded record encodes");
            // A record of the current version re-encodes to the same bytes; an older one is
            // read and written as the current version, which reads back the same.
            if bytes.get(8..12) == Some(&SESSION_RECORD_VERSION.to_le_bytes()[..]) {
                assert_eq!(encoded, bytes);
            } else {
                assert_eq!(
                    decode_session(&encoded).expect("a re-encoded record decodes"),
                    record
                );
            }
        }
    } else if let Ok(refs) = decode_refs(&bytes) {
        assert_eq!(encode_refs(&refs).expect("a decoded list encodes"), bytes);
    }
}

/// Seeds for [`records`]: the format-spec vectors.
pub fn records_seeds() -> Vec<Vec<u8>> {
    vec![
        [
            &[0u8][..],
            &vector_data(include_str!(
                "../../format-spec/vectors/records-session.txt"
            )),
        ]
        .concat(),
        [
            &[1u8][..],
            &vector_data(include_str!(
                "../../format-spec/vectors/records-pack-refs.txt"
            )),
        ]
        .concat(),
    ]
}

fn identities() -> Identities {
    Identities::parse(IDENTITY, "fuzz identity").expect("the fixed identity parses")
}

/// Selector 0: a wrapped data key, 1: a wrapped secret (both unwrapped with a fixed identity);
/// 2: an identity file; 3: recipient lines.
pub fn keys(data: &[u8]) {
    let (s, rest) = selector(data);
    match s % 4 {
        0 => {
            if let Ok(key) = unwrap_data_key(rest, &identities()) {
                let again = wrap_data_key(&key, &identities().recipients()).expect("wrap");
                let back = unwrap_data_key(&again, &identities()).expect("unwrap");
                assert_eq!(back.expose(), key.expose());
            }
        }
        1 => {
            let _ = unwrap_secret(rest, &identities());
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(ids) = Identities::parse(&text, "fuzz") {
                let _ = ids.recipients().to_strings();
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let list: Vec<String> = text.lines().map(str::to_owned).collect();
            if let Ok(r) = Recipients::parse(&list) {
                let again = Recipients::parse(&r.to_strings()).expect("recipients parse again");
                assert_eq!(again.to_strings(), r.to_strings());
            }
        }
    }
}

/// Seeds for [`keys`].
pub fn keys_seeds() -> Vec<Vec<u8>> {
    let recipients = identities().recipients();
    let wrapped_key = wrap_data_key(&data_key(), &recipients).expect("wrap");
    let secret = crate::crypto::RepoSecret::from_bytes([0x33; 32]);
    let wrapped_secret = wrap_secret(&secret, &recipients).expect("wrap");
    vec![
        [&[0u8][..], &wrapped_key].concat(),
        [&[1u8][..], &wrapped_secret].concat(),
        [
            &[2u8][..],
            format!("# created: now\n{IDENTITY}\n").as_bytes(),
        ]
        .concat(),
        [&[3u8][..], recipients.to_strings().join("\n").as_bytes()].concat(),
    ]
}

/// The bytes as a files cache (its trailing checksum made right, so that mutation reaches
/// the index and rows), opened and probed with every block's first path hash and its
/// neighbours.
pub fn files_cache(data: &[u8]) {
    let mut bytes = data.to_vec();
    if bytes.len() >= 80 {
        let n = bytes.len() - 32;
        let sum = blake3::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(sum.as_bytes());
    }
    let fd = rustix::fs::memfd_create("rsbackup-fuzz-files-cache", rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd_create");
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, &bytes).expect("writing a memfd");
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let Some(reader) = CacheReader::open(std::path::Path::new(&path)) else {
        return;
    };
    // The trailer names the block index: probe each block's first hash, one below and one
    // above it, and the extremes.
    let mut probes = vec![[0u8; 16], [0xff; 16]];
    let trailer = &bytes[bytes.len() - 64..];
    let index_offset = u64::from_le_bytes(trailer[24..32].try_into().expect("8 bytes"));
    let index_end = bytes.len() - 64;
    if let Ok(start) = usize::try_from(index_offset) {
        for entry in bytes[start.min(index_end)..index_end].chunks_exact(24) {
            let first: [u8; 16] = entry[..16].try_into().expect("16 bytes");
            let n = u128::from_be_bytes(first);
            probes.extend([
                first,
                n.wrapping_sub(1).to_be_bytes(),
                n.wrapping_add(1).to_be_bytes(),
            ]);
        }
    }
    for probe in &probes {
        if let Some(row) = reader.get(probe) {
            let total: u64 = row
                .extents
                .iter()
                .map(Extent::len)
                .fold(0, u64::saturating_add);
            let _ = total;
        }
    }
}

/// Seeds for [`files_cache`]: a cache of three rows written by this build.
pub fn files_cache_seeds() -> Vec<Vec<u8>> {
    vec![
        vector_data(include_str!(
            "../../format-spec/vectors/files-cache-three-rows.txt"
        )),
        vector_data(include_str!(
            "../../format-spec/vectors/files-cache-empty.txt"
        )),
    ]
}

/// `repository.toml` text; an accepted one prints and parses back equal.
pub fn repository_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = RepoConfig::parse(&text, "fuzz/repository.toml") {
        let again = RepoConfig::parse(&config.to_toml(), "printed").expect("printed config parses");
        assert_eq!(again, config);
    }
}

/// Seeds for [`repository_toml`].
pub fn repository_toml_seeds() -> Vec<Vec<u8>> {
    let recipients = identities().recipients().to_strings();
    let config = RepoConfig {
        id: "9f1c3a0e7b2d4c58a1e6f00d3b7c9e21".into(),
        created: 1_795_675_200,
        recipients,
        secret_check: "5a0c11223344556677889900aabbccdd".into(),
        chunker: crate::chunking::ChunkerParams::DEFAULT,
        manifest: ManifestParams::DEFAULT,
        zstd_level: 3,
        pack_target_size: 32 << 20,
    };
    vec![config.to_toml().into_bytes()]
}
