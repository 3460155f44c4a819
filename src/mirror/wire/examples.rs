//! One message of every kind, for the wire tests and the seeds of the wire fuzz target.

use super::{Message, WireKey, WireRecord, WireSession};
use crate::ids::ChunkId;

/// One message of every kind, with fields that exercise each encoding (negative ids, an
/// unfinished session, empty and repeated lists).
pub fn one_of_each() -> Vec<Message> {
    let id = ChunkId([7; 32]);
    vec![
        Message::Hello {
            version: 1,
            repository_toml: "x".into(),
            secret_age: vec![1, 2],
        },
        Message::HelloOk {
            version: 1,
            created: true,
            chunks: 3,
            digest: [9; 32],
            damaged: 1,
        },
        Message::Error {
            code: 2,
            message: "no".into(),
        },
        Message::HaveKeys(vec![1, 2]),
        Message::LackKeys(vec![2]),
        Message::PutKeys(vec![WireKey {
            id: 2,
            created: -5,
            wrapped: vec![1; 10],
        }]),
        Message::PutKeysOk(1),
        Message::HaveChunks(vec![id]),
        Message::LackChunks(vec![]),
        Message::PutChunks(vec![WireRecord {
            kind: 1,
            stored_hash: [3; 32],
            refs: vec![id, id],
            record: vec![5; 60],
        }]),
        Message::PutChunksOk {
            stored: 1,
            chunks: 2,
            digest: [4; 32],
        },
        Message::ListDamaged,
        Message::DamagedList(vec![id]),
        Message::Repair(vec![]),
        Message::RepairOk(0),
        Message::HaveSessions(vec![-1, 5]),
        Message::LackSessions(vec![5]),
        Message::PutSession(WireSession {
            id: 5,
            client: "web1".into(),
            state: 2,
            started: 10,
            finished: None,
            stats: [1, 2, 3, 4, 5],
            pinned: true,
            root: vec![id],
            sources: None,
        }),
        Message::PutSession(WireSession {
            id: 6,
            client: "web1".into(),
            state: 1,
            started: 10,
            finished: Some(11),
            stats: [1, 2, 3, 4, 5],
            pinned: false,
            root: vec![id],
            sources: Some(vec![b"/var/www".to_vec(), b"/etc".to_vec()]),
        }),
        Message::PutSessionOk,
        Message::ListSessions,
        Message::SessionList(vec![1]),
        Message::Forget(vec![1]),
        Message::ForgetOk(1),
        Message::Bye,
        Message::ByeOk {
            chunks: 1,
            digest: [0; 32],
        },
    ]
}
