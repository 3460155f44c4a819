//! Round trips, refusals and the vectors of format-spec/records.md.

use super::*;
use crate::crypto::testvec::{Vector, pattern};

fn id(seed: u8) -> ChunkId {
    ChunkId(pattern(seed, 32).try_into().unwrap())
}

fn fixed_session() -> SessionRecord {
    SessionRecord {
        id: 7,
        client: "web1".into(),
        state: RecordState::Incomplete,
        reason: Some("2 paths could not be read".into()),
        pinned: true,
        started: 1_795_675_200,
        finished: 1_795_675_260,
        files: 3128,
        bytes: 1 << 30,
        errors: 2,
        new_chunks: 17,
        new_bytes: 123_456,
        root: vec![id(2), id(3)],
    }
}

fn fixed_refs() -> PackRefs {
    PackRefs {
        pack: PackName(pattern(1, 16).try_into().unwrap()),
        manifests: vec![
            ManifestRefs {
                id: id(4),
                refs: vec![id(5), id(6)],
            },
            ManifestRefs {
                id: id(7),
                refs: vec![],
            },
        ],
    }
}

#[test]
fn session_round_trip_and_layout() {
    let s = fixed_session();
    let bytes = encode_session(&s).unwrap();
    assert_eq!(&bytes[..8], b"RSBKSESS");
    assert_eq!(bytes.len(), SESSION_HEADER_LEN + 4 + 25 + 64 + 32);
    assert_eq!(decode_session(&bytes).unwrap(), s);
}

#[test]
fn refs_round_trip_and_layout() {
    let r = fixed_refs();
    let bytes = encode_refs(&r).unwrap();
    assert_eq!(&bytes[..8], b"RSBKREFS");
    assert_eq!(bytes.len(), REFS_HEADER_LEN + 36 + 64 + 36 + 32);
    assert_eq!(decode_refs(&bytes).unwrap(), r);
}

#[test]
fn every_flipped_bit_is_refused() {
    let good = encode_session(&fixed_session()).unwrap();
    for i in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(
            decode_session(&bad).is_err(),
            "bit {i} flipped was accepted"
        );
    }
    let good = encode_refs(&fixed_refs()).unwrap();
    for cut in 0..good.len() {
        assert!(decode_refs(&good[..cut]).is_err(), "cut at {cut} accepted");
    }
}

#[test]
fn refusals_have_their_kind() {
    let mut future = encode_session(&fixed_session()).unwrap();
    future[8] = 3;
    assert_eq!(
        decode_session(&future).unwrap_err().kind(),
        ErrorKind::UnsupportedVersion
    );
    let mut s = fixed_session();
    s.id = 0;
    assert_eq!(
        encode_session(&s).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    s.id = 1;
    s.client = String::new();
    assert_eq!(
        encode_session(&s).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let refs = encode_refs(&fixed_refs()).unwrap();
    assert_eq!(
        decode_session(&refs).unwrap_err().kind(),
        ErrorKind::Corrupt,
        "a reference list is not a session record"
    );
}

/// A garbled field with a checksum that matches (as a buggy writer would make) is still
/// refused: the checksum is not the only guard.
#[test]
fn fields_are_checked_behind_a_good_checksum() {
    let mut bytes = encode_session(&fixed_session()).unwrap();
    bytes.truncate(bytes.len() - 32);
    bytes[80] = 9;
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(sum.as_bytes());
    let err = decode_session(&bytes).unwrap_err();
    assert!(err.message().contains("unknown state"), "{}", err.message());
}

fn vectors() -> Vec<(&'static str, Vector)> {
    let mut out = Vec::new();
    let mut v = Vector::default();
    v.field("expect", "success")
        .field(
            "description",
            "session record version 2: id 7, client web1, partial (reason \"2 paths could not \
             be read\"), pinned, root P(2,32) P(3,32)",
        )
        .field("session-id", 7)
        .field("client", "web1")
        .field("state", "partial")
        .field("reason", "2 paths could not be read")
        .field("pinned", "true")
        .field("root-chunks", 2);
    v.set_data_hex(&encode_session(&fixed_session()).unwrap());
    out.push(("records-session.txt", v));

    let mut v = Vector::default();
    let mut bad = encode_session(&fixed_session()).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    v.field("expect", "failure")
        .field("error", "corrupt")
        .field(
            "description",
            "the session record above with its checksum's last bit flipped",
        );
    v.set_data_hex(&bad);
    out.push(("records-session-bad-checksum.txt", v));

    let mut v = Vector::default();
    let mut future = encode_session(&fixed_session()).unwrap();
    future[8] = 3;
    v.field("expect", "failure")
        .field("error", "unsupported-version")
        .field("description", "the session record above with version 3");
    v.set_data_hex(&future);
    out.push(("records-session-future-version.txt", v));

    let mut v = Vector::default();
    v.field("expect", "success")
        .field(
            "description",
            "pack reference list of pack P(1,16): P(4,32) names P(5,32) P(6,32); P(7,32) names none",
        )
        .field("manifest-chunks", 2);
    v.set_data_hex(&encode_refs(&fixed_refs()).unwrap());
    out.push(("records-pack-refs.txt", v));
    out
}

#[test]
fn vectors_reproduce() {
    for (name, v) in vectors() {
        v.check_or_write(name);
    }
}

/// A version 1 record (written before records carried the reason) still decodes, with no
/// reason; `records-session-v1.txt` is kept as it was written then.
#[test]
fn version_1_records_still_decode() {
    let v = Vector::load("records-session-v1.txt");
    let s = decode_session(&v.data_hex()).unwrap();
    let mut want = fixed_session();
    want.reason = None;
    assert_eq!(s, want);
    let mut garbled = v.data_hex();
    garbled[81] = 1;
    assert!(decode_session(&garbled).is_err());
}

/// A reason on a complete session is refused, in both directions.
#[test]
fn a_reason_needs_a_partial_session() {
    let mut s = fixed_session();
    s.state = RecordState::Complete;
    assert_eq!(
        encode_session(&s).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

/// Every records vector on disk decodes as its header says.
#[test]
fn vectors_decode_as_expected() {
    let mut seen = 0;
    for (name, _) in vectors() {
        let v = Vector::load(name);
        let data = v.data_hex();
        let result = if name.contains("pack-refs") {
            decode_refs(&data).map(|_| ())
        } else {
            decode_session(&data).map(|s| {
                assert_eq!(s.id.to_string(), v.get("session-id"));
                assert_eq!(s.client, v.get("client"));
                assert_eq!(s.root.len().to_string(), v.get("root-chunks"));
                assert_eq!(s.reason.as_deref(), Some(v.get("reason")));
            })
        };
        match v.get("expect") {
            "success" => result.unwrap(),
            "failure" => {
                let kind = result.unwrap_err().kind();
                let want = match v.get("error") {
                    "corrupt" => ErrorKind::Corrupt,
                    "unsupported-version" => ErrorKind::UnsupportedVersion,
                    other => panic!("{name}: unknown error {other}"),
                };
                assert_eq!(kind, want, "{name}");
            }
            other => panic!("{name}: bad expect {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 4);
}

/// The sources record: its vectors, round trip and refusals.
#[test]
fn sources_records_reproduce_and_refuse_what_they_must() {
    let sources = vec![b"/var/www".to_vec(), b"/srv/www".to_vec()];
    let bytes = encode_sources(&sources).unwrap();
    assert_eq!(decode_sources(&bytes).unwrap(), sources);
    let mut v = Vector::default();
    v.field("expect", "success")
        .field(
            "description",
            "sources record: /var/www and /srv/www (the same last component)",
        )
        .field("sources", "/var/www /srv/www");
    v.set_data_hex(&bytes);
    v.check_or_write("records-sources.txt");
    let stored = Vector::load("records-sources.txt");
    assert_eq!(decode_sources(&stored.data_hex()).unwrap(), sources);

    let whole = encode_sources(&[b"/".to_vec()]).unwrap();
    assert_eq!(decode_sources(&whole).unwrap(), vec![b"/".to_vec()]);
    assert!(
        decode_sources(&encode_sources(&[]).unwrap())
            .unwrap()
            .is_empty()
    );
    for bad in [&b"var/www"[..], b"/var/", b"/a/../b", b"/a//b", b""] {
        assert!(encode_sources(&[bad.to_vec()]).is_err(), "{bad:?}");
    }
    let mut flipped = bytes.clone();
    flipped[20] ^= 1;
    assert_eq!(
        decode_sources(&flipped).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    let mut future = bytes.clone();
    future[8] = 2;
    assert_eq!(
        decode_sources(&future).unwrap_err().kind(),
        ErrorKind::UnsupportedVersion
    );
    // A count past the entries is corrupt, even with a good checksum.
    let mut short = bytes[..bytes.len() - 32].to_vec();
    short[12] = 3;
    let sum = blake3::hash(&short);
    short.extend_from_slice(sum.as_bytes());
    assert_eq!(
        decode_sources(&short).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}
