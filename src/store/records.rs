//! The files beside the packs that make `index.db` rebuildable (format-spec/records.md):
//! wrapped data keys (`keys/data/<id>.age`), session records (`sessions/<id>.session`) and pack
//! reference lists (`packs/<xx>/<name>.refs`). Each is written durably before the index points
//! at what it describes, and removed after the index row that needs it is gone.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::records::{
    PackRefs, RecordState, SessionRecord, decode_refs, decode_session, encode_refs, encode_session,
};
use crate::ids::{ChunkId, KeyId, PackName, SessionId};
use crate::index::{SessionInfo, SessionState};
use crate::store::durable::{create_dir_synced, sync_dir, write_atomic, write_new_synced};
use crate::store::pack_path;

/// Directory of session records.
pub const SESSIONS_DIR: &str = "sessions";
/// Directory of wrapped data keys.
pub const DATA_KEYS_DIR: &str = "keys/data";

/// `sessions/<id, 20 digits>.session`.
pub fn session_record_path(root: &Path, id: SessionId) -> PathBuf {
    root.join(SESSIONS_DIR)
        .join(format!("{:020}.session", id.0))
}

/// `sessions/<id, 20 digits>.sources`: the session's sources, for a session with full paths.
pub fn sources_record_path(root: &Path, id: SessionId) -> PathBuf {
    root.join(SESSIONS_DIR)
        .join(format!("{:020}.sources", id.0))
}

/// `keys/data/<key id, 20 digits>.age`.
pub fn data_key_path(root: &Path, id: KeyId) -> PathBuf {
    root.join(DATA_KEYS_DIR).join(format!("{:020}.age", id.0))
}

/// `packs/<xx>/<name>.refs`, beside the pack.
pub fn refs_path(root: &Path, pack: &PackName) -> PathBuf {
    pack_path(root, pack).with_extension("refs")
}

/// The record of a visible session, from its index row and root.
pub fn session_record(info: &SessionInfo, root: Vec<ChunkId>) -> Result<SessionRecord> {
    let state = match info.state {
        SessionState::Complete => RecordState::Complete,
        SessionState::Partial => RecordState::Incomplete,
        SessionState::Running => {
            return Err(Error::invalid(format!(
                "session {} is still running: it has no record",
                info.id
            )));
        }
    };
    Ok(SessionRecord {
        id: info.id,
        client: info.client.clone(),
        state,
        reason: info
            .reason
            .as_deref()
            .map(crate::index::cut_reason)
            .filter(|r| !r.is_empty() && state == RecordState::Incomplete)
            .map(str::to_string),
        pinned: info.pinned,
        started: info.started,
        finished: info.finished.unwrap_or(info.started),
        files: info.stats.files,
        bytes: info.stats.bytes,
        errors: info.stats.errors,
        new_chunks: info.stats.new_chunks,
        new_bytes: info.stats.new_bytes,
        root,
    })
}

fn ensure_dir(root: &Path, rel: &str) -> Result<PathBuf> {
    let dir = root.join(rel);
    if !dir.is_dir() {
        if let Some(parent) = dir.parent().filter(|p| !p.is_dir()) {
            create_dir_synced(parent)?;
        }
        create_dir_synced(&dir)?;
    }
    Ok(dir)
}

/// `sessions/last-id`: the highest session id ever given a record, so that a rebuilt index
/// never hands out the id of a session forgotten before the rebuild (format-spec/records.md).
pub const LAST_ID_FILE: &str = "last-id";

/// The id in `sessions/last-id`, or `None` when there is no such file.
pub fn read_last_session_id(root: &Path) -> Result<Option<i64>> {
    let path = root.join(SESSIONS_DIR).join(LAST_ID_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format_args!("reading {}", path.display()), e)),
    };
    text.strip_suffix('\n')
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|id| *id > 0 && text.len() <= 20)
        .map(Some)
        .ok_or_else(|| {
            Error::corrupt(format!(
                "{}: not a session id and a newline: {text:?}",
                path.display()
            ))
        })
}

/// Write (or replace, for a change of pin state) a session record durably, after raising
/// `sessions/last-id` to its id.
pub fn write_session_record(root: &Path, record: &SessionRecord) -> Result<()> {
    ensure_dir(root, SESSIONS_DIR)?;
    // A garbled file is replaced: the records beside it give a floor for the rebuild anyway.
    if read_last_session_id(root).ok().flatten().unwrap_or(0) < record.id {
        write_atomic(
            &root.join(SESSIONS_DIR).join(LAST_ID_FILE),
            format!("{}\n", record.id).as_bytes(),
            0o644,
        )?;
    }
    let bytes = encode_session(record)?;
    write_atomic(
        &session_record_path(root, SessionId(record.id)),
        &bytes,
        0o644,
    )
}

/// Read and decode one session record; the error names the file.
pub fn read_session_record(path: &Path) -> Result<SessionRecord> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format_args!("reading session record {}", path.display()), e))?;
    decode_session(&bytes).map_err(|e| e.context(format_args!("{}", path.display())))
}

/// Remove a session record and its sources record (a missing one is fine) and make the
/// removals durable.
pub fn remove_session_record(root: &Path, id: SessionId) -> Result<()> {
    remove_synced(&session_record_path(root, id))?;
    remove_synced(&sources_record_path(root, id))
}

/// Write a session's sources record durably, before its session record.
pub fn write_session_sources(root: &Path, id: SessionId, sources: &[Vec<u8>]) -> Result<()> {
    ensure_dir(root, SESSIONS_DIR)?;
    write_atomic(
        &sources_record_path(root, id),
        &crate::format::records::encode_sources(sources)?,
        0o644,
    )
}

/// A session's sources (absolute paths on the client), or `None`: the session has no sources
/// record, so each source lies under its last component (recorded before full paths).
pub fn read_session_sources(root: &Path, id: SessionId) -> Result<Option<Vec<Vec<u8>>>> {
    let path = sources_record_path(root, id);
    match std::fs::read(&path) {
        Ok(bytes) => crate::format::records::decode_sources(&bytes)
            .map(Some)
            .map_err(|e| e.context(format_args!("{}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(
            format_args!("reading sources record {}", path.display()),
            e,
        )),
    }
}

/// Write a wrapped data key durably, before anything is sealed with it.
pub fn write_data_key(root: &Path, id: KeyId, wrapped: &[u8]) -> Result<()> {
    ensure_dir(root, DATA_KEYS_DIR)?;
    write_atomic(&data_key_path(root, id), wrapped, 0o644)
}

/// Remove a wrapped data key file (after its index row is gone).
pub fn remove_data_key(root: &Path, id: KeyId) -> Result<()> {
    remove_synced(&data_key_path(root, id))
}

/// Write the reference list of a pack about to be sealed. Its directory entry is made
/// durable here; the pack's own sync follows.
pub fn write_refs(root: &Path, refs: &PackRefs) -> Result<()> {
    let path = refs_path(root, &refs.pack);
    // A leftover of a writer that died before its pack was sealed names the same random pack
    // name only if that pack is this one: replace it.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format_args!("removing {}", path.display()), e)),
    }
    write_new_synced(&path, &encode_refs(refs)?, 0o644)
}

/// Read and decode a pack's reference list, checked to belong to `pack`.
pub fn read_refs(root: &Path, pack: &PackName) -> Result<PackRefs> {
    let path = refs_path(root, pack);
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
    let refs = decode_refs(&bytes).map_err(|e| e.context(format_args!("{}", path.display())))?;
    if refs.pack != *pack {
        return Err(Error::corrupt(format!(
            "{} belongs to pack {}, not {pack}",
            path.display(),
            refs.pack
        )));
    }
    Ok(refs)
}

/// Remove a pack's reference list (a missing one is fine), without syncing: the caller syncs
/// the pack directory once it has removed the pack too.
pub fn remove_refs(root: &Path, pack: &PackName) -> Result<()> {
    let path = refs_path(root, pack);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format_args!("removing {}", path.display()), e)),
    }
}

/// Ids of the files `<20 digits><suffix>` in `dir`, sorted; other names are skipped.
pub fn numbered_files(dir: &Path, suffix: &str) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format_args!("reading {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format_args!("reading {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(suffix))
            .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, entry.path()));
    }
    out.sort();
    Ok(out)
}

fn remove_synced(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format_args!("removing {}", path.display()), e)),
    }
}
