//! The server's side of `restore-fetch`: one connection of an authorized client, answering its
//! requests for its own sessions, their manifests and the chunks they hold, as stored
//! (sealed), with the wrapped data keys they need. Nothing is decrypted here and no private
//! key is needed: a client opens what it receives with its own identity.
//!
//! The client may ask only for what is its own: a session of another client, or a chunk that no
//! visible session of this client holds (even one that exists, another client's), is refused,
//! reported through `refuse` (the caller audits and mails it) and ends the connection.

use std::collections::HashSet;
use std::io::{Read, Write};

use super::wire::{
    CHUNK_FIXED_LEN, Conn, MAX_FRAME_PAYLOAD, MIN_PROTOCOL_VERSION, Message, PROTOCOL_VERSION,
    WireChunk, WireSession, code,
};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{KeyId, SessionId};
use crate::index::{Index, SessionState};
use crate::mirror::wire::FrameMessage;
use crate::repo::Repo;
use crate::store::PackReader;

/// Most chunk ids one `GetChunks` may ask for.
pub const MAX_CHUNKS_PER_REQUEST: usize = 4096;

/// What one connection sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Sessions whose root was sent.
    pub roots: u64,
    /// Chunks sent.
    pub chunks: u64,
    /// Envelope bytes sent.
    pub bytes: u64,
}

/// Serve `client`'s requests on `reader`/`writer` until it closes the connection. `refuse`
/// hears why a request was refused (then the connection ends with a `Refused` error).
pub fn serve_fetch<R: Read, W: Write>(
    repo: &Repo,
    client: &str,
    reader: R,
    writer: W,
    refuse: &mut dyn FnMut(String),
) -> Result<FetchStats> {
    let mut conn = Conn::new(reader, writer);
    let index = repo.index()?;
    let packs = PackReader::new(repo.root());
    let mut stats = FetchStats::default();
    match conn.recv()? {
        // The client's own version: it asks for nothing that version lacks.
        Message::Hello(v) if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&v) => {
            conn.send(&Message::HelloOk {
                version: v,
                client: client.to_owned(),
            })?
        }
        Message::Hello(v) => {
            return fail(
                &mut conn,
                code::PROTOCOL,
                format!(
                    "protocol version {v} is not one this server speaks \
                     ({MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})"
                ),
            );
        }
        other => {
            return fail(
                &mut conn,
                code::PROTOCOL,
                format!("expected Hello, got {}", other.name()),
            );
        }
    }
    let mut keys_sent = HashSet::new();
    // The sessions whose roots were sent, latest first: their chunks are looked up in them
    // first (Index::client_chunk).
    let mut reading: Vec<SessionId> = Vec::new();
    loop {
        let request = match conn.recv() {
            Ok(m) => m,
            // The client is done: it closes its end between requests.
            Err(e) if e.kind() == ErrorKind::Io && e.message().ends_with("closed it") => {
                return Ok(stats);
            }
            Err(e) => return Err(e),
        };
        let answer = match request {
            Message::ListSessions => session_list(&index, client),
            Message::GetRoot(id) => {
                let answer = root(&index, client, SessionId(id), &mut stats);
                if answer.is_ok() {
                    reading.retain(|s| s.0 != id);
                    reading.insert(0, SessionId(id));
                    reading.truncate(READING_FIRST);
                }
                answer
            }
            Message::GetSources(id) => sources(repo, &index, client, SessionId(id)),
            Message::GetChunks(ids) if ids.len() > MAX_CHUNKS_PER_REQUEST => Err(Answer::Fail(
                code::PROTOCOL,
                format!(
                    "GetChunks asks for {} chunks, more than {MAX_CHUNKS_PER_REQUEST}",
                    ids.len()
                ),
            )),
            Message::GetChunks(ids) => chunks(
                &index,
                &packs,
                (client, &reading),
                &ids,
                &mut keys_sent,
                &mut stats,
            ),
            other => Err(Answer::Fail(
                code::PROTOCOL,
                format!("{} is not a request", other.name()),
            )),
        };
        match answer {
            Ok(message) => conn.send(&message)?,
            Err(Answer::Refuse(why)) => {
                refuse(format!("client {client}: restore-fetch: {why}"));
                let _ = conn.send(&Message::Error {
                    code: code::REFUSED,
                    message: crate::server::authz::REFUSAL_MESSAGE.to_owned(),
                });
                return Err(Error::new(ErrorKind::Refused, why));
            }
            Err(Answer::NotFound(why)) => conn.send(&Message::Error {
                code: code::NOT_FOUND,
                message: why,
            })?,
            Err(Answer::Fail(c, why)) => return fail(&mut conn, c, why),
        }
    }
}

/// Why a request got no answer of its own.
enum Answer {
    /// Not this client's: refused, audited, mailed; the connection ends.
    Refuse(String),
    /// It does not exist; the connection goes on.
    NotFound(String),
    /// A broken request or a failure on this side; the connection ends.
    Fail(u16, String),
}

impl From<Error> for Answer {
    fn from(e: Error) -> Answer {
        Answer::Fail(code::FAILED, e.to_string())
    }
}

fn fail<R: Read, W: Write, T>(conn: &mut Conn<R, W>, code: u16, why: String) -> Result<T> {
    let _ = conn.send(&Message::Error {
        code,
        message: why.clone(),
    });
    Err(Error::protocol(format!("restore-fetch: {why}")))
}

fn session_list(index: &Index, client: &str) -> std::result::Result<Message, Answer> {
    let list = index
        .sessions(Some(client))?
        .into_iter()
        .map(|s| WireSession {
            id: s.id,
            partial: s.state == SessionState::Partial,
            started: s.started,
            finished: s.finished.unwrap_or(s.started),
            files: s.stats.files,
            bytes: s.stats.bytes,
        })
        .collect();
    Ok(Message::SessionList(list))
}

/// `id` as a visible session of `client`: another client's is refused, a missing one not found.
fn own_session(index: &Index, client: &str, id: SessionId) -> std::result::Result<(), Answer> {
    let session = match index.session(id) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Answer::NotFound(format!("session {id} does not exist")));
        }
        Err(e) => return Err(e.into()),
    };
    if session.client != client {
        return Err(Answer::Refuse(format!(
            "asked for session {id}, which is client {}'s",
            session.client
        )));
    }
    Ok(())
}

fn sources(
    repo: &Repo,
    index: &Index,
    client: &str,
    id: SessionId,
) -> std::result::Result<Message, Answer> {
    own_session(index, client, id)?;
    Ok(Message::Sources(
        crate::store::records::read_session_sources(repo.root(), id)?,
    ))
}

fn root(
    index: &Index,
    client: &str,
    id: SessionId,
    stats: &mut FetchStats,
) -> std::result::Result<Message, Answer> {
    own_session(index, client, id)?;
    stats.roots += 1;
    Ok(Message::Root(index.session_root(id)?))
}

/// How many sessions whose roots were sent are tried first for a chunk.
const READING_FIRST: usize = 4;

fn chunks(
    index: &Index,
    packs: &PackReader,
    (client, reading): (&str, &[SessionId]),
    ids: &[crate::ids::ChunkId],
    keys_sent: &mut HashSet<KeyId>,
    stats: &mut FetchStats,
) -> std::result::Result<Message, Answer> {
    let mut keys = Vec::new();
    let mut out = Vec::new();
    // Room for the two counts; each key and chunk is added only while the frame has room.
    let mut size = 8usize;
    for id in ids {
        let Some(loc) = index.client_chunk(client, reading, id)? else {
            return Err(Answer::Refuse(format!(
                "asked for chunk {id}, which no session of client {client} holds"
            )));
        };
        let new_key = !keys_sent.contains(&loc.key_id)
            && !keys
                .iter()
                .any(|(k, _): &(KeyId, Vec<u8>)| *k == loc.key_id);
        let wrapped = if new_key {
            Some(index.data_key(loc.key_id)?)
        } else {
            None
        };
        let envelope = packs.read_envelope(&loc)?;
        let more = CHUNK_FIXED_LEN + envelope.len() + wrapped.as_ref().map_or(0, |w| 12 + w.len());
        if !out.is_empty() && size + more > MAX_FRAME_PAYLOAD as usize {
            break;
        }
        size += more;
        if let Some(w) = wrapped {
            keys.push((loc.key_id, w));
        }
        stats.chunks += 1;
        stats.bytes += envelope.len() as u64;
        out.push(WireChunk {
            id: *id,
            kind: loc.kind,
            key_id: loc.key_id,
            envelope,
        });
    }
    keys_sent.extend(keys.iter().map(|(k, _)| *k));
    Ok(Message::Chunks { keys, chunks: out })
}
