use super::*;
use crate::index::SessionState;

struct Fixture {
    dir: tempfile::TempDir,
    index: Index,
    key: KeyId,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("packs")).unwrap();
    let index = Index::create(&dir.path().join("index.db"), "00".repeat(16).as_str()).unwrap();
    let key = index.insert_data_key(b"wrapped", 1).unwrap();
    Fixture { dir, index, key }
}

fn chunk(n: u32, key: KeyId, size: usize) -> PendingChunk {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_le_bytes());
    PendingChunk {
        id: ChunkId(id),
        kind: ChunkKind::Data,
        key_id: key,
        envelope: (0..size).map(|i| (i as u32 ^ n) as u8).collect(),
        refs: vec![],
    }
}

fn writer_id(n: u8) -> WriterId {
    WriterId(hex::encode([n; 16]))
}

#[test]
fn write_seal_and_read_back() {
    let f = fixture();
    let mut w = PackWriter::new(f.dir.path(), &f.index, &writer_id(1), 1000);
    for n in 0..10 {
        assert!(w.append(chunk(n, f.key, 300)).unwrap());
    }
    // Duplicates in the open pack and in sealed packs are skipped.
    assert!(!w.append(chunk(9, f.key, 300)).unwrap());
    assert!(!w.append(chunk(0, f.key, 300)).unwrap());
    let stats = w.finish().unwrap();
    assert_eq!(stats.chunks, 10);
    assert_eq!(stats.bytes, 10 * 348);
    // 32 + 3 * 348 = 1076 >= 1000: three records per pack, then one left over.
    assert_eq!(stats.packs, 4);

    let packs = f.index.packs().unwrap();
    assert_eq!(packs.len(), 4);
    let reader = PackReader::new(f.dir.path());
    for p in &packs {
        assert!(p.sealed);
        let path = pack_path(f.dir.path(), &p.name);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), p.size);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode_pack_header(&bytes).unwrap(), p.name);
    }
    for n in 0..10 {
        let original = chunk(n, f.key, 300);
        let loc = f.index.lookup_chunk(&original.id).unwrap().unwrap();
        assert_eq!(reader.read_envelope(&loc).unwrap(), original.envelope);
        let record = reader.read_record(&loc).unwrap();
        assert_eq!(*blake3::hash(&record).as_bytes(), loc.stored_hash);
        assert_eq!(record.len(), loc.length as usize);
    }
}

/// With overlapped syncs, every pack is still committed by `finish`, in seal order, and a
/// chunk is never in the index while its pack is waiting for its sync.
#[test]
fn overlapped_syncs_commit_every_pack_in_order() {
    let f = fixture();
    let mut w = PackWriter::new(f.dir.path(), &f.index, &writer_id(1), 1000);
    w.overlap_syncs(2);
    for n in 0..30 {
        assert!(w.append(chunk(n, f.key, 300)).unwrap());
        let pending: HashSet<ChunkId> = w
            .syncing
            .iter()
            .flat_map(|s| s.chunks.iter().map(|c| c.id))
            .collect();
        assert!(w.syncing.len() <= 2);
        for id in &pending {
            assert!(
                f.index.lookup_chunk(id).unwrap().is_none(),
                "committed before its sync"
            );
        }
        // Committed chunks are a prefix of the appended ones.
        let committed = (0..=n)
            .take_while(|m| {
                f.index
                    .lookup_chunk(&chunk(*m, f.key, 1).id)
                    .unwrap()
                    .is_some()
            })
            .count() as u32;
        assert!((committed..=n).all(|m| {
            f.index
                .lookup_chunk(&chunk(m, f.key, 1).id)
                .unwrap()
                .is_none()
        }));
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.chunks, 30);
    assert_eq!(stats.packs, 10);
    let packs = f.index.packs().unwrap();
    assert_eq!(packs.len(), 10);
    assert!(packs.iter().all(|p| p.sealed));
    let reader = PackReader::new(f.dir.path());
    for n in 0..30 {
        let original = chunk(n, f.key, 300);
        let loc = f.index.lookup_chunk(&original.id).unwrap().unwrap();
        assert_eq!(reader.read_envelope(&loc).unwrap(), original.envelope);
    }
}

#[test]
fn nothing_appended_writes_nothing() {
    let f = fixture();
    let w = PackWriter::new(f.dir.path(), &f.index, &writer_id(1), 1000);
    assert_eq!(w.finish().unwrap(), WriteStats::default());
    assert!(f.index.packs().unwrap().is_empty());
}

/// A manifest chunk's references are recorded when its pack is sealed, and a reference to a
/// chunk that is not stored poisons the writer (nothing is sealed).
#[test]
fn manifest_refs_and_poisoning() {
    let f = fixture();
    let mut w = PackWriter::new(f.dir.path(), &f.index, &writer_id(1), 1 << 20);
    let data = chunk(1, f.key, 10);
    let data_id = data.id;
    w.append(data).unwrap();
    let mut manifest = chunk(2, f.key, 10);
    manifest.kind = ChunkKind::Manifest;
    manifest.refs = vec![data_id];
    let manifest_id = manifest.id;
    w.append(manifest).unwrap();
    w.finish().unwrap();
    let s = f.index.create_session("c", &writer_id(1), 1).unwrap();
    f.index
        .finish_session(
            s,
            SessionState::Complete,
            2,
            &Default::default(),
            &[manifest_id],
        )
        .unwrap();
    assert_eq!(f.index.sessions_using_chunk(&data_id).unwrap(), [s]);

    let mut w = PackWriter::new(f.dir.path(), &f.index, &writer_id(2), 100);
    let mut bad = chunk(3, f.key, 100);
    bad.kind = ChunkKind::Manifest;
    bad.refs = vec![ChunkId([0xee; 32])];
    let err = w.append(bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    let err = w.append(chunk(4, f.key, 10)).unwrap_err();
    assert!(
        err.message().contains("failed earlier"),
        "{}",
        err.message()
    );
    assert_eq!(f.index.writing_packs_of(&writer_id(2).0).unwrap().len(), 1);
}

/// Write one pack holding chunks 0..3 and return the location of chunk 1.
fn one_pack(f: &Fixture) -> ChunkLocation {
    let mut w = PackWriter::new(f.dir.path(), &f.index, &writer_id(1), 1 << 20);
    for n in 0..3 {
        w.append(chunk(n, f.key, 100)).unwrap();
    }
    w.finish().unwrap();
    f.index
        .lookup_chunk(&chunk(1, f.key, 0).id)
        .unwrap()
        .unwrap()
}

#[test]
fn reader_detects_a_flipped_header_byte() {
    let f = fixture();
    let loc = one_pack(&f);
    let path = pack_path(f.dir.path(), &loc.pack);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[loc.offset as usize + 9] ^= 0x40; // inside the chunk id of the record header
    std::fs::write(&path, &bytes).unwrap();
    let err = PackReader::new(f.dir.path())
        .read_envelope(&loc)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.message().contains(&loc.pack.to_hex()),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains(&loc.id.to_hex()),
        "{}",
        err.message()
    );

    // A bad record magic, and a key id that differs from the index.
    bytes[loc.offset as usize + 9] ^= 0x40;
    bytes[loc.offset as usize] = b'X';
    std::fs::write(&path, &bytes).unwrap();
    let err = PackReader::new(f.dir.path()).read_record(&loc).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("bad magic"), "{}", err.message());
    bytes[loc.offset as usize] = b'R';
    std::fs::write(&path, &bytes).unwrap();
    let mut wrong_key = loc.clone();
    wrong_key.key_id = KeyId(99);
    let err = PackReader::new(f.dir.path())
        .read_record(&wrong_key)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.message().contains("does not match the index"),
        "{}",
        err.message()
    );
    // And the untouched record still reads.
    assert_eq!(
        PackReader::new(f.dir.path())
            .read_envelope(&loc)
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn reader_detects_a_bad_pack_header() {
    let f = fixture();
    let loc = one_pack(&f);
    let path = pack_path(f.dir.path(), &loc.pack);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1; // the pack name in the header
    std::fs::write(&path, &bytes).unwrap();
    let err = PackReader::new(f.dir.path())
        .read_envelope(&loc)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.message().contains("header names pack"),
        "{}",
        err.message()
    );
    bytes[20] ^= 1;
    bytes[8] = 9; // version
    std::fs::write(&path, &bytes).unwrap();
    let err = PackReader::new(f.dir.path())
        .read_envelope(&loc)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
}

#[test]
fn reader_detects_a_truncated_pack() {
    let f = fixture();
    let loc = one_pack(&f);
    let path = pack_path(f.dir.path(), &loc.pack);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(loc.offset + 60).unwrap();
    let err = PackReader::new(f.dir.path())
        .read_envelope(&loc)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("truncated"), "{}", err.message());
    assert!(
        err.message().contains(&loc.pack.to_hex()),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains(&loc.id.to_hex()),
        "{}",
        err.message()
    );
}

#[test]
fn reader_refuses_an_impossible_location_without_allocating_it() {
    let f = fixture();
    let mut loc = one_pack(&f);
    loc.length = u32::MAX;
    let err = PackReader::new(f.dir.path()).read_record(&loc).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("truncated"), "{}", err.message());
    loc.length = 10;
    let err = PackReader::new(f.dir.path()).read_record(&loc).unwrap_err();
    assert!(
        err.message().contains("impossible location"),
        "{}",
        err.message()
    );
}

#[test]
fn reader_reports_a_missing_pack() {
    let f = fixture();
    let loc = one_pack(&f);
    let reader = PackReader::new(f.dir.path());
    std::fs::remove_file(pack_path(f.dir.path(), &loc.pack)).unwrap();
    let err = reader.read_envelope(&loc).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(
        err.message().split(" (").next().unwrap(),
        format!("pack {} is missing", loc.pack)
    );
}

#[test]
fn reader_is_shared_between_threads() {
    fn assert_sync<T: Sync + Send>() {}
    assert_sync::<PackReader>();
    let f = fixture();
    let loc = one_pack(&f);
    let reader = PackReader::new(f.dir.path());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20 {
                    assert_eq!(reader.read_envelope(&loc).unwrap().len(), 100);
                }
            });
        }
    });
}

/// Two writers, each with its own connection, on two threads, into one repository.
#[test]
fn two_writers_on_two_threads_both_commit() {
    let f = fixture();
    let root = f.dir.path();
    std::thread::scope(|s| {
        for t in 0..2u32 {
            s.spawn(move || {
                let index = Index::open(&root.join("index.db")).unwrap();
                let mut w = PackWriter::new(root, &index, &writer_id(t as u8 + 1), 4096);
                // Chunk 1000 is written by both: first sealed copy wins, both succeed.
                w.append(chunk(1000, KeyId(1), 500)).unwrap();
                for n in 0..50 {
                    w.append(chunk(t * 100 + n, KeyId(1), 500)).unwrap();
                }
                let stats = w.finish().unwrap();
                assert_eq!(stats.chunks, 51);
            });
        }
    });
    let reader = PackReader::new(root);
    for n in (0..50).chain(100..150).chain([1000]) {
        let c = chunk(n, f.key, 500);
        let loc = f.index.lookup_chunk(&c.id).unwrap().expect("chunk stored");
        assert_eq!(reader.read_envelope(&loc).unwrap(), c.envelope);
    }
    assert!(f.index.packs().unwrap().iter().all(|p| p.sealed));
}

/// The writer produces exactly the record of `vectors/pack-one-record.txt` for its inputs, and
/// the index gets the vector's offset, length and stored hash.
#[test]
fn writer_matches_the_one_record_vector() {
    use crate::format::pack::vector_file::{header, parse, path, pattern};
    let (headers, expected) = parse(&std::fs::read_to_string(path("pack-one-record.txt")).unwrap());
    let f = fixture();
    let key = KeyId(0x0102_0304_0506_0708);
    f.index
        .conn()
        .execute(
            "INSERT INTO data_keys (id, wrapped, created) VALUES (?1, x'00', 0)",
            [key.0 as i64],
        )
        .unwrap();
    let mut id = [0u8; 32];
    id.copy_from_slice(&pattern(2, 32));
    let mut envelope = vec![1u8, 0u8];
    envelope.extend_from_slice(&pattern(3, 24));
    envelope.extend_from_slice(&pattern(4, 40));
    let mut w = PackWriter::new(f.dir.path(), &f.index, &writer_id(1), 1 << 20);
    w.append(PendingChunk {
        id: ChunkId(id),
        kind: ChunkKind::Data,
        key_id: key,
        envelope,
        refs: vec![],
    })
    .unwrap();
    w.finish().unwrap();
    let loc = f.index.lookup_chunk(&ChunkId(id)).unwrap().unwrap();
    let written = std::fs::read(pack_path(f.dir.path(), &loc.pack)).unwrap();
    // The pack name is random; everything after the header is fixed by the inputs.
    assert_eq!(written[..16], expected[..16]);
    assert_eq!(written[32..], expected[32..]);
    assert_eq!(
        Some(loc.offset.to_string().as_str()),
        header(&headers, "record-offset")
    );
    assert_eq!(
        Some(loc.length.to_string().as_str()),
        header(&headers, "record-length")
    );
    assert_eq!(
        Some(hex::encode(loc.stored_hash).as_str()),
        header(&headers, "stored-hash")
    );
}

/// Ids of committed packs are kept as their first 8 bytes: a match is confirmed in the index,
/// so another id with the same prefix, or a chunk the index no longer has, is written.
#[test]
fn committed_ids_are_remembered_by_prefix_and_confirmed_in_the_index() {
    let f = fixture();
    let mut w = PackWriter::new(f.dir.path(), &f.index, &writer_id(2), 1000);
    // Three records fill a pack, which is sealed and committed at once.
    for n in 0..4 {
        assert!(w.append(chunk(n, f.key, 300)).unwrap());
    }
    assert!(f.index.has_chunk(&chunk(0, f.key, 1).id).unwrap());
    assert!(!w.append(chunk(0, f.key, 300)).unwrap());
    let mut twin = chunk(1, f.key, 300);
    twin.id.0[31] = 0xff;
    assert!(w.append(twin).unwrap());
    f.index
        .conn()
        .execute(
            "DELETE FROM chunks WHERE id = ?1",
            [&chunk(2, f.key, 1).id.0],
        )
        .unwrap();
    assert!(w.append(chunk(2, f.key, 300)).unwrap());
    assert_eq!(w.finish().unwrap().chunks, 6);
    assert!(f.index.has_chunk(&chunk(2, f.key, 1).id).unwrap());
}
