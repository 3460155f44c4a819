//! `client.toml`: who this client is, which server it pushes to, what it sends, its hooks, and
//! where its reports go.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;
use toml::Spanned;

use super::mail::RawMail;
use super::source::SourceGuard;
use super::{ClientName, Hook, MailConfig, RawHook, SourceFile, read_config_file};
use crate::error::Result;

/// Where the machine identity comes from when `machine-id-file` is not set.
pub const DEFAULT_MACHINE_ID_FILE: &str = "/etc/machine-id";

/// How the client reaches the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// Host name or address.
    pub host: String,
    /// ssh port.
    pub port: u16,
    /// The ssh user on the server (whose `authorized_keys` holds the forced commands).
    pub user: String,
    /// The private key for `ssh -i`.
    pub ssh_key: PathBuf,
    /// A `known_hosts` file to pin the server's host key; `None`: ssh's default.
    pub known_hosts: Option<PathBuf>,
}

/// The validated `client.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// This client's name, as the server knows it.
    pub name: ClientName,
    /// The server.
    pub server: ServerAddress,
    /// Absolute paths to back up.
    pub sources: Vec<PathBuf>,
    /// Each source's guard, in the order of `sources`.
    pub source_guards: Vec<SourceGuard>,
    /// rsync exclude patterns.
    pub excludes: Vec<String>,
    /// The local rsync.
    pub rsync_path: PathBuf,
    /// The local ssh.
    pub ssh_path: PathBuf,
    /// Hooks run before `prepare` (database dumps, mounts).
    pub init_hooks: Vec<Hook>,
    /// Hooks run after `complete`, whatever happened (unmounts, cleanup).
    pub cleanup_hooks: Vec<Hook>,
    /// How mail leaves this machine.
    pub mail: MailConfig,
    /// Who gets the error report.
    pub errors_to: Vec<Mailbox>,
    /// Who gets the job report.
    pub reports_to: Vec<Mailbox>,
    /// Where the client lock and the note of a run in progress are kept (`state-dir`).
    pub state_dir: PathBuf,
    /// What a failing init hook does (`on-init-hook-failure`): abort (the default) or go on.
    pub continue_after_init_hook_failure: bool,
    /// How rsync and ssh move the data (`[transfer]`).
    pub transfer: TransferOptions,
    /// The file whose first line identifies this machine (`machine-id-file`, default
    /// `/etc/machine-id`); only a hash derived from it is sent (see `client::identity`).
    pub machine_id_file: PathBuf,
}

/// The `[transfer]` table: timeouts, bandwidth and wire compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOptions {
    /// ssh connect timeout (`connect-timeout-seconds`, default 30).
    pub connect_timeout: Duration,
    /// rsync I/O timeout: give up when no data moved for this long (`io-timeout-seconds`,
    /// default 600).
    pub io_timeout: Duration,
    /// rsync bandwidth limit in KiB/s (`bwlimit-kib`), none by default.
    pub bwlimit_kib: Option<u32>,
    /// Compress on the wire, rsync `-z` (`compress`, default false).
    pub compress: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(600),
            bwlimit_kib: None,
            compress: false,
        }
    }
}

impl ClientConfig {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<ClientConfig> {
        let text = read_config_file(path)?;
        ClientConfig::parse(&text, path)
    }

    /// Validate `text`, naming `path` in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ClientConfig> {
        let src = SourceFile::new(path, text);
        let mut raw: RawClient = src.parse()?;
        let name_span = raw.name.span();
        let name = ClientName::parse(raw.name.get_ref())
            .map_err(|e| src.error_at(&name_span, e.message()))?;

        let (Some(errors_to), Some(reports_to)) =
            (raw.mail.errors_to.take(), raw.mail.reports_to.take())
        else {
            return Err(src.error(
                "[mail] needs both errors-to = [...] and reports-to = [...] (they may be the same)",
            ));
        };
        let errors_to = src.mailboxes(errors_to, "errors-to")?;
        let reports_to = src.mailboxes(reports_to, "reports-to")?;
        let mail = src.mail(raw.mail)?;

        let s = raw.server;
        let host_span = s.host.span();
        let host = s.host.into_inner();
        // The host ends up as one ssh argument; a leading '-' would make it an option.
        if host.is_empty()
            || host.starts_with('-')
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        {
            return Err(src.error_at(
                &host_span,
                format!("[server] host = {host:?} is not a host name"),
            ));
        }
        let user = match s.user {
            None => "rsbackup".to_owned(),
            Some(u) => {
                let ok = !u.get_ref().is_empty()
                    && !u.get_ref().starts_with('-')
                    && u.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    return Err(src.error_at(
                        &u.span(),
                        format!("[server] user = {:?} is not a user name", u.get_ref()),
                    ));
                }
                u.into_inner()
            }
        };
        let port = match s.port {
            Some(p) if *p.get_ref() == 0 => {
                return Err(src.error_at(&p.span(), "[server] port = 0 is not a port"));
            }
            Some(p) => p.into_inner(),
            None => 22,
        };
        let server = ServerAddress {
            host,
            port,
            user,
            ssh_key: src.absolute_path(s.ssh_key, "[server] ssh-key")?,
            known_hosts: s
                .known_hosts
                .map(|p| src.absolute_path(p, "[server] known-hosts"))
                .transpose()?,
        };

        let (sources, source_guards) = super::source::sources(&src, raw.sources)?;

        let excludes = match raw.excludes {
            None => Vec::new(),
            Some(list) => {
                let span = list.span();
                let list = list.into_inner();
                // rsync reads the excludes one per line; a newline would smuggle in a second rule.
                if let Some(bad) = list
                    .iter()
                    .find(|e| e.is_empty() || e.chars().any(|c| c.is_control()))
                {
                    return Err(src.error_at(
                        &span,
                        format!("excludes: {bad:?} is empty or contains a control character"),
                    ));
                }
                list
            }
        };

        let continue_after_init_hook_failure = match raw.on_init_hook_failure {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "abort" => false,
                "continue" => true,
                other => {
                    return Err(src.error_at(
                        &v.span(),
                        format!("on-init-hook-failure = {other:?}: use \"abort\" or \"continue\""),
                    ));
                }
            },
        };
        let transfer = match raw.transfer {
            None => TransferOptions::default(),
            Some(t) => {
                let defaults = TransferOptions::default();
                let seconds =
                    |v: Option<Spanned<u64>>, max: u64, what: &str, default: Duration| match v {
                        None => Ok(default),
                        Some(v) if (1..=max).contains(v.get_ref()) => {
                            Ok(Duration::from_secs(*v.get_ref()))
                        }
                        Some(v) => Err(src.error_at(
                            &v.span(),
                            format!(
                                "[transfer] {what} = {} is out of range 1..={max}",
                                v.get_ref()
                            ),
                        )),
                    };
                TransferOptions {
                    connect_timeout: seconds(
                        t.connect_timeout_seconds,
                        3600,
                        "connect-timeout-seconds",
                        defaults.connect_timeout,
                    )?,
                    io_timeout: seconds(
                        t.io_timeout_seconds,
                        86400,
                        "io-timeout-seconds",
                        defaults.io_timeout,
                    )?,
                    bwlimit_kib: match t.bwlimit_kib {
                        Some(v) if *v.get_ref() == 0 => {
                            return Err(src.error_at(
                                &v.span(),
                                "[transfer] bwlimit-kib = 0: leave it out for no limit",
                            ));
                        }
                        v => v.map(Spanned::into_inner),
                    },
                    compress: t.compress.unwrap_or(false),
                }
            }
        };

        Ok(ClientConfig {
            state_dir: match raw.state_dir {
                Some(p) => src.absolute_path(p, "state-dir")?,
                None => PathBuf::from("/var/lib/rsbackup"),
            },
            continue_after_init_hook_failure,
            transfer,
            machine_id_file: match raw.machine_id_file {
                Some(p) => src.absolute_path(p, "machine-id-file")?,
                None => PathBuf::from(DEFAULT_MACHINE_ID_FILE),
            },
            path: path.to_owned(),
            name,
            server,
            sources,
            source_guards,
            excludes,
            rsync_path: match raw.rsync_path {
                Some(p) => src.absolute_path(p, "rsync-path")?,
                None => PathBuf::from("/usr/bin/rsync"),
            },
            ssh_path: match raw.ssh_path {
                Some(p) => src.absolute_path(p, "ssh-path")?,
                None => PathBuf::from("/usr/bin/ssh"),
            },
            init_hooks: src.hooks(raw.init_hooks.unwrap_or_default(), "init-hooks")?,
            cleanup_hooks: src.hooks(raw.cleanup_hooks.unwrap_or_default(), "cleanup-hooks")?,
            mail,
            errors_to,
            reports_to,
        })
    }

    /// The hooks' longest timeout (for a caller that budgets the whole run).
    pub fn longest_hook(&self) -> Duration {
        self.init_hooks
            .iter()
            .chain(&self.cleanup_hooks)
            .map(|h| h.timeout)
            .max()
            .unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawClient {
    name: Spanned<String>,
    server: RawServerAddress,
    sources: Spanned<Vec<Spanned<toml::Value>>>,
    excludes: Option<Spanned<Vec<String>>>,
    rsync_path: Option<Spanned<PathBuf>>,
    ssh_path: Option<Spanned<PathBuf>>,
    init_hooks: Option<Vec<RawHook>>,
    cleanup_hooks: Option<Vec<RawHook>>,
    state_dir: Option<Spanned<PathBuf>>,
    on_init_hook_failure: Option<Spanned<String>>,
    transfer: Option<RawTransfer>,
    machine_id_file: Option<Spanned<PathBuf>>,
    mail: RawMail,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTransfer {
    connect_timeout_seconds: Option<Spanned<u64>>,
    io_timeout_seconds: Option<Spanned<u64>>,
    bwlimit_kib: Option<Spanned<u32>>,
    compress: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawServerAddress {
    host: Spanned<String>,
    port: Option<Spanned<u16>>,
    user: Option<Spanned<String>>,
    ssh_key: Spanned<PathBuf>,
    known_hosts: Option<Spanned<PathBuf>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MailTransport;
    use crate::error::ErrorKind;

    const EXAMPLE: &str = r#"name = "web1"
sources = ["/etc", "/var/www"]
excludes = ["*.tmp", "/var/www/cache/"]
init-hooks = [{ argv = ["/usr/local/bin/dump-db", "--all"], timeout-seconds = 900 }]
cleanup-hooks = [{ argv = ["/bin/rm", "-f", "/var/backups/db.sql"] }]

[server]
host = "backup.example.org"
port = 2222
ssh-key = "/etc/rsbackup/id_ed25519"

[mail]
from = "rsbackup@web1.example.org"
errors-to = ["ops@example.org"]
reports-to = ["backup-reports@example.org"]
transport = "smtp"
host = "mail.example.org"
security = "tls"
username = "web1"
password-file = "/etc/rsbackup/smtp-password"
"#;

    fn parse(text: &str) -> Result<ClientConfig> {
        ClientConfig::parse(text, Path::new("/etc/rsbackup/client.toml"))
    }

    fn refused(from: &str, to: &str, line: usize, needle: &str) {
        assert!(EXAMPLE.contains(from), "test bug: {from:?}");
        let err = parse(&EXAMPLE.replacen(from, to, 1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let msg = err.message();
        assert!(
            msg.starts_with(&format!("/etc/rsbackup/client.toml:{line}:")),
            "{msg}"
        );
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }

    #[test]
    fn example_parses() {
        let cfg = parse(EXAMPLE).unwrap();
        assert_eq!(cfg.name.as_str(), "web1");
        assert_eq!(cfg.server.port, 2222);
        assert_eq!(cfg.server.user, "rsbackup");
        assert_eq!(cfg.sources.len(), 2);
        assert_eq!(cfg.excludes, vec!["*.tmp", "/var/www/cache/"]);
        assert_eq!(cfg.init_hooks[0].timeout, Duration::from_secs(900));
        assert_eq!(
            cfg.cleanup_hooks[0].timeout,
            Duration::from_secs(super::super::DEFAULT_HOOK_TIMEOUT_SECONDS)
        );
        assert_eq!(cfg.longest_hook(), Duration::from_secs(900));
        assert_ne!(cfg.errors_to, cfg.reports_to);
        match &cfg.mail.transport {
            MailTransport::Smtp {
                port,
                security,
                login,
                ..
            } => {
                assert_eq!(*port, 465);
                assert_eq!(*security, crate::config::SmtpSecurity::Tls);
                assert_eq!(login.as_ref().unwrap().0, "web1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_files_name_the_line() {
        refused("name = \"web1\"", "name = \"Web 1\"", 1, "client name");
        refused("\"/var/www\"]", "\"var/www\"]", 2, "not an absolute path");
        refused("\"*.tmp\"", "\"*.tmp\\nfoo\"", 3, "control character");
        refused(
            "\"/usr/local/bin/dump-db\"",
            "\"dump-db\"",
            4,
            "not an absolute path",
        );
        refused(
            "timeout-seconds = 900",
            "timeout-seconds = 90000",
            4,
            "out of range",
        );
        refused(
            "\"/bin/rm\", \"-f\", \"/var/backups/db.sql\"",
            "",
            5,
            "argv is empty",
        );
        refused("port = 2222", "port = 70000", 9, "");
        refused("port = 2222", "prot = 2222", 9, "unknown field");
        refused(
            "host = \"backup.example.org\"",
            "host = \"-oProxyCommand=x\"",
            8,
            "not a host name",
        );
        refused(
            "ssh-key = \"/etc",
            "ssh-key = \"etc",
            10,
            "not an absolute path",
        );
        refused("\"ops@example.org\"", "\"ops\"", 14, "not a mail address");
        refused("security = \"tls\"", "security = \"ssl\"", 18, "starttls");
        refused(
            "username = \"web1\"\n",
            "",
            19,
            "password-file is set but username is not",
        );
        refused(
            "sources = [\"/etc\", \"/var/www\"]",
            "sources = []",
            2,
            "nothing to back up",
        );
    }

    #[test]
    fn missing_parts() {
        let err = parse(&EXAMPLE.replace("reports-to = [\"backup-reports@example.org\"]\n", ""))
            .unwrap_err();
        assert!(err.message().contains("reports-to"), "{err}");
        let err =
            parse(&EXAMPLE.replace("ssh-key = \"/etc/rsbackup/id_ed25519\"\n", "")).unwrap_err();
        assert!(err.message().contains("ssh-key"), "{err}");
        let err = parse(&EXAMPLE.replace("[mail]", "[mail]\nadmin = [\"x@y.z\"]")).unwrap_err();
        assert!(err.message().contains("admin is not used"), "{err}");
    }

    #[test]
    fn transfer_options_and_state_dir() {
        let cfg = parse(EXAMPLE).unwrap();
        assert_eq!(cfg.transfer, TransferOptions::default());
        assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/rsbackup"));
        assert_eq!(cfg.machine_id_file, PathBuf::from("/etc/machine-id"));
        assert!(!cfg.continue_after_init_hook_failure);

        let text = EXAMPLE.replacen(
            "[server]",
            "state-dir = \"/srv/rsbackup-state\"\non-init-hook-failure = \"continue\"\n\
             machine-id-file = \"/srv/machine-id\"\n\n\
             [transfer]\nio-timeout-seconds = 120\nbwlimit-kib = 5000\ncompress = true\n\n[server]",
            1,
        );
        let cfg = parse(&text).unwrap();
        assert_eq!(cfg.state_dir, PathBuf::from("/srv/rsbackup-state"));
        assert_eq!(cfg.machine_id_file, PathBuf::from("/srv/machine-id"));
        assert!(cfg.continue_after_init_hook_failure);
        assert_eq!(cfg.transfer.io_timeout, Duration::from_secs(120));
        assert_eq!(cfg.transfer.connect_timeout, Duration::from_secs(30));
        assert_eq!(cfg.transfer.bwlimit_kib, Some(5000));
        assert!(cfg.transfer.compress);

        let bad = |from: &str, to: &str, needle: &str| {
            let err = parse(&text.replacen(from, to, 1)).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Config);
            assert!(err.message().contains(needle), "{err} lacks {needle:?}");
            assert!(
                err.message().starts_with("/etc/rsbackup/client.toml:"),
                "{err}"
            );
        };
        bad("\"continue\"", "\"maybe\"", "use \"abort\" or \"continue\"");
        bad(
            "io-timeout-seconds = 120",
            "io-timeout-seconds = 0",
            "out of range",
        );
        bad("bwlimit-kib = 5000", "bwlimit-kib = 0", "no limit");
        bad("\"/srv/machine-id\"", "\"machine-id\"", "machine-id-file");
        bad(
            "\"/srv/rsbackup-state\"",
            "\"state\"",
            "not an absolute path",
        );
        bad("compress = true", "compres = true", "unknown field");
    }
}
