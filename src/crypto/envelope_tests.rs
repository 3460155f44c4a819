//! Envelope tests: round trips, every kind of tampering, decompression bounds, vectors.

use super::*;
use crate::crypto::RepoSecret;
use crate::crypto::testvec::{Vector, pattern};
use crate::error::ErrorKind;

const MAX: usize = 4 << 20;
const KEY_ID: KeyId = KeyId(7);

fn key() -> DataKey {
    DataKey::from_bytes(std::array::from_fn(|i| i as u8))
}

fn id_of(plaintext: &[u8]) -> ChunkId {
    RepoSecret::from_bytes([0x42; 32])
        .chunk_id_key()
        .chunk_id(plaintext)
}

/// Seal an arbitrary body with arbitrary flags, as a malicious or buggy writer holding the
/// data key could: the AEAD then passes and only the later checks stand in the way.
fn seal_body(key: &DataKey, key_id: KeyId, id: &ChunkId, flags: u8, body: &[u8]) -> Vec<u8> {
    let nonce = [3u8; NONCE_LEN];
    let mut out = EnvelopeHeader {
        version: ENVELOPE_VERSION,
        flags,
        nonce,
    }
    .encode()
    .to_vec();
    let mut sealed = body.to_vec();
    let aad = associated_data(id, key_id, ENVELOPE_VERSION, flags);
    let tag = XChaCha20Poly1305::new(key.expose().into())
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut sealed)
        .unwrap();
    out.extend_from_slice(&sealed);
    out.extend_from_slice(&tag);
    out
}

fn compressible(n: usize) -> Vec<u8> {
    pattern(2, 64).repeat(n / 64)
}

#[test]
fn round_trips_at_many_sizes() {
    for n in [0, 1, 2, 3, 63, 64, 1000, 65536, 1 << 20] {
        for data in [pattern(1, n), compressible(n)] {
            let id = id_of(&data);
            let env = seal(&key(), KEY_ID, &id, &data, 3).unwrap();
            assert_eq!(open(&key(), KEY_ID, &id, &env, MAX).unwrap(), data, "n={n}");
        }
    }
}

#[test]
fn incompressible_data_is_stored_raw_and_compressible_data_is_not() {
    let raw = pattern(1, 100_000);
    let env = seal(&key(), KEY_ID, &id_of(&raw), &raw, 3).unwrap();
    assert_eq!(env[1], 0);
    assert_eq!(env.len(), raw.len() + ENVELOPE_OVERHEAD);

    let text = compressible(100_032);
    let env = seal(&key(), KEY_ID, &id_of(&text), &text, 3).unwrap();
    assert_eq!(env[1], FLAG_ZSTD);
    assert!(env.len() < text.len() / 10, "{} bytes", env.len());

    // Tiny inputs never compress: a frame costs more than it saves.
    for tiny in [&b""[..], b"a", b"aaaaaaa"] {
        let env = seal(&key(), KEY_ID, &id_of(tiny), tiny, 19).unwrap();
        assert_eq!(env[1], 0);
        assert_eq!(env.len(), tiny.len() + ENVELOPE_OVERHEAD);
    }
}

#[test]
fn nonces_are_fresh() {
    let data = pattern(1, 100);
    let a = seal(&key(), KEY_ID, &id_of(&data), &data, 3).unwrap();
    let b = seal(&key(), KEY_ID, &id_of(&data), &data, 3).unwrap();
    assert_ne!(a[2..26], b[2..26]);
    assert_ne!(a, b);
}

#[test]
fn every_tampering_is_refused() {
    for data in [pattern(1, 3000), compressible(3008)] {
        let id = id_of(&data);
        let env = seal(&key(), KEY_ID, &id, &data, 3).unwrap();
        let refused = |env: &[u8], key: &DataKey, key_id: KeyId, id: &ChunkId| {
            open(key, key_id, id, env, MAX).unwrap_err().kind()
        };
        // Every header byte, flipped one bit at a time (the low and the high bit).
        for i in 0..ENVELOPE_HEADER_LEN {
            for bit in [0x01, 0x80] {
                let mut bad = env.clone();
                bad[i] ^= bit;
                let want = if i == 0 {
                    ErrorKind::UnsupportedVersion
                } else {
                    ErrorKind::Corrupt
                };
                assert_eq!(
                    refused(&bad, &key(), KEY_ID, &id),
                    want,
                    "byte {i} bit {bit}"
                );
            }
        }
        // A ciphertext byte, a tag byte, the last byte.
        for i in [
            ENVELOPE_HEADER_LEN,
            env.len() / 2,
            env.len() - TAG_LEN,
            env.len() - 1,
        ] {
            let mut bad = env.clone();
            bad[i] ^= 0x04;
            assert_eq!(
                refused(&bad, &key(), KEY_ID, &id),
                ErrorKind::Corrupt,
                "byte {i}"
            );
        }
        let wrong_key = DataKey::from_bytes([0xee; 32]);
        assert_eq!(refused(&env, &wrong_key, KEY_ID, &id), ErrorKind::Corrupt);
        assert_eq!(refused(&env, &key(), KeyId(8), &id), ErrorKind::Corrupt);
        assert_eq!(
            refused(&env, &key(), KEY_ID, &id_of(b"other")),
            ErrorKind::Corrupt
        );
        for len in [0, 1, 25, 26, 41, env.len() - 1] {
            assert_eq!(
                refused(&env[..len], &key(), KEY_ID, &id),
                ErrorKind::Corrupt,
                "truncated to {len}"
            );
        }
        let mut longer = env.clone();
        longer.push(0);
        assert_eq!(refused(&longer, &key(), KEY_ID, &id), ErrorKind::Corrupt);
    }
}

#[test]
fn authentication_failure_message_names_chunk_and_key() {
    let data = pattern(1, 10);
    let id = id_of(&data);
    let env = seal(&key(), KEY_ID, &id, &data, 3).unwrap();
    let err = open(&key(), KeyId(9), &id, &env, MAX).unwrap_err();
    assert!(err.message().contains(&id.to_hex()), "{err}");
    assert!(err.message().contains("data key 9"), "{err}");
}

#[test]
fn zstd_bomb_with_declared_size_is_refused_before_allocating() {
    // 1 GiB of zeros compresses to about 40 KiB; the frame declares its size.
    let frame = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
    assert!(frame.len() < 10_000);
    let id = ChunkId([1; 32]);
    let env = seal_body(&key(), KEY_ID, &id, FLAG_ZSTD, &frame);
    let err = open(&key(), KEY_ID, &id, &env, MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("declares"), "{err}");
    // Within the limit it opens.
    assert_eq!(
        open(&key(), KEY_ID, &id, &env, 64 << 20).unwrap().len(),
        64 << 20
    );
}

#[test]
fn a_frame_without_declared_size_cannot_ask_for_a_window_larger_than_the_limit() {
    let frame_with_window = |log: u32| {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.window_log(log).unwrap();
        std::io::Write::write_all(&mut enc, b"small").unwrap();
        enc.finish().unwrap()
    };
    let id = ChunkId([2; 32]);
    // A 128 MiB window for five bytes, read with a 64 KiB limit: refused, nothing allocated.
    let big = seal_body(&key(), KEY_ID, &id, FLAG_ZSTD, &frame_with_window(27));
    let err = open(&key(), KEY_ID, &id, &big, 64 << 10).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    // The same bytes with a window within the limit open.
    let small = seal_body(&key(), KEY_ID, &id, FLAG_ZSTD, &frame_with_window(16));
    assert_eq!(
        open(&key(), KEY_ID, &id, &small, 64 << 10).unwrap(),
        b"small"
    );
    // And the large window opens when the limit allows it.
    assert_eq!(
        open(&key(), KEY_ID, &id, &big, 128 << 20).unwrap(),
        b"small"
    );
}

#[test]
fn zstd_bomb_without_declared_size_stops_at_the_limit() {
    // A streaming encoder does not write the content size into the frame header.
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    std::io::Write::write_all(&mut enc, &vec![0u8; 16 << 20]).unwrap();
    let frame = enc.finish().unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&frame).unwrap(),
        None
    );
    let id = ChunkId([1; 32]);
    let env = seal_body(&key(), KEY_ID, &id, FLAG_ZSTD, &frame);
    let err = open(&key(), KEY_ID, &id, &env, MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(
        open(&key(), KEY_ID, &id, &env, 16 << 20).unwrap().len(),
        16 << 20
    ); // A generous limit is not allocated up front.
    assert_eq!(
        open(&key(), KEY_ID, &id, &env, usize::MAX).unwrap().len(),
        16 << 20
    );
    // Exactly at the limit is fine, one byte below is not.
    let below = open(&key(), KEY_ID, &id, &env, (16 << 20) - 1);
    assert_eq!(below.err().map(|e| e.kind()), Some(ErrorKind::Corrupt));
}

#[test]
fn malformed_compressed_bodies_are_refused() {
    let id = ChunkId([1; 32]);
    let frame = zstd::bulk::compress(&compressible(4096), 3).unwrap();
    let two_frames = [frame.clone(), frame.clone()].concat();
    // A frame whose magic is damaged. (Damage inside a validly sealed frame may decode to
    // other bytes: only the chunk-id check can catch that, which is why readers do it.)
    let mut damaged = frame.clone();
    damaged[0] ^= 0xff;
    for (name, body) in [
        ("two frames", two_frames),
        ("garbage", b"not zstd at all".to_vec()),
        ("empty", Vec::new()),
        ("truncated", frame[..frame.len() - 3].to_vec()),
        ("damaged", damaged),
    ] {
        let env = seal_body(&key(), KEY_ID, &id, FLAG_ZSTD, &body);
        let kind = open(&key(), KEY_ID, &id, &env, MAX).err().map(|e| e.kind());
        assert_eq!(kind, Some(ErrorKind::Corrupt), "{name}");
    }
    // A raw body over the limit is refused too.
    let env = seal_body(&key(), KEY_ID, &id, 0, &[0; 100]);
    assert_eq!(
        open(&key(), KEY_ID, &id, &env, 99).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    assert_eq!(open(&key(), KEY_ID, &id, &env, 100).unwrap(), vec![0; 100]);
}

#[test]
fn bad_compression_level_is_an_error_not_a_panic() {
    // zstd clamps most levels; whatever it does, seal must either work or return an error.
    let data = compressible(4096);
    for level in [-1000, 0, 22, 1000] {
        if let Ok(env) = seal(&key(), KEY_ID, &id_of(&data), &data, level) {
            assert_eq!(
                open(&key(), KEY_ID, &id_of(&data), &env, MAX).unwrap(),
                data
            );
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Sealing any bytes at any usual level opens to the same bytes.
    #[test]
    fn seal_open_round_trip(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5000),
        repeat in 1usize..8,
        level in 1i32..10,
    ) {
        let data = data.repeat(repeat);
        let id = id_of(&data);
        let env = seal(&key(), KEY_ID, &id, &data, level).unwrap();
        proptest::prop_assert!(env.len() <= data.len() + ENVELOPE_OVERHEAD);
        proptest::prop_assert_eq!(open(&key(), KEY_ID, &id, &env, data.len()).unwrap(), data);
    }

    /// Arbitrary bytes, and valid envelopes with arbitrary edits, are refused without panic.
    #[test]
    fn damaged_input_is_refused_never_panics(
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        pos in proptest::prelude::any::<usize>(),
        xor in 1u8..=255,
        cut in proptest::prelude::any::<usize>(),
    ) {
        let id = ChunkId([4; 32]);
        proptest::prop_assert!(open(&key(), KEY_ID, &id, &garbage, MAX).is_err());
        let data = compressible(2048);
        let env = seal(&key(), KEY_ID, &id, &data, 3).unwrap();
        let mut bad = env.clone();
        bad[pos % env.len()] ^= xor;
        proptest::prop_assert!(open(&key(), KEY_ID, &id, &bad, MAX).is_err());
        let short = &env[..cut % env.len()];
        proptest::prop_assert!(open(&key(), KEY_ID, &id, short, MAX).is_err());
    }
}

// ---- vectors ----

const VECTOR_NONCE: [u8; NONCE_LEN] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f,
    0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57,
];

/// A success vector: the envelope of a described plaintext, reproduced byte for byte.
fn success_vector(seed: u8, n: usize, repeat: usize) -> (Vector, Vec<u8>) {
    let plaintext = pattern(seed, n).repeat(repeat);
    let id = id_of(&plaintext);
    let env = seal_with_nonce(&key(), KEY_ID, &id, &plaintext, 3, None, VECTOR_NONCE).unwrap();
    let mut v = Vector {
        comments: vec![
            "Chunk envelope (chunk.md) sealed with the fixed nonce below; data = the envelope."
                .into(),
            "The plaintext is P(seed, n) repeated; the chunk id is keyed BLAKE3 under the".into(),
            "chunk-id key of secret 42..42. zstd output may change with the zstd library:".into(),
            "opening must always give the plaintext; byte equality pins zstd 1.5.7.".into(),
        ],
        ..Vector::default()
    };
    v.field("expect", "success")
        .field("data-key", hex::encode(key().expose()))
        .field("key-id", KEY_ID.0)
        .field("chunk-id", id.to_hex())
        .field("nonce", hex::encode(VECTOR_NONCE))
        .field("zstd-level", 3)
        .field("max-plaintext", MAX)
        .field(
            "plaintext",
            format!("P({seed}, {n}) repeated {repeat} times"),
        )
        .field("flags", env[1]);
    v.set_data_hex(&env);
    (v, plaintext)
}

/// A failure vector: `env` must be refused with `error`.
fn failure_vector(what: &str, env: &[u8], key_id: KeyId, id: &ChunkId, error: &str) -> Vector {
    let mut v = Vector {
        comments: vec![format!("A damaged envelope ({what}): opening MUST fail.")],
        ..Vector::default()
    };
    v.field("expect", "failure")
        .field("error", error)
        .field("data-key", hex::encode(key().expose()))
        .field("key-id", key_id.0)
        .field("chunk-id", id.to_hex())
        .field("max-plaintext", MAX);
    v.set_data_hex(env);
    v
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::UnsupportedVersion => "unsupported-version",
        _ => "other",
    }
}

/// Check a failure vector against the code: it must be refused with the stated error.
fn check_failure(name: &str) {
    let v = Vector::load(name);
    assert_eq!(v.get("expect"), "failure");
    let key = DataKey::from_bytes(v.hex("data-key").try_into().unwrap());
    let id = ChunkId(v.hex("chunk-id").try_into().unwrap());
    let key_id = KeyId(v.get("key-id").parse().unwrap());
    let max: usize = v.get("max-plaintext").parse().unwrap();
    let err = open(&key, key_id, &id, &v.data_hex(), max).unwrap_err();
    assert_eq!(kind_name(err.kind()), v.get("error"), "{name}: {err}");
}

#[test]
fn vectors_chunk() {
    let (raw, raw_plain) = success_vector(1, 1000, 1);
    let (z, z_plain) = success_vector(2, 64, 64);
    assert_eq!(raw.get("flags"), "0");
    assert_eq!(z.get("flags"), "1");
    for (name, v, plain) in [
        ("chunk-raw.txt", &raw, &raw_plain),
        ("chunk-zstd.txt", &z, &z_plain),
    ] {
        v.check_or_write(name);
        let stored = Vector::load(name);
        let id = ChunkId(stored.hex("chunk-id").try_into().unwrap());
        assert_eq!(
            open(&key(), KEY_ID, &id, &stored.data_hex(), MAX).unwrap(),
            *plain
        );
    }

    let env = z.data_hex();
    let id: ChunkId = z.get("chunk-id").parse().unwrap();
    let flip = |i: usize, bit: u8| {
        let mut e = env.clone();
        e[i] ^= bit;
        e
    };
    let n = env.len();
    let cases: Vec<(&str, &str, Vec<u8>, KeyId, ChunkId)> = vec![
        ("chunk-bad-version.txt", "version 3", flip(0, 2), KEY_ID, id),
        (
            "chunk-reserved-flag.txt",
            "flag bit 7 set",
            flip(1, 0x80),
            KEY_ID,
            id,
        ),
        (
            "chunk-flag-cleared.txt",
            "zstd flag cleared",
            flip(1, 1),
            KEY_ID,
            id,
        ),
        (
            "chunk-bad-nonce.txt",
            "nonce byte changed",
            flip(2, 1),
            KEY_ID,
            id,
        ),
        (
            "chunk-bad-ciphertext.txt",
            "ciphertext byte changed",
            flip(26, 1),
            KEY_ID,
            id,
        ),
        (
            "chunk-bad-tag.txt",
            "tag byte changed",
            flip(n - 1, 1),
            KEY_ID,
            id,
        ),
        (
            "chunk-wrong-key-id.txt",
            "opened as key id 8",
            env.clone(),
            KeyId(8),
            id,
        ),
        (
            "chunk-wrong-chunk-id.txt",
            "opened as another chunk",
            env.clone(),
            KEY_ID,
            ChunkId([0; 32]),
        ),
        (
            "chunk-truncated.txt",
            "last byte missing",
            env[..n - 1].to_vec(),
            KEY_ID,
            id,
        ),
    ];
    for (name, what, bad, key_id, cid) in cases {
        let kind = open(&key(), key_id, &cid, &bad, MAX).unwrap_err().kind();
        failure_vector(what, &bad, key_id, &cid, kind_name(kind)).check_or_write(name);
        check_failure(name);
    }
    assert_eq!(
        Vector::load("chunk-bad-version.txt").get("error"),
        "unsupported-version"
    );
    assert_eq!(Vector::load("chunk-bad-tag.txt").get("error"), "corrupt");
}

/// A compressed envelope gives back the room its plaintext needed: envelopes wait in the pack
/// writer's queue, whose budget counts what they hold in memory.
#[test]
fn a_compressed_envelope_holds_no_more_than_its_length() {
    let plaintext = vec![b'a'; 1 << 20];
    let id = id_of(&plaintext);
    let sealed = seal(&key(), KEY_ID, &id, &plaintext, 1).unwrap();
    assert!(sealed.len() < 1024, "{} bytes", sealed.len());
    assert!(
        sealed.capacity() < 2 * 1024,
        "capacity {}",
        sealed.capacity()
    );
    assert_eq!(open(&key(), KEY_ID, &id, &sealed, MAX).unwrap(), plaintext);
}
