//! Targets for what travels between machines: the mirror protocol's and `restore-fetch`'s
//! frames (either side may be hostile to the other) and the server's answer as a client reads
//! it from ssh's output.

use std::io::Cursor;

use crate::client::remote::ServerAnswer;
use crate::mirror::wire::{Conn, Message};

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
    let messages = crate::mirror::wire::one_of_each();
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

/// `restore-fetch` frames (format-spec/wire.md "Restore fetch"), read until the first error, as
/// either side reads them: every message decoded encodes and decodes back to itself.
pub fn restore_frames(data: &[u8]) {
    use crate::mirror::wire::FrameMessage;
    use crate::restore_fetch::wire::{Conn, Message};
    let mut conn: Conn<_, _> = Conn::new(Cursor::new(data), std::io::sink());
    while let Ok(msg) = conn.recv() {
        let (tag, payload) = msg.encode();
        let back = Message::decode(tag, &payload).expect("an encoded message decodes");
        assert_eq!(back, msg);
    }
    assert!(conn.received <= data.len() as u64);
}

/// Seeds for [`restore_frames`]: one frame of every message, each its own input, and all of
/// them as one stream.
pub fn restore_frames_seeds() -> Vec<Vec<u8>> {
    use crate::ids::{ChunkId, KeyId};
    use crate::index::ChunkKind;
    use crate::restore_fetch::wire::{Conn, Message, WireChunk, WireSession, code};
    let messages = [
        Message::Hello(1),
        Message::HelloOk {
            version: 1,
            client: "web1".into(),
        },
        Message::Error {
            code: code::REFUSED,
            message: "refused".into(),
        },
        Message::ListSessions,
        Message::SessionList(vec![WireSession {
            id: 3,
            partial: false,
            started: 1,
            finished: 2,
            files: 4,
            bytes: 5,
        }]),
        Message::GetRoot(3),
        Message::Root(vec![ChunkId([1; 32])]),
        Message::GetChunks(vec![ChunkId([1; 32]), ChunkId([2; 32])]),
        Message::Chunks {
            keys: vec![(KeyId(1), vec![7; 40])],
            chunks: vec![WireChunk {
                id: ChunkId([1; 32]),
                kind: ChunkKind::Manifest,
                key_id: KeyId(1),
                envelope: vec![9; 60],
            }],
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
