//! The client's side of `restore-fetch`: a [`ChunkSource`] over one connection to the server,
//! opening every chunk here with the client's own identity. The server sends chunks sealed, as
//! stored; each is authenticated (AEAD, bound to its id and key id) and its id recomputed with
//! the chunk-id key of the client's scope, which only a data key wrapped to the client carries.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Mutex, RwLock};

use super::wire::{
    Conn, MIN_PROTOCOL_VERSION, Message, SOURCES_VERSION, WireChunk, WireSession, code,
};
use crate::crypto::wrap::{Identities, unwrap_data_key_scoped};
use crate::crypto::{ChunkIdKey, DataKey, envelope};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ChunkId, KeyId, SessionId};
use crate::index::ChunkKind;
use crate::mirror::wire::FrameMessage;
use crate::reader::{ChunkSource, MAX_MANIFEST_CHUNK};

/// A connection to the server's `restore-fetch`, reading chunks of the client's own sessions.
pub struct RemoteSource<R, W> {
    conn: Mutex<Conn<R, W>>,
    client: String,
    identities: Identities,
    /// Wrapped keys the server sent that were not needed yet.
    wrapped: Mutex<HashMap<KeyId, Vec<u8>>>,
    /// Unwrapped keys, with the chunk-id key of the client's scope.
    keys: RwLock<HashMap<KeyId, (DataKey, ChunkIdKey)>>,
    /// Chunks fetched ahead ([`ChunkSource::prefetch`]), opened and verified, with the kind
    /// they are stored as, until read.
    ahead: Mutex<HashMap<ChunkId, (ChunkKind, Vec<u8>)>>,
    /// Requests sent.
    requests: std::sync::atomic::AtomicU64,
    /// The protocol version greeted with (and served).
    version: u32,
}

/// Most chunks held fetched ahead and not read yet (a reader that stops early leaves some).
const MAX_AHEAD: usize = 1024;

impl<R: Read + Send, W: Write + Send> RemoteSource<R, W> {
    /// Greet the server on `reader`/`writer` as `client` with protocol `version` (the oldest
    /// that has what the caller will ask: [`MIN_PROTOCOL_VERSION`], or [`SOURCES_VERSION`] to
    /// ask for a session's sources), and prepare to open chunks with `identities` (the client's
    /// own identity, whose public key is its `restore-recipient`).
    pub fn connect(
        reader: R,
        writer: W,
        client: &str,
        identities: Identities,
        version: u32,
    ) -> Result<RemoteSource<R, W>> {
        let mut conn = Conn::new(reader, writer);
        conn.send(&Message::Hello(version))?;
        match conn.recv()? {
            Message::HelloOk {
                version: served_version,
                ..
            } if served_version != version => {
                return Err(Error::protocol(format!(
                    "restore-fetch: the server answered version {served_version} to a greeting \
                     of version {version}"
                )));
            }
            Message::HelloOk { client: served, .. } if served == client => {}
            Message::HelloOk { client: served, .. } => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "the server serves this ssh key as client {served}, but client.toml \
                         names client {client}"
                    ),
                ));
            }
            Message::Error {
                code: code::PROTOCOL,
                message,
            } if version > MIN_PROTOCOL_VERSION && message.contains("protocol version") => {
                return Err(Error::new(
                    ErrorKind::UnsupportedVersion,
                    format!(
                        "the server's rsbackup is older than restore-fetch version {version} \
                         (it said: {message}); upgrade it, or restore without what needs that \
                         version (--to-original-paths)"
                    ),
                ));
            }
            other => return Err(unexpected(other, "Hello")),
        }
        Ok(RemoteSource {
            version,
            conn: Mutex::new(conn),
            client: client.to_owned(),
            identities,
            wrapped: Mutex::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            ahead: Mutex::new(HashMap::new()),
            requests: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many requests were sent after the greeting (each one round trip).
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn request(&self, message: &Message) -> Result<Message> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.send(message)?;
        conn.recv()
    }

    /// This client's sessions on the server, oldest first.
    pub fn sessions(&self) -> Result<Vec<WireSession>> {
        match self.request(&Message::ListSessions)? {
            Message::SessionList(list) => Ok(list),
            other => Err(unexpected(other, "ListSessions")),
        }
    }

    /// The sources of the client's session `id` (absolute paths on the client), or `None` for
    /// a session recorded before sessions kept full paths. Needs a connection greeted with
    /// [`SOURCES_VERSION`].
    pub fn sources(&self, id: SessionId) -> Result<Option<Vec<Vec<u8>>>> {
        if self.version < SOURCES_VERSION {
            return Err(Error::new(
                ErrorKind::Internal,
                "restore-fetch: sources asked on a connection greeted without them",
            ));
        }
        match self.request(&Message::GetSources(id.0))? {
            Message::Sources(sources) => Ok(sources),
            other => Err(unexpected(other, "GetSources")),
        }
    }

    /// The chunks `ids`, opened and verified, in the order asked (several requests when they
    /// do not fit one answer).
    pub fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkKind, Vec<u8>)>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut rest = ids;
        while !rest.is_empty() {
            let ask = &rest[..rest.len().min(super::serve::MAX_CHUNKS_PER_REQUEST)];
            let (keys, chunks) = match self.request(&Message::GetChunks(ask.to_vec()))? {
                Message::Chunks { keys, chunks } => (keys, chunks),
                other => return Err(unexpected(other, "GetChunks")),
            };
            if chunks.is_empty() || chunks.len() > ask.len() {
                return Err(Error::protocol(format!(
                    "restore-fetch: {} chunks answered for {} asked",
                    chunks.len(),
                    ask.len()
                )));
            }
            self.wrapped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(keys);
            for (chunk, asked) in chunks.iter().zip(ask) {
                if chunk.id != *asked {
                    return Err(Error::protocol(format!(
                        "restore-fetch: chunk {} sent where {asked} was asked",
                        chunk.id
                    )));
                }
                out.push((chunk.kind, self.open(chunk)?));
            }
            rest = &rest[chunks.len()..];
        }
        Ok(out)
    }

    /// Open one chunk: its key, the AEAD, then its id under the client's scope.
    fn open(&self, chunk: &WireChunk) -> Result<Vec<u8>> {
        let (key, id_key) = self.data_key(chunk.key_id)?;
        // One bound for both kinds: a data chunk is at most 16 MiB (the chunker's largest
        // max-size), a manifest chunk at most this.
        let plaintext = envelope::open(
            &key,
            chunk.key_id,
            &chunk.id,
            &chunk.envelope,
            MAX_MANIFEST_CHUNK,
        )
        .map_err(|e| e.context(format!("opening chunk {}", chunk.id)))?;
        let actual = id_key.chunk_id(&plaintext);
        if actual != chunk.id {
            return Err(Error::corrupt(format!(
                "chunk {} decrypted but its content hashes to {actual}: the server sent a \
                 chunk that is not the one its id names",
                chunk.id
            )));
        }
        Ok(plaintext)
    }

    /// The data key `id`, unwrapped with the client's identity once; it must be a key of this
    /// client's own scope.
    fn data_key(&self, id: KeyId) -> Result<(DataKey, ChunkIdKey)> {
        if let Some(k) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(k.clone());
        }
        let wrapped = self
            .wrapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            // Kept until it unwraps: the server sends each key once, and a later read of a
            // chunk sealed with it must fail for the same reason (a prefetch's failure is
            // left to the reads that follow).
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                Error::protocol(format!(
                    "restore-fetch: the server sent a chunk sealed with data key {} without the key",
                    id.0
                ))
            })?;
        let unwrapped = unwrap_data_key_scoped(&wrapped, &self.identities).map_err(|e| {
            if e.kind() == ErrorKind::WrongIdentity {
                Error::new(
                    ErrorKind::WrongIdentity,
                    format!(
                        "data key {} is not wrapped to this identity: the session was stored \
                         before client {} had this restore-recipient (the administrator \
                         restores it on the server, with `rsbackup restore --repo`), or the \
                         recipient changed and `rsbackup key rewrap --config server.toml` has \
                         not run since",
                        id.0, self.client
                    ),
                )
            } else {
                e.context(format!("unwrapping data key {}", id.0))
            }
        })?;
        let scope = match unwrapped.scope {
            Some(scope) if scope.client == self.client => scope,
            Some(scope) => {
                return Err(Error::corrupt(format!(
                    "data key {} is of client {}'s scope, not of client {}'s",
                    id.0, scope.client, self.client
                )));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::WrongIdentity,
                    format!(
                        "data key {} is a repository-wide key (the session was stored before \
                         client {} had a restore-recipient): restore it on the server",
                        id.0, self.client
                    ),
                ));
            }
        };
        let key = (unwrapped.key, scope.id_key);
        self.wrapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, key.clone());
        Ok(key)
    }
}

impl<R: Read + Send, W: Write + Send> ChunkSource for RemoteSource<R, W> {
    fn session_root(&self, session: SessionId) -> Result<Vec<ChunkId>> {
        match self.request(&Message::GetRoot(session.0))? {
            Message::Root(ids) => Ok(ids),
            other => Err(unexpected(other, "GetRoot")),
        }
    }

    fn read_chunk_of(&self, id: &ChunkId, kind: ChunkKind) -> Result<Vec<u8>> {
        let ahead = self
            .ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let (got, plaintext) = match ahead {
            Some(fetched) => fetched,
            None => self
                .fetch(std::slice::from_ref(id))?
                .pop()
                .ok_or_else(|| Error::protocol("restore-fetch: no chunk answered"))?,
        };
        if got != kind {
            return Err(Error::corrupt(format!(
                "chunk {id} is stored as a {got:?} chunk, where a {kind:?} chunk is needed"
            )));
        }
        Ok(plaintext)
    }

    fn prefetch(&self, ids: &[ChunkId]) {
        self.fetch_ahead(ids);
    }
}

impl<R: Read + Send, W: Write + Send> RemoteSource<R, W> {
    /// Fetch `ids` in one go for the reads that follow; a failure is left to those reads, which
    /// then fetch each chunk alone and report exactly which one is bad.
    fn fetch_ahead(&self, ids: &[ChunkId]) {
        if self.ahead.lock().unwrap_or_else(|p| p.into_inner()).len() >= MAX_AHEAD {
            return;
        }
        let Ok(chunks) = self.fetch(ids) else {
            return;
        };
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        for (id, fetched) in ids.iter().zip(chunks) {
            ahead.insert(*id, fetched);
        }
    }
}

/// The error for an answer that is not the one asked for; the server's `Error` in its words.
fn unexpected(answer: Message, request: &str) -> Error {
    match answer {
        Message::Error { code, message } => {
            let kind = match code {
                code::REFUSED => ErrorKind::Refused,
                code::NOT_FOUND => ErrorKind::NotFound,
                code::PROTOCOL => ErrorKind::Protocol,
                _ => ErrorKind::Io,
            };
            Error::new(kind, format!("the server: {message}"))
        }
        other => Error::protocol(format!(
            "restore-fetch: {} answered to {request}",
            other.name()
        )),
    }
}
