use std::path::Path;

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
    assert_eq!(r.gc_generation(), 5);
    assert_eq!(r.get(&[1; 16]), Some(sample()));
    assert_eq!(r.get(&[2; 16]), None);
    assert!(!suffixed(&path, ".new").exists());
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

/// Rewrite the checksum of a cache file after a test changed its bytes.
fn reseal(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len() - 32;
    let sum = *blake3::hash(&bytes[..n]).as_bytes();
    bytes[n..].copy_from_slice(&sum);
    std::fs::write(path, bytes).unwrap();
}

fn written(path: &Path, rows: &[([u8; 16], CachedFile)]) {
    let mut w = CacheWriter::create(path, 7).unwrap().unwrap();
    for (h, f) in rows {
        w.insert(h, f).unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn garbage_short_or_foreign_cache_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        b"this is not a files cache at all, not even close......",
    )
    .unwrap();
    assert!(CacheReader::open(&path).is_none());
    std::fs::write(&path, b"short").unwrap();
    assert!(CacheReader::open(&path).is_none());
    // A version 2 cache (SQLite) under the new name is not read either.
    std::fs::remove_file(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA application_id = 1381188163; CREATE TABLE files(x);")
        .unwrap();
    drop(conn);
    assert!(CacheReader::open(&path).is_none());
}

#[test]
fn every_flipped_byte_or_truncation_makes_the_cache_absent() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    written(&path, &[([1; 16], sample()), ([9; 16], sample())]);
    let good = std::fs::read(&path).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        assert!(CacheReader::open(&path).is_none(), "byte {i} flipped");
    }
    for cut in [1, 32, 64, good.len() - 16] {
        std::fs::write(&path, &good[..good.len() - cut]).unwrap();
        assert!(CacheReader::open(&path).is_none(), "{cut} bytes cut");
    }
    std::fs::write(&path, &good).unwrap();
    assert_eq!(
        CacheReader::open(&path).unwrap().get(&[9; 16]),
        Some(sample())
    );
}

#[test]
fn header_checks_hold_even_with_a_valid_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    for (at, value) in [(0, b'X'), (8, 4), (12, 1)] {
        written(&path, &[([1; 16], sample())]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] = value;
        std::fs::write(&path, bytes).unwrap();
        reseal(&path);
        assert!(
            CacheReader::open(&path).is_none(),
            "header byte {at} = {value}"
        );
    }
}

#[test]
fn undecodable_extents_or_unknown_flags_are_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    written(&path, &[([1; 16], sample())]);
    let mut bytes = std::fs::read(&path).unwrap();
    // Row at 16: flags at 16 + 56; the extent list (count u32 first) at 16 + 61.
    bytes[16 + 61] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    reseal(&path);
    let r = CacheReader::open(&path).unwrap();
    assert_eq!(r.get(&[1; 16]), None);

    written(&path, &[([1; 16], sample())]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[16 + 56] = 0x02;
    std::fs::write(&path, &bytes).unwrap();
    reseal(&path);
    assert_eq!(CacheReader::open(&path).unwrap().get(&[1; 16]), None);
}

#[test]
fn rows_out_of_order_are_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    // Two rows of the same length in one block; swap their hashes.
    written(&path, &[([1; 16], sample()), ([2; 16], sample())]);
    let mut bytes = std::fs::read(&path).unwrap();
    let row = (bytes.len() - 16 - 24 - 64) / 2;
    bytes[16..32].copy_from_slice(&[2; 16]);
    bytes[16 + row..16 + row + 16].copy_from_slice(&[1; 16]);
    std::fs::write(&path, &bytes).unwrap();
    reseal(&path);
    let r = CacheReader::open(&path).unwrap();
    assert_eq!(r.get(&[1; 16]), None);
    assert_eq!(r.get(&[2; 16]), None);
}

fn numbered(i: u32) -> ([u8; 16], CachedFile) {
    // Spread over the hash space, in no particular order.
    let h = blake3::hash(&i.to_le_bytes());
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&h.as_bytes()[..16]);
    let mut f = sample();
    f.ino = u64::from(i);
    f.has_xattrs = i.is_multiple_of(3);
    if i.is_multiple_of(5) {
        f.extents = (0..200)
            .map(|k| Extent::Chunk {
                len: 1,
                id: ChunkId([k as u8; 32]),
            })
            .collect();
        f.size = 200;
    }
    (hash, f)
}

#[test]
fn many_rows_over_many_blocks_and_runs_all_read_back() {
    let dir = tempfile::tempdir().unwrap();
    for (run_bytes, block_target) in [(RUN_BYTES, BLOCK_TARGET), (4096, 100), (50_000, 1)] {
        let path = cache_path(dir.path(), "c");
        let mut w = CacheWriter::create(&path, 3).unwrap().unwrap();
        w.run_bytes = run_bytes;
        w.block_target = block_target;
        let rows: Vec<_> = (0..3000).map(numbered).collect();
        for (h, f) in &rows {
            w.insert(h, f).unwrap();
        }
        if run_bytes < RUN_BYTES {
            assert!(w.runs.len() > 1, "the test must exercise the merge");
        }
        w.commit().unwrap();
        assert!(!suffixed(&path, ".new.runs").exists());
        assert!(!suffixed(&path, ".new").exists());
        let r = CacheReader::open(&path).unwrap();
        for (h, f) in &rows {
            assert_eq!(r.get(h).as_ref(), Some(f));
        }
        for i in 3000..3100 {
            assert_eq!(r.get(&numbered(i).0), None);
        }
        assert_eq!(r.get(&[0; 16]), None);
        assert_eq!(r.get(&[0xff; 16]), None);
        let bytes = std::fs::read(&path).unwrap();
        let trailer = &bytes[bytes.len() - 64..];
        assert_eq!(u64_at(trailer, 8), 3000, "row count");
        assert_eq!(u64_at(trailer, 16), r.blocks.len() as u64);
    }
}

#[test]
fn the_row_given_last_wins_in_memory_and_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    for run_bytes in [RUN_BYTES, 1] {
        let path = cache_path(dir.path(), "c");
        let mut w = CacheWriter::create(&path, 0).unwrap().unwrap();
        w.run_bytes = run_bytes;
        let mut later = sample();
        later.ino = 42;
        w.insert(&[5; 16], &sample()).unwrap();
        w.insert(&[3; 16], &sample()).unwrap();
        w.insert(&[5; 16], &later).unwrap();
        w.commit().unwrap();
        let r = CacheReader::open(&path).unwrap();
        assert_eq!(r.get(&[5; 16]).unwrap().ino, 42, "run_bytes {run_bytes}");
        assert_eq!(r.get(&[3; 16]), Some(sample()));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u64_at(&bytes[bytes.len() - 64..], 8), 2, "one row per hash");
    }
}

#[test]
fn an_empty_cache_opens_and_misses() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    written(&path, &[]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 + 64);
    let r = CacheReader::open(&path).unwrap();
    assert_eq!(r.gc_generation(), 7);
    assert_eq!(r.get(&[1; 16]), None);
}

#[test]
fn a_version_2_cache_is_removed_but_not_a_placeholder_table() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let sqlite = |name: &str, app: i32| {
        let conn = rusqlite::Connection::open(cache.join(name)).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {app}; CREATE TABLE t(x);"
        ))
        .unwrap();
    };
    sqlite("web1.db", 1_381_188_163);
    sqlite("web1.db.new", 1_381_188_163);
    // Client "web1"'s placeholder table is also the old cache name of client
    // "web1.placeholders": not a files cache, so it stays.
    sqlite("web1.placeholders.db", 99);
    written(&cache_path(dir.path(), "web1"), &[]);
    written(&cache_path(dir.path(), "web1.placeholders"), &[]);
    assert!(!cache.join("web1.db").exists());
    assert!(!cache.join("web1.db.new").exists());
    assert!(cache.join("web1.placeholders.db").exists());
    assert!(cache.join("web1.files").exists());
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

/// The block size of the vectors: small, so that three rows make more than one block.
fn w_target() -> usize {
    100
}

#[test]
fn layout_matches_the_spec_vectors() {
    // format-spec/files-cache.md, "Test vectors": fixed rows, a block size small enough for
    // two blocks, the bytes in hex. The code must reproduce them, and read them back.
    use crate::crypto::testvec::Vector;
    let dir = tempfile::tempdir().unwrap();
    let mut xattrs = sample();
    xattrs.has_xattrs = true;
    xattrs.size = 1 << 20;
    xattrs.extents = vec![Extent::Chunk {
        len: 1 << 20,
        id: ChunkId([0xab; 32]),
    }];
    let mut empty = sample();
    empty.size = 0;
    empty.extents = Vec::new();
    let three = vec![
        ([0x80; 16], xattrs),
        ([0x10; 16], sample()),
        ([0xc0; 16], empty),
    ];
    for (name, rows, generation) in [
        ("files-cache-three-rows.txt", three, 12),
        ("files-cache-empty.txt", Vec::new(), -1),
    ] {
        let path = cache_path(dir.path(), "v");
        let mut w = CacheWriter::create(&path, generation).unwrap().unwrap();
        w.block_target = w_target();
        for (h, f) in &rows {
            w.insert(h, f).unwrap();
        }
        w.commit().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let trailer = &bytes[bytes.len() - 64..];
        let mut v = Vector::default();
        v.field("expect", "success")
            .field("block-target", w_target())
            .field("gc-generation", generation)
            .field("row-count", rows.len())
            .field("block-count", u64_at(trailer, 16))
            .field("index-offset", u64_at(trailer, 24));
        for (h, f) in &rows {
            v.field(
                &format!("row-{}", hex::encode(h)),
                format!(
                    "size={} mtime_ns={} ctime_ns={} ino={} dev={} has_xattrs={} extents={}",
                    f.size,
                    f.mtime_ns,
                    f.ctime_ns,
                    f.ino,
                    f.dev,
                    u8::from(f.has_xattrs),
                    f.extents.len()
                ),
            );
        }
        v.set_data_hex(&bytes);
        v.check_or_write(name);
        let r = CacheReader::open(&path).unwrap();
        assert_eq!(r.gc_generation(), generation);
        for (h, f) in &rows {
            assert_eq!(r.get(h).as_ref(), Some(f));
        }
        assert_eq!(r.get(&[0x11; 16]), None);
    }
}

#[test]
fn leftovers_of_a_killed_writer_are_cleaned_by_the_next() {
    // A writer killed mid-run leaves `.new` (locked by nobody now) and perhaps `.new.runs`.
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(suffixed(&path, ".new"), b"half a cache").unwrap();
    std::fs::write(suffixed(&path, ".new.runs"), vec![7u8; 1000]).unwrap();
    let mut w = CacheWriter::create(&path, 1).unwrap().unwrap();
    assert!(!suffixed(&path, ".new.runs").exists());
    w.run_bytes = 1;
    w.insert(&[4; 16], &sample()).unwrap();
    w.insert(&[2; 16], &sample()).unwrap();
    w.commit().unwrap();
    assert!(!suffixed(&path, ".new.runs").exists());
    let r = CacheReader::open(&path).unwrap();
    assert_eq!(r.get(&[2; 16]), Some(sample()));
    assert_eq!(r.get(&[4; 16]), Some(sample()));
}

#[test]
fn a_writer_whose_write_failed_never_renames_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path(), "c");
    written(&path, &[([1; 16], sample())]);
    let mut w = CacheWriter::create(&path, 2).unwrap().unwrap();
    w.run_bytes = 1;
    w.insert(&[3; 16], &sample()).unwrap();
    w.insert(&[4; 16], &sample()).unwrap();
    // The runs are cut short under the writer: the merge cannot read them back.
    w.runs_file.as_ref().unwrap().set_len(10).unwrap();
    assert!(w.prepare().is_err());
    assert!(w.insert(&[5; 16], &sample()).is_err());
    assert!(
        w.commit().is_err(),
        "a failed cache is not renamed into place"
    );
    // The old cache is still the one in place.
    let r = CacheReader::open(&path).unwrap();
    assert_eq!(r.gc_generation(), 7);
    assert_eq!(r.get(&[1; 16]), Some(sample()));
}
