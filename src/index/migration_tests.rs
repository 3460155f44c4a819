//! The migration of a version 2 index to version 3 (format-spec/index.md "Migrations"): the
//! session roots keep their chunks in order, and the lookups that used the index by chunk
//! still find them.

use rusqlite::Connection;

use super::*;

fn cid(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

/// A version 2 index as a build of that version left it: two sessions of `web1`, the first
/// with a root naming chunk 3 twice, and manifest chunk 1 naming data chunk 4.
fn version_2_index(path: &Path) {
    let conn = super::tests::old_index(path, 2);
    conn.execute_batch(
        "INSERT INTO data_keys (id, wrapped, created) VALUES (1, x'00', 1);
         INSERT INTO packs (id, name, state, size, created)
           VALUES (1, x'00000000000000000000000000000001', 'sealed', 100, 1);
         INSERT INTO sessions (id, client, state, started, finished)
           VALUES (1, 'web1', 'complete', 10, 11), (2, 'web1', 'complete', 20, 21);",
    )
    .unwrap();
    for n in 1..=4u8 {
        conn.execute(
            "INSERT INTO chunks (num, id, kind, pack, offset, length, key_id, stored_hash) \
             VALUES (?1, ?2, ?3, 1, ?4, 10, 1, zeroblob(32))",
            rusqlite::params![n, cid(n).0.to_vec(), i64::from(n < 4), i64::from(n) * 10],
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO chunk_refs (parent, child) VALUES (1, 4);
         INSERT INTO session_manifest (session, seq, chunk)
           VALUES (1, 0, 3), (1, 1, 1), (1, 2, 3), (1, 3, 2), (2, 0, 2);",
    )
    .unwrap();
}

#[test]
fn version_2_index_is_migrated_keeping_every_root() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    version_2_index(&path);
    let root_1 = [cid(3), cid(1), cid(3), cid(2)];
    // Read-only, a version 2 index is read as it is.
    let ro = Index::open_read_only(&path).unwrap();
    assert_eq!(ro.session_root(SessionId(1)).unwrap(), root_1);
    drop(ro);

    let index = super::tests::open_migrated(&path);
    assert_eq!(index.session_root(SessionId(1)).unwrap(), root_1);
    assert_eq!(index.session_root(SessionId(2)).unwrap(), [cid(2)]);
    // Lookups by chunk: in a root, through a reference, in no session.
    let s = |ids: &[i64]| ids.iter().map(|&i| SessionId(i)).collect::<Vec<_>>();
    assert_eq!(index.sessions_using_chunk(&cid(2)).unwrap(), s(&[1, 2]));
    assert_eq!(index.sessions_using_chunk(&cid(4)).unwrap(), s(&[1]));
    assert!(index.client_chunk("web1", &[], &cid(4)).unwrap().is_some());
    assert!(index.client_chunk("db1", &[], &cid(4)).unwrap().is_none());
    // Tried in a session first: found there, or in another session of the client after it,
    // never in a session of another client.
    let first = [SessionId(2)];
    assert!(
        index
            .client_chunk("web1", &first, &cid(4))
            .unwrap()
            .is_some()
    );
    assert!(
        index
            .client_chunk("web1", &first, &cid(2))
            .unwrap()
            .is_some()
    );
    assert!(
        index
            .client_chunk("db1", &first, &cid(2))
            .unwrap()
            .is_none()
    );
    // The index by chunk is gone with the old table; the schema is a new index's.
    let indexes: i64 = index
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'session_manifest_by_chunk'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    let fresh = dir.path().join("fresh.db");
    drop(Index::create(&fresh, "ab").unwrap());
    let table_sql = |p: &Path| -> String {
        Connection::open(p)
            .unwrap()
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'session_manifest'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    drop(index);
    assert_eq!(
        table_sql(&path).replace('"', ""),
        table_sql(&fresh).replace('"', "")
    );
    // Opened again: nothing more to do, and a forget still removes a root.
    let index = Index::open(&path).unwrap();
    assert_eq!(index.forget_sessions_by_id(&[SessionId(1)]).unwrap(), 1);
    assert_eq!(index.sessions_using_chunk(&cid(4)).unwrap(), s(&[]));
    assert_eq!(index.sessions_using_chunk(&cid(2)).unwrap(), s(&[2]));
}
