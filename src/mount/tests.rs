//! The lazy tree over a session cut into many small manifest chunks: every path is found,
//! every directory lists exactly its children (also when resumed after each name, as the
//! kernel's readdir does), and a file continued in kind-9 entries reads as one extent list.

use std::collections::BTreeMap;

use super::tree::{Pos, SessionTree, read_pieces};
use crate::format::manifest::{Body, Entry, Extent};
use crate::repo::Repo;
use crate::restore::testutil::{Piece, SessionBuilder, TestRepo, meta};

/// A repository whose manifest chunks are cut at 256 / 512 / 1024 bytes.
fn small_manifest_chunks() -> TestRepo {
    let mut t = TestRepo::new();
    let toml = t.repo.root().join("repository.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let changed = text.replace(
        "[manifest]\nmin-size = 512\navg-size = 1024\nmax-size = 65536",
        "[manifest]\nmin-size = 256\navg-size = 512\nmax-size = 1024",
    );
    assert_ne!(changed, text, "repository.toml has no default [manifest]");
    std::fs::write(&toml, changed).unwrap();
    t.repo = Repo::open(t.repo.root()).unwrap();
    t
}

/// Extents past one kind-2 entry: the rest goes into a kind-9 continuation.
const HUGE_EXTENTS: u64 = 32768 + 5;

fn session(t: &TestRepo) -> crate::ids::SessionId {
    let mut s = SessionBuilder::new(t);
    s.dir(b"a").dir(b"a/b");
    for i in 0..40 {
        s.file(format!("a/b/f{i:02}").as_bytes(), format!("{i}").as_bytes());
    }
    let holes = (0..HUGE_EXTENTS).map(|_| Piece::Hole(1)).collect();
    s.file_pieces(b"a/b/huge", meta(0o600, 1), holes);
    s.dir(b"a/c").file(b"a/c/x", b"x");
    s.file(b"a/d", b"d");
    s.dir(b"z");
    for i in 0..30 {
        s.file(format!("z/g{i:02}").as_bytes(), b"g");
    }
    s.commit()
}

#[test]
fn paths_are_found_and_directories_list_their_children_across_chunks() {
    let t = small_manifest_chunks();
    let id = session(&t);
    let reader = t.reader();
    let chunks = reader.manifest_root(id).unwrap().len();
    assert!(chunks >= 8, "only {chunks} manifest chunks");
    let tree = SessionTree::open(&reader, id, &mut |lost| panic!("lost {lost:?}")).unwrap();
    let mut load = |tree: &SessionTree, seq| read_pieces(&reader, tree, seq);

    let mut entries: Vec<Entry> = Vec::new();
    reader
        .for_each_entry(id, &mut |e| {
            entries.push(e);
            Ok(())
        })
        .unwrap();
    let mut children: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for e in &entries {
        let (found_pos, found) = tree.find(&e.path, &mut load).unwrap().unwrap();
        assert_eq!(found.path, e.path);
        assert_eq!(
            tree.entry_at(found_pos, &mut load).unwrap().unwrap().path,
            e.path
        );
        if !e.path.is_empty() {
            let parent = match e.path.iter().rposition(|&b| b == b'/') {
                Some(i) => e.path[..i].to_vec(),
                None => Vec::new(),
            };
            children.entry(parent).or_default().push(e.path.clone());
        }
    }
    assert!(tree.find(b"a/b/nope", &mut load).unwrap().is_none());
    assert!(tree.find(b"zz", &mut load).unwrap().is_none());

    for e in entries.iter().filter(|e| matches!(e.body, Body::Dir)) {
        let (pos, _) = tree.find(&e.path, &mut load).unwrap().unwrap();
        let want = children.remove(&e.path).unwrap_or_default();
        // All at once.
        let mut got = Vec::new();
        let end = tree
            .children(&e.path, tree.next(pos), &mut load, &mut |_, c, _| {
                got.push(c.path.clone());
                Ok(true)
            })
            .unwrap();
        assert_eq!(
            got,
            want,
            "children of {:?}",
            String::from_utf8_lossy(&e.path)
        );
        assert_eq!(end, tree.end());
        // One name per call, resuming where the last call stopped.
        let mut got = Vec::new();
        let mut from = tree.next(pos);
        loop {
            let mut taken = false;
            let resume = tree
                .children(&e.path, from, &mut load, &mut |_, c, after| {
                    if taken {
                        return Ok(false);
                    }
                    taken = true;
                    got.push(c.path.clone());
                    from = after;
                    Ok(true)
                })
                .unwrap();
            if !taken {
                assert_eq!(resume, tree.end());
                break;
            }
        }
        assert_eq!(got, want, "resumed children of {:?}", e.path);
    }
}

#[test]
fn a_continued_file_reads_as_one_extent_list() {
    let t = small_manifest_chunks();
    let id = session(&t);
    let reader = t.reader();
    let tree = SessionTree::open(&reader, id, &mut |lost| panic!("lost {lost:?}")).unwrap();
    let mut load = |tree: &SessionTree, seq| read_pieces(&reader, tree, seq);
    let (pos, entry): (Pos, Entry) = tree.find(b"a/b/huge", &mut load).unwrap().unwrap();
    let Body::File { size, .. } = entry.body else {
        panic!("not a file: {entry:?}");
    };
    assert_eq!(size, HUGE_EXTENTS);
    let extents = tree.file_extents(pos, &mut load).unwrap();
    assert_eq!(extents.len() as u64, HUGE_EXTENTS);
    for (i, (offset, extent)) in extents.iter().enumerate() {
        assert_eq!((*offset, extent), (i as u64, &Extent::Hole { len: 1 }));
    }
    // The continuation is no entry of its own: the next path is found after it.
    assert!(tree.find(b"a/c", &mut load).unwrap().is_some());
}

/// A large file's extent list split into content-defined pieces (manifest version 3) reads
/// back whole through the lazy tree, and the paths after it are found.
#[test]
fn a_split_extent_list_reads_as_one_extent_list() {
    let t = small_manifest_chunks();
    let mut s = SessionBuilder::new(&t);
    let data: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_le_bytes().to_vec()).collect();
    s.file_pieces(
        b"big",
        meta(0o600, 1),
        data.iter().cloned().map(Piece::Data).collect(),
    );
    s.file(b"z", b"z");
    let id = s.commit();
    let reader = t.reader();
    let tree = SessionTree::open(&reader, id, &mut |lost| panic!("lost {lost:?}")).unwrap();
    let mut load = |tree: &SessionTree, seq| read_pieces(&reader, tree, seq);
    let (pos, entry): (Pos, Entry) = tree.find(b"big", &mut load).unwrap().unwrap();
    let Body::File { extents, .. } = &entry.body else {
        panic!("not a file: {entry:?}");
    };
    // The first piece alone is in the entry: the list was split.
    assert!(
        extents.len() < 2000,
        "{} extents in the first piece",
        extents.len()
    );
    let all = tree.file_extents(pos, &mut load).unwrap();
    assert_eq!(all.len(), 2000);
    for (i, (offset, extent)) in all.iter().enumerate() {
        let Extent::Chunk { len, id } = extent else {
            panic!("{extent:?}")
        };
        assert_eq!((*offset, *len), (4 * i as u64, 4));
        assert_eq!(reader.read_chunk(id).unwrap(), data[i]);
    }
    assert!(tree.find(b"z", &mut load).unwrap().is_some());
}
