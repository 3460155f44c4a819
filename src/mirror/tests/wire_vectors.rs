//! The read-only requests' frames, and version 2's `PutSession` with sources, against
//! format-spec/vectors/wire-*.txt.

use crate::crypto::testvec::pattern;
use crate::ids::ChunkId;
use crate::mirror::wire::conn::vectors::{case, id};
use crate::mirror::wire::{Message, READ_PROTOCOL_VERSION, WireRecord, WireSession};

#[test]
fn read_only_requests_match_their_vectors() {
    case(
        "wire-hello-read.txt",
        "HelloRead: magic, version 1, repository.toml = \"format = 1\\n\"",
        &Message::HelloRead {
            version: READ_PROTOCOL_VERSION,
            repository_toml: "format = 1\n".into(),
        },
    );
    case(
        "wire-get-chunks.txt",
        "GetChunks of the chunk ids P(1,32) and P(2,32)",
        &Message::GetChunks(vec![id(1), id(2)]),
    );
    let record = pattern(4, 60);
    case(
        "wire-chunk-records.txt",
        "ChunkRecords: lacking P(3,32); one data record of kind 0, stored hash = BLAKE3(record), \
         no refs, record = P(4,60) (not a valid record header: only the framing is shown)",
        &Message::ChunkRecords {
            lacking: vec![id(3)],
            records: vec![WireRecord {
                kind: 0,
                stored_hash: *blake3::hash(&record).as_bytes(),
                refs: Vec::new(),
                record,
            }],
        },
    );
}

/// Version 2's `PutSession` with the session's sources (tag 0x38).
#[test]
fn put_session_with_sources_matches_its_vector() {
    case(
        "wire-put-session-sources.txt",
        "PutSession with sources (version 2): session 7 of client web1, complete, started \
         1700000000, finished 1700000060, stats 12 4096 0 3 2048, not pinned, root P(1,32), \
         sources /var/www and /srv/www",
        &Message::PutSession(WireSession {
            id: 7,
            client: "web1".into(),
            state: 1,
            started: 1_700_000_000,
            finished: Some(1_700_000_060),
            stats: [12, 4096, 0, 3, 2048],
            pinned: false,
            root: vec![id(1)],
            sources: Some(vec![b"/var/www".to_vec(), b"/srv/www".to_vec()]),
        }),
    );
}

/// After `HelloRead` the mirror answers `GetChunks` with what it holds and refuses every
/// request that would write, and a missing mirror repository is not created.
#[test]
fn a_read_only_connection_sends_records_and_refuses_writes() {
    use std::os::unix::net::UnixStream;

    use super::{mirror_ok, serve_opts, session};
    use crate::error::ErrorKind;
    use crate::mirror::serve;
    use crate::mirror::wire::Conn;
    use crate::restore::testutil::TestRepo;

    let t = TestRepo::new();
    session(&t, 1, 300_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    mirror_ok(&t, &path);
    let toml = std::fs::read_to_string(t.repo.root().join("repository.toml")).unwrap();
    let ids: Vec<ChunkId> = super::chunk_ids(&t.repo)
        .into_iter()
        .map(|b| ChunkId(b.try_into().unwrap()))
        .collect();

    let talk = |path: std::path::PathBuf, second: Message| {
        let (a, b) = UnixStream::pair().unwrap();
        let opts = serve_opts(&path, false);
        let server = std::thread::spawn(move || serve(b.try_clone().unwrap(), b, &opts));
        let mut conn = Conn::new(a.try_clone().unwrap(), a);
        conn.send(&Message::HelloRead {
            version: READ_PROTOCOL_VERSION,
            repository_toml: toml.clone(),
        })
        .unwrap();
        let hello = conn.recv().unwrap();
        let answer = conn.send(&second).and_then(|()| conn.recv());
        drop(conn);
        (hello, answer, server.join().unwrap())
    };

    let mut asked = ids.clone();
    asked.push(id(9));
    let (hello, answer, served) = talk(path.clone(), Message::GetChunks(asked));
    assert!(
        matches!(hello, Message::HelloOk { created: false, .. }),
        "{hello:?}"
    );
    let Ok(Message::ChunkRecords { lacking, records }) = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(lacking, vec![id(9)]);
    assert_eq!(records.len(), ids.len());
    for r in &records {
        assert_eq!(blake3::hash(&r.record).as_bytes(), &r.stored_hash);
    }
    // The client closed without Bye: the mirror reports the closed connection.
    assert!(served.is_err());

    let (_, answer, served) = talk(path.clone(), Message::PutChunks(Vec::new()));
    assert!(
        matches!(&answer, Ok(Message::Error { code: 2, .. })),
        "{answer:?}"
    );
    assert_eq!(served.unwrap_err().kind(), ErrorKind::Refused);

    let missing = dir.path().join("none");
    let (hello, _, served) = talk(missing.clone(), Message::Bye);
    assert!(matches!(hello, Message::Error { code: 3, .. }), "{hello:?}");
    assert_eq!(served.unwrap_err().kind(), ErrorKind::NotARepository);
    assert!(
        !missing.exists(),
        "a read-only connection created a repository"
    );
}
