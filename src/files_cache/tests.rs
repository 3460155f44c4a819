use super::*;
use crate::ids::ChunkId;

fn sample() -> CachedFile {
    CachedFile {
        has_xattrs: false,
        size: 10,
        mtime_ns: 1_700_000_000_123_456_789,
        ctime_ns: 1_700_000_001_000_000_000,
        ino: u64::MAX - 3,
        dev: 0x803,
        extents: vec![
            Extent::Chunk {
                len: 6,
                id: ChunkId([7; 32]),
            },
            Extent::Hole { len: 4 },
        ],
    }
}

#[test]
fn written_rows_read_back_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "web1");
    let mut w = CacheWriter::create(&path, 5).unwrap().unwrap();
    w.insert(&[1; 16], &sample()).unwrap();
    // Nothing visible before commit.
    assert!(CacheReader::open(&path).is_none());
    w.commit().unwrap();
    let r = CacheReader::open(&path).unwrap();
    assert_eq!(r.gc_generation(), Some(5));
    assert_eq!(r.get(&[1; 16]), Some(sample()));
    assert_eq!(r.get(&[2; 16]), None);
    assert!(!path.with_extension("db.new").exists());
}

#[test]
fn second_writer_of_same_client_is_refused_while_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "web1");
    let w = CacheWriter::create(&path, 0).unwrap().unwrap();
    assert!(CacheWriter::create(&path, 0).unwrap().is_none());
    w.abandon();
    assert!(CacheWriter::create(&path, 0).unwrap().is_some());
}

#[test]
fn garbage_or_foreign_cache_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"this is not sqlite at all, not even close......").unwrap();
    assert!(CacheReader::open(&path).is_none());
    std::fs::remove_file(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA application_id = 42; CREATE TABLE t(x);")
        .unwrap();
    drop(conn);
    assert!(CacheReader::open(&path).is_none());
}

#[test]
fn undecodable_extents_are_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    let mut w = CacheWriter::create(&path, 0).unwrap().unwrap();
    w.insert(&[1; 16], &sample()).unwrap();
    w.commit().unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute("UPDATE files SET extents = x'ff00'", [])
        .unwrap();
    drop(conn);
    let r = CacheReader::open(&path).unwrap();
    assert_eq!(r.get(&[1; 16]), None);
}

#[test]
fn path_hash_depends_on_secret_and_path() {
    let a = PathHasher::new(&RepoSecret::from_bytes([1; 32]));
    let b = PathHasher::new(&RepoSecret::from_bytes([2; 32]));
    assert_ne!(a.hash(b"x"), b.hash(b"x"));
    assert_ne!(a.hash(b"x"), a.hash(b"y"));
    assert_eq!(a.hash(b"x"), a.hash(b"x"));
    assert_eq!(format!("{a:?}"), "PathHasher(..)");
}

#[test]
fn schema_matches_the_spec() {
    // format-spec/files-cache.md is the contract: the columns (names, types, order), the
    // application id and the version written must be the ones it shows.
    let spec = include_str!("../../format-spec/files-cache.md");
    let block = spec
        .split("CREATE TABLE files (")
        .nth(1)
        .and_then(|rest| rest.split(") WITHOUT ROWID;").next())
        .expect("the spec shows CREATE TABLE files");
    let spec_columns: Vec<(String, String)> = block
        .lines()
        .map(|l| l.split("--").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap().to_string();
            let ty = words.next().unwrap().trim_end_matches(',').to_string();
            (name, ty)
        })
        .collect();
    assert!(spec.contains(&format!("PRAGMA user_version = {CACHE_VERSION};")));
    assert!(spec.contains(&format!("PRAGMA application_id = {CACHE_APPLICATION_ID};")));

    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "web1");
    let mut w = CacheWriter::create(&path, 1).unwrap().unwrap();
    w.insert(&[1; 16], &sample()).unwrap();
    w.commit().unwrap();
    let conn = Connection::open(&path).unwrap();
    let mut stmt = conn.prepare("PRAGMA table_info(files)").unwrap();
    let columns: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(columns, spec_columns);
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, CACHE_VERSION);
}
