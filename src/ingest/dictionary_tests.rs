//! An ingest that trains a dictionary, and everything that must follow it: restore, check
//! with and without the identity, a mirror, a client restoring over the fetch protocol, gc.

use std::path::Path;

use super::tests::{age_tree, opts};
use super::*;
use crate::check::{CheckOptions, check};
use crate::crypto::wrap::unwrap_data_key_scoped;
use crate::ids::ChunkId;
use crate::restore::testutil::{TestRepo, small_files};
use crate::store::PackReader;

/// The envelope versions of `session`'s chunks (manifest and data), by count.
fn versions(t: &TestRepo, session: SessionId) -> [usize; 3] {
    let reader = t.reader();
    let index = t.repo.index().unwrap();
    let packs = PackReader::new(t.repo.root());
    let mut ids: Vec<ChunkId> = index.session_root(session).unwrap();
    reader
        .for_each_entry(session, &mut |e| {
            if let Body::File { extents, .. } = &e.body {
                for x in extents {
                    if let crate::format::manifest::Extent::Chunk { id, .. } = x {
                        ids.push(*id);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let mut out = [0; 3];
    for id in ids {
        let loc = index.lookup_chunk(&id).unwrap().unwrap();
        out[packs.read_envelope(&loc).unwrap()[0] as usize] += 1;
    }
    out
}

fn assert_same_tree(source: &Path, restored: &Path) {
    for e in walk_files(source) {
        let rel = e.strip_prefix(source).unwrap();
        assert_eq!(
            std::fs::read(&e).unwrap(),
            std::fs::read(restored.join(rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
}

fn walk_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn many_new_small_chunks_train_a_dictionary_that_restore_and_check_use() {
    let t = TestRepo::new();
    let src = t.path("src");
    small_files(&src, 900);
    age_tree(&src);
    let report = ingest(&t.repo, &opts("web", &src)).unwrap();
    let session = SessionId(report.session);

    // Two keys: the first, and the one that carries the dictionary.
    let index = t.repo.index().unwrap();
    let keys = index.data_key_ids().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let ids = t.identities();
    let first = unwrap_data_key_scoped(&index.data_key(keys[0]).unwrap(), &ids).unwrap();
    let second = unwrap_data_key_scoped(&index.data_key(keys[1]).unwrap(), &ids).unwrap();
    assert!(first.key.dictionary().is_none());
    assert!(second.key.dictionary().is_some());
    // Its file beside the packs is the same as its row.
    assert_eq!(
        std::fs::read(crate::store::records::data_key_path(t.repo.root(), keys[1])).unwrap(),
        index.data_key(keys[1]).unwrap()
    );
    let [_, v1, v2] = versions(&t, session);
    assert!(
        v2 > 300 && v1 > 0,
        "{v1} version 1 and {v2} version 2 envelopes"
    );

    let target = t.path("restored");
    let restored = t.restore_all(session, &target);
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert_same_tree(&src, &target);

    for identities in [Some(t.identities()), None] {
        let report = check(
            &t.repo,
            &CheckOptions {
                read_data: true,
                identities,
            },
        )
        .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    // An unchanged ingest stores nothing new, so it trains nothing: one more key only.
    ingest(&t.repo, &opts("web", &src)).unwrap();
    assert_eq!(t.repo.index().unwrap().data_key_ids().unwrap().len(), 3);
}

#[test]
fn a_few_small_files_train_nothing() {
    let t = TestRepo::new();
    let src = t.path("src");
    small_files(&src, 40);
    let session = SessionId(ingest(&t.repo, &opts("web", &src)).unwrap().session);
    assert_eq!(t.repo.index().unwrap().data_key_ids().unwrap().len(), 1);
    assert_eq!(versions(&t, session)[2], 0);
}

/// gc keeps the dictionary's key while a kept session still needs chunks sealed under it, and
/// the session then restores equal.
#[test]
fn gc_keeps_the_dictionary_key_that_kept_chunks_need() {
    use crate::gc::{ClientRules, PruneOptions, Rules, prune};
    let t = TestRepo::new();
    let src = t.path("src");
    small_files(&src, 900);
    ingest(&t.repo, &opts("web", &src)).unwrap();
    let dict_key = t.repo.index().unwrap().data_key_ids().unwrap()[1];
    std::fs::write(
        src.join("new.txt"),
        b"one more file, so the manifest changes".repeat(40),
    )
    .unwrap();
    let kept = SessionId(ingest(&t.repo, &opts("web", &src)).unwrap().session);
    let rules = Rules::same(ClientRules::utc(crate::retention::Policy {
        keep_last: 1,
        ..Default::default()
    }));
    prune(&t.repo, &PruneOptions::new(rules)).unwrap();
    let index = t.repo.index().unwrap();
    assert_eq!(index.sessions(None).unwrap().len(), 1);
    assert!(index.data_key_ids().unwrap().contains(&dict_key));
    let target = t.path("restored");
    let restored = t.restore_all(kept, &target);
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert_same_tree(&src, &target);
}

/// A mirror carries the key with its dictionary: restoring from the mirror gives the tree.
#[test]
fn a_mirror_restores_chunks_compressed_with_a_dictionary() {
    let t = TestRepo::new();
    let src = t.path("src");
    small_files(&src, 900);
    let session = SessionId(ingest(&t.repo, &opts("web", &src)).unwrap().session);
    let dest = t.path("mirror");
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let serve_opts = crate::mirror::ServeOptions {
        name: "test".into(),
        repository: dest.clone(),
        follow_deletes: false,
    };
    let server =
        std::thread::spawn(move || crate::mirror::serve(b.try_clone().unwrap(), b, &serve_opts));
    let push_opts = crate::mirror::PushOptions {
        target: "m".into(),
        follow_deletes: false,
    };
    crate::mirror::push(&t.repo, a.try_clone().unwrap(), a, &push_opts).unwrap();
    server.join().unwrap().unwrap();
    let mirror = crate::repo::Repo::open(&dest).unwrap();
    let reader = crate::reader::SessionReader::new(&mirror, t.identities()).unwrap();
    let target = t.path("restored");
    let report = crate::restore::restore(
        &reader,
        session,
        &crate::restore::RestoreOptions {
            target: target.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_same_tree(&src, &target);
}
