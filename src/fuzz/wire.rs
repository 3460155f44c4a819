//! Targets for what travels between machines: the mirror protocol's and `restore-fetch`'s
//! frames (either side may be hostile to the other) and the server's answer as a client reads
//! it from ssh's output.

use std::io::Cursor;

use crate::client::remote::ServerAnswer;
use crate::mirror::wire::{FrameConn, FrameMessage, Message};

/// The bytes as a stream of frames of `M`, read until the first error; every message decoded
/// encodes and decodes back to itself.
fn frames_of<M: FrameMessage + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let mut conn: FrameConn<_, _, M> = FrameConn::new(Cursor::new(data), std::io::sink());
    // Each frame takes at least its 5-byte header, so the stream ends.
    while let Ok(msg) = conn.recv() {
        let (tag, payload) = msg.encode();
        let back = M::decode(tag, &payload).expect("an encoded message decodes");
        assert_eq!(back, msg);
    }
    assert!(conn.received <= data.len() as u64);
}

/// One frame of every message in `messages`, each its own input, and all of them as one
/// stream.
fn seeds_of<M: FrameMessage>(messages: &[M]) -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            FrameConn::<_, _, M>::new(std::io::empty(), &mut out)
                .send(m)
                .expect("seed frame");
            out
        })
        .collect();
    let mut seeds = vec![frames.concat()];
    seeds.extend(frames);
    seeds
}

/// Mirror protocol frames (format-spec/wire.md).
pub fn frames(data: &[u8]) {
    frames_of::<Message>(data);
}

/// Seeds for [`frames`].
pub fn frames_seeds() -> Vec<Vec<u8>> {
    seeds_of(&crate::mirror::wire::one_of_each())
}

/// `restore-fetch` frames (format-spec/wire.md "Restore fetch"), as either side reads them.
pub fn restore_frames(data: &[u8]) {
    frames_of::<crate::restore_fetch::wire::Message>(data);
}

/// Seeds for [`restore_frames`].
pub fn restore_frames_seeds() -> Vec<Vec<u8>> {
    seeds_of(&crate::restore_fetch::wire::one_of_each())
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
