//! Targets for what travels between machines: the mirror protocol's frames (either side may
//! be hostile to the other) and the server's answer as a client reads it from ssh's output.

use std::io::Cursor;

use crate::client::remote::ServerAnswer;
use crate::ids::ChunkId;
use crate::mirror::wire::{Conn, Message, WireKey, WireRecord, WireSession};

/// The bytes as a stream of frames, read until the first error; every message decoded
/// encodes and decodes back to itself.
pub fn frames(data: &[u8]) {
    let mut conn = Conn::new(Cursor::new(data), std::io::sink());
    // Each frame takes at least its 5-byte header, so the stream ends.
    while let Ok(msg) = conn.recv() {
        let (tag, payload) = msg.encode();
        let back = Message::decode(tag, &payload).expect("an encoded message decodes");
        assert_eq!(back, msg);
    }
    assert!(conn.received <= data.len() as u64);
}

/// Seeds for [`frames`]: one frame of every message, each its own input, and all of them as
/// one stream.
pub fn frames_seeds() -> Vec<Vec<u8>> {
    let id = |n: u8| ChunkId([n; 32]);
    let messages = vec![
        Message::Hello {
            version: 1,
            repository_toml: "format = \"rsbackup-repository\"\n".into(),
            secret_age: b"age-encryption.org/v1\n".to_vec(),
        },
        Message::HelloOk {
            version: 1,
            created: true,
            chunks: 3,
            digest: [1; 32],
            damaged: 0,
        },
        Message::Error {
            code: 2,
            message: "refused".into(),
        },
        Message::HaveKeys(vec![1, 2]),
        Message::LackKeys(vec![2]),
        Message::PutKeys(vec![WireKey {
            id: 2,
            created: 1_795_675_200,
            wrapped: vec![9; 40],
        }]),
        Message::PutKeysOk(1),
        Message::HaveChunks(vec![id(1), id(2)]),
        Message::LackChunks(vec![id(2)]),
        Message::PutChunks(vec![WireRecord {
            kind: 1,
            stored_hash: [3; 32],
            refs: vec![id(1)],
            record: vec![0x52; 80],
        }]),
        Message::PutChunksOk {
            stored: 1,
            chunks: 4,
            digest: [4; 32],
        },
        Message::ListDamaged,
        Message::DamagedList(vec![id(7)]),
        Message::Repair(vec![]),
        Message::RepairOk(0),
        Message::HaveSessions(vec![1, 2]),
        Message::LackSessions(vec![2]),
        Message::PutSession(WireSession {
            id: 2,
            client: "web1".into(),
            state: 1,
            started: 10,
            finished: Some(20),
            stats: [1, 2, 3, 4, 5],
            pinned: false,
            root: vec![id(5)],
        }),
        Message::PutSessionOk,
        Message::ListSessions,
        Message::SessionList(vec![1]),
        Message::Forget(vec![1]),
        Message::ForgetOk(1),
        Message::Bye,
        Message::ByeOk {
            chunks: 4,
            digest: [5; 32],
        },
    ];
    let frames: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            Conn::new(std::io::empty(), &mut out)
                .send(m)
                .expect("seed frame");
            out
        })
        .collect();
    let mut seeds = vec![frames.concat()];
    seeds.extend(frames);
    seeds
}

/// ssh's output as the client reads the server's answer from it: the last JSON object that
/// starts a line, and what the client takes out of it.
pub fn server_answer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(answer) = ServerAnswer::parse(&text) {
        let _ = answer.problems();
        let _ = answer.errors();
        let _ = answer.errors_left_out();
        let _ = answer.number(&["session", "files"]);
        let _ = answer.text(&["state", "reason"]);
    }
}

/// Seeds for [`server_answer`].
pub fn server_answer_seeds() -> Vec<Vec<u8>> {
    vec![
        b"Warning: Permanently added 'backup' (ED25519) to the list of known hosts.\n{\n  \
          \"session\": 7,\n  \"state\": \"complete\",\n  \"files\": 12,\n  \"hooks\": [{\"argv\": \
          [\"/bin/false\"], \"ok\": false, \"code\": 1}],\n  \"errors\": [\"a: unreadable\"],\n  \
          \"errors_left_out\": 2\n}\n"
            .to_vec(),
        b"{\"refused\": true, \"reason\": \"outside its windows\"}\n".to_vec(),
    ]
}
