use super::*;

fn new_index(dir: &Path) -> Index {
    Index::create(&dir.join("index.db"), "00112233445566778899aabbccddeeff").unwrap()
}

fn cid(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

fn writer() -> WriterId {
    WriterId("aa".repeat(16))
}

fn sealed(
    id: ChunkId,
    kind: ChunkKind,
    offset: u64,
    key: KeyId,
    refs: Vec<ChunkId>,
) -> SealedChunk {
    SealedChunk {
        id,
        kind,
        offset,
        length: 100,
        key_id: key,
        stored_hash: [id.0[0]; 32],
        refs,
    }
}

#[test]
fn create_then_open_checks_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    drop(new_index(dir.path()));
    let index = Index::open(&path).unwrap();
    assert_eq!(
        index.repository_id().unwrap(),
        "00112233445566778899aabbccddeeff"
    );
    assert_eq!(index.gc_generation().unwrap(), 0);
    let mode: String = index
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = index
        .conn()
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = index
        .conn()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous must be FULL");
    // Creating over an existing index is refused.
    assert!(Index::create(&path, "x").is_err());
}

#[test]
fn open_refuses_foreign_and_future_databases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    drop(new_index(dir.path()));
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 4").unwrap();
    }
    let err = Index::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
    assert!(
        err.message().contains("schema version 4"),
        "{}",
        err.message()
    );

    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = Index::open(&other).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
    assert!(
        err.message().contains("not an rsbackup index"),
        "{}",
        err.message()
    );

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let err = Index::open(&junk).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{}", err.message());
    assert!(err.message().contains("junk.db"), "{}", err.message());

    let missing = dir.path().join("missing.db");
    let err = Index::open(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("missing"), "{}", err.message());
    assert!(!missing.exists(), "open must not create a database");
}

#[test]
fn pack_chunks_and_sessions_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let key = index.insert_data_key(b"wrapped", 10).unwrap();
    assert_eq!(index.data_key(key).unwrap(), b"wrapped");
    assert_eq!(
        index.data_key(KeyId(999)).unwrap_err().kind(),
        ErrorKind::Corrupt
    );

    let w = writer();
    let name = PackName([7; 16]);
    let row = index.begin_pack(&name, &w, 11).unwrap();
    assert!(!index.has_chunk(&cid(1)).unwrap());
    index
        .seal_pack(
            row,
            500,
            &[
                sealed(cid(1), ChunkKind::Data, 32, key, vec![]),
                sealed(cid(2), ChunkKind::Manifest, 132, key, vec![cid(1)]),
            ],
        )
        .unwrap();
    assert!(index.has_chunk(&cid(1)).unwrap());
    let loc = index.lookup_chunk(&cid(2)).unwrap().unwrap();
    assert_eq!(
        loc,
        ChunkLocation {
            id: cid(2),
            kind: ChunkKind::Manifest,
            pack_row: row,
            pack: name,
            offset: 132,
            length: 100,
            key_id: key,
            stored_hash: [2; 32],
        }
    );
    assert_eq!(index.lookup_chunk(&cid(9)).unwrap(), None);
    let packs = index.packs().unwrap();
    assert_eq!(packs.len(), 1);
    assert!(packs[0].sealed);
    assert_eq!(packs[0].size, 500);
    assert_eq!(packs[0].writer, None);
    let in_pack: Vec<u64> = index
        .chunks_in_pack(row)
        .unwrap()
        .iter()
        .map(|c| c.offset)
        .collect();
    assert_eq!(in_pack, [32, 132]);
    // Sealing twice is a bug in the caller.
    assert_eq!(
        index.seal_pack(row, 500, &[]).unwrap_err().kind(),
        ErrorKind::Internal
    );

    // A second pack with the same chunk: first copy wins.
    let row2 = index.begin_pack(&PackName([8; 16]), &w, 12).unwrap();
    index
        .seal_pack(
            row2,
            200,
            &[sealed(cid(1), ChunkKind::Data, 32, key, vec![])],
        )
        .unwrap();
    assert_eq!(index.lookup_chunk(&cid(1)).unwrap().unwrap().pack_row, row);

    let s = index.create_session("web1", &w, 100).unwrap();
    assert!(
        index.sessions(None).unwrap().is_empty(),
        "running sessions are invisible"
    );
    assert_eq!(index.session(s).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        index.session_root(s).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let stats = SessionStats {
        files: 3,
        bytes: 4,
        errors: 0,
        new_chunks: 2,
        new_bytes: 200,
    };
    index
        .finish_session(s, SessionState::Complete, 110, &stats, &[cid(2)])
        .unwrap();
    let info = index.session(s).unwrap();
    assert_eq!(info.state, SessionState::Complete);
    assert_eq!(info.finished, Some(110));
    assert_eq!(info.stats, stats);
    assert_eq!(index.session_root(s).unwrap(), [cid(2)]);
    assert_eq!(index.sessions(Some("web1")).unwrap().len(), 1);
    assert!(index.sessions(Some("db1")).unwrap().is_empty());
    assert_eq!(index.sessions_using_chunk(&cid(1)).unwrap(), [s]);
    assert_eq!(index.sessions_using_chunk(&cid(2)).unwrap(), [s]);
    assert!(index.sessions_using_chunk(&cid(9)).unwrap().is_empty());
    // Finishing again is refused and changes nothing.
    let err = index
        .finish_session(s, SessionState::Partial, 120, &stats, &[cid(2)])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(index.session(s).unwrap().state, SessionState::Complete);
    assert!(index.writers_with_leftovers().unwrap().is_empty());
}

#[test]
fn broken_references_are_refused_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let key = index.insert_data_key(b"k", 1).unwrap();
    let row = index.begin_pack(&PackName([1; 16]), &writer(), 1).unwrap();
    let err = index
        .seal_pack(
            row,
            300,
            &[
                sealed(cid(1), ChunkKind::Data, 32, key, vec![]),
                sealed(cid(2), ChunkKind::Manifest, 132, key, vec![cid(3)]),
            ],
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(
        err.message().contains(&cid(3).to_hex()),
        "{}",
        err.message()
    );
    assert!(
        !index.has_chunk(&cid(1)).unwrap(),
        "the transaction must roll back"
    );
    assert!(!index.packs().unwrap()[0].sealed);
    // An unknown key id violates the foreign key.
    assert!(
        index
            .seal_pack(
                row,
                100,
                &[sealed(cid(1), ChunkKind::Data, 32, KeyId(77), vec![])]
            )
            .is_err()
    );
    // A root naming a chunk that is not stored.
    let s = index.create_session("c", &writer(), 1).unwrap();
    let err = index
        .finish_session(
            s,
            SessionState::Complete,
            2,
            &SessionStats::default(),
            &[cid(5)],
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    let err = index
        .finish_session(s, SessionState::Running, 2, &SessionStats::default(), &[])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
}

/// `chunk_refs` and `session_manifest` hold chunk numbers (`chunks.num`), resolved when the
/// rows are written and translated back to ids when read; the foreign keys keep every number
/// naming a row, and numbers are never handed out twice.
#[test]
fn references_are_chunk_numbers_that_always_name_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let key = index.insert_data_key(b"k", 1).unwrap();
    let row = index.begin_pack(&PackName([1; 16]), &writer(), 1).unwrap();
    // A manifest chunk may come before a chunk it names in the same pack: the chunk rows of a
    // pack go in before its references.
    index
        .seal_pack(
            row,
            400,
            &[
                sealed(cid(1), ChunkKind::Data, 32, key, vec![]),
                sealed(cid(3), ChunkKind::Manifest, 132, key, vec![cid(1), cid(2)]),
                sealed(cid(2), ChunkKind::Data, 232, key, vec![]),
            ],
        )
        .unwrap();
    let mut refs = index.chunk_refs(&cid(3)).unwrap();
    refs.sort();
    assert_eq!(refs, [cid(1), cid(2)]);
    assert!(index.chunk_refs(&cid(1)).unwrap().is_empty());
    assert!(index.chunk_refs(&cid(9)).unwrap().is_empty());
    let s = index.create_session("c", &writer(), 1).unwrap();
    index
        .finish_session(
            s,
            SessionState::Complete,
            2,
            &SessionStats::default(),
            &[cid(3)],
        )
        .unwrap();
    assert_eq!(index.session_root(s).unwrap(), [cid(3)]);
    assert_eq!(index.sessions_using_chunk(&cid(2)).unwrap(), [s]);
    let conn = index.conn();
    let types: Vec<String> = conn
        .prepare(
            "SELECT DISTINCT typeof(parent) || ' ' || typeof(child) FROM chunk_refs \
             UNION SELECT DISTINCT typeof(chunk) FROM session_manifest",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(types, ["integer", "integer integer"]);

    // A chunk that a reference or a root names cannot be deleted.
    for id in [cid(2), cid(3)] {
        let err = conn
            .execute("DELETE FROM chunks WHERE id = ?1", [&id.0])
            .unwrap_err();
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    }
    // Without references, the highest chunk goes; its number is never handed out again
    // (AUTOINCREMENT), so a reference left dangling by an edit without foreign keys could never
    // come to name another chunk.
    let highest: i64 = conn
        .query_row("SELECT max(num) FROM chunks", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(
        "DELETE FROM session_manifest; DELETE FROM chunk_refs; \
         DELETE FROM chunks WHERE num = (SELECT max(num) FROM chunks);",
    )
    .unwrap();
    let row = index.begin_pack(&PackName([2; 16]), &writer(), 2).unwrap();
    index
        .seal_pack(
            row,
            100,
            &[sealed(cid(4), ChunkKind::Data, 32, key, vec![])],
        )
        .unwrap();
    let fresh = chunk_num(conn, &cid(4)).unwrap().unwrap();
    assert!(
        fresh > highest,
        "number {fresh} reused (highest was {highest})"
    );
}

#[test]
fn forget_writer_removes_only_that_writers_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let dead = WriterId("dd".repeat(16));
    let live = WriterId("11".repeat(16));
    let key = index.insert_data_key(b"k", 1).unwrap();
    let sealed_row = index.begin_pack(&PackName([1; 16]), &dead, 1).unwrap();
    index
        .seal_pack(
            sealed_row,
            132,
            &[sealed(cid(1), ChunkKind::Manifest, 32, key, vec![])],
        )
        .unwrap();
    index.begin_pack(&PackName([2; 16]), &dead, 1).unwrap();
    index.begin_pack(&PackName([3; 16]), &live, 1).unwrap();
    let dead_session = index.create_session("c", &dead, 1).unwrap();
    index.create_session("c", &live, 1).unwrap();
    let mut writers = index.writers_with_leftovers().unwrap();
    writers.sort();
    assert_eq!(writers, [live.0.clone(), dead.0.clone()]);
    assert_eq!(
        index.writing_packs_of(&dead.0).unwrap(),
        [PackName([2; 16])]
    );
    // A running session may already have root rows in a future ingest; they go too.
    index
        .conn()
        .execute(
            "INSERT INTO session_manifest (session, seq, chunk) \
             SELECT ?1, 0, num FROM chunks WHERE id = ?2",
            params![dead_session.0, &cid(1).0],
        )
        .unwrap();
    index.forget_writer(&dead.0).unwrap();
    assert_eq!(
        index.writers_with_leftovers().unwrap(),
        std::slice::from_ref(&live.0)
    );
    let names: Vec<PackName> = index.packs().unwrap().iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [PackName([1; 16]), PackName([3; 16])],
        "sealed packs stay"
    );
    assert!(index.has_chunk(&cid(1)).unwrap());
    // Ids are never handed out twice, even after the highest is deleted (AUTOINCREMENT).
    let last = index.create_session("c", &dead, 2).unwrap();
    index.forget_writer(&dead.0).unwrap();
    assert!(index.create_session("c", &live, 3).unwrap().0 > last.0);
}

/// Schema objects of a connection, comments stripped and whitespace collapsed.
fn normalized_schema(conn: &Connection) -> Vec<(String, String)> {
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (name, sql) = row.unwrap();
            let stripped: Vec<&str> = sql.lines().map(|l| l.split("--").next().unwrap()).collect();
            (
                name,
                stripped
                    .join(" ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect()
}

/// An index of schema version 1 or 2 as a build of that version made it, with its meta rows.
pub(super) fn old_index(path: &Path, version: i32) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA application_id = {}; PRAGMA user_version = {version};",
        schema::APPLICATION_ID
    ))
    .unwrap();
    conn.execute_batch(schema::DDL_COMMON).unwrap();
    let sessions = match version {
        1 => schema::SESSIONS_V1,
        _ => schema::SESSIONS_V2,
    };
    conn.execute_batch(sessions).unwrap();
    conn.execute_batch(schema::SESSION_MANIFEST_V2).unwrap();
    conn.execute_batch(
        "INSERT INTO meta (key, value) VALUES ('repository-id', 'ab'), ('gc-generation', 0);",
    )
    .unwrap();
    conn
}

/// Open an old index for writing: it comes out at this build's version.
pub(super) fn open_migrated(path: &Path) -> Index {
    let index = Index::open(path).unwrap();
    let version: i32 = index
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, INDEX_VERSION);
    index
}

/// The code's DDL is the DDL of format-spec/index.md (the spec is normative).
#[test]
fn schema_matches_the_spec() {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/format-spec/index.md"))
            .unwrap();
    let start = spec.find("```sql\n").expect("index.md has an sql block") + 7;
    let end = start + spec[start..].find("```").unwrap();
    let from_spec = Connection::open_in_memory().unwrap();
    from_spec.execute_batch(&spec[start..end]).unwrap();
    let from_code = Connection::open_in_memory().unwrap();
    from_code.execute_batch(schema::DDL_COMMON).unwrap();
    from_code.execute_batch(schema::SESSIONS_V2).unwrap();
    from_code
        .execute_batch(schema::SESSION_MANIFEST_V3)
        .unwrap();
    let spec_schema = normalized_schema(&from_spec);
    // The sql block was found and holds the v1 core (later additions are compared as well).
    for name in [
        "meta",
        "data_keys",
        "packs",
        "chunks",
        "chunk_refs",
        "sessions",
        "session_manifest",
    ] {
        assert!(
            spec_schema.iter().any(|(n, _)| n == name),
            "{name} missing from the spec"
        );
    }
    assert_eq!(normalized_schema(&from_code), spec_schema);
}

#[test]
fn read_only_open_reads_and_refuses_writes_and_unmerged_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    {
        let index = new_index(dir.path());
        let s = index
            .create_session("web1", &writer(), 1_700_000_000)
            .unwrap();
        index
            .finish_session(
                s,
                SessionState::Complete,
                1_700_000_010,
                &SessionStats::default(),
                &[],
            )
            .unwrap();
    }
    // Closing the last connection merged the write-ahead log.
    let ro = Index::open_read_only(&path).unwrap();
    assert_eq!(ro.sessions(None).unwrap().len(), 1);
    assert!(ro.create_session("web2", &writer(), 1_700_000_100).is_err());
    drop(ro);

    // A log that still holds commits cannot be seen in immutable mode: refuse, with advice.
    let wal = dir.path().join("index.db-wal");
    std::fs::write(&wal, b"not merged").unwrap();
    let err = Index::open_read_only(&path).unwrap_err();
    assert!(err.message().contains("writable storage"), "{err}");
}

/// A version 1 index (the word `incomplete`, no `reason`) still opens: read-only as it is, and
/// for writing migrated to version 2 with `partial`, its ids and manifests kept, and new
/// sessions never reusing an id.
#[test]
fn version_1_index_is_migrated_to_partial() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    {
        let conn = old_index(&path, 1);
        conn.execute_batch(
            "INSERT INTO sessions (id, client, state, started, finished, errors)
               VALUES (1, 'web1', 'complete', 10, 11, 0), (2, 'web1', 'incomplete', 20, 21, 3),
                      (7, 'web1', 'complete', 30, 31, 0);
             DELETE FROM sessions WHERE id = 7;",
        )
        .unwrap();
    }
    let ro = Index::open_read_only(&path).unwrap();
    let old = ro.sessions(None).unwrap();
    assert_eq!(old.len(), 2);
    assert_eq!(old[1].state, SessionState::Partial);
    assert_eq!(old[1].reason, None);
    drop(ro);

    let index = open_migrated(&path);
    let raw: Vec<String> = index
        .conn()
        .prepare("SELECT state FROM sessions ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(raw, ["complete", "partial"]);
    let s = index.create_session("web1", &writer(), 40).unwrap();
    assert_eq!(s.0, 8, "a session id was handed out twice");
    index
        .finish_session_with_reason(
            s,
            SessionState::Partial,
            41,
            &SessionStats::default(),
            &[],
            Some("rsync exit 23"),
        )
        .unwrap();
    let last = index.session(s).unwrap();
    assert_eq!(last.state, SessionState::Partial);
    assert_eq!(last.reason.as_deref(), Some("rsync exit 23"));
    let broken: Option<String> = index
        .conn()
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()
        .unwrap();
    assert_eq!(broken, None);
    // The migrated schema is the one a new index gets.
    let fresh = Connection::open_in_memory().unwrap();
    fresh.execute_batch(schema::DDL_COMMON).unwrap();
    fresh.execute_batch(schema::SESSIONS_V2).unwrap();
    fresh.execute_batch(schema::SESSION_MANIFEST_V3).unwrap();
    let normal = |c: &Connection| {
        normalized_schema(c)
            .into_iter()
            .filter(|(n, _)| !n.starts_with("sqlite_"))
            // A renamed table's DDL is rewritten with its new name quoted.
            .map(|(n, sql)| (n, sql.replace('"', "")))
            .collect::<Vec<_>>()
    };
    assert_eq!(normal(index.conn()), normal(&fresh));
    drop(index);
    // Opened again: nothing more to do.
    assert!(Index::open(&path).is_ok());
}
