//! The primary's side: offer what the mirror may lack, send the stored records it does lack
//! (data chunks before manifest chunks), then the sessions, remembering after every
//! acknowledged batch what the mirror holds so that an interrupted run resumes cheaply.

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Write};

use super::ChunkSetDigest;
use super::state::{self, TargetState};
use super::wire::{
    Conn, MAX_FRAME_PAYLOAD, MAX_IDS, Message, PROTOCOL_VERSION, WireKey, WireRecord, WireSession,
    code,
};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ChunkId, SessionId};
use crate::index::{ChunkKind, ChunkLocation, Index, SessionState};
use crate::repo::Repo;
use crate::store::{PackReader, now};

/// Record bytes per `PutChunks`/`Repair` message (the mirror writes one pack per message).
const PUT_BATCH_BYTES: u64 = 24 << 20;
/// `PutChunks`/`Repair` messages sent before the reply to the first of them is awaited.
const PIPELINE: usize = 2;
/// Keys per `PutKeys` message (a wrapped key is a few hundred bytes per recipient).
const KEYS_PER_MESSAGE: usize = 1000;

/// What to push where.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The target's name in the primary's `mirror_targets` (a config name, or `path:DIR`).
    pub target: String,
    /// Ask the mirror to forget sessions this repository no longer has.
    pub follow_deletes: bool,
}

/// What a push did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PushReport {
    /// The target.
    pub target: String,
    /// The mirror repository was created by this run.
    pub created: bool,
    /// Every chunk id was offered (the remembered state did not match the mirror's).
    pub full_reconcile: bool,
    /// Data keys sent.
    pub keys_sent: u64,
    /// Chunk ids offered.
    pub chunks_offered: u64,
    /// Chunks sent.
    pub chunks_sent: u64,
    /// Record bytes sent.
    pub record_bytes_sent: u64,
    /// Damaged chunks on the mirror replaced.
    pub repaired: u64,
    /// Sessions sent.
    pub sessions_sent: u64,
    /// Sessions the mirror forgot at our request.
    pub forgotten: u64,
    /// Bytes written to the connection (frames included).
    pub wire_bytes_sent: u64,
    /// Bytes read from it.
    pub wire_bytes_received: u64,
    /// Chunks the mirror holds at the end.
    pub mirror_chunks: u64,
}

/// Push `repo` to the mirror at the other end of `reader`/`writer`.
pub fn push<R: Read, W: Write>(
    repo: &Repo,
    reader: R,
    writer: W,
    opts: &PushOptions,
) -> Result<PushReport> {
    push_with_progress(repo, reader, writer, opts, &crate::progress::NoProgress)
}

/// [`push`], reporting the record bytes of the chunks sent as the mirror acknowledges them (one
/// phase, `sending chunks`, of unknown total: what the mirror lacks is learnt batch by batch).
pub fn push_with_progress<R: Read, W: Write>(
    repo: &Repo,
    reader: R,
    writer: W,
    opts: &PushOptions,
    progress: &dyn crate::progress::Progress,
) -> Result<PushReport> {
    progress.start("sending chunks", None);
    let mut conn = Conn::new(reader, writer);
    let mut report = PushReport {
        target: opts.target.clone(),
        ..PushReport::default()
    };
    let result = Pusher {
        repo,
        index: repo.index()?,
        reader: PackReader::new(repo.root()),
        opts,
        progress,
    }
    .run(&mut conn, &mut report);
    report.wire_bytes_sent = conn.sent;
    report.wire_bytes_received = conn.received;
    result
        .map(|()| report)
        .map_err(|e| e.context(format_args!("mirror {}", opts.target)))
}

/// The packs a run offers chunks from: those sealed when it read the session list.
struct Snapshot {
    /// The highest sealed pack row then.
    top: i64,
    /// Every pack row sealed then (a pack below `top` may still have been being written).
    sealed: HashSet<i64>,
}

struct Pusher<'a> {
    repo: &'a Repo,
    index: Index,
    reader: PackReader,
    opts: &'a PushOptions,
    progress: &'a dyn crate::progress::Progress,
}

/// Receive the reply to a request: the mirror's `Error` becomes ours.
pub(super) fn reply<R: Read, W: Write>(conn: &mut Conn<R, W>) -> Result<Message> {
    match conn.recv()? {
        Message::Error { code, message } => {
            let kind = match code {
                code::REFUSED => ErrorKind::PermissionDenied,
                code::WRONG_REPOSITORY => ErrorKind::InvalidInput,
                code::CORRUPT => ErrorKind::Corrupt,
                code::PROTOCOL => ErrorKind::Protocol,
                _ => ErrorKind::Io,
            };
            Err(Error::new(kind, format!("the mirror refused: {message}")))
        }
        m => Ok(m),
    }
}

fn unexpected(got: &Message, wanted: &str) -> Error {
    Error::protocol(format!(
        "mirror protocol: got {} where {wanted} was expected",
        got.name()
    ))
}

impl Pusher<'_> {
    fn run<R: Read, W: Write>(&self, conn: &mut Conn<R, W>, report: &mut PushReport) -> Result<()> {
        // Shared, like an ingest: garbage collection cannot delete a chunk we are offering.
        let _lock = self.repo.lock_shared()?;
        let root = self.repo.root();
        let read = |name: &str| {
            let path = root.join(name);
            std::fs::read(&path)
                .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))
        };
        let repository_toml = String::from_utf8(read("repository.toml")?)
            .map_err(|_| Error::corrupt("repository.toml is not UTF-8"))?;
        let secret_age = read("keys/secret.age")?;

        // Snapshot before talking: sessions visible now have all their chunks in sealed packs.
        // What `status` learns once the run ends well: sessions that ended by now are on the
        // mirror, except those still running now (read before the list: one that commits in
        // between is counted as not sent, never the other way round).
        let mark = crate::index::MirrorMark {
            name: self.opts.target.clone(),
            synced: now(),
            unsent: self.index.running_session_ids()?,
        };
        let sessions = self.index.sessions(None)?;
        let packs = self.index.packs()?;
        let top = packs
            .iter()
            .filter(|p| p.sealed)
            .map(|p| p.row)
            .max()
            .unwrap_or(0);
        let first_writing = packs.iter().filter(|p| !p.sealed).map(|p| p.row).min();
        // Everything this run offers comes from the packs sealed now, after the session list
        // was read: every chunk of every listed session is in one of them (a session becomes
        // visible only after its packs are sealed, and a manifest chunk's row is written only
        // with or after the rows of the chunks it names). Ingests that seal packs while this
        // run goes on are left for the next run: offering their manifest chunks without their
        // data chunks, which an earlier batch passed by, would make the mirror refuse them.
        let snapshot = Snapshot {
            top,
            sealed: packs.iter().filter(|p| p.sealed).map(|p| p.row).collect(),
        };
        // A pack still being written below `top` must be offered next time: stop below it.
        let new_watermark = first_writing.map_or(top, |w| top.min(w - 1));

        conn.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            repository_toml,
            secret_age,
        })?;
        let (mirror_set, damaged) = match reply(conn)? {
            Message::HelloOk {
                version,
                created,
                chunks,
                digest,
                damaged,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(Error::new(
                        ErrorKind::UnsupportedVersion,
                        format!("the mirror speaks protocol version {version}"),
                    ));
                }
                report.created = created;
                (
                    ChunkSetDigest {
                        count: chunks,
                        digest,
                    },
                    damaged,
                )
            }
            m => return Err(unexpected(&m, "HelloOk")),
        };
        let conn_db = &self.index;
        let remembered = state::load(conn_db, &self.opts.target)?;
        let from = match remembered {
            Some(s) if s.set == mirror_set => s.watermark,
            _ => {
                report.full_reconcile = true;
                0
            }
        };
        let mut current = TargetState {
            watermark: from,
            set: mirror_set,
        };
        state::save(conn_db, &self.opts.target, &current, now())?;

        self.keys(conn, report)?;
        if damaged > 0 {
            self.repair(conn, report)?;
        }
        for kind in [ChunkKind::Data, ChunkKind::Manifest] {
            self.chunks(conn, report, kind, from, &snapshot, &mut current)?;
            #[cfg(test)]
            tests_hook::after_phase(kind);
        }
        current.watermark = new_watermark.max(0);
        state::save(conn_db, &self.opts.target, &current, now())?;

        self.sessions(conn, report, &sessions)?;
        if self.opts.follow_deletes {
            self.forget(conn, report, &sessions)?;
        }
        conn.send(&Message::Bye)?;
        match reply(conn)? {
            Message::ByeOk { chunks, digest } => {
                current.set = ChunkSetDigest {
                    count: chunks,
                    digest,
                };
                report.mirror_chunks = chunks;
                state::save(conn_db, &self.opts.target, &current, now())?;
                self.index.set_mirror_mark(&mark)
            }
            m => Err(unexpected(&m, "ByeOk")),
        }
    }

    fn keys<R: Read, W: Write>(
        &self,
        conn: &mut Conn<R, W>,
        report: &mut PushReport,
    ) -> Result<()> {
        let ids: Vec<u64> = self
            .index
            .data_key_ids()?
            .into_iter()
            .map(|k| k.0)
            .collect();
        for batch in ids.chunks(MAX_IDS as usize) {
            conn.send(&Message::HaveKeys(batch.to_vec()))?;
            let lacking = match reply(conn)? {
                Message::LackKeys(l) => l,
                m => return Err(unexpected(&m, "LackKeys")),
            };
            for part in lacking.chunks(KEYS_PER_MESSAGE) {
                let mut keys = Vec::with_capacity(part.len());
                for id in part {
                    if !batch.contains(id) {
                        return Err(Error::protocol(format!(
                            "mirror protocol: the mirror lacks key {id}, which was not offered"
                        )));
                    }
                    let created = self
                        .index
                        .data_key_created(crate::ids::KeyId(*id))?
                        .ok_or_else(|| {
                            Error::corrupt(format!("index: data key {id} is missing"))
                        })?;
                    keys.push(WireKey {
                        id: *id,
                        created,
                        wrapped: self.index.data_key(crate::ids::KeyId(*id))?,
                    });
                }
                conn.send(&Message::PutKeys(keys))?;
                match reply(conn)? {
                    Message::PutKeysOk(n) => report.keys_sent += u64::from(n),
                    m => return Err(unexpected(&m, "PutKeysOk")),
                }
            }
        }
        Ok(())
    }

    /// A record as stored, verified against our own index before it leaves.
    fn record(&self, loc: &ChunkLocation) -> Result<WireRecord> {
        let record = self.reader.read_record(loc)?;
        if blake3::hash(&record).as_bytes() != &loc.stored_hash {
            return Err(Error::corrupt(format!(
                "chunk {} in pack {} is damaged on this repository (its stored hash does not \
                 match); run `rsbackup check --read-data` here before mirroring",
                loc.id, loc.pack
            )));
        }
        // References travel by chunk id: chunk numbers are local to each index.
        let refs = if loc.kind == ChunkKind::Manifest {
            self.index.chunk_refs(&loc.id)?
        } else {
            Vec::new()
        };
        Ok(WireRecord {
            kind: loc.kind as u8,
            stored_hash: loc.stored_hash,
            refs,
            record,
        })
    }

    /// Send the records of `ids` in batches of about [`PUT_BATCH_BYTES`], reading in pack order.
    /// `repair` selects `Repair` instead of `PutChunks`. Each reply goes to `ack` with the
    /// record bytes of its batch.
    fn send_records<R: Read, W: Write>(
        &self,
        conn: &mut Conn<R, W>,
        ids: &[ChunkId],
        repair: bool,
        mut ack: impl FnMut(Message, u64) -> Result<()>,
    ) -> Result<()> {
        let mut locs = Vec::with_capacity(ids.len());
        for id in ids {
            match self.index.lookup_chunk(id)? {
                Some(loc) => locs.push(loc),
                None if repair => {} // rolled off here since: nothing to repair it with
                None => {
                    return Err(Error::protocol(format!(
                        "mirror protocol: the mirror lacks chunk {id}, which was not offered"
                    )));
                }
            }
        }
        locs.sort_by_key(|l| (l.pack_row, l.offset));
        // Up to PIPELINE batches are in flight: the next batch is read and hashed here while
        // the mirror writes and syncs the previous one. Replies come back in order.
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        let mut batch: Vec<WireRecord> = Vec::new();
        let mut bytes = 0u64;
        let mut flush = |batch: &mut Vec<WireRecord>,
                         bytes: &mut u64,
                         in_flight: &mut VecDeque<u64>,
                         window: usize|
         -> Result<()> {
            if !batch.is_empty() {
                let records = std::mem::take(batch);
                *bytes = 0;
                in_flight.push_back(records.iter().map(|r| r.record.len() as u64).sum());
                conn.send(&if repair {
                    Message::Repair(records)
                } else {
                    Message::PutChunks(records)
                })?;
            }
            while in_flight.len() > window {
                let sent = in_flight.pop_front().expect("non-empty");
                ack(reply(conn)?, sent)?;
            }
            Ok(())
        };
        for loc in &locs {
            let r = self.record(loc)?;
            let size = r.record.len() as u64 + 41 + 32 * r.refs.len() as u64;
            if !batch.is_empty()
                && (bytes + size > PUT_BATCH_BYTES
                    || bytes + size > u64::from(MAX_FRAME_PAYLOAD) - 4096)
            {
                flush(&mut batch, &mut bytes, &mut in_flight, PIPELINE - 1)?;
            }
            bytes += size;
            batch.push(r);
        }
        flush(&mut batch, &mut bytes, &mut in_flight, 0)
    }

    fn repair<R: Read, W: Write>(
        &self,
        conn: &mut Conn<R, W>,
        report: &mut PushReport,
    ) -> Result<()> {
        conn.send(&Message::ListDamaged)?;
        let ids = match reply(conn)? {
            Message::DamagedList(ids) => ids,
            m => return Err(unexpected(&m, "DamagedList")),
        };
        self.send_records(conn, &ids, true, |m, _| match m {
            Message::RepairOk(n) => {
                report.repaired += u64::from(n);
                Ok(())
            }
            m => Err(unexpected(&m, "RepairOk")),
        })
    }

    /// Offer the chunks of `kind` in sealed packs above `from`, in id order, a batch at a time;
    /// send those the mirror lacks and remember its state after each acknowledged batch.
    fn chunks<R: Read, W: Write>(
        &self,
        conn: &mut Conn<R, W>,
        report: &mut PushReport,
        kind: ChunkKind,
        from: i64,
        snapshot: &Snapshot,
        current: &mut TargetState,
    ) -> Result<()> {
        let mut last: Option<ChunkId> = None;
        loop {
            let rows =
                self.index
                    .sealed_chunks_page(from, snapshot.top, kind, last.as_ref(), MAX_IDS)?;
            let Some((end, _)) = rows.last() else {
                return Ok(());
            };
            last = Some(*end);
            let ids: Vec<ChunkId> = rows
                .into_iter()
                .filter(|(_, pack)| snapshot.sealed.contains(pack))
                .map(|(id, _)| id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            report.chunks_offered += ids.len() as u64;
            conn.send(&Message::HaveChunks(ids.clone()))?;
            let lacking = match reply(conn)? {
                Message::LackChunks(l) => l,
                m => return Err(unexpected(&m, "LackChunks")),
            };
            let offered: HashSet<&ChunkId> = ids.iter().collect();
            if let Some(bad) = lacking.iter().find(|id| !offered.contains(id)) {
                return Err(Error::protocol(format!(
                    "mirror protocol: the mirror lacks chunk {bad}, which was not offered"
                )));
            }
            let db = &self.index;
            let target = &self.opts.target;
            self.send_records(conn, &lacking, false, |m, bytes| match m {
                Message::PutChunksOk {
                    stored,
                    chunks,
                    digest,
                } => {
                    report.chunks_sent += u64::from(stored);
                    report.record_bytes_sent += bytes;
                    self.progress.advance(bytes);
                    current.set = ChunkSetDigest {
                        count: chunks,
                        digest,
                    };
                    state::save(db, target, current, now())
                }
                m => Err(unexpected(&m, "PutChunksOk")),
            })?;
        }
    }

    fn sessions<R: Read, W: Write>(
        &self,
        conn: &mut Conn<R, W>,
        report: &mut PushReport,
        sessions: &[crate::index::SessionInfo],
    ) -> Result<()> {
        let mut ids: Vec<i64> = sessions.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        for batch in ids.chunks(MAX_IDS as usize) {
            conn.send(&Message::HaveSessions(batch.to_vec()))?;
            let lacking = match reply(conn)? {
                Message::LackSessions(l) => l,
                m => return Err(unexpected(&m, "LackSessions")),
            };
            for id in lacking {
                let Some(s) = sessions.iter().find(|s| s.id == id) else {
                    return Err(Error::protocol(format!(
                        "mirror protocol: the mirror lacks session {id}, which was not offered"
                    )));
                };
                let st = &s.stats;
                conn.send(&Message::PutSession(WireSession {
                    id: s.id,
                    client: s.client.clone(),
                    state: if s.state == SessionState::Partial {
                        2
                    } else {
                        1
                    },
                    started: s.started,
                    finished: s.finished,
                    stats: [st.files, st.bytes, st.errors, st.new_chunks, st.new_bytes],
                    pinned: s.pinned,
                    root: self.index.session_root(SessionId(s.id))?,
                    sources: crate::store::records::read_session_sources(
                        self.repo.root(),
                        SessionId(s.id),
                    )?,
                }))?;
                match reply(conn)? {
                    Message::PutSessionOk => report.sessions_sent += 1,
                    m => return Err(unexpected(&m, "PutSessionOk")),
                }
            }
        }
        Ok(())
    }

    /// Ask the mirror to forget the sessions it holds that this repository no longer has.
    fn forget<R: Read, W: Write>(
        &self,
        conn: &mut Conn<R, W>,
        report: &mut PushReport,
        sessions: &[crate::index::SessionInfo],
    ) -> Result<()> {
        conn.send(&Message::ListSessions)?;
        let held = match reply(conn)? {
            Message::SessionList(ids) => ids,
            m => return Err(unexpected(&m, "SessionList")),
        };
        let ours: HashSet<i64> = sessions.iter().map(|s| s.id).collect();
        let gone: Vec<i64> = held.into_iter().filter(|id| !ours.contains(id)).collect();
        if gone.is_empty() {
            return Ok(());
        }
        conn.send(&Message::Forget(gone))?;
        match reply(conn)? {
            Message::ForgetOk(n) => {
                report.forgotten += u64::from(n);
                Ok(())
            }
            m => Err(unexpected(&m, "ForgetOk")),
        }
    }
}

/// A test seam: runs between the data and the manifest phase of a push in this thread.
#[cfg(test)]
pub(crate) mod tests_hook {
    use std::cell::RefCell;

    use crate::index::ChunkKind;

    type Hook = Box<dyn Fn(ChunkKind)>;

    thread_local! {
        static AFTER_PHASE: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Call `f` after each phase of pushes made by this thread (`None`: stop).
    pub(crate) fn set(f: Option<Hook>) {
        AFTER_PHASE.with(|h| *h.borrow_mut() = f);
    }

    pub(super) fn after_phase(kind: ChunkKind) {
        AFTER_PHASE.with(|h| {
            if let Some(f) = h.borrow().as_ref() {
                f(kind);
            }
        });
    }
}
