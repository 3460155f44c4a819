//! Reading a pack file front to back without the index (format-spec/pack.md "A pack is
//! self-describing"): every complete record's chunk id, key id, place and stored hash.

use std::fs::File;
use std::io::{BufReader, ErrorKind as IoKind, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::pack::{
    PACK_HEADER_LEN, RECORD_HEADER_LEN, decode_pack_header, decode_record_header,
};
use crate::ids::PackName;
use crate::index::FoundChunk;

/// What one pack file holds.
#[derive(Debug)]
pub(super) struct ScannedPack {
    pub name: PackName,
    /// Bytes up to the end of the last complete record.
    pub size: u64,
    /// Modification time, Unix seconds (the rebuilt `packs.created`).
    pub created: i64,
    /// Every complete record, in file order (all marked data; the caller marks manifests).
    pub chunks: Vec<FoundChunk>,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// Every `packs/<xx>/<name>.pack` file, by name.
pub(super) fn pack_files(root: &Path) -> Result<Vec<(PackName, PathBuf)>> {
    let dir = root.join("packs");
    let read = |d: &Path| {
        std::fs::read_dir(d).map_err(|e| Error::io(format_args!("reading {}", d.display()), e))
    };
    let mut out = Vec::new();
    let subs = match std::fs::read_dir(&dir) {
        Ok(s) => s,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format_args!("reading {}", dir.display()), e)),
    };
    for sub in subs {
        let sub = sub.map_err(|e| Error::io(format_args!("reading {}", dir.display()), e))?;
        let Some(prefix) = sub
            .file_name()
            .to_str()
            .filter(|p| p.len() == 2)
            .map(String::from)
        else {
            continue;
        };
        if !sub.path().is_dir() {
            continue;
        }
        for f in read(&sub.path())? {
            let f =
                f.map_err(|e| Error::io(format_args!("reading {}", sub.path().display()), e))?;
            let Some(name) = f
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|h| h.parse::<PackName>().ok())
                .filter(|n| n.to_hex().starts_with(&prefix))
            else {
                continue;
            };
            out.push((name, f.path()));
        }
    }
    // Packs an earlier rebuild could take nothing from: a rebuild with the identity may.
    let lost_found = root.join(super::LOST_FOUND_DIR);
    if let Ok(entries) = std::fs::read_dir(&lost_found) {
        for f in entries.flatten() {
            if let Some(name) = f
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|h| h.parse::<PackName>().ok())
                && !out.iter().any(|(n, _)| *n == name)
            {
                out.push((name, f.path()));
            }
        }
    }
    out.sort_by_key(|a| a.0);
    Ok(out)
}

/// Scan one pack. A header that is not this pack's is an error (nothing in it can be trusted
/// to be where it says); a damaged or torn record ends the scan with what came before it.
pub(super) fn scan_pack(name: &PackName, path: &Path) -> Result<ScannedPack> {
    let io = |e| Error::io(format_args!("reading pack {}", path.display()), e);
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let file_len = meta.len();
    let created = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; PACK_HEADER_LEN];
    r.read_exact(&mut header).map_err(|e| {
        if e.kind() == IoKind::UnexpectedEof {
            Error::corrupt(format!("pack {}: header is truncated", path.display()))
        } else {
            io(e)
        }
    })?;
    let found = decode_pack_header(&header)
        .map_err(|e| e.context(format_args!("pack {}", path.display())))?;
    if found != *name {
        return Err(Error::corrupt(format!(
            "pack {}: its header names pack {found}",
            path.display()
        )));
    }
    let mut offset = PACK_HEADER_LEN as u64;
    let mut chunks = Vec::new();
    let mut stopped = None;
    let mut buf = Vec::new();
    while offset < file_len {
        let mut rh = [0u8; RECORD_HEADER_LEN];
        if file_len - offset < RECORD_HEADER_LEN as u64 {
            stopped = Some(format!("a torn record header at offset {offset}"));
            break;
        }
        r.read_exact(&mut rh).map_err(io)?;
        let h = match decode_record_header(&rh) {
            Ok(h) => h,
            Err(e) => {
                stopped = Some(format!("record at offset {offset}: {}", e.message()));
                break;
            }
        };
        if offset + h.record_len() > file_len {
            stopped = Some(format!(
                "record at offset {offset} runs past the end of the file"
            ));
            break;
        }
        buf.resize(h.envelope_len as usize, 0);
        r.read_exact(&mut buf).map_err(io)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&rh);
        hasher.update(&buf);
        chunks.push(FoundChunk {
            id: h.chunk_id,
            manifest: false,
            offset,
            length: h.record_len() as u32,
            key_id: h.key_id,
            stored_hash: *hasher.finalize().as_bytes(),
        });
        offset += h.record_len();
    }
    Ok(ScannedPack {
        name: *name,
        size: offset,
        created,
        chunks,
        stopped,
    })
}
