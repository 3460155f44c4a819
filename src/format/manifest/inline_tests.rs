//! Inline extents (manifest version 2): which chunks carry the version 2 magic, what readers of
//! each version accept, and that inline content never leaves a manifest.

use super::tests::{KEY, build, dir, file, id, raw_chunk, read, round_trip};
use super::*;
use crate::error::ErrorKind;

pub(super) fn inline(data: &[u8]) -> Extent {
    Extent::Inline {
        data: data.to_vec(),
    }
}

/// One directory of 24 files: the first 12 and every third after them a chunk extent, the
/// others inline text.
pub(super) fn inline_tree() -> Vec<Entry> {
    let mut out = vec![dir(""), dir("mail")];
    for n in 0..24u64 {
        let path = format!("mail/msg-{n:04}");
        let extent = if n < 12 || n % 3 == 0 {
            Extent::Chunk {
                len: 2000 + n as u32,
                id: id(n),
            }
        } else {
            inline(format!("From: sender-{n}\nSubject: note {n}\n\nbody {n}\n").as_bytes())
        };
        out.push(file(&path, vec![extent]));
    }
    out
}

const SMALL: ManifestParams = ManifestParams {
    min_size: 256,
    avg_size: 1024,
    max_size: 4096,
};

#[test]
fn a_chunk_is_version_2_exactly_when_it_holds_inline_content() {
    let entries = inline_tree();
    let chunks = round_trip(SMALL, &entries);
    assert!(chunks.len() > 1);
    let mut reader = ManifestReader::new();
    let mut versions = Vec::new();
    for chunk in &chunks {
        let holds_inline = reader.feed(&chunk.bytes).unwrap().iter().any(|e| {
            matches!(&e.body, Body::File { extents, .. } if extents.iter().any(Extent::is_inline))
        });
        let magic: &[u8] = if holds_inline {
            MANIFEST_MAGIC_V2
        } else {
            MANIFEST_MAGIC
        };
        assert_eq!(&chunk.bytes[..8], magic);
        versions.push(chunk.bytes[7]);
    }
    // The tree gives both kinds of chunk.
    assert!(
        versions.contains(&b'1') && versions.contains(&b'2'),
        "{versions:?}"
    );
    // Only chunk extents are references; inline content names no chunk.
    let refs: Vec<ChunkId> = chunks.iter().flat_map(|c| c.refs.clone()).collect();
    assert_eq!(refs.len(), 16);
    for chunk in &chunks {
        assert_eq!(chunk_references(&chunk.bytes).unwrap(), chunk.refs);
    }
}

#[test]
fn without_inline_content_the_chunks_are_the_version_1_bytes() {
    let entries = super::tests::realistic(3, 40, true);
    let chunks = build(SMALL, &entries).unwrap();
    assert!(chunks.iter().all(|c| &c.bytes[..8] == MANIFEST_MAGIC));
    // Replacing one file's chunk extent by inline content changes the magic of its chunk only.
    let mut edited = entries.clone();
    let Body::File { extents, size } = &mut edited[5].body else {
        panic!("entry 5 is a file")
    };
    *extents = vec![inline(b"now inline")];
    *size = 10;
    let after = round_trip(SMALL, &edited);
    let v2: Vec<_> = after
        .iter()
        .filter(|c| &c.bytes[..8] == MANIFEST_MAGIC_V2)
        .collect();
    assert_eq!(v2.len(), 1);
}

#[test]
fn inline_extents_are_refused_where_they_may_not_be() {
    // In a version 1 chunk.
    let v1 = raw_chunk(&[dir(""), file("a", vec![inline(b"x")])]);
    let err = read([v1.as_slice()]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("outside a version 2"), "{err}");
    let mut v2 = v1.clone();
    v2[..8].copy_from_slice(MANIFEST_MAGIC_V2);
    assert_eq!(read([v2.as_slice()]).unwrap().len(), 2);
    // In an extent list outside a manifest (the files cache): never content in the clear.
    let mut list = Vec::new();
    encode_extents(&[inline(b"secret")], &mut list);
    let err = decode_extents(&list).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("tag 2"), "{err}");
}

#[test]
fn inline_extents_out_of_bounds_are_refused_by_both_sides() {
    for (data, words) in [
        (Vec::new(), "length 0"),
        (vec![b'x'; MAX_INLINE_LEN + 1], "at most 4096"),
    ] {
        let entries = vec![dir(""), file_unchecked("a", data.clone())];
        let mut builder = ManifestBuilder::new(ManifestParams::DEFAULT, KEY);
        builder.push(&entries[0]).unwrap();
        let err = builder.push(&entries[1]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        assert!(err.message().contains(words), "{err}");
        let mut chunk = raw_chunk(&entries);
        chunk[..8].copy_from_slice(MANIFEST_MAGIC_V2);
        let err = read([chunk.as_slice()]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains(words), "{err}");
    }
    // The longest allowed one is fine.
    let longest = file("a", vec![inline(&[b'y'; MAX_INLINE_LEN])]);
    round_trip(ManifestParams::DEFAULT, &[dir(""), longest]);
}

/// A file entry with one inline extent, its size whatever the data's length (even 0).
fn file_unchecked(path: &str, data: Vec<u8>) -> Entry {
    let size = data.len() as u64;
    Entry {
        path: path.as_bytes().to_vec(),
        meta: super::tests::meta(1),
        body: Body::File {
            size,
            extents: vec![Extent::Inline { data }],
        },
    }
}

/// `n` small files in directories of 100, each inline; the files in `edited` have a line
/// appended.
fn small_files(n: usize, edited: &[usize]) -> Vec<Entry> {
    let mut out = vec![dir("")];
    for i in 0..n {
        if i % 100 == 0 {
            out.push(dir(&format!("d{:03}", i / 100)));
        }
        let mut data = format!("message {i}: {}\n", "text ".repeat(i % 37)).into_bytes();
        let mut entry = file(&format!("d{:03}/m{i:05}", i / 100), vec![]);
        if edited.contains(&i) {
            data.extend_from_slice(
                format!("appended line for {i}, longer than it was\n").as_bytes(),
            );
            entry.meta.mtime_sec += 86400;
        }
        entry.body = Body::File {
            size: data.len() as u64,
            extents: vec![Extent::Inline { data }],
        };
        out.push(entry);
    }
    out
}

#[test]
fn editing_inline_content_never_moves_a_cut() {
    let params = ManifestParams {
        min_size: 512,
        avg_size: 2048,
        max_size: 65536,
    };
    let before = round_trip(params, &small_files(3000, &[]));
    let edited: Vec<usize> = (0..3000).step_by(97).collect();
    let after = round_trip(params, &small_files(3000, &edited));
    // The same entries in each chunk: every cut stays where it was.
    let per_chunk = |chunks: &[ManifestChunk]| {
        let mut reader = ManifestReader::new();
        chunks
            .iter()
            .map(|c| reader.feed(&c.bytes).unwrap().len())
            .collect::<Vec<_>>()
    };
    assert_eq!(per_chunk(&before), per_chunk(&after));
    assert!(before.len() > 50, "{} chunks", before.len());
    // So only the chunks holding an edited file change, one per edit at most.
    let changed = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a.bytes != b.bytes)
        .count();
    assert!(
        changed > 0 && changed <= edited.len(),
        "{changed} chunks changed"
    );
}
