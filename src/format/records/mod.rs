//! The files that make the index rebuildable (format-spec/records.md): a session record per
//! visible session (`sessions/<id>.session`) and a reference list per sealed pack
//! (`packs/<xx>/<name>.refs`). Both end in a BLAKE3 of everything before it, so rot is found,
//! not read as a different session or reference list.

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ChunkId, PackName};

/// Session record magic.
pub const SESSION_MAGIC: &[u8; 8] = b"RSBKSESS";
/// Pack reference list magic.
pub const REFS_MAGIC: &[u8; 8] = b"RSBKREFS";
/// Version of the reference lists written by this build.
pub const RECORDS_VERSION: u32 = 1;
/// Version of the session records written by this build (2 adds the reason; 1 is still read).
pub const SESSION_RECORD_VERSION: u32 = 2;
/// Fixed part of a session record, before the client name.
pub const SESSION_HEADER_LEN: usize = 92;
/// Fixed part of a version 1 session record.
pub const SESSION_HEADER_LEN_V1: usize = 88;
/// Longest reason a record holds (as `sessions.reason`).
pub const MAX_REASON_LEN: usize = 4096;
/// Fixed part of a reference list, before its entries.
pub const REFS_HEADER_LEN: usize = 40;
/// Longest client name a record holds.
pub const MAX_CLIENT_LEN: usize = 255;
/// Most root chunks (or references of one manifest chunk) a reader accepts: bounds memory
/// against a garbled count.
pub const MAX_IDS: u32 = 1 << 24;

const PINNED_FLAG: u32 = 1;
const CHECKSUM_LEN: usize = 32;

/// What a session record says its session ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Everything went in.
    Complete,
    /// Committed, but some paths could not be read.
    Incomplete,
}

/// One visible session, as its record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id (its `sessions.id`), positive.
    pub id: i64,
    /// The client.
    pub client: String,
    /// Complete or incomplete.
    pub state: RecordState,
    /// Why an incomplete (partial) session is partial; none for a complete one, and in a
    /// version 1 record.
    pub reason: Option<String>,
    /// Kept whatever the retention rules say.
    pub pinned: bool,
    /// Server time the session started, Unix seconds.
    pub started: i64,
    /// Server time it was committed, Unix seconds.
    pub finished: i64,
    /// Statistics as in the index: entries, bytes, errors, new chunks, new bytes.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Paths not backed up.
    pub errors: u64,
    /// Chunks this session added.
    pub new_chunks: u64,
    /// Stored bytes this session added.
    pub new_bytes: u64,
    /// The manifest chunks, in order.
    pub root: Vec<ChunkId>,
}

/// One manifest chunk of a pack and the chunks it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRefs {
    /// The manifest chunk.
    pub id: ChunkId,
    /// The data chunks it names (its `chunk_refs`).
    pub refs: Vec<ChunkId>,
}

/// The reference list of one sealed pack: which of its records are manifest chunks, and what
/// each names. Every other record of the pack is a data chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRefs {
    /// The pack it belongs to.
    pub pack: PackName,
    /// Its manifest chunks.
    pub manifests: Vec<ManifestRefs>,
}

/// Encode a session record.
pub fn encode_session(s: &SessionRecord) -> Result<Vec<u8>> {
    if s.id <= 0 {
        return Err(Error::invalid(format!(
            "session record: id {} is not positive",
            s.id
        )));
    }
    if s.client.is_empty() || s.client.len() > MAX_CLIENT_LEN {
        return Err(Error::invalid(format!(
            "session record of session {}: client name of {} bytes (1 to {MAX_CLIENT_LEN})",
            s.id,
            s.client.len()
        )));
    }
    let reason = s.reason.as_deref().unwrap_or("");
    if reason.len() > MAX_REASON_LEN || (!reason.is_empty() && s.state == RecordState::Complete) {
        return Err(Error::invalid(format!(
            "session record of session {}: a reason of {} bytes (at most {MAX_REASON_LEN}, and \
             only for a partial session)",
            s.id,
            reason.len()
        )));
    }
    let mut out = Vec::with_capacity(
        SESSION_HEADER_LEN + s.client.len() + reason.len() + 32 * s.root.len() + 32,
    );
    out.extend_from_slice(SESSION_MAGIC);
    out.extend_from_slice(&SESSION_RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&(if s.pinned { PINNED_FLAG } else { 0 }).to_le_bytes());
    out.extend_from_slice(&s.id.to_le_bytes());
    out.extend_from_slice(&s.started.to_le_bytes());
    out.extend_from_slice(&s.finished.to_le_bytes());
    for v in [s.files, s.bytes, s.errors, s.new_chunks, s.new_bytes] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(match s.state {
        RecordState::Complete => 1,
        RecordState::Incomplete => 2,
    });
    out.push(0);
    out.extend_from_slice(&(s.client.len() as u16).to_le_bytes());
    out.extend_from_slice(&(s.root.len() as u32).to_le_bytes());
    out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    debug_assert_eq!(out.len(), SESSION_HEADER_LEN);
    out.extend_from_slice(s.client.as_bytes());
    out.extend_from_slice(reason.as_bytes());
    for id in &s.root {
        out.extend_from_slice(&id.0);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    Ok(out)
}

/// Decode a session record: `UnsupportedVersion` for an unknown version, `Corrupt` for
/// anything else that is wrong (with what).
pub fn decode_session(bytes: &[u8]) -> Result<SessionRecord> {
    let version = if bytes.len() >= 12 && &bytes[..8] == SESSION_MAGIC {
        u32_at(bytes, 8)
    } else {
        SESSION_RECORD_VERSION
    };
    let (fixed, accepted) = match version {
        1 => (SESSION_HEADER_LEN_V1, 1),
        _ => (SESSION_HEADER_LEN, SESSION_RECORD_VERSION),
    };
    let body = checked_body(bytes, SESSION_MAGIC, fixed, accepted, "session record")?;
    let bad = |why: &str| Error::corrupt(format!("session record: {why}"));
    let flags = u32_at(body, 12);
    if flags & !PINNED_FLAG != 0 {
        return Err(bad(&format!("unknown flags {flags:#x}")));
    }
    let id = i64_at(body, 16);
    if id <= 0 {
        return Err(bad(&format!("session id {id} is not positive")));
    }
    let state = match body[80] {
        1 => RecordState::Complete,
        2 => RecordState::Incomplete,
        other => return Err(bad(&format!("unknown state {other}"))),
    };
    if body[81] != 0 {
        return Err(bad("reserved byte is not zero"));
    }
    let client_len = usize::from(u16::from_le_bytes([body[82], body[83]]));
    let roots = u32_at(body, 84);
    if client_len == 0 || client_len > MAX_CLIENT_LEN {
        return Err(bad(&format!("client name of {client_len} bytes")));
    }
    if roots > MAX_IDS {
        return Err(bad(&format!("{roots} root chunks is more than {MAX_IDS}")));
    }
    let reason_len = if version == 1 {
        0
    } else {
        if body[90] != 0 || body[91] != 0 {
            return Err(bad("reserved field is not zero"));
        }
        usize::from(u16::from_le_bytes([body[88], body[89]]))
    };
    if reason_len > MAX_REASON_LEN || (reason_len > 0 && state == RecordState::Complete) {
        return Err(bad(&format!(
            "a reason of {reason_len} bytes (at most {MAX_REASON_LEN}, only when partial)"
        )));
    }
    let expected = fixed + client_len + reason_len + 32 * roots as usize;
    if body.len() != expected {
        return Err(bad(&format!(
            "{} bytes where the header says {expected}",
            body.len()
        )));
    }
    let client = std::str::from_utf8(&body[fixed..fixed + client_len])
        .map_err(|_| bad("client name is not UTF-8"))?
        .to_string();
    if client.contains(['/', '\0']) {
        return Err(bad("client name holds '/' or NUL"));
    }
    let at = fixed + client_len;
    let reason =
        std::str::from_utf8(&body[at..at + reason_len]).map_err(|_| bad("reason is not UTF-8"))?;
    let reason = (!reason.is_empty()).then(|| reason.to_string());
    let root = ids_at(&body[at + reason_len..]);
    Ok(SessionRecord {
        id,
        client,
        state,
        reason,
        pinned: flags & PINNED_FLAG != 0,
        started: i64_at(body, 24),
        finished: i64_at(body, 32),
        files: u64_at(body, 40),
        bytes: u64_at(body, 48),
        errors: u64_at(body, 56),
        new_chunks: u64_at(body, 64),
        new_bytes: u64_at(body, 72),
        root,
    })
}

/// Encode a pack's reference list.
pub fn encode_refs(r: &PackRefs) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(REFS_HEADER_LEN + CHECKSUM_LEN);
    out.extend_from_slice(REFS_MAGIC);
    out.extend_from_slice(&RECORDS_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&r.pack.0);
    out.extend_from_slice(&count(r.manifests.len(), "manifest chunks")?.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for m in &r.manifests {
        out.extend_from_slice(&m.id.0);
        out.extend_from_slice(&count(m.refs.len(), "references")?.to_le_bytes());
        for c in &m.refs {
            out.extend_from_slice(&c.0);
        }
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    Ok(out)
}

/// Decode a pack's reference list (errors as [`decode_session`]).
pub fn decode_refs(bytes: &[u8]) -> Result<PackRefs> {
    let body = checked_body(
        bytes,
        REFS_MAGIC,
        REFS_HEADER_LEN,
        RECORDS_VERSION,
        "pack reference list",
    )?;
    let bad = |why: String| Error::corrupt(format!("pack reference list: {why}"));
    if u32_at(body, 12) != 0 || u32_at(body, 36) != 0 {
        return Err(bad("reserved field is not zero".into()));
    }
    let mut pack = [0u8; 16];
    pack.copy_from_slice(&body[16..32]);
    let n = u32_at(body, 32);
    if n > MAX_IDS {
        return Err(bad(format!("{n} manifest chunks is more than {MAX_IDS}")));
    }
    let mut manifests = Vec::new();
    let mut at = REFS_HEADER_LEN;
    for i in 0..n {
        if body.len() < at + 36 {
            return Err(bad(format!("entry {i} of {n} is truncated")));
        }
        let id = ids_at(&body[at..at + 32]).remove(0);
        let refs = u32_at(body, at + 32);
        if refs > MAX_IDS {
            return Err(bad(format!("entry {i}: {refs} references is too many")));
        }
        let end = at + 36 + 32 * refs as usize;
        if body.len() < end {
            return Err(bad(format!("entry {i} of {n} is truncated")));
        }
        manifests.push(ManifestRefs {
            id,
            refs: ids_at(&body[at + 36..end]),
        });
        at = end;
    }
    if at != body.len() {
        return Err(bad(format!(
            "{} bytes after the last entry",
            body.len() - at
        )));
    }
    Ok(PackRefs {
        pack: PackName(pack),
        manifests,
    })
}

/// Check length, magic, version and checksum; return the bytes before the checksum.
fn checked_body<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    header: usize,
    accepted: u32,
    what: &str,
) -> Result<&'a [u8]> {
    if bytes.len() < header + CHECKSUM_LEN {
        return Err(Error::corrupt(format!(
            "{what} is truncated: {} bytes, at least {} expected",
            bytes.len(),
            header + CHECKSUM_LEN
        )));
    }
    if &bytes[..8] != magic {
        return Err(Error::corrupt(format!("{what} has a bad magic")));
    }
    let version = u32_at(bytes, 8);
    if version != accepted {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!("{what} has version {version}; this build reads version {accepted}"),
        ));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(body).as_bytes() != sum {
        return Err(Error::corrupt(format!(
            "{what} does not match its checksum (damaged)"
        )));
    }
    Ok(body)
}

fn count(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_IDS)
        .ok_or_else(|| Error::invalid(format!("{n} {what} is more than {MAX_IDS}")))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn ids_at(b: &[u8]) -> Vec<ChunkId> {
    b.chunks_exact(32)
        .map(|c| ChunkId(c.try_into().expect("32 bytes")))
        .collect()
}

mod sources;
pub use sources::{
    MAX_SOURCE_LEN, MAX_SOURCES, SOURCES_MAGIC, SOURCES_RECORD_VERSION, decode_sources,
    encode_sources,
};

#[cfg(test)]
mod tests;
