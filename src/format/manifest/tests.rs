//! Unit tests of the manifest format: round trips, every refusal of the reader and the builder,
//! and the statistical properties of the cut rule.

use std::collections::HashSet;

use proptest::prelude::*;

use super::entry::encode_entry;
use super::*;
use crate::error::ErrorKind;

pub(super) const KEY: [u8; 32] = [7; 32];

/// The sizes of repositories made before the defaults shrank (16 KiB, 64 KiB, 1 MiB): the
/// statistical tests and the vectors keep them.
pub(super) const LARGE: ManifestParams = ManifestParams {
    min_size: 16 << 10,
    avg_size: 64 << 10,
    max_size: 1 << 20,
};

pub(super) fn id(n: u64) -> ChunkId {
    ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

pub(super) fn meta(n: u32) -> Meta {
    Meta {
        mode: 0o644,
        uid: 1000 + n % 3,
        gid: 100,
        mtime_sec: 1_795_675_200 + i64::from(n),
        mtime_nsec: n * 7 % 1_000_000_000,
        xattrs: Vec::new(),
    }
}

pub(super) fn dir(path: &str) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        meta: Meta {
            mode: 0o755,
            ..meta(1)
        },
        body: Body::Dir,
    }
}

pub(super) fn file(path: &str, extents: Vec<Extent>) -> Entry {
    let size = super::entry::extents_len(&extents).unwrap();
    Entry {
        path: path.as_bytes().to_vec(),
        meta: meta(path.len() as u32),
        body: Body::File { size, extents },
    }
}

/// Every kind, with xattrs, holes and a hard link.
pub(super) fn every_kind() -> Vec<Entry> {
    let mut with_xattrs = file(
        "a/file",
        vec![
            Extent::Chunk {
                len: 100,
                id: id(1),
            },
            Extent::Hole { len: 4096 },
            Extent::Chunk { len: 5, id: id(2) },
        ],
    );
    with_xattrs.meta.xattrs = vec![
        (
            b"security.selinux".to_vec(),
            b"system_u:object_r:etc_t:s0\0".to_vec(),
        ),
        (b"user.comment".to_vec(), Vec::new()),
    ];
    with_xattrs.meta.mode = 0o4755;
    let other = |path: &str, body| Entry {
        path: path.as_bytes().to_vec(),
        meta: meta(3),
        body,
    };
    vec![
        dir(""),
        dir("a"),
        other("a/blk", Body::BlockDev { rdev: 0x0801 }),
        other("a/chr", Body::CharDev { rdev: 0x0103 }),
        file("a/empty", vec![]),
        with_xattrs,
        other(
            "a/link",
            Body::Hardlink {
                target: b"a/file".to_vec(),
            },
        ),
        other("a/pipe", Body::Fifo),
        other("a/sock", Body::Socket),
        other(
            "a/sym",
            Body::Symlink {
                target: b"../etc/passwd".to_vec(),
            },
        ),
        other(
            "a/unreadable",
            Body::Unreadable {
                message: "Permission denied (os error 13)".into(),
            },
        ),
        dir("b"),
        file(
            "b/x",
            vec![Extent::Chunk {
                len: 100,
                id: id(1),
            }],
        ),
    ]
}

pub(super) fn build(params: ManifestParams, entries: &[Entry]) -> Result<Vec<ManifestChunk>> {
    let mut builder = ManifestBuilder::new(params, KEY);
    let mut chunks = Vec::new();
    for entry in entries {
        chunks.extend(builder.push(entry)?);
    }
    chunks.extend(builder.finish());
    Ok(chunks)
}

pub(super) fn read<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Entry>> {
    let mut reader = ManifestReader::new();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(reader.feed(chunk)?);
    }
    out.extend(reader.finish()?);
    Ok(out)
}

pub(super) fn round_trip(params: ManifestParams, entries: &[Entry]) -> Vec<ManifestChunk> {
    let chunks = build(params, entries).unwrap();
    let back = read(chunks.iter().map(|c| c.bytes.as_slice())).unwrap();
    assert_eq!(back, entries);
    chunks
}

/// A tree of `dirs` directories of `files` files each, paths of about 40 bytes, one or two
/// extents; `extra` adds one file in the middle directory.
pub(super) fn realistic(dirs: u32, files: u32, extra: bool) -> Vec<Entry> {
    let mut out = vec![dir("")];
    for d in 0..dirs {
        let dname = format!("srv/data-{d:05}");
        if d == 0 {
            out.push(dir("srv"));
        }
        out.push(dir(&dname));
        for f in 0..files {
            let n = u64::from(d) * 1_000_000 + u64::from(f);
            let name = format!("{dname}/report-{f:06}-final.txt");
            let mut extents = vec![Extent::Chunk {
                len: 1 + (n % 900_000) as u32,
                id: id(n),
            }];
            if n % 3 == 0 {
                extents.push(Extent::Chunk {
                    len: 4096,
                    id: id(n + 7),
                });
            }
            out.push(file(&name, extents));
            if extra && d == dirs / 2 && f == files / 2 {
                out.push(file(&format!("{name}.new"), vec![Extent::Hole { len: 1 }]));
            }
        }
    }
    out
}

#[test]
fn every_kind_round_trips_in_one_chunk() {
    let entries = every_kind();
    let chunks = round_trip(LARGE, &entries);
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].bytes.starts_with(MANIFEST_MAGIC));
    // Sorted and without the duplicate id(1).
    let mut want = vec![id(1), id(2)];
    want.sort();
    assert_eq!(chunks[0].refs, want);
}

#[test]
fn small_chunks_round_trip_and_respect_max() {
    let params = ManifestParams {
        min_size: 200,
        avg_size: 600,
        max_size: 1000,
    };
    let entries = realistic(5, 40, false);
    let chunks = round_trip(params, &entries);
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    for chunk in &chunks {
        assert!(chunk.bytes.len() <= 1000);
        // Each chunk decodes on its own once the stream state is right: it starts at an entry.
        assert!(chunk.bytes.len() > 8);
    }
}

#[test]
fn cut_rule_is_deterministic_and_keyed() {
    let params = ManifestParams {
        min_size: 1024,
        avg_size: 4096,
        max_size: 65536,
    };
    let entries = realistic(10, 100, false);
    let a = build(params, &entries).unwrap();
    let b = build(params, &entries).unwrap();
    assert_eq!(a, b);
    let mut other = ManifestBuilder::new(params, [8; 32]);
    let mut c = Vec::new();
    for e in &entries {
        c.extend(other.push(e).unwrap());
    }
    c.extend(other.finish());
    let lens = |v: &[ManifestChunk]| v.iter().map(|c| c.bytes.len()).collect::<Vec<_>>();
    assert_ne!(lens(&a), lens(&c), "another key must cut elsewhere");
}

#[test]
fn insertion_changes_only_nearby_chunks() {
    let a = build(LARGE, &realistic(316, 317, false)).unwrap();
    let b = build(LARGE, &realistic(316, 317, true)).unwrap();
    assert!(a.len() > 150, "{} chunks", a.len());
    let in_a: HashSet<&[u8]> = a.iter().map(|c| c.bytes.as_slice()).collect();
    let in_b: HashSet<&[u8]> = b.iter().map(|c| c.bytes.as_slice()).collect();
    let only_b = in_b.difference(&in_a).count();
    let only_a = in_a.difference(&in_b).count();
    assert!(
        (1..=3).contains(&only_a),
        "{only_a} chunks of {} lost",
        a.len()
    );
    assert!((1..=3).contains(&only_b), "{only_b} new chunks");
}

#[test]
fn chunk_sizes_average_close_to_avg() {
    let chunks = build(LARGE, &realistic(400, 500, false)).unwrap();
    let sizes: Vec<usize> = chunks.iter().map(|c| c.bytes.len()).collect();
    let n = sizes.len() - 1; // the last chunk is cut by the end of the stream
    let mean = sizes[..n].iter().sum::<usize>() as f64 / n as f64;
    let avg = f64::from(LARGE.avg_size);
    assert!(
        (mean - avg).abs() < 0.1 * avg,
        "mean {mean} over {n} chunks"
    );
    assert!(
        sizes[..n].iter().all(|&s| s >= 16 << 10),
        "a chunk below min"
    );
    // Past min the length is about exponential with mean avg - min: e^-5 of the chunks
    // exceed 4 avg, and max (1 MiB) is never reached.
    let long = sizes.iter().filter(|&&s| s > 4 * (64 << 10)).count();
    assert!(long * 50 <= n, "{long} of {n} chunks over 4 avg");
    assert!(sizes.iter().all(|&s| s <= 1 << 20));
}

#[test]
fn long_extent_list_splits_into_continuations_and_joins_back() {
    let extents: Vec<Extent> = (0..70_000u64)
        .map(|i| match i % 8 {
            0..7 => Extent::Chunk {
                len: 1 + (i % 1000) as u32,
                id: id(i),
            },
            _ => Extent::Hole { len: i },
        })
        .collect();
    let entries = vec![dir(""), file("big", extents.clone()), file("small", vec![])];
    let chunks = round_trip(LARGE, &entries);
    // The list is split where split_extents says: a kind-2 entry, then kind-9 entries, the
    // chunks holding a continuation of a short piece being version 3.
    let pieces = split_extents(&extents);
    assert!(pieces.len() > 100, "{} pieces", pieces.len());
    assert!(
        pieces[..pieces.len() - 1]
            .iter()
            .all(|p| p.len() >= PIECE_MIN_EXTENTS)
    );
    assert_eq!(pieces.iter().map(|p| p.len()).sum::<usize>(), 70_000);
    let continued: usize = chunks
        .iter()
        .map(|c| decode_pieces(&c.bytes).unwrap())
        .map(|p| {
            p.iter()
                .filter(|p| matches!(p, Piece::Continued { .. }))
                .count()
        })
        .sum();
    assert_eq!(continued, pieces.len() - 1);
    for chunk in &chunks {
        let has_continued = decode_pieces(&chunk.bytes)
            .unwrap()
            .iter()
            .any(|p| matches!(p, Piece::Continued { .. }));
        let magic: &[u8] = if has_continued {
            MANIFEST_MAGIC_V3
        } else {
            MANIFEST_MAGIC
        };
        assert_eq!(&chunk.bytes[..8], magic);
    }
    let refs: usize = chunks.iter().map(|c| c.refs.len()).sum();
    assert_eq!(refs, 61_250);
    // Read chunk by chunk: the file is held back until its last continuation arrives.
    let last = chunks
        .iter()
        .rposition(|c| {
            decode_pieces(&c.bytes)
                .unwrap()
                .iter()
                .any(|p| matches!(p, Piece::Continued { .. }))
        })
        .unwrap();
    let mut reader = ManifestReader::new();
    let mut rest = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let got = reader.feed(&chunk.bytes).unwrap();
        if (1..last).contains(&i) {
            assert!(got.is_empty(), "chunk {i}");
        }
        rest.extend(got);
    }
    assert_eq!(rest, entries);
    assert!(reader.finish().unwrap().is_empty());
    // Without the last continuation the manifest is incomplete.
    let err = read(chunks[..last].iter().map(|c| c.bytes.as_slice())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("ends inside file \"big\""), "{err}");
}

#[test]
fn extents_encode_and_decode() {
    let extents = vec![
        Extent::Chunk { len: 1, id: id(9) },
        Extent::Hole { len: u64::MAX },
    ];
    let mut bytes = Vec::new();
    encode_extents(&extents, &mut bytes);
    assert_eq!(bytes.len(), 4 + 37 + 9);
    assert_eq!(decode_extents(&bytes).unwrap(), extents);
    for bad in [
        &bytes[..bytes.len() - 1],
        &[bytes.as_slice(), &[0]].concat()[..],
    ] {
        assert_eq!(decode_extents(bad).unwrap_err().kind(), ErrorKind::Corrupt);
    }
    let mut zero = Vec::new();
    encode_extents(&[Extent::Hole { len: 0 }], &mut zero);
    assert!(
        decode_extents(&zero)
            .unwrap_err()
            .message()
            .contains("length 0")
    );
    // A huge count with no bytes behind it fails without allocating for it.
    assert!(decode_extents(&u32::MAX.to_le_bytes()).is_err());
    assert!(decode_extents(&[]).is_err());
}

#[test]
fn paths_are_validated() {
    assert!(validate_path(b"", true).is_ok());
    assert!(validate_path(b"a", true).is_err());
    for good in [&b"a"[..], b"a/b", b"..a", b"a/.b", b"\xff\xfe"] {
        assert!(validate_path(good, false).is_ok(), "{good:?}");
    }
    let long = vec![b'a'; 65537];
    for bad in [
        &b""[..],
        b"/a",
        b"a/",
        b"a//b",
        b".",
        b"..",
        b"a/../b",
        b"a/.",
        b"a\0b",
        &long,
    ] {
        let err = validate_path(bad, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    assert!(validate_path(&long[..65536], false).is_ok());
}

/// A chunk from raw entries, bypassing the builder's checks.
/// The entries encoded after a version 1 magic, without any check.
pub(super) fn raw_chunk(entries: &[Entry]) -> Vec<u8> {
    let mut out = MANIFEST_MAGIC.to_vec();
    for e in entries {
        let extents = match &e.body {
            Body::File { extents, .. } => extents.as_slice(),
            _ => &[],
        };
        encode_entry(e, extents, &mut out).unwrap();
    }
    out
}

fn arb_meta() -> impl Strategy<Value = Meta> {
    (
        0u32..0o10000,
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
        0u32..1_000_000_000,
        prop::collection::btree_map(
            prop::collection::vec(1u8..=255, 1..8),
            prop::collection::vec(any::<u8>(), 0..8),
            0..3,
        ),
    )
        .prop_map(|(mode, uid, gid, mtime_sec, mtime_nsec, xattrs)| Meta {
            mode,
            uid,
            gid,
            mtime_sec,
            mtime_nsec,
            xattrs: xattrs.into_iter().collect(),
        })
}

fn arb_body() -> impl Strategy<Value = Body> {
    let extent = prop_oneof![
        (1u32.., any::<[u8; 32]>()).prop_map(|(len, id)| Extent::Chunk {
            len,
            id: ChunkId(id)
        }),
        (1u64..1 << 40).prop_map(|len| Extent::Hole { len }),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(|data| Extent::Inline { data }),
    ];
    prop_oneof![
        prop::collection::vec(extent, 0..5).prop_map(|extents| {
            let size = super::entry::extents_len(&extents).unwrap();
            Body::File { size, extents }
        }),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(|target| Body::Symlink { target }),
        any::<u64>().prop_map(|rdev| Body::CharDev { rdev }),
        any::<u64>().prop_map(|rdev| Body::BlockDev { rdev }),
        Just(Body::Fifo),
        Just(Body::Socket),
        ".{0,20}".prop_map(|message| Body::Unreadable { message }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_entries_round_trip(
        items in prop::collection::btree_map("[a-z.]{1,6}", (arb_meta(), arb_body()), 1..40),
        subdir in prop::collection::btree_map("[a-z]{1,3}", arb_body(), 0..5),
    ) {
        let mut entries = vec![dir("")];
        for (name, (meta, body)) in items {
            if name == "." || name == ".." || name == "~sub" {
                continue;
            }
            entries.push(Entry { path: name.into_bytes(), meta, body });
        }
        // "~" sorts after every generated name, so the subdirectory comes last.
        entries.push(dir("~sub"));
        for (name, body) in subdir {
            entries.push(Entry { path: format!("~sub/{name}").into_bytes(), meta: meta(2), body });
        }
        let params = ManifestParams { min_size: 64, avg_size: 256, max_size: 512 };
        let chunks = build(params, &entries).unwrap();
        let back = read(chunks.iter().map(|c| c.bytes.as_slice())).unwrap();
        prop_assert_eq!(back, entries);
    }
}

/// The encoded entries of a chunk, split at entry boundaries.
fn entries_of(chunk: &[u8]) -> Vec<&[u8]> {
    let mut cur = super::entry::Cursor::new(chunk, 8, true);
    let mut out = Vec::new();
    while !cur.is_empty() {
        let start = cur.pos();
        let kind = cur.u8("kind").unwrap();
        let path = cur.lp32("path").unwrap();
        cur.entry_rest(kind, path)
            .map_err(|p| p.to_string())
            .unwrap();
        out.push(&chunk[start..cur.pos()]);
    }
    out
}

/// Every boundary the builder chose, and every one it did not, follows the two rules as the
/// spec writes them, computed here independently in floating point far from the edges.
#[test]
fn every_boundary_follows_the_cut_rule() {
    let params = ManifestParams {
        min_size: 512,
        avg_size: 2048,
        max_size: 4096,
    };
    let mut entries = realistic(4, 60, false);
    // Some entries larger than max - min, so that rule 1 decides too.
    for (i, e) in entries.iter_mut().enumerate().filter(|(i, _)| i % 17 == 5) {
        if let Body::File { .. } = e.body {
            e.meta.xattrs = vec![(b"user.pad".to_vec(), vec![i as u8; 3000 + i])];
        }
    }
    let chunks = build(params, &entries).unwrap();
    let all: Vec<Vec<&[u8]>> = chunks.iter().map(|c| entries_of(&c.bytes)).collect();
    let (min, avg, max) = (512u64, 2048u64, 4096u64);
    let cuts = |e: &[u8]| {
        let h = blake3::keyed_hash(&KEY, e);
        let h = u32::from_le_bytes(h.as_bytes()[..4].try_into().unwrap());
        let p = (4294967296.0 * e.len() as f64 / (avg - min) as f64)
            .floor()
            .min(4294967295.0);
        f64::from(h) < p
    };
    let mut rule1 = 0;
    for (c, chunk) in all.iter().enumerate() {
        let mut len = 8u64;
        for (i, e) in chunk.iter().enumerate() {
            len += e.len() as u64;
            let next = match (chunk.get(i + 1), all.get(c + 1)) {
                (Some(n), _) => Some((*n, false)),
                (None, Some(next_chunk)) => Some((next_chunk[0], true)),
                (None, None) => None,
            };
            let Some((next, cut_here)) = next else {
                continue;
            };
            let by_rule2 = len >= min && cuts(e);
            let by_rule1 = len + next.len() as u64 > max;
            assert_eq!(cut_here, by_rule2 || by_rule1, "chunk {c} entry {i}");
            rule1 += usize::from(cut_here && !by_rule2);
        }
        assert!(len <= max || chunk.len() == 1);
    }
    assert!(rule1 > 0, "rule 1 never decided");
    assert!(chunks.len() > 20);
}

#[test]
fn split_extent_lists_resync_after_an_edit() {
    let extents: Vec<Extent> = (0..20_000u64)
        .map(|i| Extent::Chunk {
            len: 100,
            id: id(i),
        })
        .collect();
    let pieces = split_extents(&extents);
    // One cut in 128 chunk extents past the minimum: about 140 pieces of 16 or more.
    assert!(
        (100..200).contains(&pieces.len()),
        "{} pieces",
        pieces.len()
    );
    for piece in &pieces[..pieces.len() - 1] {
        let Extent::Chunk { id, .. } = piece.last().unwrap() else {
            panic!()
        };
        assert!(u32::from_le_bytes(id.0[..4].try_into().unwrap()) < PIECE_CUT_BELOW);
        assert!(piece.len() >= PIECE_MIN_EXTENTS);
    }
    // An edit (one chunk replaced by two) changes only the piece that holds it, or its
    // neighbour when the replaced chunk ended a piece.
    let mut edited = extents.clone();
    edited.splice(
        10_000..10_001,
        [
            Extent::Chunk {
                len: 60,
                id: id(1 << 40),
            },
            Extent::Chunk {
                len: 40,
                id: id(1 << 41),
            },
        ],
    );
    let after = split_extents(&edited);
    let changed = after.iter().filter(|p| !pieces.contains(p)).count();
    assert!((1..=2).contains(&changed), "{changed} pieces changed");
    // Holes never end a piece; a list of 32768 extents or more is cut at 32768.
    let holes = vec![Extent::Hole { len: 1 }; 40_000];
    let lens: Vec<usize> = split_extents(&holes).iter().map(|p| p.len()).collect();
    assert_eq!(
        lens,
        [MAX_EXTENTS_PER_ENTRY, 40_000 - MAX_EXTENTS_PER_ENTRY]
    );
    assert_eq!(split_extents(&[]), [&[] as &[Extent]]);
}
