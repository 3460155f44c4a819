//! Tests for age wrapping: round trips, wrong identities, malformed plaintexts, identity files.

use super::*;

fn identity() -> (Identities, Recipients) {
    let (text, recipient) = keygen();
    let ids = Identities::parse(&text, "test").unwrap();
    let rs = Recipients::parse(&[recipient]).unwrap();
    (ids, rs)
}

/// age-encrypt arbitrary bytes (to build malformed wrapped keys).
pub(super) fn age_encrypt(plain: &[u8], rs: &Recipients) -> Vec<u8> {
    let enc =
        age::Encryptor::with_recipients(rs.0.iter().map(|r| r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap();
    out
}

#[test]
fn keygen_text_is_an_identity_file_for_its_recipient() {
    let (text, recipient) = keygen();
    assert!(recipient.starts_with("age1"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("# created: 20"), "{}", lines[0]);
    assert!(lines[0].ends_with('Z'));
    assert_eq!(lines[1], format!("# public key: {recipient}"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
    let ids = Identities::parse(&text, "t").unwrap();
    assert_eq!(ids.recipients().to_strings(), vec![recipient]);
}

#[test]
fn data_key_round_trip_with_several_recipients() {
    let (ids_a, rs_a) = identity();
    let (ids_b, rs_b) = identity();
    let both = Recipients(rs_a.0.iter().chain(&rs_b.0).cloned().collect());
    let key = DataKey::from_bytes([0x5a; 32]);
    let wrapped = wrap_data_key(&key, &both).unwrap();
    assert_eq!(
        unwrap_data_key(&wrapped, &ids_a).unwrap().expose(),
        &[0x5a; 32]
    );
    assert_eq!(
        unwrap_data_key(&wrapped, &ids_b).unwrap().expose(),
        &[0x5a; 32]
    );
}

#[test]
fn secret_round_trip() {
    let (ids, rs) = identity();
    let secret = RepoSecret::from_bytes([3; 32]);
    let wrapped = wrap_secret(&secret, &rs).unwrap();
    let back = unwrap_secret(&wrapped, &ids).unwrap();
    assert_eq!(back.expose(), secret.expose());
    assert_eq!(back.check_value(), secret.check_value());
}

#[test]
fn wrong_identity_is_reported_as_such() {
    let (_, rs) = identity();
    let (other, _) = identity();
    let wrapped = wrap_data_key(&DataKey::from_bytes([1; 32]), &rs).unwrap();
    let err = unwrap_data_key(&wrapped, &other).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongIdentity);
    let err = unwrap_secret(
        &wrap_secret(&RepoSecret::from_bytes([1; 32]), &rs).unwrap(),
        &other,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongIdentity);
}

#[test]
fn data_key_and_secret_are_not_interchangeable() {
    let (ids, rs) = identity();
    let wrapped = wrap_secret(&RepoSecret::from_bytes([1; 32]), &rs).unwrap();
    let err = unwrap_data_key(&wrapped, &ids).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("magic"), "{err}");
}

#[test]
fn malformed_plaintexts_are_corrupt() {
    let (ids, rs) = identity();
    let mut long = DATA_KEY_MAGIC.to_vec();
    long.extend_from_slice(&[0; 33]);
    let huge = vec![0u8; 200_000];
    for plain in [
        &DATA_KEY_MAGIC[..],
        &long[..40 - 1],
        &long[..],
        &huge[..],
        &[][..],
    ] {
        let err = unwrap_data_key(&age_encrypt(plain, &rs), &ids).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Corrupt,
            "{} bytes: {err}",
            plain.len()
        );
    }
}

#[test]
fn damaged_wrapped_keys_are_corrupt() {
    let (ids, rs) = identity();
    let wrapped = wrap_data_key(&DataKey::from_bytes([9; 32]), &rs).unwrap();
    // Last byte (payload tag), a header byte, a truncation, garbage: all refused.
    let mut tail = wrapped.clone();
    *tail.last_mut().unwrap() ^= 1;
    let mut head = wrapped.clone();
    head[30] ^= 1;
    let truncated = wrapped[..wrapped.len() - 5].to_vec();
    for (name, bad) in [
        ("tail", tail),
        ("head", head),
        ("truncated", truncated),
        ("garbage", b"hello".to_vec()),
    ] {
        let err = unwrap_data_key(&bad, &ids).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::WrongIdentity),
            "{name}: {err}"
        );
    }
    let mut tail = wrapped.clone();
    *tail.last_mut().unwrap() ^= 1;
    assert_eq!(
        unwrap_data_key(&tail, &ids).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}

#[test]
fn recipients_parse_refuses_bad_input_without_echoing_secrets() {
    assert!(Recipients::parse(&[]).is_err());
    let err = Recipients::parse(&["age1nope".into()]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message().contains("age1nope") && err.message().contains("#1"),
        "{err}"
    );
    let (text, _) = keygen();
    let secret_line = text.lines().nth(2).unwrap().to_string();
    let err = Recipients::parse(std::slice::from_ref(&secret_line)).unwrap_err();
    assert!(
        !err.to_string().contains(&secret_line[16..]),
        "secret echoed: {err}"
    );
    assert!(err.message().contains("private key"), "{err}");
}

#[test]
fn identity_files_errors_name_file_and_line_not_the_key() {
    let (text, recipient) = keygen();
    let secret_line = text.lines().nth(2).unwrap().to_string();
    // A damaged key: one character changed breaks the bech32 checksum.
    let mut damaged = secret_line.clone();
    let last = damaged.pop().unwrap();
    damaged.push(if last == 'Q' { 'P' } else { 'Q' });
    let err = Identities::parse(&format!("# c\n\n{damaged}\n"), "/etc/id.txt").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongIdentity);
    let msg = err.to_string();
    assert!(
        msg.starts_with("identity file /etc/id.txt is not an age identity: line 3 ")
            && msg.contains("does not decode"),
        "{msg}"
    );
    assert!(
        !msg.contains(&damaged[16..40]),
        "key material in message: {msg}"
    );

    let err = Identities::parse(&recipient, "pub.txt").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongIdentity);
    assert!(err.message().contains("recipient (public key)"), "{err}");
    let err = Identities::parse("# only comments\n", "empty.txt").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongIdentity);
    assert_eq!(
        err.message(),
        "identity file empty.txt is not an age identity: it holds no AGE-SECRET-KEY-1... line"
    );

    let ids = Identities::parse(&format!("\u{feff}  {secret_line}  \r\n"), "crlf").unwrap();
    assert_eq!(ids.recipients().to_strings(), vec![recipient]);
    assert!(!format!("{ids:?}").contains("AGE-SECRET"));
}

#[test]
fn identities_load_reads_files_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id.txt");
    let (text, recipient) = keygen();
    std::fs::write(&path, &text).unwrap();
    let ids = Identities::load(&path).unwrap();
    assert_eq!(ids.recipients().to_strings(), vec![recipient]);

    let missing = dir.path().join("missing.txt");
    let err = Identities::load(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.message(),
        format!("identity file {} does not exist", missing.display())
    );

    std::fs::write(&path, [0xff, 0xfe, 0]).unwrap();
    let err = Identities::load(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongIdentity);
    assert!(
        err.message()
            .contains("is not an age identity: it is not text"),
        "{err}"
    );
}

// ---- vectors ----

const VECTOR_SECRET: [u8; 32] = [0x42; 32];

#[test]
fn vectors_keys_derived() {
    use crate::crypto::context;
    use crate::crypto::testvec::pattern;
    let secret = RepoSecret::from_bytes(VECTOR_SECRET);
    let mut v = crate::crypto::testvec::Vector {
        comments: vec![
            "Keys derived from a fixed repository secret (conventions.md, keys.md).".into(),
            "data = the keys/secret file: magic RSBKSEC1 then the secret.".into(),
        ],
        ..Default::default()
    };
    v.field("expect", "success")
        .field("secret", hex::encode(VECTOR_SECRET))
        .field(
            "chunk-id-key",
            hex::encode(*secret.derive(context::CHUNK_ID)),
        )
        .field(
            "chunker-gear-key",
            hex::encode(*secret.derive(context::CHUNKER_GEAR)),
        )
        .field(
            "manifest-cut-key",
            hex::encode(*secret.derive(context::MANIFEST_CUT)),
        )
        .field(
            "files-cache-path-key",
            hex::encode(*secret.derive(context::FILES_CACHE_PATH)),
        )
        .field("secret-check", hex::encode(secret.check_value()))
        .field(
            "chunk-id-of-P(1,1000)",
            secret.chunk_id_key().chunk_id(&pattern(1, 1000)).to_hex(),
        )
        .field(
            "chunk-id-of-empty",
            secret.chunk_id_key().chunk_id(b"").to_hex(),
        );
    let mut file = SECRET_MAGIC.to_vec();
    file.extend_from_slice(&VECTOR_SECRET);
    v.set_data_hex(&file);
    v.check_or_write("keys-derived.txt");
    // The check value is the first half of the derived key, as keys.md says.
    assert_eq!(
        v.get("secret-check"),
        &hex::encode(*secret.derive(context::SECRET_CHECK))[..32]
    );
}

/// Write the vector `name`: `plain` wrapped to `recipient`, with the throwaway `identity`
/// that unwraps it and the outcome expected (`success`, or the error kind).
pub(super) fn write_wrapped_vector(
    name: &str,
    comments: &[&str],
    outcome: &str,
    (identity, recipient): (&str, &str),
    plain: &[u8],
) {
    use crate::crypto::testvec::Vector;
    let rs = Recipients::parse(&[recipient.to_owned()]).unwrap();
    let mut v = Vector {
        comments: comments.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    v.field(
        "expect",
        if outcome == "success" {
            "success"
        } else {
            "failure"
        },
    );
    if outcome != "success" {
        v.field("error", outcome);
    }
    v.field("identity", identity)
        .field("recipient", recipient)
        .field("plaintext", hex::encode(plain));
    v.set_data_hex(&age_encrypt(plain, &rs));
    std::fs::write(crate::crypto::testvec::path(name), v.render()).unwrap();
}

/// Wrapped-key vectors: age output is randomized, so the files are written once and then
/// checked by unwrapping them with the identity they hold.
#[test]
fn vectors_keys_wrapped() {
    use crate::crypto::testvec::{Vector, writing};
    let cases: [(&str, &[u8; 8], &str); 4] = [
        ("keys-wrapped-data-key.txt", DATA_KEY_MAGIC, "success"),
        ("keys-wrapped-secret.txt", SECRET_MAGIC, "success"),
        ("keys-wrapped-bad-magic.txt", b"RSBKDK02", "corrupt"),
        ("keys-wrapped-short.txt", DATA_KEY_MAGIC, "corrupt"),
    ];
    if writing() {
        let (text, recipient) = keygen();
        let identity = text.lines().nth(2).unwrap().to_string();
        for (name, magic, outcome) in cases {
            let mut plain = magic.to_vec();
            plain.extend_from_slice(&[0x5a; 32]);
            if name.ends_with("short.txt") {
                plain.pop();
            }
            let comments = [
                "age-wrapped key (keys.md) and a throwaway test identity that unwraps it.",
                "data = the age file (binary format).",
            ];
            write_wrapped_vector(name, &comments, outcome, (&identity, &recipient), &plain);
        }
    }
    for (name, magic, outcome) in cases {
        let v = Vector::load(name);
        let ids = Identities::parse(v.get("identity"), name).unwrap();
        let wrapped = v.data_hex();
        let result = if magic == SECRET_MAGIC {
            unwrap_secret(&wrapped, &ids).map(|s| *s.expose())
        } else {
            unwrap_data_key(&wrapped, &ids).map(|k| *k.expose())
        };
        match outcome {
            "success" => {
                assert_eq!(v.get("expect"), "success");
                assert_eq!(result.unwrap().to_vec(), v.hex("plaintext")[8..], "{name}");
            }
            _ => {
                assert_eq!(v.get("expect"), "failure");
                assert_eq!(v.get("error"), "corrupt");
                assert_eq!(
                    result.err().map(|e| e.kind()),
                    Some(ErrorKind::Corrupt),
                    "{name}"
                );
            }
        }
        // Any other identity is told apart from damage.
        let (other, _) = identity();
        let err = unwrap_data_key(&wrapped, &other).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongIdentity, "{name}");
    }
}

/// A key that carries a dictionary, plain or scoped, unwraps with it; a dictionary section
/// that disagrees with its length, or without a dictionary, is corrupt.
#[test]
fn a_data_key_carries_its_dictionary() {
    use crate::crypto::dictionary::Dictionary;
    let (ids, rs) = identity();
    let dict = Dictionary::new(b"fn main() { println!(\"hello\"); }".repeat(20))
        .unwrap()
        .unwrap();
    let key = DataKey::from_bytes([9; 32]).with_dictionary(dict.clone());
    let back = unwrap_data_key_scoped(&wrap_data_key(&key, &rs).unwrap(), &ids).unwrap();
    assert_eq!(back.key.expose(), key.expose());
    assert_eq!(back.key.dictionary().unwrap().bytes(), dict.bytes());
    assert!(back.scope.is_none());

    let scope = KeyScope {
        client: "web1".into(),
        id_key: ChunkIdKey::from_bytes([4; 32]),
    };
    let wrapped = wrap_scoped_data_key(&key, &scope, &rs).unwrap();
    let back = unwrap_data_key_scoped(&wrapped, &ids).unwrap();
    assert_eq!(back.key.dictionary().unwrap().bytes(), dict.bytes());
    assert_eq!(back.scope.unwrap().client, "web1");
    // A key without a dictionary is wrapped as before.
    let plain = wrap_data_key(&DataKey::from_bytes([9; 32]), &rs).unwrap();
    assert!(
        unwrap_data_key_scoped(&plain, &ids)
            .unwrap()
            .key
            .dictionary()
            .is_none()
    );

    let stored = dict.stored();
    let section = |declared: usize, frame: &[u8]| {
        let mut p = DICT_DATA_KEY_MAGIC.to_vec();
        p.extend_from_slice(&[9; 32]);
        p.extend_from_slice(&(declared as u32).to_le_bytes());
        p.extend_from_slice(frame);
        p
    };
    for (what, plain) in [
        ("length one short", section(stored.len() - 1, stored)),
        ("length one long", section(stored.len() + 1, stored)),
        ("no section", section(0, &[])[..40].to_vec()),
        ("not a frame", section(4, b"junk")),
    ] {
        let err = unwrap_data_key_scoped(&age_encrypt(&plain, &rs), &ids).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
    }
}

/// `keys-wrapped-dictionary.txt`: a data key with a dictionary section MUST unwrap to the key
/// and the dictionary its plaintext holds.
#[test]
fn vectors_keys_wrapped_dictionary() {
    use crate::crypto::dictionary::Dictionary;
    use crate::crypto::testvec::{Vector, pattern, writing};
    let name = "keys-wrapped-dictionary.txt";
    if writing() {
        let (text, recipient) = keygen();
        let identity = text.lines().nth(2).unwrap().to_string();
        let dict = Dictionary::new(pattern(5, 512)).unwrap().unwrap();
        let mut plain = DICT_DATA_KEY_MAGIC.to_vec();
        plain.extend_from_slice(&[0x5a; 32]);
        plain.extend_from_slice(&(dict.stored().len() as u32).to_le_bytes());
        plain.extend_from_slice(dict.stored());
        let comments = [
            "age-wrapped data key with a dictionary section (keys.md \"Dictionaries\"): the",
            "dictionary is P(5, 512), stored as one zstd frame; a throwaway test identity",
            "unwraps it. data = the age file (binary format).",
        ];
        write_wrapped_vector(name, &comments, "success", (&identity, &recipient), &plain);
    }
    let v = Vector::load(name);
    assert_eq!(v.get("expect"), "success");
    let ids = Identities::parse(v.get("identity"), name).unwrap();
    let key = unwrap_data_key_scoped(&v.data_hex(), &ids).unwrap().key;
    let plain = v.hex("plaintext");
    assert_eq!(&plain[..8], DICT_DATA_KEY_MAGIC);
    assert_eq!(key.expose()[..], plain[8..40]);
    assert_eq!(key.dictionary().unwrap().bytes(), pattern(5, 512));
}
