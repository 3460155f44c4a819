//! The mirror protocol's bytes (format-spec/wire.md): frames of `u32 LE payload length`,
//! `u8 tag`, payload; every message encoded and decoded here, with every count and length
//! checked against the frame before anything is allocated.

use crate::error::{Error, Result};
use crate::ids::ChunkId;

mod codec;
pub(crate) mod conn;
mod examples;

pub(crate) use codec::{Dec, Enc};
pub use conn::{Conn, FrameConn, FrameMessage};
#[doc(hidden)]
pub use examples::one_of_each;

/// First bytes of a `Hello` payload.
pub const HELLO_MAGIC: &[u8; 8] = b"RSBKMIRR";
/// The protocol version this build speaks (and sends in its `Hello`).
pub const PROTOCOL_VERSION: u32 = 2;
/// The oldest version a mirror of this build still serves (a primary of that version never
/// sends a session's sources).
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// The version of the read-only requests (`HelloRead`, `GetChunks`) this build speaks.
pub const READ_PROTOCOL_VERSION: u32 = 1;
/// Largest frame payload: a 17 MiB manifest record with its references fits with room to spare.
pub const MAX_FRAME_PAYLOAD: u32 = 32 << 20;
/// Most ids (chunk, key or session) in one message.
pub const MAX_IDS: u32 = 65536;
/// Largest wrapped data key or `keys/secret.age` accepted.
pub const MAX_WRAPPED_KEY: u32 = crate::crypto::wrap::MAX_WRAPPED_KEY as u32;
/// Largest `repository.toml` accepted in a `Hello`.
pub const MAX_REPOSITORY_TOML: u32 = 64 << 10;
/// Longest client name in a session (as `ingest` allows).
pub const MAX_CLIENT_NAME: u32 = 64;
/// Longest error message carried (longer ones are cut).
pub const MAX_ERROR_MESSAGE: usize = 4096;
/// Frame header: length and tag.
pub const FRAME_HEADER_LEN: u64 = 5;

/// Error codes of an `Error` message.
pub mod code {
    /// The peer broke the protocol (bad frame, unexpected message).
    pub const PROTOCOL: u16 = 1;
    /// The request is not allowed (a delete on an append-only mirror).
    pub const REFUSED: u16 = 2;
    /// The mirror holds another repository.
    pub const WRONG_REPOSITORY: u16 = 3;
    /// A record or row failed verification.
    pub const CORRUPT: u16 = 4;
    /// Anything else on the mirror's side (disk full, I/O).
    pub const FAILED: u16 = 5;
}

/// A chunk record as stored in a pack, with what the mirror needs to index it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRecord {
    /// 0 data, 1 manifest.
    pub kind: u8,
    /// BLAKE3 of `record`, as the primary's index holds it.
    pub stored_hash: [u8; 32],
    /// For a manifest chunk: the chunks it names (its `chunk_refs`).
    pub refs: Vec<ChunkId>,
    /// The whole record: 48-byte header and envelope.
    pub record: Vec<u8>,
}

/// A wrapped data key row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireKey {
    /// Key id (the same on both sides: pack records name it).
    pub id: u64,
    /// Server time it was made.
    pub created: i64,
    /// The age-wrapped key.
    pub wrapped: Vec<u8>,
}

/// A visible session: its row and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireSession {
    /// Session id (the same on both sides).
    pub id: i64,
    /// Client name.
    pub client: String,
    /// 1 complete, 2 partial.
    pub state: u8,
    /// Server time at start.
    pub started: i64,
    /// Server time at end.
    pub finished: Option<i64>,
    /// files, bytes, errors, new_chunks, new_bytes.
    pub stats: [u64; 5],
    /// Pinned against roll-off.
    pub pinned: bool,
    /// Manifest chunk ids, in order.
    pub root: Vec<ChunkId>,
    /// The session's sources record (absolute paths on the client), for a session with full
    /// paths; `None` for one recorded before them (sent as `PutSession`, tag 0x32; with
    /// sources the tag is 0x38, version 2).
    pub sources: Option<Vec<Vec<u8>>>,
}

/// One message; the tag is fixed per variant (format-spec/wire.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 0x01 P->M: magic, version, the primary's `repository.toml` and `keys/secret.age`.
    Hello {
        /// Protocol version.
        version: u32,
        /// `repository.toml`, verbatim.
        repository_toml: String,
        /// `keys/secret.age`, verbatim.
        secret_age: Vec<u8>,
    },
    /// 0x02 M->P: the mirror's state.
    HelloOk {
        /// Protocol version.
        version: u32,
        /// The mirror repository was created by this Hello.
        created: bool,
        /// Chunks the mirror holds.
        chunks: u64,
        /// XOR of BLAKE3(chunk id) over them.
        digest: [u8; 32],
        /// Chunks its `check --read-data` found damaged.
        damaged: u64,
    },
    /// 0x03 M->P: the request failed; the mirror closes the connection after it.
    Error {
        /// One of [`code`].
        code: u16,
        /// In words.
        message: String,
    },
    /// 0x04 P->M: open a read-only connection (to fetch good copies for `repair chunks`).
    HelloRead {
        /// Version of the read-only requests.
        version: u32,
        /// The primary's `repository.toml`, verbatim.
        repository_toml: String,
    },
    /// 0x10 P->M: key ids the primary holds.
    HaveKeys(Vec<u64>),
    /// 0x11 M->P: those the mirror lacks.
    LackKeys(Vec<u64>),
    /// 0x12 P->M: keys to store.
    PutKeys(Vec<WireKey>),
    /// 0x13 M->P: how many were new.
    PutKeysOk(u32),
    /// 0x20 P->M: chunk ids the primary holds.
    HaveChunks(Vec<ChunkId>),
    /// 0x21 M->P: those the mirror lacks.
    LackChunks(Vec<ChunkId>),
    /// 0x22 P->M: records to store (durable before the reply).
    PutChunks(Vec<WireRecord>),
    /// 0x23 M->P: stored, and the mirror's state after it.
    PutChunksOk {
        /// Records stored.
        stored: u32,
        /// Chunks the mirror now holds.
        chunks: u64,
        /// Their digest.
        digest: [u8; 32],
    },
    /// 0x24 P->M: which chunks are damaged?
    ListDamaged,
    /// 0x25 M->P: damaged chunk ids (at most [`MAX_IDS`]).
    DamagedList(Vec<ChunkId>),
    /// 0x26 P->M: good copies of damaged chunks.
    Repair(Vec<WireRecord>),
    /// 0x27 M->P: how many were repaired.
    RepairOk(u32),
    /// 0x30 P->M: session ids the primary holds.
    HaveSessions(Vec<i64>),
    /// 0x31 M->P: those the mirror lacks.
    LackSessions(Vec<i64>),
    /// 0x32 P->M: one session to make visible.
    PutSession(WireSession),
    /// 0x33 M->P: it is visible.
    PutSessionOk,
    /// 0x34 P->M: which sessions does the mirror hold?
    ListSessions,
    /// 0x35 M->P: all of them (at most [`MAX_IDS`]).
    SessionList(Vec<i64>),
    /// 0x36 P->M: forget these sessions (refused on an append-only mirror).
    Forget(Vec<i64>),
    /// 0x37 M->P: how many were forgotten.
    ForgetOk(u32),
    /// 0x40 P->M (read-only connection): send the records of these chunks.
    GetChunks(Vec<ChunkId>),
    /// 0x41 M->P: the chunks the mirror does not hold (or holds damaged), and the records of
    /// the others, in the order asked, as many as fit one frame; the rest is asked again.
    ChunkRecords {
        /// Ids the mirror cannot send.
        lacking: Vec<ChunkId>,
        /// Records sent.
        records: Vec<WireRecord>,
    },
    /// 0x3e P->M: done.
    Bye,
    /// 0x3f M->P: the mirror's final state.
    ByeOk {
        /// Chunks the mirror holds.
        chunks: u64,
        /// Their digest.
        digest: [u8; 32],
    },
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::protocol(format!("mirror protocol: {what}"))
}

impl Message {
    /// The message's name, for errors.
    pub fn name(&self) -> &'static str {
        tag_name(self.encode().0)
    }

    /// Tag and payload.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut e = Enc(Vec::new());
        let tag = match self {
            Message::Hello {
                version,
                repository_toml,
                secret_age,
            } => {
                e.0.extend_from_slice(HELLO_MAGIC);
                e.u32(*version);
                e.bytes(repository_toml.as_bytes());
                e.bytes(secret_age);
                0x01
            }
            Message::HelloOk {
                version,
                created,
                chunks,
                digest,
                damaged,
            } => {
                e.u32(*version);
                e.u8(u8::from(*created));
                e.u64(*chunks);
                e.0.extend_from_slice(digest);
                e.u64(*damaged);
                0x02
            }
            Message::Error { code, message } => {
                e.error(*code, message);
                0x03
            }
            Message::HelloRead {
                version,
                repository_toml,
            } => {
                e.0.extend_from_slice(HELLO_MAGIC);
                e.u32(*version);
                e.bytes(repository_toml.as_bytes());
                0x04
            }
            Message::HaveKeys(ids) => (e.u64s(ids), 0x10).1,
            Message::LackKeys(ids) => (e.u64s(ids), 0x11).1,
            Message::PutKeys(keys) => {
                e.count(keys.len());
                for k in keys {
                    e.u64(k.id);
                    e.i64(k.created);
                    e.bytes(&k.wrapped);
                }
                0x12
            }
            Message::PutKeysOk(n) => (e.u32(*n), 0x13).1,
            Message::HaveChunks(ids) => (e.ids(ids), 0x20).1,
            Message::LackChunks(ids) => (e.ids(ids), 0x21).1,
            Message::PutChunks(records) => (e.records(records), 0x22).1,
            Message::PutChunksOk {
                stored,
                chunks,
                digest,
            } => {
                e.u32(*stored);
                e.u64(*chunks);
                e.0.extend_from_slice(digest);
                0x23
            }
            Message::ListDamaged => 0x24,
            Message::DamagedList(ids) => (e.ids(ids), 0x25).1,
            Message::Repair(records) => (e.records(records), 0x26).1,
            Message::RepairOk(n) => (e.u32(*n), 0x27).1,
            Message::HaveSessions(ids) => (e.i64s(ids), 0x30).1,
            Message::LackSessions(ids) => (e.i64s(ids), 0x31).1,
            Message::PutSession(s) => {
                e.i64(s.id);
                e.bytes(s.client.as_bytes());
                e.u8(s.state);
                e.i64(s.started);
                e.u8(u8::from(s.finished.is_some()));
                e.i64(s.finished.unwrap_or(0));
                s.stats.iter().for_each(|v| e.u64(*v));
                e.u8(u8::from(s.pinned));
                e.ids(&s.root);
                match &s.sources {
                    None => 0x32,
                    Some(sources) => {
                        e.u32(sources.len() as u32);
                        sources.iter().for_each(|p| e.bytes(p));
                        0x38
                    }
                }
            }
            Message::PutSessionOk => 0x33,
            Message::ListSessions => 0x34,
            Message::SessionList(ids) => (e.i64s(ids), 0x35).1,
            Message::Forget(ids) => (e.i64s(ids), 0x36).1,
            Message::ForgetOk(n) => (e.u32(*n), 0x37).1,
            Message::GetChunks(ids) => (e.ids(ids), 0x40).1,
            Message::ChunkRecords { lacking, records } => {
                e.ids(lacking);
                e.records(records);
                0x41
            }
            Message::Bye => 0x3e,
            Message::ByeOk { chunks, digest } => {
                e.u64(*chunks);
                e.0.extend_from_slice(digest);
                0x3f
            }
        };
        (tag, e.0)
    }

    /// Decode one frame's tag and payload; anything malformed is `Corrupt`.
    pub fn decode(tag: u8, payload: &[u8]) -> Result<Message> {
        let mut d = Dec::new(payload, tag_name(tag), "mirror");
        let msg = match tag {
            0x01 => {
                if d.take(8)? != HELLO_MAGIC {
                    return Err(bad(
                        "Hello without the RSBKMIRR magic (not an rsbackup mirror)",
                    ));
                }
                Message::Hello {
                    version: d.u32()?,
                    repository_toml: d.text(MAX_REPOSITORY_TOML)?,
                    secret_age: d.bytes(MAX_WRAPPED_KEY)?.to_vec(),
                }
            }
            0x02 => Message::HelloOk {
                version: d.u32()?,
                created: d.bool()?,
                chunks: d.u64()?,
                digest: d.hash()?,
                damaged: d.u64()?,
            },
            0x03 => Message::Error {
                code: d.u16()?,
                message: String::from_utf8_lossy(d.bytes(MAX_ERROR_MESSAGE as u32)?).into_owned(),
            },
            0x04 => {
                if d.take(8)? != HELLO_MAGIC {
                    return Err(bad(
                        "HelloRead without the RSBKMIRR magic (not an rsbackup primary)",
                    ));
                }
                Message::HelloRead {
                    version: d.u32()?,
                    repository_toml: d.text(MAX_REPOSITORY_TOML)?,
                }
            }
            0x10 => Message::HaveKeys(d.u64s()?),
            0x11 => Message::LackKeys(d.u64s()?),
            0x12 => {
                let n = d.count(MAX_IDS, 8 + 8 + 4)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(WireKey {
                        id: d.u64()?,
                        created: d.i64()?,
                        wrapped: d.bytes(MAX_WRAPPED_KEY)?.to_vec(),
                    });
                }
                Message::PutKeys(keys)
            }
            0x13 => Message::PutKeysOk(d.u32()?),
            0x20 => Message::HaveChunks(d.ids()?),
            0x21 => Message::LackChunks(d.ids()?),
            0x22 => Message::PutChunks(d.records()?),
            0x23 => Message::PutChunksOk {
                stored: d.u32()?,
                chunks: d.u64()?,
                digest: d.hash()?,
            },
            0x24 => Message::ListDamaged,
            0x25 => Message::DamagedList(d.ids()?),
            0x26 => Message::Repair(d.records()?),
            0x27 => Message::RepairOk(d.u32()?),
            0x30 => Message::HaveSessions(d.i64s()?),
            0x31 => Message::LackSessions(d.i64s()?),
            tag @ (0x32 | 0x38) => {
                let id = d.i64()?;
                let client = d.text(MAX_CLIENT_NAME)?;
                let state = d.u8()?;
                if !(1..=2).contains(&state) {
                    return Err(bad(format_args!("session {id}: unknown state {state}")));
                }
                let started = d.i64()?;
                let has_finished = d.bool()?;
                let finished = d.i64()?;
                let mut stats = [0u64; 5];
                for v in &mut stats {
                    *v = d.u64()?;
                }
                Message::PutSession(WireSession {
                    id,
                    client,
                    state,
                    started,
                    finished: has_finished.then_some(finished),
                    stats,
                    pinned: d.bool()?,
                    root: d.ids()?,
                    sources: if tag == 0x38 {
                        Some(d.sources()?)
                    } else {
                        None
                    },
                })
            }
            0x33 => Message::PutSessionOk,
            0x34 => Message::ListSessions,
            0x35 => Message::SessionList(d.i64s()?),
            0x36 => Message::Forget(d.i64s()?),
            0x37 => Message::ForgetOk(d.u32()?),
            0x40 => Message::GetChunks(d.ids()?),
            0x41 => Message::ChunkRecords {
                lacking: d.ids()?,
                records: d.records()?,
            },
            0x3e => Message::Bye,
            0x3f => Message::ByeOk {
                chunks: d.u64()?,
                digest: d.hash()?,
            },
            other => return Err(bad(format_args!("unknown message tag 0x{other:02x}"))),
        };
        d.end()?;
        Ok(msg)
    }
}

fn tag_name(tag: u8) -> &'static str {
    match tag {
        0x01 => "Hello",
        0x02 => "HelloOk",
        0x03 => "Error",
        0x04 => "HelloRead",
        0x10 => "HaveKeys",
        0x11 => "LackKeys",
        0x12 => "PutKeys",
        0x13 => "PutKeysOk",
        0x20 => "HaveChunks",
        0x21 => "LackChunks",
        0x22 => "PutChunks",
        0x23 => "PutChunksOk",
        0x24 => "ListDamaged",
        0x25 => "DamagedList",
        0x26 => "Repair",
        0x27 => "RepairOk",
        0x30 => "HaveSessions",
        0x31 => "LackSessions",
        0x32 | 0x38 => "PutSession",
        0x33 => "PutSessionOk",
        0x34 => "ListSessions",
        0x35 => "SessionList",
        0x36 => "Forget",
        0x37 => "ForgetOk",
        0x40 => "GetChunks",
        0x41 => "ChunkRecords",
        0x3e => "Bye",
        0x3f => "ByeOk",
        _ => "unknown message",
    }
}
