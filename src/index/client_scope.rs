//! What the index knows of clients' own dedup scopes (format-spec/keys.md "Client scopes"): the
//! restore recipient each scope's keys were last wrapped to (`meta` rows
//! `restore-recipient:NAME`), and the reachability checks of `serve restore-fetch`.

use std::collections::BTreeMap;

use rusqlite::OptionalExtension;

use super::Index;
use super::rows::session_holds_chunk;
use super::{location_from_row, location_select};
use crate::error::Result;
use crate::ids::{ChunkId, SessionId};
use crate::index::ChunkLocation;

/// Prefix of the `meta` keys that hold a client's restore recipient.
const RECIPIENT_PREFIX: &str = "restore-recipient:";

impl Index {
    /// Remember the recipient `client`'s scoped keys are wrapped to (beside the repository's).
    pub fn set_restore_recipient(&self, client: &str, recipient: &str) -> Result<()> {
        self.write_tx("recording a restore recipient", |conn| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                rusqlite::params![format!("{RECIPIENT_PREFIX}{client}"), recipient],
            )?;
            Ok(())
        })
    }

    /// Forget `client`'s restore recipient: a rewrap then wraps its keys to the repository's
    /// recipients alone.
    pub fn remove_restore_recipient(&self, client: &str) -> Result<()> {
        self.write_tx("removing a restore recipient", |conn| {
            conn.execute(
                "DELETE FROM meta WHERE key = ?1",
                [format!("{RECIPIENT_PREFIX}{client}")],
            )?;
            Ok(())
        })
    }

    /// Every client's recorded restore recipient, by client name.
    pub fn restore_recipients(&self) -> Result<BTreeMap<String, String>> {
        let what = "listing restore recipients";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2")
            .map_err(|e| self.err(e, what))?;
        // Every key with the prefix sorts between the prefix and the prefix with ':' + 1.
        let rows = stmt
            .query_map(["restore-recipient:", "restore-recipient;"], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e, what))?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(RECIPIENT_PREFIX)?.to_owned(), v)))
            .collect())
    }

    /// Where chunk `id` is stored, when a visible session of `client` holds it (in its root or
    /// named by a manifest chunk of its root); `None` for a chunk no session of `client` holds,
    /// whoever else's it may be. The sessions of `first` (the ones being read: a restore asks
    /// for their roots before their chunks) are tried first, each with a few key lookups; only
    /// a chunk none of them holds costs a lookup per session of the client.
    pub fn client_chunk(
        &self,
        client: &str,
        first: &[SessionId],
        id: &ChunkId,
    ) -> Result<Option<ChunkLocation>> {
        let what = format!("looking up chunk {id} for client {client}");
        let mut in_session = self
            .conn
            .prepare_cached(location_select!(
                "WHERE c.id = ?1 AND EXISTS (SELECT 1 FROM sessions s \
                   WHERE s.id = ?3 AND s.client = ?2 AND s.state != 'running' AND ",
                session_holds_chunk!(),
                ")"
            ))
            .map_err(|e| self.err(e, &what))?;
        for session in first {
            let found = in_session
                .query_row(
                    rusqlite::params![&id.0, client, session.0],
                    location_from_row,
                )
                .optional()
                .map_err(|e| self.err(e, &what))?;
            if found.is_some() {
                return Ok(found);
            }
        }
        let mut any_session = self
            .conn
            .prepare_cached(location_select!(
                "WHERE c.id = ?1 AND EXISTS (SELECT 1 FROM sessions s \
                   WHERE s.client = ?2 AND s.state != 'running' AND ",
                session_holds_chunk!(),
                ")"
            ))
            .map_err(|e| self.err(e, &what))?;
        any_session
            .query_row(rusqlite::params![&id.0, client], location_from_row)
            .optional()
            .map_err(|e| self.err(e, &what))
    }
}
