//! `rsbackup mirror-serve --mirror-of NAME`: the offsite box's forced command for a primary's
//! key, from decision to the end of the mirror protocol.
//!
//! It is `serve`'s counterpart and takes the same steps, with the same code. The binary reads
//! `SSH_CONNECTION` and `SSH_ORIGINAL_COMMAND` and passes them in; this module never reads the
//! environment, prints or exits. Every connection, before anything else: [`authorize_mirror`]
//! (deny by default, the first failing check is the reason), then
//! [`record_decision`]: one row in the `audit` table of the box's own `repository` (the file
//! `audit-log` when that index cannot be written), with the client written as
//! `mirror-of:NAME` (a name no client can have), and for a refusal the coalesced alert mail. A
//! refused connection does nothing else: the mirror repository is not opened, let alone
//! created. An allowed connection that cannot be audited anywhere is not served.
//!
//! Once the protocol runs, the mirror may still refuse a request its `[mirror-of.NAME]` does not
//! allow (to forget sessions while append-only, to overwrite a key it holds; the primary gets the
//! reason in the protocol's `Error`). Such a refusal is audited and alerted the same way, as a
//! second row for the connection; what the connection stored before it stays. So is a primary
//! that breaks the protocol (a bad frame, a message out of turn): whoever holds that key is not
//! running rsbackup's own `mirror`, which the administrator must hear of. A connection that
//! merely ends early (the network, a killed run) is a failure, not a refusal.

use std::io::{Read, Write};

use jiff::Timestamp;

use crate::config::ServerConfig;
use crate::error::{Error, ErrorKind};
use crate::mirror::{ServeOptions, ServeReport, serve as serve_protocol};
use crate::server::audit::{
    AUDIT_COMMAND_BYTES, AuditRecord, Recorded, escape_bytes_for_log, escape_for_log,
    record_decision,
};
use crate::server::authz::{Decision, parse_ssh_connection};

/// The command a primary sends (`ssh HOST -- rsbackup-mirror`); sshd puts it in
/// `SSH_ORIGINAL_COMMAND`, and nothing else is accepted.
pub const MIRROR_COMMAND: &str = "rsbackup-mirror";

/// The connection as sshd handed it over.
#[derive(Debug, Clone)]
pub struct MirrorServeInput {
    /// `--mirror-of` from the forced command.
    pub mirror_of: String,
    /// `SSH_CONNECTION`.
    pub ssh_connection: Option<String>,
    /// `SSH_ORIGINAL_COMMAND`.
    pub ssh_original_command: Option<String>,
    /// `SSH_ORIGINAL_COMMAND`'s bytes when they are not UTF-8 (`ssh_original_command` is then
    /// `None`): refused as an unknown command, and audited escaped byte for byte.
    pub raw_command: Option<Vec<u8>>,
    /// Now.
    pub now: Timestamp,
    /// This box's host name, for alert mails.
    pub host: String,
}

/// How a connection ends.
#[derive(Debug)]
pub enum MirrorServeOutcome {
    /// The protocol ran to the primary's `Bye`.
    Served(ServeReport),
    /// Refused, at the start or during the protocol: print only
    /// [`crate::server::authz::REFUSAL_MESSAGE`], exit non-zero.
    Refused,
    /// Allowed, but it failed: print the error, exit non-zero.
    Failed(Error),
}

/// The `client` of the audit rows of a `[mirror-of.NAME]` connection: `mirror-of:NAME` (`:` is
/// never part of a client name, so the rows cannot be mistaken for a client's).
pub fn audit_client(mirror_of: &str) -> String {
    format!("mirror-of:{mirror_of}")
}

/// Decide one connection, in this order: `[mirror-of.NAME]` is configured; the source address
/// from `SSH_CONNECTION` is in its `addresses`; the clock, read in its `timezone`, is inside one
/// of its `windows`; the command is [`MIRROR_COMMAND`]. Nothing here touches the disk or the
/// network.
pub fn authorize_mirror(
    config: &ServerConfig,
    mirror_of: &str,
    ssh_connection: Option<&str>,
    ssh_original_command: Option<&str>,
    now: Timestamp,
) -> Decision {
    let Some(section) = config.mirrors.mirror_of(mirror_of) else {
        return Decision::refuse(
            format!(
                "mirror-of {:?} is not configured in {} (check the forced command in \
                 authorized_keys)",
                escape_for_log(mirror_of, 80),
                config.path.display()
            ),
            None,
            None,
        );
    };
    let ip = match parse_ssh_connection(ssh_connection) {
        Ok(ip) => ip,
        Err(reason) => {
            return Decision::refuse(format!("mirror-of {mirror_of}: {reason}"), None, None);
        }
    };
    if let Err(reason) = section.allows(ip, now) {
        return Decision::refuse(reason, Some(ip), None);
    }
    match ssh_original_command {
        Some(MIRROR_COMMAND) => Decision {
            allowed: true,
            reason: format!("mirror-of {mirror_of}: mirror connection allowed from {ip}"),
            request: None,
            client_ip: Some(ip),
            identity: None,
        },
        None => Decision::refuse(
            format!(
                "mirror-of {mirror_of}: no command given (an interactive login is never allowed)"
            ),
            Some(ip),
            None,
        ),
        Some(_) => Decision::refuse(
            format!(
                "mirror-of {mirror_of}: unknown command (a primary sends only {MIRROR_COMMAND:?})"
            ),
            Some(ip),
            None,
        ),
    }
}

/// Handle one connection: decide, record, and if allowed serve the protocol over
/// `reader`/`writer` into the section's repository.
pub fn mirror_serve<R: Read, W: Write>(
    config: &ServerConfig,
    input: &MirrorServeInput,
    reader: R,
    writer: W,
) -> MirrorServeOutcome {
    let client = audit_client(&input.mirror_of);
    // Bytes that are not UTF-8 are no command a primary sends: refused as an unknown one.
    let command = match &input.raw_command {
        Some(_) => Some("\u{fffd}"),
        None => input.ssh_original_command.as_deref(),
    };
    let decision = authorize_mirror(
        config,
        &input.mirror_of,
        input.ssh_connection.as_deref(),
        command,
        input.now,
    );
    let record = |time: Timestamp, decision: &Decision| {
        let mut record = AuditRecord::new(
            time,
            &client,
            input.ssh_connection.as_deref(),
            input.ssh_original_command.as_deref(),
            decision,
        );
        if let Some(raw) = &input.raw_command {
            record.command = escape_bytes_for_log(raw, AUDIT_COMMAND_BYTES);
        }
        record
    };
    match record_decision(config, &input.host, &record(input.now, &decision)) {
        Recorded::Allowed => {}
        Recorded::Refused => return MirrorServeOutcome::Refused,
        Recorded::Unaudited(e) => return MirrorServeOutcome::Failed(e),
    }
    let Some(section) = config.mirrors.mirror_of(&input.mirror_of) else {
        return MirrorServeOutcome::Failed(Error::new(
            ErrorKind::Internal,
            "allowed without a [mirror-of] section",
        ));
    };
    let opts = ServeOptions {
        name: section.name.to_string(),
        repository: section.repository.clone(),
        follow_deletes: section.follow_deletes,
    };
    match serve_protocol(reader, writer, &opts) {
        Ok(report) => MirrorServeOutcome::Served(report),
        Err(e) if matches!(e.kind(), ErrorKind::Refused | ErrorKind::Protocol) => {
            let reason = if e.kind() == ErrorKind::Protocol {
                format!(
                    "mirror-of {}: the primary broke the protocol: {}",
                    input.mirror_of,
                    e.message()
                )
            } else {
                e.message().to_owned()
            };
            let refusal = Decision::refuse(reason, decision.client_ip, None);
            // A refusal stays a refusal whatever the audit managed (it tries the index, then the
            // file, and the alert mail carries the line either way).
            let _ = record_decision(config, &input.host, &record(Timestamp::now(), &refusal));
            MirrorServeOutcome::Refused
        }
        Err(e) => MirrorServeOutcome::Failed(e),
    }
}

#[cfg(test)]
#[path = "mirror_serve_tests.rs"]
mod tests;
