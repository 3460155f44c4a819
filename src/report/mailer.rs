//! Sending reports: a [`Mailer`] built from a validated `[mail]` table. Sending returns an error
//! value and never panics; SMTP has a connect and command timeout so that a dead relay cannot
//! hold a backup run or a forced command forever.

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{FileTransport, Message, SendmailTransport, SmtpTransport, Transport};

use crate::config::{MailConfig, MailTransport, SmtpSecurity};
use crate::error::{Error, ErrorKind, Result};

enum Inner {
    Smtp(Box<SmtpTransport>),
    Sendmail(SendmailTransport),
    Directory(FileTransport, PathBuf),
}

/// Sends plain-text mail the way the configuration says.
pub struct Mailer {
    from: Mailbox,
    inner: Inner,
    /// For error messages: `smtp mail.example.org:587`, `sendmail /usr/sbin/sendmail`, ...
    describe: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the SMTP password; show only where mail goes.
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .field("via", &self.describe)
            .finish()
    }
}

impl Mailer {
    /// Build the transport. For SMTP with a login, the password file is read now (its first
    /// line); it must not be readable by everyone.
    pub fn from_config(config: &MailConfig) -> Result<Mailer> {
        let (inner, describe) = match &config.transport {
            MailTransport::Smtp {
                host,
                port,
                security,
                login,
                timeout,
            } => {
                let tls = || {
                    TlsParameters::new(host.clone()).map_err(|e| {
                        Error::new(ErrorKind::Config, format!("mail: TLS setup for {host}"))
                            .with_source(e)
                    })
                };
                let mut builder = SmtpTransport::builder_dangerous(host.as_str())
                    .port(*port)
                    .timeout(Some(*timeout))
                    .tls(match security {
                        SmtpSecurity::StartTls => Tls::Required(tls()?),
                        SmtpSecurity::Tls => Tls::Wrapper(tls()?),
                        SmtpSecurity::None => Tls::None,
                    });
                if let Some((user, password_file)) = login {
                    builder = builder.credentials(Credentials::new(
                        user.clone(),
                        read_password(password_file)?,
                    ));
                }
                let security = match security {
                    SmtpSecurity::StartTls => "starttls",
                    SmtpSecurity::Tls => "tls",
                    SmtpSecurity::None => "plain",
                };
                (
                    Inner::Smtp(Box::new(builder.build())),
                    format!("smtp {host}:{port} ({security})"),
                )
            }
            MailTransport::Sendmail { command } => (
                Inner::Sendmail(SendmailTransport::new_with_command(command.as_os_str())),
                format!("sendmail {}", command.display()),
            ),
            MailTransport::Directory { path } => (
                Inner::Directory(FileTransport::new(path), path.clone()),
                format!("mail directory {}", path.display()),
            ),
        };
        Ok(Mailer {
            from: config.from.clone(),
            inner,
            describe,
        })
    }

    /// Where mail goes, for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Send one plain-text message to `to`.
    pub fn send(&self, to: &[Mailbox], subject: &str, body: &str) -> Result<()> {
        if to.is_empty() {
            return Err(Error::invalid(format!("mail {subject:?}: no recipients")));
        }
        // Every mail carries its Date and a Message-ID (RFC 5322 3.6): filters, threading and
        // duplicate detection rely on them, and some relays reject or delay mail without.
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .date_now()
            .message_id(Some(message_id(&self.from)))
            .header(ContentType::TEXT_PLAIN);
        for rcpt in to {
            builder = builder.to(rcpt.clone());
        }
        let message = builder.body(body.to_owned()).map_err(|e| {
            Error::invalid(format!("mail {subject:?}: cannot build the message")).with_source(e)
        })?;
        let failed = |e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::Io,
                format!("sending mail {subject:?} via {}: {e}", self.describe),
            )
        };
        match &self.inner {
            Inner::Smtp(t) => t.send(&message).map(drop).map_err(|e| failed(&e)),
            Inner::Sendmail(t) => t.send(&message).map_err(|e| failed(&e)),
            Inner::Directory(t, dir) => {
                if !dir.is_dir() {
                    return Err(failed(&format!("{} is not a directory", dir.display())));
                }
                t.send(&message).map(drop).map_err(|e| failed(&e))
            }
        }
    }
}

/// `<TIME.RANDOM@DOMAIN>`, DOMAIN being the sender's (so that the id is unique to whoever
/// owns that domain, without asking this machine's name).
fn message_id(from: &Mailbox) -> String {
    let mut raw = [0u8; 12];
    // Without randomness the time alone still makes the id very likely unique.
    let _ = getrandom::fill(&mut raw);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "<{}.{}.rsbackup@{}>",
        now.as_micros(),
        hex::encode(raw),
        from.email.domain()
    )
}

fn read_password(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("mail password file {}", path.display()), e))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "mail password file {} is readable by everyone; chmod 600 it",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("mail password file {}", path.display()), e))?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("mail password file {} is empty", path.display()),
        ));
    }
    Ok(password)
}

#[cfg(test)]
#[path = "mailer_tests.rs"]
mod tests;
