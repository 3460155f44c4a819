//! The frames of `restore-fetch` against format-spec/vectors/wire-restore-*.txt, round trips
//! of every message, and what a reader refuses.

use super::*;
use crate::crypto::testvec::pattern;
use crate::mirror::wire::conn::vectors::{case, id};

#[test]
fn messages_match_their_vectors() {
    case(
        "wire-restore-hello.txt",
        "Hello: magic RSBKREST, version 1",
        &Message::Hello(MIN_PROTOCOL_VERSION),
    );
    case(
        "wire-restore-sources.txt",
        "Sources (version 2): a sources record of two paths, /var/www and /srv/www",
        &Message::Sources(Some(vec![b"/var/www".to_vec(), b"/srv/www".to_vec()])),
    );
    case(
        "wire-restore-session-list.txt",
        "SessionList: session 7, partial, started 1700000000, finished 1700000060, 12 entries, \
         4096 bytes",
        &Message::SessionList(vec![WireSession {
            id: 7,
            partial: true,
            started: 1_700_000_000,
            finished: 1_700_000_060,
            files: 12,
            bytes: 4096,
        }]),
    );
    case(
        "wire-restore-chunks.txt",
        "Chunks: data key 3 wrapped = P(5,40) (not a valid age file: only the framing is \
         shown); one manifest chunk P(1,32) sealed with key 3, envelope = P(6,50)",
        &Message::Chunks {
            keys: vec![(KeyId(3), pattern(5, 40))],
            chunks: vec![WireChunk {
                id: id(1),
                kind: ChunkKind::Manifest,
                key_id: KeyId(3),
                envelope: pattern(6, 50),
            }],
        },
    );
}

#[test]
fn every_message_round_trips() {
    let all = one_of_each();
    for msg in all {
        let (tag, payload) = msg.encode();
        assert_eq!(Message::decode(tag, &payload).unwrap(), msg);
    }
}

#[test]
fn malformed_frames_are_refused() {
    let refused = |tag: u8, payload: &[u8], why: &str| {
        let err = Message::decode(tag, payload).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Protocol, "{err}");
        assert!(err.message().contains(why), "{err} lacks {why}");
    };
    refused(0x01, b"RSBKMIRR\x01\x00\x00\x00", "RSBKREST magic");
    refused(0x10, b"x", "1 bytes after the message");
    refused(0x14, &(MAX_IDS + 1).to_le_bytes(), "more than 65536");
    refused(0x14, &2u32.to_le_bytes(), "do not fit the frame");
    refused(0x42, b"", "unknown message tag 0x42");
    let (_, mut chunks) = Message::Chunks {
        keys: Vec::new(),
        chunks: vec![WireChunk {
            id: id(1),
            kind: ChunkKind::Data,
            key_id: KeyId(1),
            envelope: vec![1],
        }],
    }
    .encode();
    chunks[8 + 32] = 9; // the kind
    refused(0x15, &chunks, "unknown chunk kind 9");
}
