//! A large file's extent list split into pieces (format-spec/manifest.md "Split extent lists"):
//! an edit of the file stores only the pieces around it, and the file still reads back.

use std::fs;
use std::os::unix::fs::FileExt;

use super::tests::{content, entries, find, opts, with_chunker, write};
use super::*;
use crate::format::manifest::{MANIFEST_MAGIC_V3, split_extents};
use crate::restore::testutil::noise;

#[test]
fn an_edited_large_file_stores_only_the_pieces_around_its_edits() {
    // Chunks of about 4 KiB, so that a few MiB make a list of thousands of extents.
    let t = with_chunker(ChunkerParams {
        min_size: 1024,
        avg_size: 4096,
        max_size: 16384,
        normalization: 1,
    });
    let src = t.path("src");
    let mut big = noise(5, 12 << 20);
    write(&src.join("big"), &big);
    let first = ingest(&t.repo, &opts("c", &src)).unwrap();
    let e = entries(&t, first.session_id());
    let Body::File { extents, .. } = &find(&e, b"big").body else {
        panic!("not a file")
    };
    let pieces = split_extents(extents).len();
    assert!(pieces >= 10, "{} extents in {pieces} pieces", extents.len());
    let index = t.repo.index().unwrap();
    let root = index.session_root(first.session_id()).unwrap();
    let reader = t.reader();
    let v3 = root
        .iter()
        .filter(|id| {
            reader
                .read_chunk(id)
                .unwrap()
                .starts_with(MANIFEST_MAGIC_V3)
        })
        .count();
    assert!(
        v3 >= pieces - 1,
        "{v3} version 3 chunks for {pieces} pieces"
    );

    // Three 4 KiB overwrites far apart.
    let file = fs::OpenOptions::new()
        .write(true)
        .open(src.join("big"))
        .unwrap();
    for (i, at) in [1usize << 20, 6 << 20, 11 << 20].into_iter().enumerate() {
        let patch = vec![0x41 + i as u8; 4096];
        file.write_all_at(&patch, at as u64).unwrap();
        big[at..at + 4096].copy_from_slice(&patch);
    }
    drop(file);
    let second = ingest(&t.repo, &opts("c", &src)).unwrap();
    let after = index.session_root(second.session_id()).unwrap();
    let new: Vec<_> = after.iter().filter(|id| !root.contains(id)).collect();
    // Each edit changes one or two pieces (a piece is a manifest chunk of its own); the rest
    // of the list dedups with the first session's chunks.
    assert!(
        (3..=8).contains(&new.len()),
        "{} new manifest chunks of {}",
        new.len(),
        after.len()
    );
    assert!(after.len() >= pieces);
    let e = entries(&t, second.session_id());
    assert_eq!(content(&t, find(&e, b"big")), big);
}
