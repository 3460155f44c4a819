//! Authorization of one forced-command request: a pure function of the configuration, the
//! client name from the forced command, `SSH_CONNECTION`, `SSH_ORIGINAL_COMMAND` and the time.
//!
//! Deny by default: a request is allowed only when every check passes, in this order: the client
//! is configured; the source address is in its `addresses`; the wall clock in its zone is inside
//! one of its `windows`; the command parses (without a shell) and is one it may run. The first
//! failing check is the reason. The reason is for the administrator (audit log, alert mail); the
//! client only ever sees [`REFUSAL_MESSAGE`].

use std::net::IpAddr;

use jiff::Timestamp;

use crate::config::{ClientPolicy, Command, ServerConfig, StagingMode};
use crate::format::client_identity::StatedIdentity;
use crate::format::complete_args::CompleteArgs;
use crate::server::rsync_argv::RsyncRequest;

/// Longest `SSH_ORIGINAL_COMMAND` accepted, in bytes. rsbackup's own commands are far shorter.
pub const MAX_COMMAND_BYTES: usize = 1024;

/// What a refused client is told: nothing that helps an attacker probe the policy.
pub const REFUSAL_MESSAGE: &str = "rsbackup: request refused; the administrator has been notified";

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `prepare`.
    Prepare,
    /// `prepare renames`: a rename list follows on standard input (format-spec/wire.md).
    PrepareWithRenames,
    /// rsync upload into staging.
    Upload(RsyncRequest),
    /// rsync download from staging (`--sender`); needs `restore = true`.
    Download(RsyncRequest),
    /// `complete`, with how the transfer ended.
    Complete(CompleteArgs),
    /// `sessions`.
    Sessions,
    /// `restore-fetch`: the client reads its own sessions over a framed protocol on the
    /// connection (format-spec/wire.md "Restore fetch"); needs `restore` in its commands and a
    /// `restore-recipient`.
    RestoreFetch,
}

impl Request {
    /// The configured command this request needs, or `None` for a download (which needs
    /// `restore = true` instead).
    pub fn command(&self) -> Option<Command> {
        match self {
            Request::Prepare | Request::PrepareWithRenames => Some(Command::Prepare),
            Request::Upload(_) => Some(Command::Upload),
            Request::Download(_) => None,
            Request::Complete(_) => Some(Command::Complete),
            Request::Sessions => Some(Command::Sessions),
            Request::RestoreFetch => Some(Command::Restore),
        }
    }

    /// A short name for logs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Download(_) => "download",
            Request::RestoreFetch => "restore-fetch",
            other => other.command().map_or("?", Command::name),
        }
    }
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// May the request go ahead?
    pub allowed: bool,
    /// Why (for the audit log and the administrator), in either case.
    pub reason: String,
    /// The parsed request, when it parsed (also on some refusals, e.g. a forbidden command).
    pub request: Option<Request>,
    /// The source address, when `SSH_CONNECTION` parsed (IPv4-mapped IPv6 shown as IPv4).
    pub client_ip: Option<IpAddr>,
    /// The client name and machine the request stated, when the command parsed.
    pub identity: Option<StatedIdentity>,
}

impl Decision {
    /// A refusal for `reason`.
    pub(crate) fn refuse(
        reason: String,
        client_ip: Option<IpAddr>,
        request: Option<Request>,
    ) -> Decision {
        Decision {
            allowed: false,
            reason,
            request,
            client_ip,
            identity: None,
        }
    }
}

/// Decide one request. Nothing here touches the disk or the network.
pub fn authorize(
    config: &ServerConfig,
    client: &str,
    ssh_connection: Option<&str>,
    ssh_original_command: Option<&str>,
    now: Timestamp,
) -> Decision {
    authorize_bytes(
        config,
        client,
        ssh_connection,
        ssh_original_command.map(str::as_bytes),
        now,
    )
}

/// [`authorize`] for `SSH_ORIGINAL_COMMAND` as the bytes sshd set, which need not be UTF-8: a
/// command that is not is refused as such (after the client, address and window checks, like
/// any other bad command), with the first bad byte and its offset in the reason.
pub fn authorize_bytes(
    config: &ServerConfig,
    client: &str,
    ssh_connection: Option<&str>,
    ssh_original_command: Option<&[u8]>,
    now: Timestamp,
) -> Decision {
    let Some(policy) = config.client(client) else {
        return Decision::refuse(
            format!(
                "client {:?} is not configured in {} (check the forced command in authorized_keys)",
                crate::server::audit::escape_for_log(client, 80),
                config.path.display()
            ),
            None,
            None,
        );
    };
    let ip = match parse_ssh_connection(ssh_connection) {
        Ok(ip) => ip,
        Err(reason) => return Decision::refuse(format!("client {client}: {reason}"), None, None),
    };
    if !policy.addresses.iter().any(|net| net.contains(&ip)) {
        let allowed: Vec<String> = policy.addresses.iter().map(|n| n.to_string()).collect();
        return Decision::refuse(
            format!(
                "client {client}: address {ip} is not in its addresses ({})",
                allowed.join(", ")
            ),
            Some(ip),
            None,
        );
    }
    if !policy
        .windows
        .iter()
        .any(|w| w.contains(now, &policy.timezone))
    {
        return Decision::refuse(outside_windows(policy, now), Some(ip), None);
    }
    let ssh_original_command = match ssh_original_command.map(std::str::from_utf8) {
        None => None,
        Some(Ok(text)) => Some(text),
        Some(Err(e)) => {
            let at = e.valid_up_to();
            let byte = ssh_original_command.and_then(|b| b.get(at)).copied();
            return Decision::refuse(
                format!(
                    "client {client}: command is not UTF-8 (byte 0x{:02x} at offset {at})",
                    byte.unwrap_or_default()
                ),
                Some(ip),
                None,
            );
        }
    };
    let (identity, request) = match parse_command(ssh_original_command) {
        Ok(parsed) => parsed,
        Err(reason) => {
            return Decision::refuse(format!("client {client}: {reason}"), Some(ip), None);
        }
    };
    let refuse = |why: String, request: Request| Decision {
        identity: Some(identity.clone()),
        ..Decision::refuse(format!("client {client}: {why}"), Some(ip), Some(request))
    };
    if identity.client != client {
        return refuse(
            format!(
                "the request states client {}, but came with client {client}'s ssh key (a \
                 copied client.toml, ssh key or cloned machine? machine {})",
                identity.client, identity.machine
            ),
            request,
        );
    }
    let permitted = match request.command() {
        Some(command) => policy.commands.contains(&command),
        None => policy.restore,
    };
    if !permitted {
        let why = match request.command() {
            Some(c) => format!("command {} is not in its commands", c.name()),
            None => "downloads (rsync --sender) need restore = true".to_owned(),
        };
        return refuse(why, request);
    }
    if matches!(request, Request::Download(_)) && policy.staging_mode != StagingMode::Keep {
        return refuse(download_refusal(policy), request);
    }
    if request == Request::RestoreFetch && policy.restore_recipient.is_none() {
        return refuse(
            "restore-fetch needs a restore-recipient for the client (its own age public key), \
             and its sessions stored after it was set"
                .to_owned(),
            request,
        );
    }
    Decision {
        allowed: true,
        reason: format!(
            "client {client}: {} allowed from {ip} (machine {})",
            request.name(),
            identity.machine
        ),
        request: Some(request),
        client_ip: Some(ip),
        identity: Some(identity),
    }
}

/// Why a download from a `hollow` or `purge` staging area is refused, and what to do instead.
fn download_refusal(policy: &ClientPolicy) -> String {
    let mode = crate::server::serve::mode_name(policy.staging_mode);
    let what = if policy.staging_mode == StagingMode::Hollow {
        "holds placeholders (files of the right size whose bytes are all zero), not the files"
    } else {
        "is emptied after every backup"
    };
    format!(
        "download refused: staging-mode = {mode} staging {what}; restore a session on the server \
         instead: rsbackup restore --repo REPO --client {0} --session latest|ID --identity \
         AGE-IDENTITY-FILE --target DIR",
        policy.name
    )
}

fn outside_windows(policy: &ClientPolicy, now: Timestamp) -> String {
    let local = now.to_zoned(policy.timezone.clone());
    let windows: Vec<String> = policy.windows.iter().map(|w| w.to_string()).collect();
    format!(
        "client {}: {} ({:?}, {}) is outside its windows ({})",
        policy.name,
        local.strftime("%Y-%m-%d %H:%M"),
        local.weekday(),
        policy.timezone_name,
        windows.join(", ")
    )
}

/// The client address from `SSH_CONNECTION` (`CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT`).
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) becomes the IPv4 address, so IPv4 rules
/// match it.
pub fn parse_ssh_connection(value: Option<&str>) -> Result<IpAddr, String> {
    let value = value.ok_or("SSH_CONNECTION is not set (not called by sshd?)")?;
    let first = value.split(' ').next().unwrap_or_default();
    // A link-local address may carry a zone ("fe80::1%eth0"); the zone is not part of the rule.
    let address = first.split('%').next().unwrap_or_default();
    let ip: IpAddr = address.parse().map_err(|_| {
        format!(
            "SSH_CONNECTION {:?} does not start with an IP address",
            crate::server::audit::escape_for_log(value, 80)
        )
    })?;
    Ok(ip.to_canonical())
}

/// Parse `SSH_ORIGINAL_COMMAND` without a shell: printable ASCII only, no quotes or
/// backslashes, words separated by single ASCII spaces; the client identity prefix
/// (`rsbackup-client=NAME rsbackup-machine=ID`) first, then the command.
pub fn parse_command(value: Option<&str>) -> Result<(StatedIdentity, Request), String> {
    let Some(command) = value else {
        return Err("no command given (an interactive login is never allowed)".into());
    };
    if command.len() > MAX_COMMAND_BYTES {
        return Err(format!(
            "command is {} bytes, over the limit of {MAX_COMMAND_BYTES}",
            command.len()
        ));
    }
    if let Some(b) = command.bytes().find(|b| !(0x20..0x7f).contains(b)) {
        return Err(format!(
            "command contains the byte 0x{b:02x} (control character, newline or non-ASCII)"
        ));
    }
    if let Some(c) = command
        .chars()
        .find(|c| matches!(c, '"' | '\'' | '`' | '\\'))
    {
        return Err(format!("command contains {c:?}; quoting is never needed"));
    }
    let all_words: Vec<&str> = command.split(' ').collect();
    if all_words.iter().any(|w| w.is_empty()) {
        return Err("command has empty words (leading, trailing or double spaces)".into());
    }
    // Every command states the client's name and machine first (format-spec/wire.md).
    let (identity, words) = StatedIdentity::split(&all_words)?;
    let simple = |request: Request| {
        if words.len() == 1 {
            Ok(request)
        } else {
            Err(format!("{} takes no arguments", words[0]))
        }
    };
    let request = match words[0] {
        "prepare" if words[1..] == ["renames"] => Ok(Request::PrepareWithRenames),
        "prepare" => simple(Request::Prepare),
        "complete" => CompleteArgs::parse(&words[1..]).map(Request::Complete),
        "sessions" => simple(Request::Sessions),
        "restore-fetch" => simple(Request::RestoreFetch),
        "rsync" => {
            let req = RsyncRequest::parse(words)?;
            Ok(if req.sender {
                Request::Download(req)
            } else {
                Request::Upload(req)
            })
        }
        other => Err(format!("unknown command {other:?}")),
    }?;
    Ok((identity, request))
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
