//! Tests and vectors of client scopes: the scope's chunk-id key, and data keys wrapped with
//! their scope (`RSBKDKC1`, format-spec/keys.md "Client scopes").

use super::*;
use crate::crypto::testvec::{Vector, path, pattern, writing};

const VECTOR_SECRET: [u8; 32] = [0x42; 32];

fn scope(client: &str) -> KeyScope {
    KeyScope {
        client: client.into(),
        id_key: RepoSecret::from_bytes(VECTOR_SECRET).client_chunk_id_key(client),
    }
}

#[test]
fn a_scoped_key_round_trips_with_its_scope() {
    let (text, recipient) = keygen();
    let ids = Identities::parse(&text, "test").unwrap();
    let rs = Recipients::parse(&[recipient]).unwrap();
    let key = DataKey::from_bytes([9; 32]);
    let wrapped = wrap_scoped_data_key(&key, &scope("web1"), &rs).unwrap();
    let back = unwrap_data_key_scoped(&wrapped, &ids).unwrap();
    assert_eq!(back.key.expose(), key.expose());
    let s = back.scope.unwrap();
    assert_eq!(s.client, "web1");
    assert_eq!(s.id_key.expose(), scope("web1").id_key.expose());
    // The plain unwrap gives the key alone; a repository-wide key has no scope.
    assert_eq!(unwrap_data_key(&wrapped, &ids).unwrap().expose(), &[9; 32]);
    let plain = wrap_data_key(&key, &rs).unwrap();
    assert!(
        unwrap_data_key_scoped(&plain, &ids)
            .unwrap()
            .scope
            .is_none()
    );
    // Scopes are apart: another client's key names other chunks.
    assert_ne!(
        scope("web1").id_key.chunk_id(b"x"),
        scope("web2").id_key.chunk_id(b"x")
    );
    assert_ne!(
        scope("web1").id_key.chunk_id(b"x"),
        RepoSecret::from_bytes(VECTOR_SECRET)
            .chunk_id_key()
            .chunk_id(b"x")
    );
    let long = KeyScope {
        client: "x".repeat(MAX_SCOPE_NAME + 1),
        ..scope("web1")
    };
    assert!(wrap_scoped_data_key(&key, &long, &rs).is_err());
}

#[test]
fn vectors_client_scope_derived() {
    let secret = RepoSecret::from_bytes(VECTOR_SECRET);
    let id_key = secret.client_chunk_id_key("web1");
    let mut v = Vector {
        comments: vec![
            "The chunk-id key of client web1's own scope, from the secret 42...42".into(),
            "(conventions.md \"Key derivation\", keys.md \"Client scopes\").".into(),
        ],
        ..Default::default()
    };
    v.field("expect", "success")
        .field("secret", hex::encode(VECTOR_SECRET))
        .field("client", "web1")
        .field(
            "client-chunk-id-base",
            hex::encode(*secret.derive(crate::crypto::context::CLIENT_CHUNK_ID)),
        )
        .field("client-chunk-id-key", hex::encode(id_key.expose()))
        .field(
            "chunk-id-of-P(1,1000)",
            id_key.chunk_id(&pattern(1, 1000)).to_hex(),
        );
    v.check_or_write("keys-client-scope.txt");
}

/// age output is randomized: the files are written once, then checked by unwrapping them
/// with the throwaway identity they hold.
#[test]
fn vectors_keys_wrapped_scoped() {
    let cases = [
        ("keys-wrapped-scoped.txt", "web1", 4u8, "success"),
        ("keys-wrapped-scoped-bad-length.txt", "web1", 5u8, "corrupt"),
    ];
    if writing() || !path(cases[0].0).exists() {
        let (text, recipient) = keygen();
        let identity = text.lines().nth(2).unwrap().to_string();
        for (name, client, n, outcome) in cases {
            let mut plain = SCOPED_DATA_KEY_MAGIC.to_vec();
            plain.extend_from_slice(&[0x5a; 32]);
            plain.extend_from_slice(scope(client).id_key.expose());
            plain.push(n);
            plain.extend_from_slice(client.as_bytes());
            let comments = [
                "A data key of client web1's own scope (keys.md \"Client scopes\") and a",
                "throwaway identity that unwraps it; data = the age file.",
            ];
            super::tests::write_wrapped_vector(
                name,
                &comments,
                outcome,
                (&identity, &recipient),
                &plain,
            );
        }
    }
    for (name, client, _, outcome) in cases {
        let v = Vector::load(name);
        let ids = Identities::parse(v.get("identity"), name).unwrap();
        let result = unwrap_data_key_scoped(&v.data_hex(), &ids);
        if outcome == "success" {
            let k = result.unwrap();
            let plain = v.hex("plaintext");
            assert_eq!(k.key.expose()[..], plain[8..40], "{name}");
            let s = k.scope.unwrap();
            assert_eq!(s.client, client);
            assert_eq!(s.id_key.expose()[..], plain[40..72]);
        } else {
            assert_eq!(v.get("error"), "corrupt");
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Corrupt, "{name}");
        }
    }
}
