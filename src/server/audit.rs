//! Audit records: one per forced-command request (`serve`, `mirror-serve`), allowed or refused,
//! written to the `audit` table of the repository's index, or appended to the audit log file
//! when the index cannot be written.
//!
//! As a line (the audit log, alert mails) a record is
//! `TIME client=NAME ip=IP decision=allow|refuse command="..." reason="..."`. Every value that
//! came from outside (the command, the connection, the client name) is escaped so that it stays
//! on one line and cannot forge a field, and the command is cut to [`AUDIT_COMMAND_BYTES`].
//!
//! [`record_decision`] is what every forced command does with a decision before anything else.

use std::io::Write;
use std::path::Path;

use jiff::Timestamp;

use crate::config::ServerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::index::AuditRow;
use crate::repo::Repo;
use crate::server::alerts;
use crate::server::authz::{Decision, parse_ssh_connection};

/// Longest command kept in an audit record, in bytes after escaping.
pub const AUDIT_COMMAND_BYTES: usize = 256;

/// Longest reason kept in an audit record, in bytes after escaping.
pub const AUDIT_REASON_BYTES: usize = 1024;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When the request was decided.
    pub time: Timestamp,
    /// The client name from the forced command, escaped.
    pub client: String,
    /// The source address, or the raw `SSH_CONNECTION` escaped when it did not parse.
    pub ip: String,
    /// The command as sent, escaped and truncated.
    pub command: String,
    /// Allowed?
    pub allowed: bool,
    /// The decision's reason, escaped.
    pub reason: String,
}

impl AuditRecord {
    /// Build the record for `decision`, from the raw values it was made from. When the decision
    /// was made before the address was looked at (an unknown client), the address is still
    /// taken from `ssh_connection` if it parses.
    pub fn new(
        time: Timestamp,
        client: &str,
        ssh_connection: Option<&str>,
        ssh_original_command: Option<&str>,
        decision: &Decision,
    ) -> AuditRecord {
        let ip = match (decision.client_ip, parse_ssh_connection(ssh_connection)) {
            (Some(ip), _) | (None, Ok(ip)) => ip.to_string(),
            (None, Err(_)) => escape_for_log(ssh_connection.unwrap_or("-"), 80),
        };
        AuditRecord {
            time,
            client: escape_for_log(client, 80),
            ip,
            command: match ssh_original_command {
                Some(c) => escape_for_log(c, AUDIT_COMMAND_BYTES),
                None => "(none)".to_owned(),
            },
            allowed: decision.allowed,
            reason: escape_for_log(&decision.reason, AUDIT_REASON_BYTES),
        }
    }

    /// The record as one line, without the newline.
    pub fn to_line(&self) -> String {
        format!(
            "{} client={} ip={} decision={} command=\"{}\" reason=\"{}\"",
            self.time,
            self.client,
            self.ip,
            if self.allowed { "allow" } else { "refuse" },
            self.command,
            self.reason
        )
    }

    /// Append the line to `path` (created mode 0600 if missing) with one `write` call, so that
    /// concurrent requests do not interleave within a line.
    pub fn append_to(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("opening audit log {}", path.display()), e))?;
        let mut line = self.to_line();
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(format!("writing audit log {}", path.display()), e))
    }
}

/// What a forced command may do once its decision is on record ([`record_decision`]).
#[derive(Debug)]
pub enum Recorded {
    /// Allowed, and the audit row is written: go ahead.
    Allowed,
    /// Refused: audited and queued for the administrator's alert mail. Do nothing else.
    Refused,
    /// Allowed, but no audit row could be written anywhere: do nothing (nothing runs that is
    /// not on record).
    Unaudited(Error),
}

/// What every forced command (`serve`, `mirror-serve`) does with a decided request before
/// anything else: the audit row ([`write_audit`]), then, for a refusal, the alert (coalesced,
/// never failing or holding up the request), or else a flush of alerts that are due.
pub fn record_decision(config: &ServerConfig, host: &str, record: &AuditRecord) -> Recorded {
    let audited = write_audit(config, record);
    alerts::notify(
        config,
        host,
        record.time,
        (!record.allowed).then_some(record),
    );
    match (record.allowed, audited) {
        (false, _) => Recorded::Refused,
        (true, Ok(())) => Recorded::Allowed,
        (true, Err(e)) => {
            Recorded::Unaudited(e.context("the request could not be audited; refusing"))
        }
    }
}

/// Write the audit row to the `audit` table of `config.repository`'s index; when the index
/// cannot be written, append the line to `config.audit_log` instead, saying why.
pub fn write_audit(config: &ServerConfig, record: &AuditRecord) -> Result<()> {
    let to_index = || -> Result<()> {
        let index = Repo::open(&config.repository)?.index()?;
        index.insert_audit(&AuditRow {
            time: record.time.as_second(),
            client: &record.client,
            ip: &record.ip,
            command: &record.command,
            allowed: record.allowed,
            reason: &record.reason,
        })?;
        Ok(())
    };
    match to_index() {
        Ok(()) => Ok(()),
        Err(index_err) => {
            let mut fallback = record.clone();
            fallback.reason = format!("{} [index unavailable: {index_err}]", record.reason);
            fallback.append_to(&config.audit_log).map_err(|file_err| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "audit: index of {}: {index_err}; audit log: {file_err}",
                        config.repository.display()
                    ),
                )
            })
        }
    }
}

/// Escape `text` so that it is one printable line: backslash, double quote and every byte
/// outside printable ASCII become escapes; the result is at most `max` bytes (an escape is
/// never split) and ends in `...` when it was cut.
pub fn escape_for_log(text: &str, max: usize) -> String {
    escape_bytes_for_log(text.as_bytes(), max)
}

/// [`escape_for_log`] for bytes that need not be UTF-8 (a command sshd passed as it came).
pub fn escape_bytes_for_log(text: &[u8], max: usize) -> String {
    let mut out = String::new();
    let mut pieces = text.iter().map(|&b| match b {
        b'\\' => "\\\\".to_owned(),
        b'"' => "\\\"".to_owned(),
        0x20..=0x7e => (b as char).to_string(),
        b'\n' => "\\n".to_owned(),
        b'\t' => "\\t".to_owned(),
        b'\r' => "\\r".to_owned(),
        _ => format!("\\x{b:02x}"),
    });
    let all: Vec<String> = pieces.by_ref().collect();
    let total: usize = all.iter().map(String::len).sum();
    if total <= max {
        return all.concat();
    }
    let budget = max.saturating_sub(3);
    for piece in all {
        if out.len() + piece.len() > budget {
            break;
        }
        out.push_str(&piece);
    }
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_for_log("prepare", 256), "prepare");
        assert_eq!(
            escape_for_log("a\nb\"c\\d\te\0", 256),
            "a\\nb\\\"c\\\\d\\te\\x00"
        );
        assert_eq!(escape_for_log("é", 256), "\\xc3\\xa9");
        assert_eq!(escape_for_log("\x1b[2J", 256), "\\x1b[2J");
    }

    #[test]
    fn truncation() {
        let long = "x".repeat(300);
        let cut = escape_for_log(&long, AUDIT_COMMAND_BYTES);
        assert_eq!(cut.len(), AUDIT_COMMAND_BYTES);
        assert!(cut.ends_with("..."));
        // Exactly at the limit: kept whole.
        assert_eq!(escape_for_log(&"y".repeat(256), 256).len(), 256);
        // An escape is never split at the cut.
        let cut = escape_for_log(&"\n".repeat(200), 11);
        assert_eq!(cut, "\\n\\n\\n\\n...");
    }

    #[test]
    fn record_line_and_file() {
        let decision = Decision {
            allowed: false,
            reason: "client web1: unknown command \"x\"".into(),
            request: None,
            client_ip: Some("192.0.2.10".parse().unwrap()),
            identity: None,
        };
        let time: Timestamp = "2026-11-28T02:00:00Z".parse().unwrap();
        let cmd = format!("x\ny{}", "z".repeat(400));
        let record = AuditRecord::new(
            time,
            "web1",
            Some("192.0.2.10 1 2 3"),
            Some(&cmd),
            &decision,
        );
        let line = record.to_line();
        assert!(
            line.starts_with(
                "2026-11-28T02:00:00Z client=web1 ip=192.0.2.10 decision=refuse command=\"x\\ny"
            ),
            "{line}"
        );
        assert!(
            line.contains("reason=\"client web1: unknown command \\\"x\\\"\""),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert_eq!(record.command.len(), AUDIT_COMMAND_BYTES);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        record.append_to(&path).unwrap();
        record.append_to(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            record
                .append_to(&dir.path().join("missing/audit.log"))
                .is_err()
        );
    }

    #[test]
    fn unparsed_connection_is_escaped() {
        let decision = Decision {
            allowed: false,
            reason: "r".into(),
            request: None,
            client_ip: None,
            identity: None,
        };
        let r = AuditRecord::new(
            Timestamp::UNIX_EPOCH,
            "we\nb1",
            Some("evil\nip"),
            None,
            &decision,
        );
        assert_eq!(r.ip, "evil\\nip");
        assert_eq!(r.client, "we\\nb1");
        assert_eq!(r.command, "(none)");
        // Refused before the address was looked at (an unknown client): the address is kept.
        let r = AuditRecord::new(
            Timestamp::UNIX_EPOCH,
            "ghost",
            Some("::ffff:192.0.2.7 5555 192.0.2.1 22"),
            Some("prepare"),
            &decision,
        );
        assert_eq!(r.ip, "192.0.2.7");
    }
}
