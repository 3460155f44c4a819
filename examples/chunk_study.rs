//! Measurements behind the chunker parameters (format-spec/chunking.md).
//!
//! Run with `cargo run --release --example chunk_study`. It prints:
//! 1. chunker throughput (keyed table, default parameters; fastcdc's own StreamCDC beside it),
//!    and envelope seal/open throughput for incompressible and compressible chunks;
//! 2. for average sizes 256 KiB .. 2 MiB (min = avg/4, max = 4*avg), the bytes a second
//!    version of a file adds to the store after a number of small scattered edits
//!    (overwrites, inserts and deletes of 1..64 bytes), and the chunk count, which drives the
//!    index size and per-chunk overhead (90 bytes of record + envelope, one index row).
//!
//! Inputs are the test pattern P(seed, n) (incompressible) and a fixed pseudo-random edit list,
//! so two runs print the same dedup numbers; throughputs depend on the machine.

use std::collections::HashSet;
use std::time::Instant;

use rsbackup::chunking::{Chunker, ChunkerParams, GearTable, chunk_lengths};
use rsbackup::crypto::envelope::{open, seal};
use rsbackup::crypto::{DataKey, RepoSecret, context};
use rsbackup::ids::KeyId;

const MIB: usize = 1 << 20;

fn pattern(seed: u8, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new_keyed(&[seed; 32])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// splitmix64: a fixed, dependency-free sequence for the edit positions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `count` edits at scattered places: a third overwrite, a third insert, a third delete.
fn edited(base: &[u8], count: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut positions: Vec<usize> = (0..count).map(|_| rng.below(base.len())).collect();
    positions.sort_unstable();
    let mut out = Vec::with_capacity(base.len() + count * 64);
    let mut at = 0;
    for (i, &p) in positions.iter().enumerate() {
        if p < at {
            continue;
        }
        out.extend_from_slice(&base[at..p]);
        let len = 1 + rng.below(64);
        match i % 3 {
            0 => {
                out.extend((0..len).map(|_| rng.next() as u8));
                at = (p + len).min(base.len());
            }
            1 => {
                out.extend((0..len).map(|_| rng.next() as u8));
                at = p;
            }
            _ => at = (p + len).min(base.len()),
        }
    }
    out.extend_from_slice(&base[at..]);
    out
}

fn params(avg: u32) -> ChunkerParams {
    ChunkerParams {
        min_size: avg / 4,
        avg_size: avg,
        max_size: avg * 4,
        normalization: 1,
    }
}

fn chunk_ids(data: &[u8], p: ChunkerParams, gear: &GearTable) -> Vec<([u8; 32], usize)> {
    let mut offset = 0;
    chunk_lengths(data, p, gear)
        .into_iter()
        .map(|len| {
            let id = *blake3::hash(&data[offset..offset + len]).as_bytes();
            offset += len;
            (id, len)
        })
        .collect()
}

fn mbps(bytes: usize, start: Instant) -> f64 {
    bytes as f64 / MIB as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secret = RepoSecret::from_bytes([0x42; 32]);
    let gear = GearTable::from_key(&secret.derive(context::CHUNKER_GEAR));
    let p = ChunkerParams::DEFAULT;

    // 1. Throughput.
    let data = pattern(1, 512 * MIB);
    let start = Instant::now();
    let mut chunker = Chunker::new(&data[..], p, &gear);
    let mut chunks = 0;
    while chunker.next_slice().unwrap().is_some() {
        chunks += 1;
    }
    println!(
        "chunker (keyed, default params), 512 MiB in memory: {:.0} MB/s, {chunks} chunks",
        mbps(data.len(), start)
    );
    let start = Instant::now();
    let n = fastcdc::v2020::StreamCDC::new(&data[..], p.min_size, p.avg_size, p.max_size).count();
    println!(
        "fastcdc StreamCDC (public table), same input:       {:.0} MB/s, {n} chunks",
        mbps(data.len(), start)
    );

    let key = DataKey::from_bytes([7; 32]);
    let idk = secret.chunk_id_key();
    let text: Vec<u8> = (0..64 * MIB)
        .map(|i| b"backup log line 0123456789\n"[i % 27] ^ (i / 4096) as u8)
        .collect();
    for (name, input) in [
        ("incompressible", &data[..64 * MIB]),
        ("compressible", &text[..]),
    ] {
        let pieces: Vec<&[u8]> = input.chunks(MIB).collect();
        let start = Instant::now();
        let ids: Vec<_> = pieces.iter().map(|c| idk.chunk_id(c)).collect();
        let hash = mbps(input.len(), start);
        let start = Instant::now();
        let sealed: Vec<Vec<u8>> = pieces
            .iter()
            .zip(&ids)
            .map(|(c, id)| seal(&key, KeyId(1), id, c, 3).unwrap())
            .collect();
        let seal_rate = mbps(input.len(), start);
        let stored: usize = sealed.iter().map(Vec::len).sum();
        let start = Instant::now();
        for (env, id) in sealed.iter().zip(&ids) {
            open(&key, KeyId(1), id, env, 4 * MIB).unwrap();
        }
        let open_rate = mbps(input.len(), start);
        println!(
            "{name:>14} 1 MiB chunks: chunk id {hash:.0} MB/s, seal (zstd 3) {seal_rate:.0} MB/s, open {open_rate:.0} MB/s, stored {:.1}%",
            100.0 * stored as f64 / input.len() as f64
        );
    }

    // 2. Dedup after small scattered edits.
    let base = pattern(2, 256 * MIB);
    println!(
        "\n256 MiB file, second version after N scattered 1..64-byte edits: new bytes stored (% of file), chunks"
    );
    println!("| avg | chunks | N=8 | N=32 | N=128 |");
    println!("| --- | --- | --- | --- | --- |");
    let versions: Vec<(usize, Vec<u8>)> = [8, 32, 128]
        .into_iter()
        .map(|n| (n, edited(&base, n, n as u64)))
        .collect();
    for avg in [256 << 10, 512 << 10, 1 << 20, 2 << 20] {
        let pp = params(avg);
        let old = chunk_ids(&base, pp, &gear);
        let known: HashSet<[u8; 32]> = old.iter().map(|(id, _)| *id).collect();
        let mut row = format!("| {} KiB | {} |", avg >> 10, old.len());
        for (_, v) in &versions {
            let new: usize = chunk_ids(v, pp, &gear)
                .iter()
                .filter(|(id, _)| !known.contains(id))
                .map(|(_, len)| len)
                .sum();
            row.push_str(&format!(" {:.1}% |", 100.0 * new as f64 / v.len() as f64));
        }
        println!("{row}");
    }
}
