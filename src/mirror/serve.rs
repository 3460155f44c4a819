//! The mirror's side of the protocol: one repository, filled only by what the primary sends
//! and only after every record is verified; append-only unless the configuration allows the
//! primary's deletes. Needs no key: records are checked by their header and stored hash.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::PathBuf;

use super::ChunkSetDigest;
use super::create::{create_mirror, is_vacant};
use super::wire::{
    Conn, MAX_IDS, MIN_PROTOCOL_VERSION, Message, PROTOCOL_VERSION, WireKey, WireRecord,
    WireSession, code,
};
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{RECORD_HEADER_LEN, RecordHeader, decode_record_header};
use crate::format::repository::RepoConfig;
use crate::ids::{ChunkId, KeyId, SessionId};
use crate::index::{ChunkKind, Index, MirroredSession};
use crate::repo::{Repo, Writer};
use crate::store::{PackWriter, PendingChunk};

mod read;
mod repair;

/// What the mirror side may do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The `[mirror-of.NAME]` name (for messages).
    pub name: String,
    /// The mirror repository (created on first contact if missing or empty).
    pub repository: PathBuf,
    /// Whether the primary may make this mirror forget sessions.
    pub follow_deletes: bool,
}

/// What one connection did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServeReport {
    /// The repository was created by this connection.
    pub created: bool,
    /// Data keys stored.
    pub keys_stored: u64,
    /// Chunks stored.
    pub chunks_stored: u64,
    /// Record bytes stored.
    pub bytes_stored: u64,
    /// Damaged chunks replaced by good copies.
    pub repaired: u64,
    /// Sessions made visible.
    pub sessions_stored: u64,
    /// Sessions forgotten at the primary's request.
    pub forgotten: u64,
    /// Chunks sent to a primary repairing itself (read-only connection).
    pub chunks_sent: u64,
}

/// Serve one primary over `reader`/`writer` until it says `Bye`. Any failure is sent to the
/// primary as an `Error` message (best effort) and returned.
pub fn serve<R: Read, W: Write>(reader: R, writer: W, opts: &ServeOptions) -> Result<ServeReport> {
    let mut conn = Conn::new(reader, writer);
    let mut report = ServeReport::default();
    match run(&mut conn, opts, &mut report) {
        Ok(()) => Ok(report),
        Err(e) => {
            let _ = conn.send(&Message::Error {
                code: error_code(e.kind()),
                message: e.to_string(),
            });
            Err(e)
        }
    }
}

/// The wire's error code for a failure (format-spec/wire.md): "refused" only for what the
/// mirror's configuration does not allow; an OS permission error on the mirror's disk is a
/// failure like any other I/O error.
fn error_code(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::Refused => code::REFUSED,
        ErrorKind::NotARepository => code::WRONG_REPOSITORY,
        ErrorKind::Corrupt => code::CORRUPT,
        ErrorKind::UnsupportedVersion | ErrorKind::Protocol => code::PROTOCOL,
        _ => code::FAILED,
    }
}

fn protocol(what: impl std::fmt::Display) -> Error {
    Error::protocol(format!("mirror protocol: {what}"))
}

/// The open mirror repository during one connection.
struct Mirror<'a> {
    repo: Repo,
    index: Index,
    writer: Writer,
    state: ChunkSetDigest,
    opts: &'a ServeOptions,
}

fn run<R: Read, W: Write>(
    conn: &mut Conn<R, W>,
    opts: &ServeOptions,
    report: &mut ServeReport,
) -> Result<()> {
    let (version, repository_toml, secret_age) = match conn.recv()? {
        Message::Hello {
            version,
            repository_toml,
            secret_age,
        } => (version, repository_toml, secret_age),
        Message::HelloRead {
            version,
            repository_toml,
        } => return read::serve_read(conn, opts, version, &repository_toml, report),
        _ => {
            return Err(protocol(
                "the first message was neither Hello nor HelloRead",
            ));
        }
    };
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "mirror protocol version {version} is not supported (this mirror speaks \
                 versions {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})"
            ),
        ));
    }
    let primary = RepoConfig::parse(&repository_toml, "the primary's repository.toml")?;
    let root = &opts.repository;
    if !root.join("repository.toml").exists() && is_vacant(root)? {
        create_mirror(root, &repository_toml, &secret_age)?;
        report.created = true;
    }
    let repo = open_matching(opts, &primary)?;
    super::create::mark_mirror(repo.root())?;
    let writer = repo.start_writer(crate::repo::Operation::Mirror)?;
    let index = repo.index()?;
    let state = ChunkSetDigest::of_index(&index)?;
    let damaged = index.damaged_count()?;
    conn.send(&Message::HelloOk {
        // The primary's own version: it sends nothing the mirror cannot read.
        version,
        created: report.created,
        chunks: state.count,
        digest: state.digest,
        damaged,
    })?;
    let mut mirror = Mirror {
        repo,
        index,
        writer,
        state,
        opts,
    };
    loop {
        let reply = match conn.recv()? {
            Message::HaveKeys(ids) => Message::LackKeys(mirror.lacking_keys(&ids)?),
            Message::PutKeys(keys) => {
                let n = mirror.put_keys(&keys)?;
                report.keys_stored += u64::from(n);
                Message::PutKeysOk(n)
            }
            Message::HaveChunks(ids) => Message::LackChunks(mirror.lacking_chunks(&ids)?),
            Message::PutChunks(records) => {
                let (n, bytes) = mirror.put_chunks(&records)?;
                report.chunks_stored += u64::from(n);
                report.bytes_stored += bytes;
                Message::PutChunksOk {
                    stored: n,
                    chunks: mirror.state.count,
                    digest: mirror.state.digest,
                }
            }
            Message::ListDamaged => Message::DamagedList(mirror.damaged()?),
            Message::Repair(records) => {
                let n = mirror.repair(&records)?;
                report.repaired += u64::from(n);
                Message::RepairOk(n)
            }
            Message::HaveSessions(ids) => Message::LackSessions(mirror.lacking_sessions(&ids)?),
            Message::PutSession(s) => {
                if mirror.put_session(&s)? {
                    report.sessions_stored += 1;
                }
                Message::PutSessionOk
            }
            Message::ListSessions => Message::SessionList(mirror.sessions()?),
            Message::Forget(ids) => {
                let n = mirror.forget(&ids)?;
                report.forgotten += u64::from(n);
                Message::ForgetOk(n)
            }
            Message::Bye => {
                conn.send(&Message::ByeOk {
                    chunks: mirror.state.count,
                    digest: mirror.state.digest,
                })?;
                return Ok(());
            }
            other => {
                return Err(protocol(format_args!(
                    "{} is not a request a mirror answers",
                    other.name()
                )));
            }
        };
        conn.send(&reply)?;
    }
}

/// Open the mirror repository, refusing one that is not the primary's.
fn open_matching(opts: &ServeOptions, primary: &RepoConfig) -> Result<Repo> {
    let root = &opts.repository;
    let repo = Repo::open(root).map_err(|e| {
        Error::new(
            ErrorKind::NotARepository,
            format!("mirror {}: {}", opts.name, e.message()),
        )
    })?;
    if repo.config().id != primary.id || repo.config().secret_check != primary.secret_check {
        return Err(Error::new(
            ErrorKind::NotARepository,
            format!(
                "mirror {}: {} holds repository {}, but the primary is repository {}; \
                 refusing to mix them",
                opts.name,
                root.display(),
                repo.config().id,
                primary.id
            ),
        ));
    }
    Ok(repo)
}

/// A record's header, checked against its length and the hash the primary's index holds.
pub(super) fn verify_record(r: &WireRecord) -> Result<RecordHeader> {
    let header = decode_record_header(&r.record)?;
    if header.record_len() != r.record.len() as u64 {
        return Err(Error::corrupt(format!(
            "chunk {}: the record is {} bytes but its header says {}",
            header.chunk_id,
            r.record.len(),
            header.record_len()
        )));
    }
    if blake3::hash(&r.record).as_bytes() != &r.stored_hash {
        return Err(Error::corrupt(format!(
            "chunk {}: the record does not hash to the primary's stored hash (damaged in transit \
             or on the primary)",
            header.chunk_id
        )));
    }
    if r.kind == 0 && !r.refs.is_empty() {
        return Err(protocol(format_args!(
            "data chunk {} comes with references",
            header.chunk_id
        )));
    }
    Ok(header)
}

impl Mirror<'_> {
    fn lacking_keys(&self, ids: &[u64]) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for id in ids {
            i64::try_from(*id).map_err(|_| protocol("key id out of range"))?;
            if !self.index.has_data_key(KeyId(*id))? {
                out.push(*id);
            }
        }
        Ok(out)
    }

    fn put_keys(&self, keys: &[WireKey]) -> Result<u32> {
        let mut rows = Vec::with_capacity(keys.len());
        for k in keys {
            i64::try_from(k.id).map_err(|_| protocol("key id out of range"))?;
            rows.push((KeyId(k.id), &k.wrapped[..], k.created));
        }
        self.index.put_data_keys(
            &rows,
            // The file before the row, as on the primary (format-spec/records.md).
            |id, wrapped| crate::store::records::write_data_key(self.repo.root(), id, wrapped),
            |id| {
                Error::new(
                    ErrorKind::Refused,
                    format!(
                        "data key {} on the mirror differs from the primary's; a mirror never \
                         overwrites what it holds",
                        id.0
                    ),
                )
            },
        )
    }

    fn lacking_chunks(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>> {
        let mut out = Vec::new();
        for id in ids {
            if !self.index.has_chunk(id)? {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Verify every record, then write the new ones to one pack (durable before its rows).
    fn put_chunks(&mut self, records: &[WireRecord]) -> Result<(u32, u64)> {
        let mut batch: HashSet<ChunkId> = HashSet::new();
        let mut pending = Vec::new();
        for r in records {
            let header = verify_record(r)?;
            let id = header.chunk_id;
            if self.index.has_chunk(&id)? || batch.contains(&id) {
                continue; // first copy wins; the mirror never overwrites
            }
            i64::try_from(header.key_id.0).map_err(|_| protocol("key id out of range"))?;
            if !self.index.has_data_key(header.key_id)? {
                return Err(protocol(format_args!(
                    "chunk {id} is sealed with key {} which was not sent first",
                    header.key_id.0
                )));
            }
            for child in &r.refs {
                if !batch.contains(child) && !self.index.has_chunk(child)? {
                    return Err(protocol(format_args!(
                        "manifest chunk {id} names chunk {child}, which the mirror does not hold \
                         (data chunks must be sent before the manifests naming them)"
                    )));
                }
            }
            batch.insert(id);
            pending.push((header.key_id, r));
        }
        if pending.is_empty() {
            return Ok((0, 0));
        }
        let mut writer = PackWriter::new(self.repo.root(), &self.index, &self.writer.id, u64::MAX);
        let mut ids = Vec::with_capacity(pending.len());
        for (key_id, r) in pending {
            let header = decode_record_header(&r.record)?;
            writer.append(PendingChunk {
                id: header.chunk_id,
                kind: if r.kind == 1 {
                    ChunkKind::Manifest
                } else {
                    ChunkKind::Data
                },
                key_id: KeyId(key_id.0),
                envelope: r.record[RECORD_HEADER_LEN..].to_vec(),
                refs: r.refs.clone(),
            })?;
            ids.push(header.chunk_id);
        }
        let stats = writer.finish()?;
        for id in &ids {
            self.state.toggle(id, true);
        }
        Ok((ids.len() as u32, stats.bytes))
    }

    fn damaged(&self) -> Result<Vec<ChunkId>> {
        self.index.damaged_chunks(MAX_IDS)
    }

    fn lacking_sessions(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for id in ids {
            if !self.index.has_session(SessionId(*id))? {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Make one session visible: every root chunk must be held (invariant 3); the row and its
    /// root are inserted in one transaction. A session already held is left as it is.
    fn put_session(&self, s: &WireSession) -> Result<bool> {
        crate::ingest::validate_client_name(&s.client).map_err(|e| protocol(e.message()))?;
        // The record before the row (format-spec/records.md), so this mirror's index can be
        // rebuilt too.
        let record = crate::format::records::SessionRecord {
            id: s.id,
            client: s.client.clone(),
            state: if s.state == 1 {
                crate::format::records::RecordState::Complete
            } else {
                crate::format::records::RecordState::Incomplete
            },
            // The reason does not travel to mirrors (format-spec/wire.md).
            reason: None,
            pinned: s.pinned,
            started: s.started,
            finished: s.finished.unwrap_or(s.started),
            files: s.stats[0],
            bytes: s.stats[1],
            errors: s.stats[2],
            new_chunks: s.stats[3],
            new_bytes: s.stats[4],
            root: s.root.clone(),
        };
        for (i, v) in s.stats.iter().enumerate() {
            i64::try_from(*v)
                .map_err(|_| protocol(format_args!("session statistic {i} out of range")))?;
        }
        self.index.put_mirrored_session(
            &MirroredSession {
                id: SessionId(s.id),
                client: &s.client,
                complete: s.state == 1,
                started: s.started,
                finished: s.finished,
                stats: s.stats,
                pinned: s.pinned,
                root: &s.root,
            },
            || {
                // The sources before the session record, as on the primary.
                if let Some(sources) = &s.sources {
                    crate::store::records::write_session_sources(
                        self.repo.root(),
                        SessionId(s.id),
                        sources,
                    )?;
                }
                crate::store::records::write_session_record(self.repo.root(), &record)
            },
            |chunk| {
                protocol(format_args!(
                    "session {} names manifest chunk {chunk}, which the mirror does not hold",
                    s.id
                ))
            },
        )
    }

    fn sessions(&self) -> Result<Vec<i64>> {
        Ok(self
            .index
            .visible_session_ids(MAX_IDS)?
            .into_iter()
            .map(|id| id.0)
            .collect())
    }

    /// Forget sessions the primary rolled off, only if this mirror's configuration allows it.
    /// Their chunks stay until the mirror's own `prune` collects them.
    fn forget(&self, ids: &[i64]) -> Result<u32> {
        if !self.opts.follow_deletes {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "mirror {} is append-only: the primary asked it to forget {} session(s) \
                     ({}), but [mirror-of.{}] does not set follow-deletes = true",
                    self.opts.name,
                    ids.len(),
                    ids.iter()
                        .take(10)
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.opts.name
                ),
            ));
        }
        let typed: Vec<SessionId> = ids.iter().copied().map(SessionId).collect();
        // The mirror's next prune collects what the forgotten sessions alone used.
        self.index.forget_sessions_by_id(&typed).and_then(|n| {
            for id in ids {
                crate::store::records::remove_session_record(
                    self.repo.root(),
                    crate::ids::SessionId(*id),
                )?;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn only_configuration_refusals_are_sent_as_refused() {
        assert_eq!(error_code(ErrorKind::Refused), code::REFUSED);
        assert_eq!(error_code(ErrorKind::PermissionDenied), code::FAILED);
        assert_eq!(error_code(ErrorKind::Io), code::FAILED);
        assert_eq!(error_code(ErrorKind::Corrupt), code::CORRUPT);
        assert_eq!(
            error_code(ErrorKind::NotARepository),
            code::WRONG_REPOSITORY
        );
    }
}
