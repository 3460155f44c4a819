//! IndexBuilder: what it writes opens as an index, keeps the ids the files name, refuses a
//! session whose root is missing, and never hands out a reserved key id again.

use super::*;
use crate::format::records::{RecordState, SessionRecord};

fn chunk(seed: u8, offset: u64, manifest: bool) -> FoundChunk {
    FoundChunk {
        id: ChunkId([seed; 32]),
        manifest,
        offset,
        length: 100,
        key_id: KeyId(3),
        stored_hash: [seed; 32],
    }
}

fn session(id: i64, root: Vec<ChunkId>) -> SessionRecord {
    SessionRecord {
        id,
        client: "web".into(),
        state: RecordState::Complete,
        reason: None,
        pinned: true,
        started: 10,
        finished: 20,
        files: 1,
        bytes: 2,
        errors: 0,
        new_chunks: 3,
        new_bytes: 4,
        root,
    }
}

#[test]
fn a_built_index_opens_with_the_ids_the_files_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    let b = IndexBuilder::create(&path, "0123").unwrap();
    b.add_key(KeyId(3), b"wrapped", 1).unwrap();
    let pack = PackName([7; 16]);
    let new = b
        .add_pack(&pack, 400, 5, &[chunk(1, 32, false), chunk(2, 132, true)])
        .unwrap();
    assert_eq!(new, 2);
    // A second copy of a chunk in another pack: the first is kept.
    assert_eq!(
        b.add_pack(&PackName([8; 16]), 200, 6, &[chunk(1, 32, false)])
            .unwrap(),
        0
    );
    assert!(
        b.add_refs(&ChunkId([2; 32]), &[ChunkId([1; 32])])
            .unwrap()
            .is_empty()
    );
    let missing = b.add_refs(&ChunkId([2; 32]), &[ChunkId([9; 32])]).unwrap();
    assert_eq!(missing, vec![ChunkId([9; 32])]);
    b.add_session(&session(42, vec![ChunkId([2; 32])])).unwrap();
    let err = b
        .add_session(&session(43, vec![ChunkId([9; 32])]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    b.reserve_key_ids(17).unwrap();
    b.finish(1_800_000_000).unwrap();

    let index = Index::open(&path).unwrap();
    let s = index.session(SessionId(42)).unwrap();
    assert!(s.pinned);
    assert_eq!(s.client, "web");
    assert!(index.session(SessionId(43)).is_err());
    assert_eq!(
        index.session_root(SessionId(42)).unwrap(),
        vec![ChunkId([2; 32])]
    );
    assert_eq!(
        index.chunk_refs(&ChunkId([2; 32])).unwrap(),
        vec![ChunkId([1; 32])]
    );
    let loc = index.lookup_chunk(&ChunkId([1; 32])).unwrap().unwrap();
    assert_eq!((loc.pack, loc.offset), (pack, 32));
    assert_eq!(index.data_key(KeyId(3)).unwrap(), b"wrapped");
    assert_eq!(index.gc_generation().unwrap(), 1_800_000_000);
    // Key ids up to the reserved one are never handed out again.
    assert_eq!(index.insert_data_key(b"new", 1).unwrap(), KeyId(18));
}

#[test]
fn an_existing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    std::fs::write(&path, b"x").unwrap();
    assert!(IndexBuilder::create(&path, "0123").is_err());
}

/// A partial session comes back partial with its reason, and session ids up to the one
/// `sessions/last-id` names are never handed out again (a forgotten session's id stays its).
#[test]
fn a_partial_session_keeps_its_reason_and_forgotten_ids_stay_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    let b = IndexBuilder::create(&path, "0123").unwrap();
    b.add_key(KeyId(3), b"wrapped", 1).unwrap();
    b.add_pack(&PackName([7; 16]), 400, 5, &[chunk(2, 32, true)])
        .unwrap();
    let mut s = session(4, vec![ChunkId([2; 32])]);
    s.state = RecordState::Incomplete;
    s.reason = Some("rsync exit 23: some files vanished".into());
    b.add_session(&s).unwrap();
    b.reserve_session_ids(9).unwrap();
    b.finish(1_800_000_000).unwrap();

    let index = Index::open(&path).unwrap();
    let got = index.session(SessionId(4)).unwrap();
    assert_eq!(got.state, crate::index::SessionState::Partial);
    assert_eq!(
        got.reason.as_deref(),
        Some("rsync exit 23: some files vanished")
    );
    let writer = crate::ids::WriterId("0".repeat(32));
    assert_eq!(
        index.create_session("web", &writer, 1).unwrap(),
        SessionId(10)
    );
}
