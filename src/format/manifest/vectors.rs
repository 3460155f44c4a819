//! Test vectors: format-spec/vectors/manifest-*.txt, generated here from fixed entries and a
//! fixed cut key. `RSBACKUP_WRITE_VECTORS=1 cargo test --lib format::manifest` rewrites them;
//! otherwise the test fails when the code no longer reproduces them byte for byte.

use std::path::PathBuf;

use super::inline_tests::{inline, inline_tree};
use super::tests::{KEY, LARGE, build, dir, every_kind, file, raw_chunk, read, realistic};
use super::*;
use crate::error::ErrorKind;

struct Case {
    name: &'static str,
    description: &'static str,
    /// `None`: expect success; otherwise the error kind the reader must return.
    error: Option<ErrorKind>,
    params: ManifestParams,
    chunks: Vec<Vec<u8>>,
}

fn error_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::UnsupportedVersion => "unsupported-version",
        _ => "other",
    }
}

fn built(params: ManifestParams, entries: &[Entry]) -> Vec<Vec<u8>> {
    build(params, entries)
        .unwrap()
        .into_iter()
        .map(|c| c.bytes)
        .collect()
}

fn cases() -> Vec<Case> {
    let default = LARGE;
    let small = ManifestParams {
        min_size: 256,
        avg_size: 1024,
        max_size: 4096,
    };
    let continued = vec![
        dir(""),
        file(
            "sparse",
            vec![Extent::Hole { len: 1 }; MAX_EXTENTS_PER_ENTRY + 1],
        ),
        file("z", vec![]),
    ];
    // 600 chunk extents of 1000 bytes: split into pieces by the ids' values (version 3).
    let split_extents_list: Vec<Extent> = (0..600u64)
        .map(|i| Extent::Chunk {
            len: 1000,
            id: super::tests::id(i),
        })
        .collect();
    assert!(split_extents(&split_extents_list).len() >= 3);
    let split = vec![dir(""), file("big", split_extents_list), file("z", vec![])];
    let one = built(default, &every_kind()).remove(0);
    let mut bad_magic = one.clone();
    bad_magic[7] = b'9';
    let truncated = one[..one.len() - 3].to_vec();
    let mut dotdot = raw_chunk(&[dir(""), dir("a")]);
    let mut escape = file("a/x", vec![]);
    escape.path = b"a/../../etc/passwd".to_vec();
    dotdot.extend(&raw_chunk(&[escape])[8..]);
    let unsorted = raw_chunk(&[dir(""), file("b", vec![]), file("a", vec![])]);
    let inline_in_v1 = raw_chunk(&[dir(""), file("a", vec![inline(b"hello\n")])]);
    let mut too_long = raw_chunk(&[dir(""), file("a", vec![inline(&[b'x'; MAX_INLINE_LEN])])]);
    too_long[..8].copy_from_slice(MANIFEST_MAGIC_V2);
    // The size (u64) and the inline length (u16) of the one file say 4097 bytes, and one more
    // byte follows: a well-formed entry but for the limit.
    let n = too_long.len();
    too_long[n - MAX_INLINE_LEN - 2..n - MAX_INLINE_LEN]
        .copy_from_slice(&(MAX_INLINE_LEN as u16 + 1).to_le_bytes());
    let size_at = n - MAX_INLINE_LEN - 2 - 1 - 4 - 8;
    too_long[size_at..size_at + 8].copy_from_slice(&(MAX_INLINE_LEN as u64 + 1).to_le_bytes());
    too_long.push(b'x');
    vec![
        Case {
            name: "manifest-every-kind",
            description: "one chunk with kinds 1-8 and 10, xattrs, holes, a hard link",
            error: None,
            params: default,
            chunks: vec![one],
        },
        Case {
            name: "manifest-continued",
            description: "a file of 32769 one-byte holes: a kind-2 entry of 32768 extents, \
                          then a kind-9 entry of one",
            error: None,
            params: default,
            chunks: built(default, &continued),
        },
        Case {
            name: "manifest-split",
            description: "a file of 600 chunk extents split into a kind-2 entry and kind-9 \
                          entries by the ids (split extent lists): the chunks holding a \
                          continuation are version 3",
            error: None,
            params: small,
            chunks: built(small, &split),
        },
        Case {
            name: "manifest-small-chunks",
            description: "2 directories of 30 files cut by the keyed rule with small sizes",
            error: None,
            params: small,
            chunks: built(small, &realistic(2, 30, false)),
        },
        Case {
            name: "manifest-inline",
            description: "a directory of 24 files, the first 12 and every third after them a \
                          chunk extent, the others inline content, cut with small sizes: \
                          version 1 chunks before the inline content, version 2 after",
            error: None,
            params: small,
            chunks: built(small, &inline_tree()),
        },
        Case {
            name: "manifest-inline-in-v1",
            description: "an inline extent (tag 2) in a chunk with magic RSBKMAN1",
            error: Some(ErrorKind::Corrupt),
            params: default,
            chunks: vec![inline_in_v1],
        },
        Case {
            name: "manifest-inline-too-long",
            description: "a version 2 chunk whose one file has an inline extent of 4097 bytes",
            error: Some(ErrorKind::Corrupt),
            params: default,
            chunks: vec![too_long],
        },
        Case {
            name: "manifest-bad-magic",
            description: "the every-kind chunk with magic RSBKMAN9 (unknown version)",
            error: Some(ErrorKind::UnsupportedVersion),
            params: default,
            chunks: vec![bad_magic],
        },
        Case {
            name: "manifest-truncated-entry",
            description: "the every-kind chunk without its last 3 bytes",
            error: Some(ErrorKind::Corrupt),
            params: default,
            chunks: vec![truncated],
        },
        Case {
            name: "manifest-dotdot-path",
            description: "an entry whose path has '..' components",
            error: Some(ErrorKind::Corrupt),
            params: default,
            chunks: vec![dotdot],
        },
        Case {
            name: "manifest-unsorted-siblings",
            description: "file b before file a in the root directory",
            error: Some(ErrorKind::Corrupt),
            params: default,
            chunks: vec![unsorted],
        },
    ]
}

fn render(case: &Case) -> String {
    let p = case.params;
    let lens: Vec<String> = case.chunks.iter().map(|c| c.len().to_string()).collect();
    let mut out = format!("description: {}\n", case.description);
    match case.error {
        None => out.push_str("expect: success\n"),
        Some(kind) => out.push_str(&format!("expect: failure\nerror: {}\n", error_name(kind))),
    }
    out.push_str(&format!(
        "cut-key: {}\nmin-size: {}\navg-size: {}\nmax-size: {}\nchunk-lengths: {}\n\n",
        hex::encode(KEY),
        p.min_size,
        p.avg_size,
        p.max_size,
        lens.join(" ")
    ));
    let all = case.chunks.concat();
    for line in all.chunks(32) {
        out.push_str(&hex::encode(line));
        out.push('\n');
    }
    out
}

/// Split a vector file back into its chunks, from the file alone.
fn parse(text: &str) -> Vec<Vec<u8>> {
    let (head, data) = text.split_once("\n\n").expect("header and data");
    let lens = head
        .lines()
        .find_map(|l| l.strip_prefix("chunk-lengths: "))
        .expect("chunk-lengths header");
    let data = hex::decode(data.split_whitespace().collect::<String>()).expect("hex data");
    let mut rest = data.as_slice();
    let mut out = Vec::new();
    for len in lens.split(' ') {
        let (chunk, tail) = rest.split_at(len.parse().unwrap());
        out.push(chunk.to_vec());
        rest = tail;
    }
    assert!(rest.is_empty());
    out
}

#[test]
fn vectors_are_reproduced() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("format-spec/vectors");
    let write = std::env::var("RSBACKUP_WRITE_VECTORS").is_ok_and(|v| v == "1");
    for case in cases() {
        let path = dir.join(format!("{}.txt", case.name));
        let text = render(&case);
        if write {
            std::fs::write(&path, &text).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (RSBACKUP_WRITE_VECTORS=1 writes it)",
                path.display()
            )
        });
        assert!(
            stored == text,
            "{} differs from what the code produces",
            path.display()
        );
        let chunks = parse(&stored);
        assert_eq!(chunks, case.chunks);
        let result = read(chunks.iter().map(Vec::as_slice));
        match case.error {
            None => {
                // Decoding and rebuilding with the stored key and sizes gives the same chunks.
                let entries = result.unwrap();
                let rebuilt: Vec<Vec<u8>> = build(case.params, &entries)
                    .unwrap()
                    .into_iter()
                    .map(|c| c.bytes)
                    .collect();
                assert_eq!(rebuilt, chunks, "{}", case.name);
            }
            Some(kind) => assert_eq!(result.unwrap_err().kind(), kind, "{}", case.name),
        }
    }
}
