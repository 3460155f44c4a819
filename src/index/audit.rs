//! The `audit` table (format-spec/index.md): one row per request `serve` decided.

use rusqlite::params;

use super::Index;
use crate::error::Result;

/// One audit row to insert.
#[derive(Debug, Clone, Copy)]
pub struct AuditRow<'a> {
    /// Unix seconds.
    pub time: i64,
    /// The client the key belongs to.
    pub client: &'a str,
    /// The address the request came from.
    pub ip: &'a str,
    /// The command, escaped for the log.
    pub command: &'a str,
    /// Allowed or refused.
    pub allowed: bool,
    /// Why.
    pub reason: &'a str,
}

impl Index {
    /// Insert one audit row (one statement: atomic on its own).
    pub fn insert_audit(&self, row: &AuditRow<'_>) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO audit (time, client, ip, command, decision, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.time,
                    row.client,
                    row.ip,
                    row.command,
                    if row.allowed { "allow" } else { "refuse" },
                    row.reason
                ],
            )
            .map_err(|e| self.err(e, "inserting the audit row"))?;
        Ok(())
    }
}
