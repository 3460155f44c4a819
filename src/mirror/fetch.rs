//! The primary's side of a read-only connection (format-spec/wire.md "Read-only
//! connections"): `rsbackup repair chunks` fetches good copies of chunks from a mirror. The
//! records are returned as the mirror sent them; the caller verifies each against its own index
//! before writing anything.

use std::collections::HashSet;
use std::io::{Read, Write};

use super::push::reply;
use super::wire::{Conn, MAX_IDS, Message, READ_PROTOCOL_VERSION, WireRecord};
use crate::error::{Error, Result};
use crate::format::pack::decode_record_header;
use crate::ids::ChunkId;
use crate::repo::Repo;

/// An open read-only connection to a mirror.
pub struct Fetch<R, W> {
    conn: Conn<R, W>,
    /// Chunks the mirror holds (from its `HelloOk`).
    pub mirror_chunks: u64,
}

fn unexpected(got: &Message, wanted: &str) -> Error {
    Error::protocol(format!(
        "mirror protocol: got {} where {wanted} was expected",
        got.name()
    ))
}

impl<R: Read, W: Write> Fetch<R, W> {
    /// Say `HelloRead` with `repo`'s `repository.toml`; the mirror checks it holds the same
    /// repository.
    pub fn open(repo: &Repo, reader: R, writer: W) -> Result<Self> {
        let path = repo.root().join("repository.toml");
        let toml = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
        let mut conn = Conn::new(reader, writer);
        conn.send(&Message::HelloRead {
            version: READ_PROTOCOL_VERSION,
            repository_toml: toml,
        })?;
        match reply(&mut conn)? {
            Message::HelloOk { chunks, .. } => Ok(Fetch {
                conn,
                mirror_chunks: chunks,
            }),
            other => Err(unexpected(&other, "HelloOk")),
        }
    }

    /// The mirror's records of `ids` (handed to `each` as they arrive); returns the ids it
    /// does not hold or holds only damaged.
    pub fn chunks(
        &mut self,
        ids: &[ChunkId],
        mut each: impl FnMut(WireRecord) -> Result<()>,
    ) -> Result<Vec<ChunkId>> {
        let mut lacking_all = Vec::new();
        for batch in ids.chunks(MAX_IDS as usize) {
            let mut remaining: Vec<ChunkId> = batch.to_vec();
            while !remaining.is_empty() {
                self.conn.send(&Message::GetChunks(remaining.clone()))?;
                let (lacking, records) = match reply(&mut self.conn)? {
                    Message::ChunkRecords { lacking, records } => (lacking, records),
                    other => return Err(unexpected(&other, "ChunkRecords")),
                };
                let asked: HashSet<ChunkId> = remaining.iter().copied().collect();
                let mut answered = HashSet::new();
                for id in &lacking {
                    if !asked.contains(id) || !answered.insert(*id) {
                        return Err(Error::protocol(format!(
                            "mirror protocol: ChunkRecords names chunk {id}, which was not asked \
                             for (or twice)"
                        )));
                    }
                }
                for r in &records {
                    let id = decode_record_header(&r.record)?.chunk_id;
                    if !asked.contains(&id) || !answered.insert(id) {
                        return Err(Error::protocol(format!(
                            "mirror protocol: ChunkRecords holds chunk {id}, which was not asked \
                             for (or twice)"
                        )));
                    }
                }
                if answered.is_empty() {
                    return Err(Error::protocol(
                        "mirror protocol: ChunkRecords answered none of the chunks asked for",
                    ));
                }
                lacking_all.extend(lacking);
                for r in records {
                    each(r)?;
                }
                remaining.retain(|id| !answered.contains(id));
            }
        }
        Ok(lacking_all)
    }

    /// Say `Bye`; returns the bytes sent and received on the connection.
    pub fn close(mut self) -> Result<(u64, u64)> {
        self.conn.send(&Message::Bye)?;
        match reply(&mut self.conn)? {
            Message::ByeOk { .. } => Ok((self.conn.sent, self.conn.received)),
            other => Err(unexpected(&other, "ByeOk")),
        }
    }
}
