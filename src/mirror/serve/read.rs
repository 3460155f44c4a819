//! The mirror's read-only connection (`HelloRead`): a primary repairing itself fetches good
//! copies of chunks (format-spec/wire.md "Read-only connections"). Nothing in the mirror
//! repository is created, written or locked; every record sent is first checked against the
//! mirror's own stored hash, and one that fails is reported as lacking.

use std::io::{Read, Write};

use super::{ServeOptions, ServeReport, open_matching, protocol};
use crate::error::{Error, ErrorKind, Result};
use crate::format::repository::RepoConfig;
use crate::ids::ChunkId;
use crate::index::{ChunkKind, Index};
use crate::mirror::ChunkSetDigest;
use crate::mirror::wire::{Conn, Message, PROTOCOL_VERSION, READ_PROTOCOL_VERSION, WireRecord};
use crate::store::PackReader;

/// Record bytes per `ChunkRecords` reply (well inside the 32 MiB frame limit).
pub(crate) const RECORDS_PER_REPLY_BYTES: u64 = 24 << 20;

/// Serve a read-only connection after its `HelloRead`, until `Bye`.
pub(super) fn serve_read<R: Read, W: Write>(
    conn: &mut Conn<R, W>,
    opts: &ServeOptions,
    version: u32,
    repository_toml: &str,
    report: &mut ServeReport,
) -> Result<()> {
    if version != READ_PROTOCOL_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "read-only mirror requests of version {version} are not supported (this mirror \
                 speaks version {READ_PROTOCOL_VERSION})"
            ),
        ));
    }
    let primary = RepoConfig::parse(repository_toml, "the primary's repository.toml")?;
    if !opts.repository.join("repository.toml").exists() {
        return Err(Error::new(
            ErrorKind::NotARepository,
            format!(
                "mirror {}: there is no mirror repository at {} to fetch from",
                opts.name,
                opts.repository.display()
            ),
        ));
    }
    let repo = open_matching(opts, &primary)?;
    let index = repo.index()?;
    let state = ChunkSetDigest::of_index(&index)?;
    conn.send(&Message::HelloOk {
        version: PROTOCOL_VERSION,
        created: false,
        chunks: state.count,
        digest: state.digest,
        damaged: 0,
    })?;
    let reader = PackReader::new(repo.root());
    loop {
        match conn.recv()? {
            Message::GetChunks(ids) => {
                let reply = chunk_records(&index, &reader, &ids)?;
                if let Message::ChunkRecords { records, .. } = &reply {
                    report.chunks_sent += records.len() as u64;
                }
                conn.send(&reply)?;
            }
            Message::Bye => {
                conn.send(&Message::ByeOk {
                    chunks: state.count,
                    digest: state.digest,
                })?;
                return Ok(());
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "{} on a read-only connection: after HelloRead a mirror answers only \
                         GetChunks and Bye",
                        other.name()
                    ),
                ));
            }
        }
    }
}

/// The reply to one `GetChunks`: records in the order asked while they fit one reply; ids the
/// mirror does not hold, or holds only damaged, as lacking.
fn chunk_records(index: &Index, reader: &PackReader, ids: &[ChunkId]) -> Result<Message> {
    let mut lacking = Vec::new();
    let mut records = Vec::new();
    let mut bytes = 0u64;
    for id in ids {
        let Some(loc) = index.lookup_chunk(id)? else {
            lacking.push(*id);
            continue;
        };
        let record = match reader.read_record(&loc) {
            Ok(r) if blake3::hash(&r).as_bytes() == &loc.stored_hash => r,
            // Damaged or unreadable here too: the primary must not get it.
            _ => {
                lacking.push(*id);
                continue;
            }
        };
        if bytes + record.len() as u64 > RECORDS_PER_REPLY_BYTES && !records.is_empty() {
            break; // the primary asks again for the rest
        }
        bytes += record.len() as u64;
        let refs = match loc.kind {
            ChunkKind::Manifest => index.chunk_refs(id)?,
            ChunkKind::Data => Vec::new(),
        };
        records.push(WireRecord {
            kind: loc.kind as u8,
            stored_hash: loc.stored_hash,
            refs,
            record,
        });
    }
    if records.is_empty() && lacking.is_empty() && !ids.is_empty() {
        return Err(protocol("GetChunks: nothing could be answered (a bug)"));
    }
    Ok(Message::ChunkRecords { lacking, records })
}
