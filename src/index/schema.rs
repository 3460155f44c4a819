//! The v1 schema (format-spec/index.md "Schema") and the version check on open.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Error, ErrorKind, Result};

/// `PRAGMA application_id` of `index.db`: `'RSBA'`.
pub const APPLICATION_ID: i32 = 1381188161;
/// `PRAGMA user_version` of this build's schema.
pub const INDEX_VERSION: i32 = 1;

/// The DDL of format-spec/index.md, verbatim.
pub(super) const DDL_V1: &str = "
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value ANY
) STRICT;

CREATE TABLE data_keys (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  wrapped BLOB NOT NULL,
  created INTEGER NOT NULL
) STRICT;

CREATE TABLE packs (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  name    BLOB NOT NULL UNIQUE,
  state   TEXT NOT NULL CHECK (state IN ('writing', 'sealed')),
  writer  TEXT,
  size    INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL
) STRICT;

CREATE TABLE chunks (
  num         INTEGER PRIMARY KEY AUTOINCREMENT,
  id          BLOB NOT NULL UNIQUE,
  kind        INTEGER NOT NULL,
  pack        INTEGER NOT NULL REFERENCES packs(id),
  offset      INTEGER NOT NULL,
  length      INTEGER NOT NULL,
  key_id      INTEGER NOT NULL REFERENCES data_keys(id),
  stored_hash BLOB NOT NULL
) STRICT;
CREATE INDEX chunks_by_pack ON chunks(pack, offset);

CREATE TABLE chunk_refs (
  parent INTEGER NOT NULL REFERENCES chunks(num),
  child  INTEGER NOT NULL REFERENCES chunks(num),
  PRIMARY KEY (parent, child)
) STRICT, WITHOUT ROWID;
CREATE INDEX chunk_refs_by_child ON chunk_refs(child);

CREATE TABLE sessions (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  client      TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('running', 'complete', 'incomplete')),
  writer      TEXT,
  started     INTEGER NOT NULL,
  finished    INTEGER,
  files       INTEGER NOT NULL DEFAULT 0,
  bytes       INTEGER NOT NULL DEFAULT 0,
  errors      INTEGER NOT NULL DEFAULT 0,
  new_chunks  INTEGER NOT NULL DEFAULT 0,
  new_bytes   INTEGER NOT NULL DEFAULT 0,
  pinned      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX sessions_by_client ON sessions(client, started);

CREATE TABLE session_manifest (
  session INTEGER NOT NULL REFERENCES sessions(id),
  seq     INTEGER NOT NULL,
  chunk   INTEGER NOT NULL REFERENCES chunks(num),
  PRIMARY KEY (session, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX session_manifest_by_chunk ON session_manifest(chunk);

CREATE TABLE audit (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  time     INTEGER NOT NULL,
  client   TEXT NOT NULL,
  ip       TEXT NOT NULL,
  command  TEXT NOT NULL,
  decision TEXT NOT NULL CHECK (decision IN ('allow', 'refuse')),
  reason   TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_client ON audit(client, time);

CREATE TABLE mirror_targets (
  name      TEXT PRIMARY KEY,
  watermark INTEGER NOT NULL,
  digest    BLOB NOT NULL,
  chunks    INTEGER NOT NULL,
  updated   INTEGER NOT NULL
) STRICT;

CREATE TABLE damaged_chunks (
  id    BLOB PRIMARY KEY,
  found INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

/// Create the v1 schema and its meta rows; runs inside the caller's transaction.
pub(super) fn create(conn: &Connection, repository_id: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {INDEX_VERSION};"
    ))?;
    conn.execute_batch(DDL_V1)?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('repository-id', ?1), ('gc-generation', 0)",
        [repository_id],
    )?;
    Ok(())
}

/// Refuse a database that is not an rsbackup index of a version this build knows.
pub(super) fn check_version(conn: &Connection, path: &Path) -> Result<()> {
    let read = |pragma: &str| -> Result<i32> {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .map_err(|e| {
                let err = Error::from(e);
                if err.kind() == ErrorKind::Corrupt {
                    Error::corrupt(format!(
                        "index {} is not a SQLite database or is damaged",
                        path.display()
                    ))
                } else {
                    err.context(format!("reading index {}", path.display()))
                }
            })
    };
    let app = read("application_id")?;
    if app != APPLICATION_ID {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "{} is not an rsbackup index (application id {app}, expected {APPLICATION_ID})",
                path.display()
            ),
        ));
    }
    let version = read("user_version")?;
    if version != INDEX_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "index {} has schema version {version}; this build reads version {INDEX_VERSION}",
                path.display()
            ),
        ));
    }
    Ok(())
}
