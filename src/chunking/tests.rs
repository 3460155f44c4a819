//! Golden tests against `fastcdc::v2020::StreamCDC`, streaming edge cases, and the vectors.

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, StreamCDC};

use super::*;
use crate::crypto::testvec::{Vector, pattern};

const SMALL: ChunkerParams = ChunkerParams {
    min_size: 4096,
    avg_size: 16384,
    max_size: 65536,
    normalization: 1,
};

fn level(n: u32) -> Normalization {
    match n {
        0 => Normalization::Level0,
        1 => Normalization::Level1,
        2 => Normalization::Level2,
        _ => Normalization::Level3,
    }
}

fn stream_cdc_lengths(data: &[u8], p: ChunkerParams) -> Vec<usize> {
    StreamCDC::with_level(
        data,
        p.min_size,
        p.avg_size,
        p.max_size,
        level(p.normalization),
    )
    .map(|c| c.unwrap().length)
    .collect()
}

/// A reader that returns at most `step` bytes per call and fails with `Interrupted` every
/// third call, as a pipe or a signal-interrupted read would.
struct Choppy<'a> {
    data: &'a [u8],
    step: usize,
    calls: usize,
}

impl Read for Choppy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn streamed(reader: impl Read, p: ChunkerParams, gear: &GearTable) -> (Vec<usize>, Vec<u8>) {
    let mut c = Chunker::new(reader, p, gear);
    let mut lengths = Vec::new();
    let mut joined = Vec::new();
    while let Some(chunk) = c.next_chunk().unwrap() {
        lengths.push(chunk.len());
        joined.extend_from_slice(&chunk);
    }
    (lengths, joined)
}

fn edge_sizes(p: ChunkerParams) -> Vec<usize> {
    let (min, avg, max) = (
        p.min_size as usize,
        p.avg_size as usize,
        p.max_size as usize,
    );
    vec![
        0,
        1,
        min - 1,
        min,
        min + 1,
        avg,
        max - 1,
        max,
        max + 1,
        2 * max,
        2 * max + 123,
        7 * max + 5,
    ]
}

#[test]
fn standard_table_matches_stream_cdc_at_edge_sizes() {
    let gear = GearTable::standard();
    for norm in 0..=3 {
        let p = ChunkerParams {
            normalization: norm,
            ..SMALL
        };
        for n in edge_sizes(p) {
            let data = pattern(3, n);
            let want = stream_cdc_lengths(&data, p);
            assert_eq!(chunk_lengths(&data, p, &gear), want, "n={n} level={norm}");
            let (got, joined) = streamed(&data[..], p, &gear);
            assert_eq!(got, want, "streamed n={n} level={norm}");
            assert_eq!(joined, data);
        }
    }
}

#[test]
fn standard_table_matches_stream_cdc_on_many_mib_with_short_reads() {
    let gear = GearTable::standard();
    let p = ChunkerParams::DEFAULT;
    let data = pattern(1, 30 << 20);
    let want = stream_cdc_lengths(&data, p);
    assert!(want.len() > 10, "{} chunks", want.len());
    let reader = Choppy {
        data: &data,
        step: 1_000_003,
        calls: 0,
    };
    let (got, joined) = streamed(reader, p, &gear);
    assert_eq!(got, want);
    assert!(joined == data);
    for n in edge_sizes(p) {
        let d = &data[..n];
        assert_eq!(
            chunk_lengths(d, p, &gear),
            stream_cdc_lengths(d, p),
            "n={n}"
        );
    }
}

#[test]
fn smallest_parameters_match_stream_cdc() {
    // max-size below the initial buffer size: the buffer must still be capped at two windows.
    let p = ChunkerParams {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
        normalization: 2,
    };
    let gear = GearTable::standard();
    let data = pattern(8, 100_000);
    let (got, joined) = streamed(&data[..], p, &gear);
    assert_eq!(got, stream_cdc_lengths(&data, p));
    assert_eq!(joined, data);
}

#[test]
fn zeros_cut_at_max_size() {
    let gear = GearTable::standard();
    let data = vec![0u8; 3 * SMALL.max_size as usize + 10];
    let want = stream_cdc_lengths(&data, SMALL);
    assert_eq!(want, vec![65536, 65536, 65536, 10]);
    assert_eq!(streamed(&data[..], SMALL, &gear).0, want);
}

#[test]
fn sizes_stay_within_bounds() {
    let gear = GearTable::from_key(&[5; 32]);
    let data = pattern(9, 3 << 20);
    let lengths = chunk_lengths(&data, SMALL, &gear);
    assert_eq!(lengths.iter().sum::<usize>(), data.len());
    let (last, rest) = lengths.split_last().unwrap();
    assert!(*last <= SMALL.max_size as usize);
    for &l in rest {
        assert!(
            (SMALL.min_size as usize..=SMALL.max_size as usize).contains(&l),
            "{l}"
        );
    }
}

#[test]
fn keyed_tables_cut_elsewhere() {
    let data = pattern(1, 4 << 20);
    let standard = chunk_lengths(&data, SMALL, &GearTable::standard());
    let a = chunk_lengths(&data, SMALL, &GearTable::from_key(&[1; 32]));
    let b = chunk_lengths(&data, SMALL, &GearTable::from_key(&[2; 32]));
    assert_ne!(a, standard);
    assert_ne!(a, b);
    assert_eq!(
        a,
        chunk_lengths(&data, SMALL, &GearTable::from_key(&[1; 32]))
    );
}

#[test]
fn keyed_table_is_the_xof_and_its_shift() {
    let key = [7u8; 32];
    let t = GearTable::from_key(&key);
    let mut xof = [0u8; 2048];
    blake3::Hasher::new_keyed(&key)
        .finalize_xof()
        .fill(&mut xof);
    assert_eq!(t.entry(0), u64::from_le_bytes(xof[..8].try_into().unwrap()));
    assert_eq!(
        t.entry(255),
        u64::from_le_bytes(xof[2040..].try_into().unwrap())
    );
    for i in 0..256 {
        assert_eq!(t.gear_ls[i], t.gear[i] << 1);
    }
    assert_eq!(format!("{t:?}"), "GearTable(..)");
}

#[test]
fn chunk_into_and_slice_agree_with_next_chunk() {
    let gear = GearTable::standard();
    let data = pattern(4, 500_000);
    let want = streamed(&data[..], SMALL, &gear).0;
    let mut c = Chunker::new(&data[..], SMALL, &gear);
    let mut buf = Vec::new();
    let mut got = Vec::new();
    while c.next_chunk_into(&mut buf).unwrap() {
        got.push(buf.len());
    }
    assert!(buf.is_empty());
    assert_eq!(got, want);
    assert!(c.next_slice().unwrap().is_none(), "stays at end of input");
}

#[test]
fn small_inputs_get_a_small_buffer() {
    let gear = GearTable::standard();
    let data = pattern(6, 1000);
    let mut c = Chunker::new(&data[..], ChunkerParams::DEFAULT, &gear);
    assert_eq!(c.next_slice().unwrap(), Some(&data[..]));
    assert!(c.next_slice().unwrap().is_none());
    assert_eq!(c.buf.len(), INITIAL_BUFFER);
    // A large input grows it to two windows and no further.
    let big = pattern(6, 20 << 20);
    let mut c = Chunker::new(&big[..], ChunkerParams::DEFAULT, &gear);
    while c.next_slice().unwrap().is_some() {}
    assert_eq!(c.buf.len(), 2 * ChunkerParams::DEFAULT.max_size as usize);
    let mut c = Chunker::new(&[][..], ChunkerParams::DEFAULT, &gear);
    assert!(c.next_chunk().unwrap().is_none());
}

#[test]
fn read_errors_are_returned() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }
    let gear = GearTable::standard();
    let mut c = Chunker::new(Failing(1000), SMALL, &gear);
    let err = c.next_chunk().unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
}

#[test]
fn validate_refuses_bad_parameters() {
    assert!(ChunkerParams::DEFAULT.validate().is_ok());
    assert!(SMALL.validate().is_ok());
    let bad = [
        ChunkerParams {
            min_size: 63,
            ..SMALL
        },
        ChunkerParams {
            avg_size: 4096,
            ..SMALL
        },
        ChunkerParams {
            avg_size: 65536,
            ..SMALL
        },
        ChunkerParams {
            max_size: 32 << 20,
            ..ChunkerParams::DEFAULT
        },
        ChunkerParams {
            avg_size: 8 << 20,
            max_size: 16 << 20,
            ..ChunkerParams::DEFAULT
        },
        ChunkerParams {
            normalization: 4,
            ..SMALL
        },
    ];
    for p in bad {
        let err = p.validate().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{p:?}");
        assert!(
            err.message().contains("size") || err.message().contains("normalization"),
            "{err}"
        );
    }
}

#[test]
#[should_panic(expected = "invalid parameters")]
fn chunker_refuses_unvalidated_parameters() {
    let gear = GearTable::standard();
    let _ = Chunker::new(
        &[][..],
        ChunkerParams {
            normalization: 9,
            ..SMALL
        },
        &gear,
    );
}

/// The fixed secret of the keyed vectors (also in the files, in hex).
const VECTOR_SECRET: [u8; 32] = [0x42; 32];

fn lengths_vector(table: &str, seed: u8, n: usize, p: ChunkerParams) -> Vector {
    let data = pattern(seed, n);
    let mut v = Vector {
        comments: vec![
            "Chunk lengths (decimal, one per line) of the input under the parameters below.".into(),
        ],
        ..Vector::default()
    };
    let gear = if table == "standard" {
        v.field("table", "standard (fastcdc v2020 GEAR, equal to StreamCDC)");
        GearTable::standard()
    } else {
        let secret = crate::crypto::RepoSecret::from_bytes(VECTOR_SECRET);
        v.field("table", "keyed");
        v.field("secret", hex::encode(VECTOR_SECRET));
        let key = secret.derive(crate::crypto::context::CHUNKER_GEAR);
        v.field("gear-key", hex::encode(*key));
        let t = GearTable::from_key(&key);
        v.field("gear-0", format!("{:016x}", t.entry(0)));
        v.field("gear-255", format!("{:016x}", t.entry(255)));
        t
    };
    v.field("expect", "success");
    v.field("input", format!("P({seed}, {n})"));
    v.field("min-size", p.min_size);
    v.field("avg-size", p.avg_size);
    v.field("max-size", p.max_size);
    v.field("normalization", p.normalization);
    let lengths = chunk_lengths(&data, p, &gear);
    v.field("chunks", lengths.len());
    v.data = lengths.iter().map(usize::to_string).collect();
    v
}

#[test]
fn vectors_chunking() {
    let cases = [
        (
            "chunking-standard-avg1m.txt",
            "standard",
            1,
            24 << 20,
            ChunkerParams::AVG_1_MIB,
        ),
        (
            "chunking-keyed-avg1m.txt",
            "keyed",
            1,
            24 << 20,
            ChunkerParams::AVG_1_MIB,
        ),
        (
            "chunking-standard-avg256k.txt",
            "standard",
            1,
            24 << 20,
            ChunkerParams::AVG_256_KIB,
        ),
        (
            "chunking-keyed-avg256k.txt",
            "keyed",
            1,
            24 << 20,
            ChunkerParams::AVG_256_KIB,
        ),
        (
            "chunking-standard-default.txt",
            "standard",
            1,
            24 << 20,
            ChunkerParams::DEFAULT,
        ),
        ("chunking-standard-small.txt", "standard", 2, 1 << 20, SMALL),
        (
            "chunking-keyed-default.txt",
            "keyed",
            1,
            24 << 20,
            ChunkerParams::DEFAULT,
        ),
        ("chunking-keyed-small.txt", "keyed", 2, 1 << 20, SMALL),
    ];
    for (file, table, seed, n, p) in cases {
        lengths_vector(table, seed, n, p).check_or_write(file);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Any valid parameters, any input length, any read sizes: the same cuts as StreamCDC.
    #[test]
    fn streaming_matches_stream_cdc_for_random_parameters(
        min_log in 6u32..12,
        avg_extra in 1u32..4,
        max_extra in 1u32..4,
        normalization in 0u32..4,
        n in 0usize..200_000,
        step in 1usize..70_000,
        seed in 0u8..255,
    ) {
        let min_size = 1u32 << min_log;
        let avg_size = (min_size << avg_extra).max(256);
        let max_size = (avg_size << max_extra).max(1024);
        let p = ChunkerParams { min_size, avg_size, max_size, normalization };
        proptest::prop_assume!(p.validate().is_ok());
        let data = pattern(seed, n);
        let gear = GearTable::standard();
        let (got, joined) = streamed(Choppy { data: &data, step, calls: 0 }, p, &gear);
        proptest::prop_assert_eq!(&got, &stream_cdc_lengths(&data, p));
        proptest::prop_assert_eq!(&got, &chunk_lengths(&data, p, &gear));
        proptest::prop_assert!(joined == data);
    }
}
