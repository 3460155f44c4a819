//! Byte mutation without coverage feedback: a few stacked edits of one starting input, now
//! and then spliced with another, with the tokens the decoders look for. Deterministic for a
//! seed.

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Magic strings, names and numbers of the formats: inserting them whole reaches branches
/// that single byte changes would take long to find.
const TOKENS: &[&[u8]] = &[
    b"RSBKPACK",
    b"RSBR",
    b"RSBKMAN1",
    b"RSBKSESS",
    b"RSBKREFS",
    b"RSBFILES",
    b"RSBKMIRR",
    b"RSBKDK01",
    b"RSBKSEC1",
    b"age-encryption.org/v1\n",
    b"-> X25519 ",
    b"rsbackup-client=web1 ",
    b"rsbackup-machine=0123456789abcdef0123456789abcdef ",
    b"complete ",
    b"rsync-exit=",
    b"sources=",
    b"skipped=",
    b"%2C",
    b"rsync --server ",
    b"--sender ",
    b"user.rsync.",
    b"user.rsync.%stat",
    b"user.rsync.%aacl",
    b"user.rsync.%dacl",
    b"security.capability",
    b"trusted.",
    b"system.posix_acl_access",
    b"\"version\":1",
    b"\"machines\":[",
    b"[clients.web1]\n",
    b"windows = [\"",
    b"addresses = [\"",
    b"quota = \"",
    b"mon-fri 22:00-06:00",
    b"24:00",
    b"::ffff:",
    b"/128",
    b"\n{",
    b"\"errors\": [",
    b"\x28\xb5\x2f\xfd",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"\x00\x00\x00\x02",
    b"\x00\x00\x01\x00",
];

/// A mutated copy of one of `inputs` (which is not empty).
pub fn mutate(rng: &mut Rng, inputs: &[Vec<u8>]) -> Vec<u8> {
    let mut data = inputs[rng.below(inputs.len())].clone();
    let edits = 1 + rng.below(8);
    for _ in 0..edits {
        edit(rng, &mut data, inputs);
    }
    data
}

fn edit(rng: &mut Rng, data: &mut Vec<u8>, inputs: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(12) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            // An interesting byte.
            let i = rng.below(len);
            data[i] = [0, 1, 0x7f, 0x80, 0xff, b' ', b'\n', b'=', b',', b'"'][rng.below(10)];
        }
        3 if len > 0 => {
            // Delete a range.
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            data.drain(at..at + n);
        }
        4 => {
            // Insert random bytes.
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
        5 if len > 0 => {
            // Duplicate a range.
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(256));
            let copy = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, copy);
        }
        6 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            let at = rng.below(len + 1);
            data.splice(at..at, token.iter().copied());
        }
        7 if len >= 4 => {
            // Overwrite a little-endian word with a boundary value.
            let at = rng.below(len - 3);
            let v: u32 = [
                0,
                1,
                0x7f,
                0x80,
                0xff,
                0xffff,
                0x7fff_ffff,
                0xffff_ffff,
                1 << 24,
            ][rng.below(9)];
            data[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        8 if len >= 4 => {
            // Add or subtract a little to a word: lengths just off by one.
            let at = rng.below(len - 3);
            let w = u32::from_le_bytes(data[at..at + 4].try_into().expect("4"));
            let delta = rng.below(33) as i64 - 16;
            data[at..at + 4].copy_from_slice(&((w as i64 + delta) as u32).to_le_bytes());
        }
        9 => {
            // Splice: the tail of another input.
            let other = &inputs[rng.below(inputs.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        10 if len > 0 => {
            data.truncate(rng.below(len));
        }
        11 if len > 0 => {
            // Swap two bytes.
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        _ => data.push(rng.next() as u8),
    }
    // Keep inputs small: the decoders' limits are tested by lengths, not by bulk.
    data.truncate(1 << 20);
}
