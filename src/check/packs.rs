//! Checking one pack file against the index: it exists with its recorded size, its header names
//! it, and every record the index places in it lies inside it with a matching header; with
//! `read_data`, every record's BLAKE3; with an identity, every chunk's authentication and id.
//! Records are read in offset order, so the reads are sequential.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::check::Finding;
use crate::format::pack::{
    PACK_HEADER_LEN, RECORD_HEADER_LEN, decode_pack_header, decode_record_header,
};
use crate::ids::ChunkId;
use crate::index::{ChunkLocation, PackInfo};
use crate::reader::{IndexPool, SessionReader};
use crate::repo::Repo;
use crate::store::pack_path;

/// What checking one pack found.
#[derive(Default)]
pub(super) struct PackOutcome {
    pub findings: Vec<Finding>,
    /// Chunks found damaged (for the paths that depend on them).
    pub damaged: Vec<ChunkId>,
    pub chunks: u64,
    pub bytes_read: u64,
    /// The pack file itself is damaged (missing, wrong size, bad header).
    pub pack_damaged: bool,
}

impl PackOutcome {
    fn chunk_problem(&mut self, loc: &ChunkLocation, what: String) {
        self.damaged.push(loc.id);
        self.findings.push(Finding {
            what,
            chunk: Some(loc.id),
            pack: Some(loc.pack.to_hex()),
            sessions: Vec::new(),
        });
    }

    fn pack_problem(&mut self, pack: &PackInfo, what: String) {
        self.pack_damaged = true;
        self.findings.push(Finding {
            what,
            chunk: None,
            pack: Some(pack.name.to_hex()),
            sessions: Vec::new(),
        });
    }
}

/// Check one sealed pack.
pub(super) fn check_pack(
    repo: &Repo,
    pool: &IndexPool,
    pack: &PackInfo,
    read_data: bool,
    reader: Option<&SessionReader>,
) -> PackOutcome {
    let mut out = PackOutcome::default();
    let chunks = match pool.with(|index| index.chunks_in_pack(pack.row)) {
        Ok(chunks) => chunks,
        Err(e) => {
            out.pack_problem(
                pack,
                format!("listing the chunks of pack {}: {e}", pack.name),
            );
            return out;
        }
    };
    out.chunks = chunks.len() as u64;
    let path = pack_path(repo.root(), &pack.name);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "is missing".to_string()
            } else {
                format!("cannot be opened: {e}")
            };
            out.pack_problem(
                pack,
                format!(
                    "pack file {} {why}; the {} chunks the index places in it are lost",
                    path.display(),
                    chunks.len()
                ),
            );
            for loc in &chunks {
                out.chunk_problem(
                    loc,
                    format!("chunk is in pack {}, whose file {why}", pack.name),
                );
            }
            return out;
        }
    };
    let actual_size = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            out.pack_problem(pack, format!("examining pack file {}: {e}", path.display()));
            return out;
        }
    };
    if actual_size != pack.size {
        out.pack_problem(
            pack,
            format!(
                "pack file {} is {actual_size} bytes but the index recorded {} when it was sealed",
                path.display(),
                pack.size
            ),
        );
    }
    let mut header = [0u8; PACK_HEADER_LEN];
    match file.read_exact_at(&mut header, 0) {
        Ok(()) => match decode_pack_header(&header) {
            Ok(name) if name == pack.name => {}
            Ok(name) => out.pack_problem(
                pack,
                format!(
                    "pack file {} names itself {name} in its header",
                    path.display()
                ),
            ),
            Err(e) => out.pack_problem(pack, format!("pack file {}: header: {e}", path.display())),
        },
        Err(e) => out.pack_problem(
            pack,
            format!("pack file {}: reading the header: {e}", path.display()),
        ),
    }
    if read_data {
        // One pass from start to end: let the kernel read ahead generously.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
    }
    let mut previous_end = PACK_HEADER_LEN as u64;
    let mut buf = Vec::new();
    for loc in &chunks {
        let end = loc.offset.saturating_add(u64::from(loc.length));
        if loc.offset < previous_end || end > actual_size || loc.length < RECORD_HEADER_LEN as u32 {
            let why = if loc.offset < previous_end {
                "overlaps the record before it"
            } else if end > actual_size {
                "runs past the end of the file (truncated pack?)"
            } else {
                "is shorter than a record header"
            };
            out.chunk_problem(
                loc,
                format!(
                    "the index places the chunk at offset {}, length {} in pack {}, which {why}",
                    loc.offset, loc.length, pack.name
                ),
            );
            continue;
        }
        previous_end = end;
        let read_len = if read_data || reader.is_some() {
            loc.length as usize
        } else {
            RECORD_HEADER_LEN
        };
        buf.resize(read_len, 0);
        if let Err(e) = file.read_exact_at(&mut buf, loc.offset) {
            out.chunk_problem(
                loc,
                format!(
                    "reading the record at offset {} of pack {}: {e}",
                    loc.offset, pack.name
                ),
            );
            continue;
        }
        out.bytes_read += read_len as u64;
        if let Some(why) = header_mismatch(loc, &buf[..RECORD_HEADER_LEN]) {
            out.chunk_problem(
                loc,
                format!(
                    "the record at offset {} of pack {} {why}",
                    loc.offset, pack.name
                ),
            );
            continue;
        }
        if read_len == loc.length as usize && *blake3::hash(&buf).as_bytes() != loc.stored_hash {
            out.chunk_problem(
                loc,
                format!(
                    "the record at offset {} of pack {} does not match its stored hash \
                     (the bytes on disk changed: bit rot or tampering)",
                    loc.offset, pack.name
                ),
            );
            continue;
        }
        if let Some(reader) = reader
            && let Err(e) = reader.open_envelope(loc, &buf[RECORD_HEADER_LEN..])
        {
            out.chunk_problem(loc, format!("the chunk does not open: {e}"));
        }
    }
    out
}

/// Why a record header does not match the index, if it does not.
fn header_mismatch(loc: &ChunkLocation, bytes: &[u8]) -> Option<String> {
    match decode_record_header(bytes) {
        Err(e) => Some(format!("has no valid record header: {e}")),
        Ok(h) if h.chunk_id != loc.id => Some(format!("holds chunk {} instead", h.chunk_id)),
        Ok(h) if h.key_id != loc.key_id => Some(format!(
            "names data key {} but the index says {}",
            h.key_id.0, loc.key_id.0
        )),
        Ok(h) if u64::from(h.envelope_len) + RECORD_HEADER_LEN as u64 != u64::from(loc.length) => {
            Some(format!(
                "is {} bytes long but the index says {}",
                u64::from(h.envelope_len) + RECORD_HEADER_LEN as u64,
                loc.length
            ))
        }
        Ok(_) => None,
    }
}
