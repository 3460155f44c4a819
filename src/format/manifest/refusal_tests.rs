//! The refusals of the manifest reader and builder: every bad entry, order, continuation and
//! chunk, with the error kind and the words an administrator sees.

use super::entry::{encode_continued, encode_entry};
use super::tests::{KEY, build, dir, every_kind, file, id, meta, raw_chunk, read, round_trip};
use super::*;
use crate::error::ErrorKind;

fn reader_refuses(chunk: &[u8], kind: ErrorKind, needle: &str) {
    let err = read([chunk]).unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.message().contains(needle), "{err:?} lacks {needle:?}");
}

fn builder_refuses(entries: &[Entry], kind: ErrorKind, needle: &str) {
    let err = build(ManifestParams::DEFAULT, entries).unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.message().contains(needle), "{err:?} lacks {needle:?}");
}

/// Both sides refuse the same bad stream.
fn both_refuse(entries: &[Entry], needle: &str) {
    builder_refuses(entries, ErrorKind::Internal, needle);
    reader_refuses(&raw_chunk(entries), ErrorKind::Corrupt, needle);
}

#[test]
fn bad_entries_are_refused_by_builder_and_reader() {
    let root = dir("");
    let with = |f: &dyn Fn(&mut Entry)| {
        let mut e = file("f", vec![Extent::Chunk { len: 3, id: id(0) }]);
        f(&mut e);
        vec![root.clone(), e]
    };
    both_refuse(&with(&|e| e.meta.mtime_nsec = 1_000_000_000), "nanoseconds");
    both_refuse(&with(&|e| e.meta.mode = 0o100644), "mode");
    both_refuse(
        &with(&|e| e.meta.xattrs = vec![(b"b".to_vec(), vec![]), (b"a".to_vec(), vec![])]),
        "not sorted",
    );
    both_refuse(
        &with(&|e| e.meta.xattrs = vec![(b"a".to_vec(), vec![]), (b"a".to_vec(), vec![1])]),
        "not sorted",
    );
    both_refuse(
        &with(&|e| e.meta.xattrs = vec![(vec![], vec![])]),
        "xattr name",
    );
    both_refuse(
        &with(&|e| {
            e.body = Body::File {
                size: 4,
                extents: vec![],
            }
        }),
        "4",
    );
    both_refuse(
        &with(&|e| {
            e.body = Body::File {
                size: 2,
                extents: vec![Extent::Chunk { len: 3, id: id(0) }],
            }
        }),
        "extents add up to 3 bytes",
    );
    both_refuse(
        &with(&|e| {
            e.body = Body::File {
                size: 0,
                extents: vec![Extent::Hole { len: 0 }],
            }
        }),
        "length 0",
    );
    both_refuse(
        &with(&|e| {
            e.body = Body::File {
                size: 0,
                extents: vec![Extent::Chunk { len: 0, id: id(0) }],
            }
        }),
        "length 0",
    );
    both_refuse(&with(&|e| e.path = b"a/../f".to_vec()), "'..'");
    both_refuse(&with(&|e| e.path = b"f/".to_vec()), "ends with");
    both_refuse(&with(&|e| e.path = Vec::new()), "empty path");
    both_refuse(&[file("f", vec![])], "first entry must be the root");
    both_refuse(&[dir(""), dir("")], "empty path");
}

#[test]
fn order_violations_are_refused_by_builder_and_reader() {
    let f = |p: &str| file(p, vec![]);
    both_refuse(&[dir(""), f("b"), f("a")], "strictly increasing");
    both_refuse(&[dir(""), f("a"), f("a")], "strictly increasing");
    both_refuse(&[dir(""), dir("a"), f("b"), f("a/x")], "parent \"a\"");
    both_refuse(&[dir(""), f("a"), f("a/x")], "parent \"a\"");
    both_refuse(&[dir(""), f("a/x")], "parent \"a\"");
    both_refuse(&[dir(""), dir("b"), f("a")], "strictly increasing");
    // Pre-order is by components: "a/b" comes before "a.c" although '.' < '/'.
    let ok = [dir(""), dir("a"), f("a/b"), f("a.c")];
    round_trip(ManifestParams::DEFAULT, &ok);
    both_refuse(&[dir(""), f("a.c"), dir("a")], "strictly increasing");
}

#[test]
fn hard_link_targets_are_checked() {
    let link = |target: &str| Entry {
        path: b"d/link".to_vec(),
        meta: meta(0),
        body: Body::Hardlink {
            target: target.as_bytes().to_vec(),
        },
    };
    let stream = |target| vec![dir(""), dir("d"), file("d/a", vec![]), link(target)];
    round_trip(ManifestParams::DEFAULT, &stream("d/a"));
    both_refuse(&stream("d/z"), "does not come before");
    both_refuse(&stream("d/link"), "does not come before");
    both_refuse(&stream("d"), "directory above");
    both_refuse(&stream(""), "hard link target (root)");
    both_refuse(&stream("d/../a"), "'..'");
}

#[test]
fn reader_refuses_bad_chunks() {
    let good = raw_chunk(&every_kind());
    reader_refuses(
        b"RSBKMAN4xxxx",
        ErrorKind::UnsupportedVersion,
        "version '4'",
    );
    reader_refuses(b"NOTAMANIxxxx", ErrorKind::UnsupportedVersion, "magic");
    reader_refuses(b"RSBK", ErrorKind::Corrupt, "too short");
    reader_refuses(MANIFEST_MAGIC, ErrorKind::Corrupt, "no entries");
    for cut in [9, 12, 20, 60, good.len() - 1] {
        reader_refuses(&good[..cut], ErrorKind::Corrupt, "truncated");
    }
    for kind in [0u8, 11, 255] {
        let mut bad = good.clone();
        let second = raw_chunk(&[dir("")]).len();
        bad[second] = kind;
        reader_refuses(
            &bad,
            ErrorKind::Corrupt,
            &format!("unknown entry kind {kind}"),
        );
    }
    let mut bad_tag = raw_chunk(&[dir(""), file("f", vec![Extent::Hole { len: 1 }])]);
    let at = bad_tag.len() - 9;
    bad_tag[at] = 3;
    reader_refuses(&bad_tag, ErrorKind::Corrupt, "unknown extent tag 3");
    let mut bad_utf8 = raw_chunk(&[dir("")]);
    encode_entry(
        &Entry {
            path: b"u".to_vec(),
            meta: meta(0),
            body: Body::Unreadable {
                message: "é".into(),
            },
        },
        &[],
        &mut bad_utf8,
    )
    .unwrap();
    let last = bad_utf8.len() - 1;
    bad_utf8[last] = 0xff;
    reader_refuses(&bad_utf8, ErrorKind::Corrupt, "not UTF-8");
    let mut too_many = raw_chunk(&[dir("")]);
    too_many.extend([2, 1, 0, 0, 0, b'f']);
    too_many.extend([0; 28]);
    too_many.extend(0u64.to_le_bytes());
    too_many.extend(32769u32.to_le_bytes());
    reader_refuses(&too_many, ErrorKind::Corrupt, "32769 extents");
    let mut huge = MANIFEST_MAGIC.to_vec();
    huge.resize(MAX_CHUNK_LEN + 1, 0);
    reader_refuses(&huge, ErrorKind::Corrupt, "more than 17 MiB");
    // The message names the chunk, the offset and the entry.
    let mut nsec = raw_chunk(&[dir("")]);
    let offset = nsec.len();
    let mut e = file("caf\u{e9}", vec![]);
    e.meta.mtime_nsec = u32::MAX;
    encode_entry(&e, &[], &mut nsec).unwrap();
    let err = read([nsec.as_slice()]).unwrap_err();
    assert_eq!(
        err.message(),
        format!(
            "manifest chunk 0 (counting from 0), offset {offset}, entry \"café\": mtime \
             nanoseconds 4294967295 out of range (must be below 10^9)"
        )
    );
}

#[test]
fn continuations_are_checked() {
    let full: Vec<Extent> = vec![Extent::Hole { len: 1 }; MAX_EXTENTS_PER_ENTRY];
    let head = |size| Entry {
        path: b"f".to_vec(),
        meta: meta(0),
        body: Body::File {
            size,
            extents: full.clone(),
        },
    };
    let chunk = |size, cont: &[(&str, usize)]| {
        let mut out = raw_chunk(&[dir(""), head(size)]);
        for (path, n) in cont {
            encode_continued(
                path.as_bytes(),
                &vec![Extent::Hole { len: 1 }; *n],
                &mut out,
            )
            .unwrap();
        }
        out
    };
    let n = MAX_EXTENTS_PER_ENTRY as u64;
    let entries = read([chunk(n + 2, &[("f", 2)]).as_slice()]).unwrap();
    assert_eq!(entries.len(), 2);
    reader_refuses(
        &chunk(n + 2, &[("g", 2)]),
        ErrorKind::Corrupt,
        "different path",
    );
    reader_refuses(&chunk(n + 2, &[("f", 0)]), ErrorKind::Corrupt, "no extents");
    reader_refuses(
        &chunk(n + 2, &[("f", 3)]),
        ErrorKind::Corrupt,
        "more than the size",
    );
    reader_refuses(
        &chunk(n + 2, &[("f", 1), ("f", 1)]),
        ErrorKind::Corrupt,
        "only 1 extents",
    );
    // A version 3 chunk may continue a short entry (a split extent list), nothing else may.
    let mut split = chunk(n + 2, &[("f", 1), ("f", 1)]);
    split[..8].copy_from_slice(MANIFEST_MAGIC_V3);
    assert_eq!(read([split.as_slice()]).unwrap().len(), 2);
    let mut v2 = chunk(n + 2, &[("f", 1), ("f", 1)]);
    v2[..8].copy_from_slice(MANIFEST_MAGIC_V2);
    reader_refuses(&v2, ErrorKind::Corrupt, "only 1 extents");
    reader_refuses(
        &chunk(n, &[("f", 1)]),
        ErrorKind::Corrupt,
        "does not follow",
    );
    let mut after_file = raw_chunk(&[dir(""), head(n + 1)]);
    encode_entry(&file("g", vec![]), &[], &mut after_file).unwrap();
    reader_refuses(&after_file, ErrorKind::Corrupt, "not its continuation");
}

#[test]
fn builder_refuses_oversized_input_and_stays_failed() {
    let mut big = file("f", vec![]);
    big.meta.xattrs = vec![(b"user.big".to_vec(), vec![0; MAX_ENTRY_LEN])];
    builder_refuses(
        &[dir(""), big.clone()],
        ErrorKind::InvalidInput,
        "16 MiB limit",
    );
    let long = "a".repeat(65537);
    builder_refuses(
        &[dir(""), file(&long, vec![])],
        ErrorKind::InvalidInput,
        "65536",
    );

    // Too large is not a bug: the builder is unchanged and takes a replacement for the path.
    let mut builder = ManifestBuilder::new(ManifestParams::DEFAULT, KEY);
    builder.push(&dir("")).unwrap();
    assert_eq!(
        builder.push(&big).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut replacement = big.clone();
    replacement.meta.xattrs.clear();
    replacement.body = Body::Unreadable {
        message: "extended attributes too large".into(),
    };
    assert!(builder.push(&replacement).unwrap().is_empty());
    let chunk = builder.finish().unwrap();
    assert_eq!(read([chunk.bytes.as_slice()]).unwrap()[1], replacement);

    // A bug is: after it the builder refuses everything and yields no chunk.
    let mut builder = ManifestBuilder::new(ManifestParams::DEFAULT, KEY);
    builder.push(&dir("")).unwrap();
    assert!(builder.push(&dir("")).is_err());
    let err = builder.push(&dir("a")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(builder.finish().is_none(), "no chunk from a failed builder");

    let bad = ManifestParams {
        min_size: 10,
        avg_size: 10,
        max_size: 100,
    };
    let mut builder = ManifestBuilder::new(bad, KEY);
    assert_eq!(
        builder.push(&dir("")).unwrap_err().kind(),
        ErrorKind::Internal
    );
}

#[test]
fn empty_manifest_is_refused() {
    let err = ManifestReader::new().finish().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        ManifestBuilder::new(ManifestParams::DEFAULT, KEY)
            .finish()
            .is_none()
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 256,
        ..proptest::prelude::ProptestConfig::default()
    })]
    /// Damaged chunks (bytes changed, cut short) are refused or read, never a panic, and
    /// whatever is read still obeys the path rules.
    #[test]
    fn damaged_chunks_never_panic(
        edits in proptest::collection::vec((0usize..1000, proptest::prelude::any::<u8>()), 1..4),
        cut in 0usize..1000,
    ) {
        let mut chunk = build(ManifestParams::DEFAULT, &every_kind()).unwrap().remove(0).bytes;
        for (at, byte) in edits {
            let at = at % chunk.len();
            chunk[at] = byte;
        }
        chunk.truncate(chunk.len() - cut % chunk.len());
        if let Ok(entries) = read([chunk.as_slice()]) {
            for (i, entry) in entries.iter().enumerate() {
                proptest::prop_assert!(validate_path(&entry.path, i == 0).is_ok());
            }
        }
    }
}

/// Entries for a set of paths: every ancestor becomes a directory, the other paths files,
/// in manifest order.
fn tree(paths: &std::collections::BTreeSet<Vec<String>>) -> Vec<Entry> {
    let mut all = std::collections::BTreeMap::new();
    for path in paths {
        for depth in 1..=path.len() {
            let dir = depth < path.len();
            let entry = all.entry(path[..depth].to_vec()).or_insert(dir);
            *entry |= dir;
        }
    }
    // BTreeMap over component vectors is exactly the manifest's component-wise order.
    let mut out = vec![dir("")];
    for (components, is_dir) in all {
        let path = components.join("/");
        out.push(if is_dir {
            dir(&path)
        } else {
            file(&path, vec![])
        });
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 256,
        ..proptest::prelude::ProptestConfig::default()
    })]
    /// The builder accepts exactly the streams the reader accepts: random trees, then two
    /// entries swapped and a hard link to a random path.
    #[test]
    fn builder_and_reader_agree(
        paths in proptest::collection::btree_set(
            proptest::collection::vec("[ab.]{1,2}", 1..4), 1..12),
        swap in proptest::option::of((0usize..64, 0usize..64)),
        link in proptest::option::of((0usize..64, 0usize..64)),
    ) {
        let paths: std::collections::BTreeSet<Vec<String>> = paths
            .into_iter()
            .filter(|p| p.iter().all(|c| c != "." && c != ".."))
            .collect();
        let mut entries = tree(&paths);
        let n = entries.len();
        if let Some((a, b)) = swap {
            entries.swap(a % n, b % n);
        }
        if let Some((at, to)) = link {
            let target = entries[to % n].path.clone();
            let at = at % n;
            if matches!(entries[at].body, Body::File { .. }) {
                entries[at].body = Body::Hardlink { target };
            }
        }
        let built = build(ManifestParams::DEFAULT, &entries);
        let read_back = read([raw_chunk(&entries).as_slice()]);
        proptest::prop_assert_eq!(built.is_ok(), read_back.is_ok(), "{:?} / {:?}",
            built.as_ref().err(), read_back.as_ref().err());
        if let Ok(read_back) = read_back {
            proptest::prop_assert_eq!(read_back, entries);
        }
    }
}
