//! The bytes of `serve restore-fetch` (format-spec/wire.md "Restore fetch"): frames as the
//! mirror protocol's (`u32 LE payload length`, `u8 tag`, payload), every message encoded and
//! decoded here, every count and length checked against the frame before anything is allocated.

use crate::error::{Error, Result};
use crate::ids::{ChunkId, KeyId};
use crate::index::ChunkKind;
use crate::mirror::wire::{Dec, Enc, FrameConn, FrameMessage};

/// First bytes of a `Hello` payload.
pub const HELLO_MAGIC: &[u8; 8] = b"RSBKREST";
/// The newest protocol version this build speaks. A client greets with the oldest version that
/// has what it needs (1, unless it asks for a session's sources), so that it can restore from
/// an older server too.
pub const PROTOCOL_VERSION: u32 = 2;
/// The oldest version a server of this build still serves.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// The version that added `GetSources`/`Sources`.
pub const SOURCES_VERSION: u32 = 2;
/// The mirror protocol's limits hold here too: frame payload, ids per message, wrapped key,
/// client name and error message sizes.
pub use crate::mirror::wire::{
    MAX_CLIENT_NAME, MAX_ERROR_MESSAGE, MAX_FRAME_PAYLOAD, MAX_IDS, MAX_WRAPPED_KEY,
};

/// Error codes of an `Error` message: the mirror protocol's protocol (1), refused (2) and failed
/// (5), and not found (3).
pub mod code {
    pub use crate::mirror::wire::code::{FAILED, PROTOCOL, REFUSED};
    /// The session does not exist (or is not visible).
    pub const NOT_FOUND: u16 = 3;
}

/// One session, as listed to its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireSession {
    /// Session id.
    pub id: i64,
    /// 0 complete, 1 partial.
    pub partial: bool,
    /// Server time at start, Unix seconds.
    pub started: i64,
    /// Server time at end, Unix seconds.
    pub finished: i64,
    /// Entries.
    pub files: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
}

/// A chunk as stored: its id, kind and key, and the sealed envelope from its pack record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireChunk {
    /// The chunk id.
    pub id: ChunkId,
    /// Data or manifest.
    pub kind: ChunkKind,
    /// The data key that sealed it.
    pub key_id: KeyId,
    /// The envelope (format-spec/chunk.md), as stored.
    pub envelope: Vec<u8>,
}

/// A message of `serve restore-fetch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 0x01 C->S: magic and version.
    Hello(u32),
    /// 0x02 S->C: the version spoken and the client the server serves.
    HelloOk {
        /// Protocol version.
        version: u32,
        /// The client (from the forced command).
        client: String,
    },
    /// 0x03 either way: the request failed; the connection ends.
    Error {
        /// One of [`code`].
        code: u16,
        /// Why (at most [`MAX_ERROR_MESSAGE`] bytes).
        message: String,
    },
    /// 0x10 C->S: list my sessions.
    ListSessions,
    /// 0x11 S->C: the client's visible sessions, oldest first.
    SessionList(Vec<WireSession>),
    /// 0x12 C->S: the root of one of my sessions.
    GetRoot(i64),
    /// 0x13 S->C: its manifest chunk ids, in order.
    Root(Vec<ChunkId>),
    /// 0x14 C->S: send these chunks (each held by one of my sessions).
    GetChunks(Vec<ChunkId>),
    /// 0x15 S->C: the data keys not sent before on this connection that the chunks need, and
    /// the chunks, in the order asked, as many as fit one frame (at least one).
    Chunks {
        /// (key id, the wrapped data key as stored).
        keys: Vec<(KeyId, Vec<u8>)>,
        /// The chunks.
        chunks: Vec<WireChunk>,
    },
    /// 0x16 C->S (version 2): the sources of one of my sessions.
    GetSources(i64),
    /// 0x17 S->C: its sources record (absolute paths on the client), or none (a session
    /// recorded before sessions kept full paths).
    Sources(Option<Vec<Vec<u8>>>),
}

fn tag_name(tag: u8) -> &'static str {
    match tag {
        0x01 => "Hello",
        0x02 => "HelloOk",
        0x03 => "Error",
        0x10 => "ListSessions",
        0x11 => "SessionList",
        0x12 => "GetRoot",
        0x13 => "Root",
        0x14 => "GetChunks",
        0x15 => "Chunks",
        0x16 => "GetSources",
        0x17 => "Sources",
        _ => "unknown message",
    }
}

fn bad(what: std::fmt::Arguments<'_>) -> Error {
    Error::protocol(format!("restore-fetch protocol: {what}"))
}

/// Bytes of a `WireChunk` before its envelope: id, kind, key id, envelope length.
pub const CHUNK_FIXED_LEN: usize = 32 + 1 + 8 + 4;

impl Message {
    fn encode_tag(&self) -> u8 {
        match self {
            Message::Hello(_) => 0x01,
            Message::HelloOk { .. } => 0x02,
            Message::Error { .. } => 0x03,
            Message::ListSessions => 0x10,
            Message::SessionList(_) => 0x11,
            Message::GetRoot(_) => 0x12,
            Message::Root(_) => 0x13,
            Message::GetChunks(_) => 0x14,
            Message::Chunks { .. } => 0x15,
            Message::GetSources(_) => 0x16,
            Message::Sources(_) => 0x17,
        }
    }
}

impl FrameMessage for Message {
    const CONNECTION: &'static str = "restore-fetch connection";
    const MAX_PAYLOAD: u32 = MAX_FRAME_PAYLOAD;

    fn name(&self) -> &'static str {
        tag_name(self.encode_tag())
    }

    fn tag_name(tag: u8) -> &'static str {
        tag_name(tag)
    }

    fn bad(what: std::fmt::Arguments<'_>) -> Error {
        bad(what)
    }

    fn encode(&self) -> (u8, Vec<u8>) {
        let mut e = Enc(Vec::new());
        match self {
            Message::Hello(version) => {
                e.0.extend_from_slice(HELLO_MAGIC);
                e.u32(*version);
            }
            Message::HelloOk { version, client } => {
                e.u32(*version);
                e.bytes(client.as_bytes());
            }
            Message::Error { code, message } => e.error(*code, message),
            Message::ListSessions => {}
            Message::SessionList(list) => {
                e.count(list.len());
                for s in list {
                    e.i64(s.id);
                    e.u8(u8::from(s.partial));
                    e.i64(s.started);
                    e.i64(s.finished);
                    e.u64(s.files);
                    e.u64(s.bytes);
                }
            }
            Message::GetRoot(session) | Message::GetSources(session) => e.i64(*session),
            Message::Sources(None) => e.u8(0),
            Message::Sources(Some(sources)) => {
                e.u8(1);
                e.count(sources.len());
                sources.iter().for_each(|p| e.bytes(p));
            }
            Message::Root(ids) | Message::GetChunks(ids) => e.ids(ids),
            Message::Chunks { keys, chunks } => {
                e.count(keys.len());
                for (id, wrapped) in keys {
                    e.u64(id.0);
                    e.bytes(wrapped);
                }
                e.count(chunks.len());
                for c in chunks {
                    e.0.extend_from_slice(&c.id.0);
                    e.u8(match c.kind {
                        ChunkKind::Data => 0,
                        ChunkKind::Manifest => 1,
                    });
                    e.u64(c.key_id.0);
                    e.bytes(&c.envelope);
                }
            }
        }
        (self.encode_tag(), e.0)
    }

    fn decode(tag: u8, payload: &[u8]) -> Result<Message> {
        let mut d = Dec::new(payload, tag_name(tag), "restore-fetch");
        let msg = match tag {
            0x01 => {
                if d.take(8)? != HELLO_MAGIC {
                    return Err(bad(format_args!(
                        "Hello without the RSBKREST magic (not an rsbackup restore)"
                    )));
                }
                Message::Hello(d.u32()?)
            }
            0x02 => Message::HelloOk {
                version: d.u32()?,
                client: text(d.bytes(MAX_CLIENT_NAME)?, "client name")?,
            },
            0x03 => Message::Error {
                code: d.u16()?,
                message: String::from_utf8_lossy(d.bytes(MAX_ERROR_MESSAGE as u32)?).into_owned(),
            },
            0x10 => Message::ListSessions,
            0x11 => {
                let n = d.count(MAX_IDS, 8 + 1 + 8 + 8 + 8 + 8)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = d.i64()?;
                    let partial = match d.u8()? {
                        0 => false,
                        1 => true,
                        other => return Err(bad(format_args!("session state {other}"))),
                    };
                    list.push(WireSession {
                        id,
                        partial,
                        started: d.i64()?,
                        finished: d.i64()?,
                        files: d.u64()?,
                        bytes: d.u64()?,
                    });
                }
                Message::SessionList(list)
            }
            0x12 => Message::GetRoot(d.i64()?),
            0x13 => Message::Root(d.ids()?),
            0x14 => Message::GetChunks(d.ids()?),
            0x16 => Message::GetSources(d.i64()?),
            0x17 => Message::Sources(match d.u8()? {
                0 => None,
                1 => Some(sources(&mut d)?),
                other => return Err(bad(format_args!("sources flag {other}"))),
            }),
            0x15 => {
                let n = d.count(MAX_IDS, 8 + 4)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = KeyId(d.u64()?);
                    keys.push((id, d.bytes(MAX_WRAPPED_KEY)?.to_vec()));
                }
                let n = d.count(MAX_IDS, CHUNK_FIXED_LEN)?;
                let mut chunks = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = ChunkId(d.hash()?);
                    let kind = match d.u8()? {
                        0 => ChunkKind::Data,
                        1 => ChunkKind::Manifest,
                        other => return Err(bad(format_args!("unknown chunk kind {other}"))),
                    };
                    let key_id = KeyId(d.u64()?);
                    let envelope = d.bytes(MAX_FRAME_PAYLOAD)?.to_vec();
                    chunks.push(WireChunk {
                        id,
                        kind,
                        key_id,
                        envelope,
                    });
                }
                Message::Chunks { keys, chunks }
            }
            other => return Err(bad(format_args!("unknown message tag 0x{other:02x}"))),
        };
        d.end()?;
        Ok(msg)
    }
}

/// One message of each kind, for round-trip tests and fuzz seeds.
#[doc(hidden)]
pub fn one_of_each() -> Vec<Message> {
    vec![
        Message::Hello(PROTOCOL_VERSION),
        Message::HelloOk {
            version: PROTOCOL_VERSION,
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
        Message::GetRoot(-1),
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
        Message::GetSources(3),
        Message::Sources(Some(vec![b"/var/www".to_vec(), b"/etc".to_vec()])),
    ]
}

/// A session's sources: each an absolute path, as its sources record allows.
fn sources(d: &mut Dec<'_>) -> Result<Vec<Vec<u8>>> {
    use crate::format::records::{MAX_SOURCE_LEN, MAX_SOURCES, encode_sources};
    let n = d.count(MAX_SOURCES as u32, 4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(d.bytes(MAX_SOURCE_LEN as u32)?.to_vec());
    }
    encode_sources(&out).map_err(|e| bad(format_args!("sources: {}", e.message())))?;
    Ok(out)
}

fn text(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(format_args!("{what} is not UTF-8")))
}

/// A `restore-fetch` connection.
pub type Conn<R, W> = FrameConn<R, W, Message>;

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
