//! Mirror tests over a socket pair: the real [`push`] and [`serve`] with real repositories.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::wire::{Conn, MAX_FRAME_PAYLOAD, MAX_IDS, Message, WireKey, WireRecord, WireSession};
use super::*;
use crate::check::{CheckOptions, check};
use crate::error::ErrorKind;
use crate::repo::Repo;
use crate::restore::testutil::{SessionBuilder, TestRepo};

mod repair;
mod wire_vectors;

fn opts(target: &str) -> PushOptions {
    PushOptions {
        target: target.into(),
        follow_deletes: false,
    }
}

fn serve_opts(path: &Path, follow_deletes: bool) -> ServeOptions {
    ServeOptions {
        name: "test".into(),
        repository: path.to_path_buf(),
        follow_deletes,
    }
}

/// Push `repo` to a mirror served by a thread; both outcomes.
fn run_pair(
    repo: &Repo,
    mirror: &ServeOptions,
    push_opts: &PushOptions,
) -> (Result<PushReport>, Result<ServeReport>) {
    let (a, b) = UnixStream::pair().unwrap();
    let mirror = mirror.clone();
    let server = std::thread::spawn(move || serve(b.try_clone().unwrap(), b, &mirror));
    let pushed = push(repo, a.try_clone().unwrap(), a, push_opts);
    (pushed, server.join().unwrap())
}

fn mirror_ok(t: &TestRepo, path: &Path) -> PushReport {
    let (p, s) = run_pair(&t.repo, &serve_opts(path, false), &opts("m"));
    s.unwrap();
    p.unwrap()
}

/// The mirror at `dest` holds the primary's sessions, and `check --read-data` without an
/// identity finds nothing wrong there. Returns the mirror.
fn same_sessions_and_sound(t: &TestRepo, dest: &Path) -> Repo {
    let mirror = Repo::open(dest).unwrap();
    assert_eq!(
        mirror.index().unwrap().sessions(None).unwrap(),
        t.repo.index().unwrap().sessions(None).unwrap()
    );
    let plain = check(
        &mirror,
        &CheckOptions {
            read_data: true,
            identities: None,
        },
    )
    .unwrap();
    assert!(plain.problems.is_empty(), "{:?}", plain.problems);
    mirror
}

/// Incompressible bytes from a xorshift generator seeded with `seed`.
fn noise(seed: u8, size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(seed);
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn session(t: &TestRepo, seed: u8, size: usize) -> crate::ids::SessionId {
    let data = noise(seed, size);
    SessionBuilder::new(t)
        .dir(b"d")
        .file(b"d/f", &data)
        .commit()
}

fn chunk_ids(repo: &Repo) -> Vec<Vec<u8>> {
    let index = repo.index().unwrap();
    let mut stmt = index
        .conn()
        .prepare("SELECT id FROM chunks ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn every_message_round_trips() {
    let messages = crate::mirror::wire::one_of_each();
    let mut tags = std::collections::HashSet::new();
    for m in messages {
        let (tag, payload) = m.encode();
        assert!(tags.insert(tag), "tag 0x{tag:02x} used twice");
        assert_eq!(Message::decode(tag, &payload).unwrap(), m);
        // Every strict prefix is refused, never misread.
        for cut in 0..payload.len() {
            let err = Message::decode(tag, &payload[..cut]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Protocol, "{} cut at {cut}", m.name());
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert!(
            Message::decode(tag, &longer).is_err(),
            "{}: trailing byte",
            m.name()
        );
    }
}

#[test]
fn bad_frames_are_refused() {
    assert!(Message::decode(0x99, &[]).is_err(), "unknown tag");
    let (tag, mut payload) = Message::Hello {
        version: 1,
        repository_toml: String::new(),
        secret_age: Vec::new(),
    }
    .encode();
    payload[0] = b'X';
    assert!(
        Message::decode(tag, &payload)
            .unwrap_err()
            .to_string()
            .contains("magic")
    );
    // A count larger than the frame can hold is refused before allocating.
    let mut huge = Vec::new();
    huge.extend_from_slice(&MAX_IDS.to_le_bytes());
    assert!(Message::decode(0x20, &huge).is_err());
    huge.clear();
    huge.extend_from_slice(&(MAX_IDS + 1).to_le_bytes());
    assert!(
        Message::decode(0x20, &huge)
            .unwrap_err()
            .to_string()
            .contains("more than")
    );
    // Chunk kind and session state outside their ranges.
    let (tag, mut payload) = Message::PutChunks(vec![WireRecord {
        kind: 0,
        stored_hash: [0; 32],
        refs: vec![],
        record: vec![],
    }])
    .encode();
    payload[4] = 7;
    assert!(Message::decode(tag, &payload).is_err());
    // A frame header announcing more than the limit is refused without reading it.
    let mut frame = (MAX_FRAME_PAYLOAD + 1).to_le_bytes().to_vec();
    frame.push(0x3e);
    let mut conn = Conn::new(&frame[..], Vec::new());
    assert!(
        conn.recv()
            .unwrap_err()
            .to_string()
            .contains("over the limit")
    );
    let mut conn = Conn::new(&[][..], Vec::new());
    assert_eq!(conn.recv().unwrap_err().kind(), ErrorKind::Io);
}

#[test]
fn first_mirror_is_a_full_repository_without_the_secret() {
    let t = TestRepo::new();
    let s1 = session(&t, 3, 300_000);
    let dest = t.path("mirror");
    let report = mirror_ok(&t, &dest);
    assert!(report.created && report.full_reconcile);
    assert_eq!(report.sessions_sent, 1);
    // The run ended well: `status` learns which sessions the target holds.
    let marks = t.repo.index().unwrap().mirror_marks().unwrap();
    assert!(
        marks.len() == 1 && marks[0].name == "m" && marks[0].synced > 0,
        "{marks:?}"
    );
    assert!(report.chunks_sent > 5, "{report:?}");
    assert!(!dest.join("keys/secret").exists());
    assert!(dest.join("keys/secret.age").exists());
    // check without identity (in the helper), and with it (every chunk opened, the manifest
    // decoded).
    let mirror = same_sessions_and_sound(&t, &dest);
    assert_eq!(mirror.config(), t.repo.config());
    assert_eq!(chunk_ids(&mirror), chunk_ids(&t.repo));
    let full = CheckOptions {
        read_data: true,
        identities: Some(t.identities()),
    };
    let deep = check(&mirror, &full).unwrap();
    assert!(deep.problems.is_empty(), "{:?}", deep.problems);
    let reader = crate::reader::SessionReader::new(&mirror, t.identities()).unwrap();
    let root = mirror.index().unwrap().session_root(s1).unwrap();
    assert!(!root.is_empty());
    drop(reader);
}

#[test]
fn second_run_sends_only_new_chunks() {
    let t = TestRepo::new();
    session(&t, 3, 300_000);
    let dest = t.path("mirror");
    let first = mirror_ok(&t, &dest);
    let before = chunk_ids(&t.repo).len();
    session(&t, 5, 200_000);
    let new_chunks = (chunk_ids(&t.repo).len() - before) as u64;
    let second = mirror_ok(&t, &dest);
    assert!(!second.full_reconcile && !second.created, "{second:?}");
    assert_eq!(second.chunks_sent, new_chunks);
    assert_eq!(second.sessions_sent, 1);
    assert!(second.chunks_offered < first.chunks_offered + new_chunks);
    assert!(
        second.wire_bytes_sent <= second.record_bytes_sent * 105 / 100 + 8192,
        "{second:?}"
    );
    let third = mirror_ok(&t, &dest);
    assert_eq!(
        (third.chunks_sent, third.chunks_offered, third.sessions_sent),
        (0, 0, 0)
    );
}

#[test]
fn another_repository_is_refused() {
    let a = TestRepo::new();
    session(&a, 3, 1000);
    let b = TestRepo::new();
    session(&b, 4, 1000);
    let dest = a.path("mirror");
    mirror_ok(&a, &dest);
    let (p, s) = run_pair(&b.repo, &serve_opts(&dest, false), &opts("m"));
    assert_eq!(s.unwrap_err().kind(), ErrorKind::NotARepository);
    let err = p.unwrap_err();
    assert!(err.to_string().contains("refusing to mix"), "{err}");
    // A non-empty directory that is not a repository is not taken over either.
    let junk = a.path("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("file"), b"x").unwrap();
    let (p, _) = run_pair(&a.repo, &serve_opts(&junk, false), &opts("j"));
    assert!(p.is_err());
    assert!(!junk.join("repository.toml").exists());
}

fn forget_session(repo: &Repo, id: i64) {
    let index = repo.index().unwrap();
    index
        .conn()
        .execute("DELETE FROM session_manifest WHERE session = ?1", [id])
        .unwrap();
    index
        .conn()
        .execute("DELETE FROM sessions WHERE id = ?1", [id])
        .unwrap();
}

#[test]
fn deletes_are_refused_unless_the_mirror_allows_them() {
    let t = TestRepo::new();
    let s1 = session(&t, 3, 1000);
    session(&t, 4, 1000);
    let dest = t.path("mirror");
    mirror_ok(&t, &dest);
    forget_session(&t.repo, s1.0);
    let follow = PushOptions {
        target: "m".into(),
        follow_deletes: true,
    };
    let (p, s) = run_pair(&t.repo, &serve_opts(&dest, false), &follow);
    assert_eq!(s.unwrap_err().kind(), ErrorKind::Refused);
    let err = p.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("append-only"), "{err}");
    let mirror = Repo::open(&dest).unwrap();
    assert_eq!(mirror.index().unwrap().sessions(None).unwrap().len(), 2);
    // Without asking, the mirror keeps what the primary rolled off.
    mirror_ok(&t, &dest);
    assert_eq!(mirror.index().unwrap().sessions(None).unwrap().len(), 2);
    let (p, s) = run_pair(&t.repo, &serve_opts(&dest, true), &follow);
    assert_eq!(p.unwrap().forgotten, 1);
    assert_eq!(s.unwrap().forgotten, 1);
    assert_eq!(mirror.index().unwrap().sessions(None).unwrap().len(), 1);
}

/// A writer that fails after `limit` bytes: a network drop in the middle of a run.
struct DropAfter<W> {
    inner: W,
    left: usize,
}

impl<W: Write> Write for DropAfter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "dropped",
            ));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn an_interrupted_run_resumes_without_resending() {
    let t = TestRepo::new();
    // Several batches: 40 MiB of incompressible data in 64 KiB chunks.
    let data = noise(9, 40 << 20);
    SessionBuilder::new(&t).file(b"big", &data).commit();
    let dest = t.path("mirror");
    let (a, b) = UnixStream::pair().unwrap();
    let server_opts = serve_opts(&dest, false);
    let server = std::thread::spawn(move || serve(b.try_clone().unwrap(), b, &server_opts));
    let writer = DropAfter {
        inner: a.try_clone().unwrap(),
        left: 30 << 20,
    };
    let err = push(&t.repo, a.try_clone().unwrap(), writer, &opts("m")).unwrap_err();
    assert!(err.to_string().contains("dropped"), "{err}");
    drop(a);
    assert!(server.join().unwrap().is_err());
    let mirror = Repo::open(&dest).unwrap();
    let arrived = chunk_ids(&mirror).len() as u64;
    assert!(arrived > 0, "the first batch was committed");
    assert!(mirror.index().unwrap().sessions(None).unwrap().is_empty());
    let again = mirror_ok(&t, &dest);
    assert_eq!(again.chunks_sent + arrived, chunk_ids(&t.repo).len() as u64);
    // With two batches in flight, the mirror may have committed one whose reply never came
    // back: then the digests differ and every id is offered again, but no record is resent.
    assert!(again.chunks_offered <= chunk_ids(&t.repo).len() as u64);
    assert_eq!(chunk_ids(&mirror), chunk_ids(&t.repo));
    let report = check(
        &mirror,
        &CheckOptions {
            read_data: true,
            identities: None,
        },
    )
    .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn bad_records_are_refused_by_the_mirror() {
    let t = TestRepo::new();
    session(&t, 3, 1000);
    let dest = t.path("mirror");
    mirror_ok(&t, &dest);
    let index = t.repo.index().unwrap();
    let pack = index.packs().unwrap().remove(0);
    let loc = index.chunks_in_pack(pack.row).unwrap().remove(0);
    let good = crate::store::PackReader::new(t.repo.root())
        .read_record(&loc)
        .unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let cases = vec![
        (flipped, loc.stored_hash, 0u8, vec![], "stored hash"),
        (
            good[..good.len() - 1].to_vec(),
            loc.stored_hash,
            0,
            vec![],
            "header says",
        ),
        (good.clone(), loc.stored_hash, 0, vec![loc.id], "references"),
    ];
    for (record, stored_hash, kind, refs, needle) in cases {
        let (a, b) = UnixStream::pair().unwrap();
        let so = serve_opts(&dest, false);
        let server = std::thread::spawn(move || serve(b.try_clone().unwrap(), b, &so));
        let mut conn = Conn::new(a.try_clone().unwrap(), a);
        conn.send(&Message::Hello {
            version: 1,
            repository_toml: std::fs::read_to_string(t.repo.root().join("repository.toml"))
                .unwrap(),
            secret_age: Vec::new(),
        })
        .unwrap();
        assert!(matches!(conn.recv().unwrap(), Message::HelloOk { .. }));
        conn.send(&Message::Repair(vec![WireRecord {
            kind,
            stored_hash,
            refs,
            record,
        }]))
        .unwrap();
        match conn.recv().unwrap() {
            Message::Error { message, .. } => assert!(message.contains(needle), "{message}"),
            m => panic!("expected an error, got {m:?}"),
        }
        assert!(server.join().unwrap().is_err());
    }
    assert_eq!(chunk_ids(&Repo::open(&dest).unwrap()), chunk_ids(&t.repo));
}

/// Talk to a mirror by hand: each `(request, needle)` pair must end in an `Error` containing it.
fn refused_by_mirror(dest: &Path, first: Vec<Message>, last: Message, needle: &str) {
    let (a, b) = UnixStream::pair().unwrap();
    let so = serve_opts(dest, false);
    let server = std::thread::spawn(move || serve(b.try_clone().unwrap(), b, &so));
    let mut conn = Conn::new(a.try_clone().unwrap(), a);
    for m in first {
        conn.send(&m).unwrap();
        assert!(!matches!(conn.recv().unwrap(), Message::Error { .. }));
    }
    conn.send(&last).unwrap();
    match conn.recv().unwrap() {
        Message::Error { message, .. } => assert!(message.contains(needle), "{message}"),
        m => panic!("expected an error for {}, got {m:?}", last.name()),
    }
    assert!(server.join().unwrap().is_err());
}

#[test]
fn protocol_misuse_is_refused() {
    let t = TestRepo::new();
    session(&t, 3, 1000);
    let dest = t.path("mirror");
    mirror_ok(&t, &dest);
    let toml = std::fs::read_to_string(t.repo.root().join("repository.toml")).unwrap();
    let hello = |version| Message::Hello {
        version,
        repository_toml: toml.clone(),
        secret_age: Vec::new(),
    };
    refused_by_mirror(
        &dest,
        vec![],
        Message::Bye,
        "first message was neither Hello nor HelloRead",
    );
    refused_by_mirror(&dest, vec![], hello(3), "version 3 is not supported");
    refused_by_mirror(
        &dest,
        vec![hello(1)],
        hello(1),
        "not a request a mirror answers",
    );
    // A session whose root the mirror does not hold never becomes visible.
    let missing = crate::ids::ChunkId([0xee; 32]);
    let session = WireSession {
        id: 99,
        client: "web".into(),
        state: 1,
        started: 1,
        finished: Some(2),
        stats: [0; 5],
        pinned: false,
        root: vec![missing],
        sources: Some(vec![b"/var/www".to_vec()]),
    };
    refused_by_mirror(
        &dest,
        vec![hello(2)],
        Message::PutSession(session.clone()),
        "does not hold",
    );
    // ... and leaves no session or sources record that an index rebuild could take for one.
    let id = crate::ids::SessionId(99);
    assert!(!crate::store::records::session_record_path(&dest, id).exists());
    assert!(!crate::store::records::sources_record_path(&dest, id).exists());
    let bad_name = WireSession {
        client: "../etc".into(),
        root: vec![],
        ..session.clone()
    };
    refused_by_mirror(
        &dest,
        vec![hello(1)],
        Message::PutSession(bad_name),
        "client name",
    );
    // Sources a sources record could not hold (a relative path) are refused on decoding.
    let (_, payload) = Message::PutSession(WireSession {
        sources: Some(vec![b"var/www".to_vec()]),
        ..session.clone()
    })
    .encode();
    let err = Message::decode(0x38, &payload).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.message().contains("sources"), "{}", err.message());
    // A key the mirror holds is never overwritten with other bytes.
    let key = WireKey {
        id: 1,
        created: 0,
        wrapped: vec![1, 2, 3],
    };
    refused_by_mirror(
        &dest,
        vec![hello(1)],
        Message::PutKeys(vec![key]),
        "never overwrites",
    );
    let mirror = Repo::open(&dest).unwrap();
    assert!(
        mirror
            .index()
            .unwrap()
            .session(crate::ids::SessionId(99))
            .is_err()
    );
    assert_eq!(mirror.index().unwrap().sessions(None).unwrap().len(), 1);
}

/// Where the hostile mirror below asks for something it was not offered.
#[derive(Clone, Copy, Debug)]
enum Overreach {
    /// A key id one past every offered one.
    Key,
    /// While data chunks are offered: a manifest chunk the primary holds.
    Chunk,
    /// A session id the primary never had.
    Session,
}

/// A mirror that speaks the protocol correctly except for one request for something the
/// primary did not offer. Returns the names of the messages the primary sent it.
fn hostile_mirror(
    stream: UnixStream,
    overreach: Overreach,
    manifest_chunk: crate::ids::ChunkId,
) -> Vec<&'static str> {
    let mut conn = Conn::new(stream.try_clone().unwrap(), stream);
    let mut seen = Vec::new();
    while let Ok(msg) = conn.recv() {
        seen.push(msg.name());
        let answer = match msg {
            Message::Hello { .. } => Message::HelloOk {
                version: super::wire::PROTOCOL_VERSION,
                created: false,
                chunks: 0,
                digest: [0; 32],
                damaged: 0,
            },
            Message::HaveKeys(ids) => Message::LackKeys(match overreach {
                Overreach::Key => vec![ids.iter().max().copied().unwrap_or(0) + 1],
                _ => Vec::new(),
            }),
            Message::HaveChunks(_) => Message::LackChunks(match overreach {
                Overreach::Chunk => vec![manifest_chunk],
                _ => Vec::new(),
            }),
            Message::HaveSessions(_) => Message::LackSessions(match overreach {
                Overreach::Session => vec![9_999],
                _ => Vec::new(),
            }),
            _ => break,
        };
        if conn.send(&answer).is_err() {
            break;
        }
    }
    seen
}

/// Regression: the primary answers only for what it offered. A mirror that asks for a key, a
/// chunk or a session outside the batch it was offered gets nothing for it: the push stops
/// with a protocol error before anything is sent.
#[test]
fn the_primary_sends_nothing_it_did_not_offer() {
    let t = TestRepo::new();
    session(&t, 7, 300_000);
    let manifest_chunk = {
        let index = t.repo.index().unwrap();
        let id: Vec<u8> = index
            .conn()
            .query_row("SELECT id FROM chunks WHERE kind = 1 LIMIT 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        crate::ids::ChunkId(id.as_slice().try_into().unwrap())
    };
    for overreach in [Overreach::Key, Overreach::Chunk, Overreach::Session] {
        let (a, b) = UnixStream::pair().unwrap();
        let mirror = std::thread::spawn(move || hostile_mirror(b, overreach, manifest_chunk));
        let err = push(&t.repo, a.try_clone().unwrap(), a, &opts("m")).unwrap_err();
        let seen = mirror.join().unwrap();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{overreach:?}: {err}");
        assert!(
            err.message().contains("which was not offered"),
            "{overreach:?}: {err}"
        );
        for put in ["PutKeys", "PutChunks", "PutSession"] {
            assert!(
                !seen.contains(&put),
                "{overreach:?}: the primary sent {put}: {seen:?}"
            );
        }
    }
}

/// Regression (issue 12, part 4): a session committed between the push's data phase and its
/// manifest phase. Its data chunks were sealed after the data phase passed them by; offering
/// its manifest chunk anyway made the mirror refuse it ("names chunk ..., which the mirror does
/// not hold"). A run offers only what was sealed when it read the session list.
#[test]
fn a_session_committed_during_a_push_waits_for_the_next_run() {
    use std::rc::Rc;
    let t = Rc::new(TestRepo::new());
    session(&t, 11, 200_000);
    let dest = t.path("mirror");
    mirror_ok(&t, &dest);
    session(&t, 12, 200_000);
    let committed = Rc::new(std::cell::Cell::new(0u32));
    {
        let (committed, t) = (Rc::clone(&committed), Rc::clone(&t));
        super::push::tests_hook::set(Some(Box::new(move |kind| {
            if kind == crate::index::ChunkKind::Data && committed.get() == 0 {
                session(&t, 13, 200_000);
                committed.set(1);
            }
        })));
    }
    let report = mirror_ok(&t, &dest);
    super::push::tests_hook::set(None);
    assert_eq!(committed.get(), 1, "the hook did not run");
    assert_eq!(
        report.sessions_sent, 1,
        "only the session listed at the start"
    );
    let mirror = Repo::open(&dest).unwrap();
    assert_eq!(mirror.index().unwrap().sessions(None).unwrap().len(), 2);
    // The next run brings the late one, whole.
    let report = mirror_ok(&t, &dest);
    assert_eq!(report.sessions_sent, 1);
    assert_eq!(chunk_ids(&mirror), chunk_ids(&t.repo));
    let deep = check(
        &mirror,
        &CheckOptions {
            read_data: true,
            identities: Some(t.identities()),
        },
    )
    .unwrap();
    assert!(deep.problems.is_empty(), "{:?}", deep.problems);
}

/// Issue 12, part 4: twenty mirror runs while ingests commit sessions beside them, all with
/// real threads: every run succeeds and leaves the mirror consistent.
#[test]
fn twenty_mirror_runs_beside_ingests() {
    let t = TestRepo::new();
    session(&t, 21, 100_000);
    let dest = t.path("mirror");
    mirror_ok(&t, &dest);
    let src = t.path("src");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let ingests = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                std::fs::create_dir_all(src.join(format!("d{}", n % 7))).unwrap();
                std::fs::write(
                    src.join(format!("d{}/f{n}", n % 7)),
                    crate::restore::testutil::noise(1000 + n, 50_000),
                )
                .unwrap();
                crate::ingest::ingest(
                    &t.repo,
                    &crate::ingest::IngestOptions {
                        client: "racer".into(),
                        source: src.clone(),
                        threads: Some(2),
                        files_cache: true,
                        sources: None,
                        restore_recipient: None,
                    },
                )
                .unwrap();
            }
            n
        });
        let mut failures = Vec::new();
        for run in 0..20 {
            let (p, m) = run_pair(&t.repo, &serve_opts(&dest, false), &opts("m"));
            if let Err(e) = m {
                failures.push(format!("run {run}: the mirror failed: {e}"));
            }
            if let Err(e) = p {
                failures.push(format!("run {run}: the push failed: {e}"));
            }
        }
        // Stop the ingests before any assertion, so that a failure cannot leave the scope
        // waiting for them.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(ingests.join().unwrap() > 0);
        assert!(failures.is_empty(), "{failures:#?}");
    });
    mirror_ok(&t, &dest);
    same_sessions_and_sound(&t, &dest);
}
