//! The `[mail]` table shared by both files: the sender address and how mail leaves the machine.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;
use toml::Spanned;

use super::SourceFile;
use crate::error::Result;

/// SMTP connect and command timeout when the file does not set one.
pub const DEFAULT_SMTP_TIMEOUT_SECONDS: u64 = 30;

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed (default port 587).
    StartTls,
    /// TLS from the first byte (default port 465).
    Tls,
    /// No encryption; only accepted for a loopback host (a local relay, tests).
    None,
}

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransport {
    /// An SMTP relay.
    Smtp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Encryption.
        security: SmtpSecurity,
        /// Login name and the file holding the password (read when the mailer is built, so the
        /// password is never in the configuration file itself).
        login: Option<(String, PathBuf)>,
        /// Connect and command timeout.
        timeout: Duration,
    },
    /// A local sendmail-compatible program.
    Sendmail {
        /// Absolute path of the program.
        command: PathBuf,
    },
    /// A directory that receives one `.eml` file per message (testing, or an external spooler).
    Directory {
        /// Absolute path of the directory.
        path: PathBuf,
    },
}

/// The validated `[mail]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    /// The `From:` address.
    pub from: Mailbox,
    /// Where mail goes.
    pub transport: MailTransport,
}

/// `[mail]` as written. Fields for the transports not chosen must be absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawMail {
    from: Spanned<String>,
    transport: Spanned<String>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    security: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    timeout_seconds: Option<Spanned<u64>>,
    sendmail: Option<Spanned<PathBuf>>,
    directory: Option<Spanned<PathBuf>>,
    /// Recipients: the server file uses `admin`, the client file `errors-to` and `reports-to`;
    /// each file takes its own out before [`SourceFile::mail`] and refuses the others.
    pub(crate) admin: Option<Spanned<Vec<String>>>,
    pub(crate) errors_to: Option<Spanned<Vec<String>>>,
    pub(crate) reports_to: Option<Spanned<Vec<String>>>,
}

impl SourceFile<'_> {
    /// Parse a list of addresses; an empty list is refused.
    pub(crate) fn mailboxes(&self, raw: Spanned<Vec<String>>, key: &str) -> Result<Vec<Mailbox>> {
        let span = raw.span();
        let list = raw.into_inner();
        if list.is_empty() {
            return Err(self.error_at(
                &span,
                format!("[mail] {key} is empty; give at least one address"),
            ));
        }
        list.iter()
            .map(|a| {
                a.parse::<Mailbox>().map_err(|e| {
                    self.error_at(
                        &span,
                        format!("[mail] {key}: {a:?} is not a mail address: {e}"),
                    )
                })
            })
            .collect()
    }

    /// Validate `[mail]`. The caller has taken out the recipient keys its file uses; any left
    /// belong to the other file and are refused.
    pub(crate) fn mail(&self, raw: RawMail) -> Result<MailConfig> {
        for (key, value) in [
            ("admin", &raw.admin),
            ("errors-to", &raw.errors_to),
            ("reports-to", &raw.reports_to),
        ] {
            if let Some(value) = value {
                return Err(self.error_at(
                    &value.span(),
                    format!("[mail] {key} is not used in this file"),
                ));
            }
        }
        let from = raw.from.get_ref().parse::<Mailbox>().map_err(|e| {
            self.error_at(
                &raw.from.span(),
                format!(
                    "[mail] from = {:?} is not a mail address: {e}",
                    raw.from.get_ref()
                ),
            )
        })?;
        let kind = raw.transport.get_ref().as_str();
        // A key that belongs to another transport is a mistake worth reporting: the
        // administrator believes it has an effect.
        let refuse_unused = |keys: &[(&str, Option<std::ops::Range<usize>>)]| -> Result<()> {
            for (key, span) in keys {
                if let Some(span) = span {
                    return Err(self.error_at(
                        span,
                        format!("[mail] {key} has no meaning with transport = {kind:?}"),
                    ));
                }
            }
            Ok(())
        };
        let smtp_keys = [
            ("host", raw.host.as_ref().map(|s| s.span())),
            ("port", raw.port.as_ref().map(|s| s.span())),
            ("security", raw.security.as_ref().map(|s| s.span())),
            ("username", raw.username.as_ref().map(|s| s.span())),
            (
                "password-file",
                raw.password_file.as_ref().map(|s| s.span()),
            ),
            (
                "timeout-seconds",
                raw.timeout_seconds.as_ref().map(|s| s.span()),
            ),
        ];
        let sendmail_key = [("sendmail", raw.sendmail.as_ref().map(|s| s.span()))];
        let directory_key = [("directory", raw.directory.as_ref().map(|s| s.span()))];
        let transport = match kind {
            "smtp" => {
                refuse_unused(&sendmail_key)?;
                refuse_unused(&directory_key)?;
                self.smtp(raw)?
            }
            "sendmail" => {
                refuse_unused(&smtp_keys)?;
                refuse_unused(&directory_key)?;
                let command = match raw.sendmail {
                    Some(p) => self.absolute_path(p, "[mail] sendmail")?,
                    None => PathBuf::from("/usr/sbin/sendmail"),
                };
                MailTransport::Sendmail { command }
            }
            "directory" => {
                refuse_unused(&smtp_keys)?;
                refuse_unused(&sendmail_key)?;
                let Some(dir) = raw.directory else {
                    return Err(self.error_at(
                        &raw.transport.span(),
                        "[mail] transport = \"directory\" needs directory = \"/path\"",
                    ));
                };
                MailTransport::Directory {
                    path: self.absolute_path(dir, "[mail] directory")?,
                }
            }
            other => {
                return Err(self.error_at(
                    &raw.transport.span(),
                    format!("[mail] transport = {other:?} is not one of \"smtp\", \"sendmail\", \"directory\""),
                ));
            }
        };
        Ok(MailConfig { from, transport })
    }

    fn smtp(&self, raw: RawMail) -> Result<MailTransport> {
        let Some(host) = raw.host else {
            return Err(self.error_at(
                &raw.transport.span(),
                "[mail] transport = \"smtp\" needs host = \"...\"",
            ));
        };
        let host_span = host.span();
        let host = host.into_inner();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.error_at(
                &host_span,
                format!("[mail] host = {host:?} is not a host name"),
            ));
        }
        let security = match raw.security.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("starttls") => SmtpSecurity::StartTls,
            Some("tls") => SmtpSecurity::Tls,
            Some("none") => SmtpSecurity::None,
            Some(other) => {
                return Err(self.error_at(
                    &raw.security.as_ref().map(|s| s.span()).unwrap_or_default(),
                    format!(
                        "[mail] security = {other:?} is not one of \"starttls\", \"tls\", \"none\""
                    ),
                ));
            }
        };
        if security == SmtpSecurity::None && !is_loopback(&host) {
            return Err(self.error_at(
                &host_span,
                format!(
                    "[mail] security = \"none\" is only allowed for a loopback host, not {host:?}: \
                     mail and passwords would cross the network in clear"
                ),
            ));
        }
        let port = match raw.port {
            Some(p) if *p.get_ref() == 0 => {
                return Err(self.error_at(&p.span(), "[mail] port = 0 is not a port"));
            }
            Some(p) => p.into_inner(),
            None => match security {
                SmtpSecurity::Tls => 465,
                SmtpSecurity::StartTls => 587,
                SmtpSecurity::None => 25,
            },
        };
        let login = match (raw.username, raw.password_file) {
            (None, None) => None,
            (Some(user), Some(file)) => Some((
                user.into_inner(),
                self.absolute_path(file, "[mail] password-file")?,
            )),
            (Some(user), None) => {
                return Err(self.error_at(
                    &user.span(),
                    "[mail] username is set but password-file is not",
                ));
            }
            (None, Some(file)) => {
                return Err(self.error_at(
                    &file.span(),
                    "[mail] password-file is set but username is not",
                ));
            }
        };
        let timeout = match raw.timeout_seconds {
            None => DEFAULT_SMTP_TIMEOUT_SECONDS,
            Some(t) if (1..=600).contains(t.get_ref()) => t.into_inner(),
            Some(t) => {
                return Err(self.error_at(
                    &t.span(),
                    format!(
                        "[mail] timeout-seconds = {} is out of range (1 to 600)",
                        t.get_ref()
                    ),
                ));
            }
        };
        Ok(MailTransport::Smtp {
            host,
            port,
            security,
            login,
            timeout: Duration::from_secs(timeout),
        })
    }
}

/// Is `host` a loopback name or address? Only literal addresses and `localhost` count: a name
/// that resolves to loopback today may not tomorrow.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
