//! The session's sources record (`sessions/<id>.sources`, format-spec/records.md "Session
//! sources"): the client's configured sources, with their full paths, of a session whose paths
//! are full paths on the client (`var/www/...` for the source `/var/www`). A session without
//! one was recorded before full paths: each source lies under its last component (`www/...`).

use super::{checked_body, u32_at};
use crate::error::{Error, Result};

/// Sources record magic.
pub const SOURCES_MAGIC: &[u8; 8] = b"RSBKSRCS";
/// Version of the sources records written (and read) by this build.
pub const SOURCES_RECORD_VERSION: u32 = 1;
/// Fixed part of a sources record, before its entries.
pub const SOURCES_HEADER_LEN: usize = 16;
/// Most sources a record holds.
pub const MAX_SOURCES: usize = 4096;
/// Longest source path a record holds.
pub const MAX_SOURCE_LEN: usize = 4096;

/// Encode `sources` (absolute paths on the client; an empty list: full paths, sources not
/// named, as for the whole tree `/`).
pub fn encode_sources(sources: &[Vec<u8>]) -> Result<Vec<u8>> {
    if sources.len() > MAX_SOURCES {
        return Err(Error::invalid(format!(
            "{} sources is more than {MAX_SOURCES}",
            sources.len()
        )));
    }
    let mut out = SOURCES_MAGIC.to_vec();
    out.extend_from_slice(&SOURCES_RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&(sources.len() as u32).to_le_bytes());
    for source in sources {
        check_source(source).map_err(Error::invalid)?;
        out.extend_from_slice(&(source.len() as u16).to_le_bytes());
        out.extend_from_slice(source);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    Ok(out)
}

/// Decode a sources record (checked as format-spec/records.md says).
pub fn decode_sources(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let body = checked_body(
        bytes,
        SOURCES_MAGIC,
        SOURCES_HEADER_LEN,
        SOURCES_RECORD_VERSION,
        "sources record",
    )?;
    let bad = |why: String| Error::corrupt(format!("sources record: {why}"));
    let n = u32_at(body, 12) as usize;
    if n > MAX_SOURCES {
        return Err(bad(format!("{n} sources is more than {MAX_SOURCES}")));
    }
    let mut rest = &body[SOURCES_HEADER_LEN..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(bad("cut short".into()));
        };
        let len = usize::from(u16::from_le_bytes(*len));
        let Some(source) = tail.get(..len) else {
            return Err(bad("cut short".into()));
        };
        check_source(source).map_err(bad)?;
        out.push(source.to_vec());
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the last source", rest.len())));
    }
    Ok(out)
}

/// A source path: absolute, at most [`MAX_SOURCE_LEN`] bytes, no NUL, no empty (but for `/`
/// itself), `.` or `..` component, no trailing `/`.
fn check_source(source: &[u8]) -> std::result::Result<(), String> {
    let ok = source == b"/"
        || (source.len() <= MAX_SOURCE_LEN
            && source.starts_with(b"/")
            && !source.contains(&0)
            && source[1..]
                .split(|&b| b == b'/')
                .all(|c| !c.is_empty() && c != b"." && c != b".."));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an absolute source path",
            String::from_utf8_lossy(source)
        ))
    }
}
