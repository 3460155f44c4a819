//! Dictionary tests: training, envelopes of version 2, the stored form, the vector.

use super::*;
use crate::crypto::envelope::{open, seal, seal_with, seal_with_nonce};
use crate::crypto::testvec::{Vector, pattern};
use crate::crypto::{DataKey, RepoSecret};
use crate::error::ErrorKind;
use crate::ids::{ChunkId, KeyId};

const KEY_ID: KeyId = KeyId(7);
const MAX: usize = 4 << 20;

fn id_of(plaintext: &[u8]) -> ChunkId {
    RepoSecret::from_bytes([0x42; 32])
        .chunk_id_key()
        .chunk_id(plaintext)
}

/// Small source-like files: what a dictionary is for.
fn source_file(i: usize) -> Vec<u8> {
    format!(
        "//! Module {i}.\nuse std::collections::HashMap;\n\npub fn item_{i}(map: &HashMap<String, \
         u32>) -> Option<u32> {{\n    let key = format!(\"entry-{{}}\", {i});\n    map.get(&key)\
         .copied().map(|v| v * {})\n}}\n\n#[cfg(test)]\nmod tests {{\n    #[test]\n    fn \
         item_{i}_is_none_on_empty() {{\n        assert!(super::item_{i}(&Default::default())\
         .is_none());\n    }}\n}}\n",
        i % 13
    )
    .into_bytes()
}

fn trained() -> Arc<Dictionary> {
    let samples: Vec<Vec<u8>> = (0..400).map(source_file).collect();
    let raw = train(&samples).expect("a dictionary from 400 similar samples");
    assert!(raw.len() <= MAX_DICTIONARY);
    Dictionary::new(raw).unwrap().expect("fits a wrapped key")
}

#[test]
fn a_dictionary_shrinks_a_small_chunk_and_only_its_key_opens_it() {
    let dict = trained();
    let key = DataKey::from_bytes([3; 32]).with_dictionary(dict.clone());
    let encoder = DictionaryEncoder::new(&dict, 3);
    let chunk = source_file(1001);
    let id = id_of(&chunk);
    let alone = seal(&key, KEY_ID, &id, &chunk, 3).unwrap();
    let with = seal_with(&key, KEY_ID, &id, &chunk, 3, Some(&encoder)).unwrap();
    assert_eq!((alone[0], with[0]), (1, 2), "versions");
    assert_eq!(with[1], 1, "a version 2 body is a zstd frame");
    assert!(
        with.len() < alone.len(),
        "{} bytes with the dictionary, {} without",
        with.len(),
        alone.len()
    );
    assert_eq!(open(&key, KEY_ID, &id, &with, MAX).unwrap(), chunk);
    assert_eq!(open(&key, KEY_ID, &id, &alone, MAX).unwrap(), chunk);

    // The same key bytes without the dictionary: refused, saying why.
    let bare = DataKey::from_bytes([3; 32]);
    let err = open(&bare, KEY_ID, &id, &with, MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("carries none"), "{err}");
    // Another dictionary cannot give the plaintext back.
    let other = Dictionary::new(pattern(9, 4096)).unwrap().unwrap();
    let wrong = DataKey::from_bytes([3; 32]).with_dictionary(other);
    assert_ne!(open(&wrong, KEY_ID, &id, &with, MAX).ok(), Some(chunk));
    // The limit still holds for a version 2 body.
    assert_eq!(
        open(&key, KEY_ID, &id, &with, 16).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}

#[test]
fn a_large_chunk_is_sealed_without_the_dictionary() {
    let dict = trained();
    let key = DataKey::from_bytes([3; 32]).with_dictionary(dict.clone());
    let encoder = DictionaryEncoder::new(&dict, 3);
    let big: Vec<u8> = (0..2000).flat_map(source_file).collect();
    assert!(big.len() > DICTIONARY_INPUT_MAX);
    let id = id_of(&big);
    let env = seal_with(&key, KEY_ID, &id, &big, 3, Some(&encoder)).unwrap();
    assert_eq!(env[0], 1);
    assert_eq!(open(&key, KEY_ID, &id, &env, MAX).unwrap(), big);
}

#[test]
fn the_stored_form_round_trips_and_damage_is_corrupt() {
    let dict = trained();
    let back = Dictionary::decode(dict.stored()).unwrap();
    assert_eq!(back.bytes(), dict.bytes());
    let mut cut = dict.stored().to_vec();
    cut.pop();
    for bad in [&cut[..], b"not zstd", &[][..]] {
        let err = Dictionary::decode(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    }
    // A frame of an empty dictionary, and one over the size limit.
    for raw in [Vec::new(), vec![7u8; MAX_DICTIONARY + 1]] {
        let frame = zstd::bulk::compress(&raw, 3).unwrap();
        assert_eq!(
            Dictionary::decode(&frame).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
    assert_eq!(
        Dictionary::new(Vec::new()).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}

/// `chunk-dictionary.txt`: a version 2 envelope, reproduced byte for byte, that opens with the
/// dictionary it names and only with it.
#[test]
fn vectors_chunk_dictionary() {
    let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
    let data_key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let raw = pattern(5, 512);
    let mut plaintext = raw[64..448].to_vec();
    plaintext.extend_from_slice(&raw[..128]);
    let dict = Dictionary::new(raw).unwrap().unwrap();
    let key = DataKey::from_bytes(data_key).with_dictionary(dict.clone());
    let id = id_of(&plaintext);
    let encoder = DictionaryEncoder::new(&dict, 3);
    let env = seal_with_nonce(&key, KEY_ID, &id, &plaintext, 3, Some(&encoder), nonce).unwrap();
    assert_eq!(env[0], 2);
    let mut v = Vector {
        comments: vec![
            "Chunk envelope of version 2 (chunk.md): compressed with the dictionary its data"
                .into(),
            "key carries (keys.md), here the raw-content dictionary P(5, 512); sealed with the"
                .into(),
            "fixed nonce below; data = the envelope. The plaintext is P(5, 512)[64..448] then"
                .into(),
            "P(5, 512)[0..128]; the chunk id is keyed BLAKE3 under the chunk-id key of secret"
                .into(),
            "42..42. Opening MUST give the plaintext with the dictionary, and MUST fail as".into(),
            "corrupt with a key that carries none. Byte equality pins zstd 1.5.7.".into(),
        ],
        ..Vector::default()
    };
    v.field("expect", "success")
        .field("data-key", hex::encode(data_key))
        .field("key-id", KEY_ID.0)
        .field("chunk-id", id.to_hex())
        .field("nonce", hex::encode(nonce))
        .field("zstd-level", 3)
        .field("max-plaintext", MAX)
        .field("dictionary", "P(5, 512)")
        .field("plaintext", "P(5, 512)[64..448] || P(5, 512)[0..128]")
        .field("version", env[0]);
    v.set_data_hex(&env);
    v.check_or_write("chunk-dictionary.txt");

    let stored = Vector::load("chunk-dictionary.txt");
    let env = stored.data_hex();
    assert_eq!(open(&key, KEY_ID, &id, &env, MAX).unwrap(), plaintext);
    let bare = DataKey::from_bytes(data_key);
    assert_eq!(
        open(&bare, KEY_ID, &id, &env, MAX).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}
