//! The schema (format-spec/index.md "Schema"), version 3, its migrations from versions 1 and
//! 2, and the version check on open.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, ErrorKind, Result};

/// `PRAGMA application_id` of `index.db`: `'RSBA'`.
pub const APPLICATION_ID: i32 = 1381188161;
/// `PRAGMA user_version` of this build's schema.
pub const INDEX_VERSION: i32 = 3;

/// The `sessions` table of schema version 1: a session that is not wholly right is
/// `incomplete`. Kept to describe (and test) the migration.
#[cfg(test)]
pub(super) const SESSIONS_V1: &str = "
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
";

/// The `sessions` table of schema version 2 (format-spec/index.md): the state `partial`
/// replaces `incomplete`, and `reason` says why a session is partial.
pub(super) const SESSIONS_V2: &str = "
CREATE TABLE sessions (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  client      TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('running', 'complete', 'partial')),
  writer      TEXT,
  started     INTEGER NOT NULL,
  finished    INTEGER,
  files       INTEGER NOT NULL DEFAULT 0,
  bytes       INTEGER NOT NULL DEFAULT 0,
  errors      INTEGER NOT NULL DEFAULT 0,
  new_chunks  INTEGER NOT NULL DEFAULT 0,
  new_bytes   INTEGER NOT NULL DEFAULT 0,
  pinned      INTEGER NOT NULL DEFAULT 0,
  reason      TEXT
) STRICT;
CREATE INDEX sessions_by_client ON sessions(client, started);
";

/// `session_manifest` of schema versions 1 and 2: keyed by (session, seq), with an index by
/// chunk and a foreign key to `chunks`. Kept to describe (and test) the migration.
#[cfg(test)]
pub(super) const SESSION_MANIFEST_V2: &str = "
CREATE TABLE session_manifest (
  session INTEGER NOT NULL REFERENCES sessions(id),
  seq     INTEGER NOT NULL,
  chunk   INTEGER NOT NULL REFERENCES chunks(num),
  PRIMARY KEY (session, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX session_manifest_by_chunk ON session_manifest(chunk);
";

/// `session_manifest` of schema version 3 (format-spec/index.md "The session root"): keyed by
/// (session, chunk, seq), so that "does this session hold that chunk" is a key lookup without
/// a second index, and with no foreign key to `chunks` (whose check on every chunk deleted
/// would need that index).
pub(super) const SESSION_MANIFEST_V3: &str = "
CREATE TABLE session_manifest (
  session INTEGER NOT NULL REFERENCES sessions(id),
  chunk   INTEGER NOT NULL,
  seq     INTEGER NOT NULL,
  PRIMARY KEY (session, chunk, seq)
) STRICT, WITHOUT ROWID;
";

/// The DDL of format-spec/index.md, verbatim, except the `sessions` table, which is
/// [`SESSIONS_V2`] (and was `SESSIONS_V1`), and `session_manifest`, which is
/// [`SESSION_MANIFEST_V3`] (and was [`SESSION_MANIFEST_V2`]).
pub(super) const DDL_COMMON: &str = "
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

/// Create the current schema and its meta rows; runs inside the caller's transaction.
pub(super) fn create(conn: &Connection, repository_id: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {INDEX_VERSION};"
    ))?;
    conn.execute_batch(DDL_COMMON)?;
    conn.execute_batch(SESSIONS_V2)?;
    conn.execute_batch(SESSION_MANIFEST_V3)?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('repository-id', ?1), ('gc-generation', 0)",
        [repository_id],
    )?;
    Ok(())
}

/// Refuse a database that is not an rsbackup index of a version this build knows; returns
/// the version (1, 2 or 3: versions 1 and 2 are migrated by [`migrate_v1`] and [`migrate_v2`]
/// when opened for writing, and read as they are otherwise).
pub(super) fn check_version(conn: &Connection, path: &Path) -> Result<i32> {
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
    if !(1..=INDEX_VERSION).contains(&version) {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "index {} has schema version {version}; this build reads versions 1 to \
                 {INDEX_VERSION}",
                path.display()
            ),
        ));
    }
    Ok(version)
}

/// Run the migration from version `from` to `from + 1` (format-spec/index.md, "Migrations"):
/// in one `BEGIN IMMEDIATE` transaction, `body` rebuilds what changed, `user_version` is bumped
/// and `PRAGMA foreign_key_check` must come back empty before the commit. A process that finds
/// another version inside its transaction (another one migrated first) does nothing.
fn migration(
    conn: &Connection,
    path: &Path,
    from: i32,
    body: impl FnOnce(&Connection) -> rusqlite::Result<()>,
) -> Result<()> {
    let to = from + 1;
    let ctx = |e: rusqlite::Error| {
        Error::from(e).context(format!(
            "migrating index {} from version {from} to {to}",
            path.display()
        ))
    };
    conn.execute_batch("BEGIN IMMEDIATE").map_err(ctx)?;
    let result = (|| -> rusqlite::Result<()> {
        let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == from {
            body(conn)?;
            conn.execute_batch(&format!("PRAGMA user_version = {to};"))?;
            let broken: Option<String> = conn
                .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
                .optional()?;
            if let Some(table) = broken {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
                    Some(format!("foreign key check failed in table {table}")),
                ));
            }
        }
        conn.execute_batch("COMMIT")
    })();
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(ctx(e));
    }
    Ok(())
}

/// Migrate a version 1 index to version 2 (format-spec/index.md, "Migrations"): rebuild
/// `sessions` with the state `partial` in place of `incomplete` and the new column `reason`
/// (NULL for every old row). Foreign keys must be off on `conn` (the old table is dropped while
/// `session_manifest` still names it); they are checked before the commit.
pub(super) fn migrate_v1(conn: &Connection, path: &Path) -> Result<()> {
    migration(conn, path, 1, |conn| {
        // SQLite's recipe for changing a table's constraints: build the new table beside the
        // old one, copy, drop the old, rename the new (foreign keys off, so that
        // `session_manifest`'s reference to `sessions` is left as it is and names the new
        // table once renamed). AUTOINCREMENT's high-water mark is carried over, so that a
        // session id is never handed out twice.
        let seq: Option<i64> = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'sessions'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        conn.execute_batch(
            &SESSIONS_V2
                .replace("CREATE TABLE sessions", "CREATE TABLE sessions_v2")
                .replace(
                    "CREATE INDEX sessions_by_client ON sessions(client, started);",
                    "",
                ),
        )?;
        conn.execute_batch(
            "INSERT INTO sessions_v2 (id, client, state, writer, started, finished, files, \
               bytes, errors, new_chunks, new_bytes, pinned, reason) \
             SELECT id, client, \
               CASE state WHEN 'incomplete' THEN 'partial' ELSE state END, \
               writer, started, finished, files, bytes, errors, new_chunks, new_bytes, pinned, \
               NULL FROM sessions;
             DROP TABLE sessions;
             ALTER TABLE sessions_v2 RENAME TO sessions;
             CREATE INDEX sessions_by_client ON sessions(client, started);
             DELETE FROM sqlite_sequence WHERE name = 'sessions';",
        )?;
        if let Some(seq) = seq {
            conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('sessions', ?1)",
                [seq],
            )?;
        }
        Ok(())
    })
}

/// Migrate a version 2 index to version 3 (format-spec/index.md, "Migrations"): rebuild
/// `session_manifest` keyed by (session, chunk, seq), without its index by chunk and without
/// the foreign key to `chunks`.
pub(super) fn migrate_v2(conn: &Connection, path: &Path) -> Result<()> {
    migration(conn, path, 2, |conn| {
        conn.execute_batch(&SESSION_MANIFEST_V3.replace(
            "CREATE TABLE session_manifest",
            "CREATE TABLE session_manifest_v3",
        ))?;
        conn.execute_batch(
            "INSERT INTO session_manifest_v3 (session, chunk, seq) \
               SELECT session, chunk, seq FROM session_manifest ORDER BY session, chunk, seq;
             DROP TABLE session_manifest;
             ALTER TABLE session_manifest_v3 RENAME TO session_manifest;",
        )
    })
}
