//! Identifiers: small newtypes so that a chunk id is never confused with a pack name.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A chunk id: keyed BLAKE3 of the chunk's plaintext (format-spec/conventions.md).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

/// A pack name: 16 random bytes, also its file name in hex (format-spec/pack.md).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackName(pub [u8; 16]);

/// A data key id: the row id of the wrapped key in the index (format-spec/keys.md).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KeyId(pub u64);

/// A session id: the row id of the session in the index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SessionId(pub i64);

/// A writer id: 16 random bytes in hex; names the writer's lock file (format-spec/repository.md).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct WriterId(pub String);

fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| Error::invalid(format!("{what} must be {} hex digits, got {s:?}", N * 2)))?;
    Ok(out)
}

impl ChunkId {
    /// The id as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &hex::encode(&self.0[..8]))
    }
}

impl FromStr for ChunkId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex::<32>(s, "chunk id").map(ChunkId)
    }
}

impl PackName {
    /// A fresh random pack name.
    pub fn random() -> Self {
        PackName(crate::crypto::random_array())
    }

    /// The name as lowercase hex (the file name without `.pack`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for PackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackName({})", hex::encode(self.0))
    }
}

impl FromStr for PackName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex::<16>(s, "pack name").map(PackName)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        s.parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(SessionId)
            .ok_or_else(|| {
                Error::invalid(format!("session id must be a positive number, got {s:?}"))
            })
    }
}

impl WriterId {
    /// A fresh random writer id.
    pub fn random() -> Self {
        WriterId(hex::encode(crate::crypto::random_array::<16>()))
    }
}

impl fmt::Display for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_id_hex_round_trip() {
        let id = ChunkId([0xab; 32]);
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        assert!("abc".parse::<ChunkId>().is_err());
    }

    #[test]
    fn session_id_rejects_zero_and_words() {
        assert!("0".parse::<SessionId>().is_err());
        assert!("latest".parse::<SessionId>().is_err());
        assert_eq!("42".parse::<SessionId>().unwrap(), SessionId(42));
    }
}
