//! `server.toml`: the repository, the staging root, the administrator's mail, defaults, and one
//! `[clients.NAME]` table per client with everything that client may do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use jiff::tz::TimeZone;
use lettre::message::Mailbox;
use serde::Deserialize;
use toml::Spanned;

use super::basis::{BasisPattern, MAX_BASIS_PATTERNS};
use super::mail::RawMail;
use super::retention::{RawRetention, RetentionConfig};
use super::{
    ClientName, Hook, MailConfig, RawHook, SourceFile, TimeWindow, parse_size, read_config_file,
};
use crate::error::Result;

/// Audit log path when the file does not set one.
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/rsbackup/audit.log";
/// Refusal-alert coalescing state when the file does not name one.
pub const DEFAULT_ALERT_STATE: &str = "/var/lib/rsbackup/alert-state.json";
/// The rsync the server execs when the file does not name one.
pub const DEFAULT_RSYNC_PATH: &str = "/usr/bin/rsync";
/// Refusal alerts within this many minutes of the last one are coalesced into one mail.
pub const DEFAULT_ALERT_COALESCE_MINUTES: u64 = 15;
/// How many hours a run may stay between `prepare` and `complete` before its lease expires,
/// when neither the file nor `rsbackup serve --lease-hours` says.
pub const DEFAULT_LEASE_HOURS: u64 = 12;
/// Longest lease accepted, in hours (a week), in the file as on the command line.
pub const MAX_LEASE_HOURS: u64 = 7 * 24;

/// A command a client may be allowed to run (`commands = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Command {
    /// `prepare`: lock staging, run the server's prepare hooks.
    Prepare,
    /// The rsync upload into staging.
    Upload,
    /// `complete`: ingest staging into the repository.
    Complete,
    /// `sessions`: list this client's sessions.
    Sessions,
    /// `restore-fetch`: read its own sessions' manifests and chunks, as stored, to restore on
    /// the client. Never in the default list.
    Restore,
}

impl Command {
    /// Every command, in the order of a run, then `restore`.
    pub const ALL: [Command; 5] = [
        Command::Prepare,
        Command::Upload,
        Command::Complete,
        Command::Sessions,
        Command::Restore,
    ];

    /// The commands a client without `commands = [...]` may run: those of a backup run.
    pub const DEFAULT: [Command; 4] = [
        Command::Prepare,
        Command::Upload,
        Command::Complete,
        Command::Sessions,
    ];

    /// The name used in `commands = [...]`.
    pub fn name(self) -> &'static str {
        match self {
            Command::Prepare => "prepare",
            Command::Upload => "upload",
            Command::Complete => "complete",
            Command::Sessions => "sessions",
            Command::Restore => "restore",
        }
    }

    fn from_name(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// What stays in a client's staging directory after `complete` (see `docs/configuration.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagingMode {
    /// The latest tree stays in plaintext: full rsync delta efficiency.
    Keep,
    /// Files are replaced by sparse placeholders of the same size and mtime (the default):
    /// unchanged files are not sent again, changed ones travel whole unless `keep-basis`
    /// names them.
    Hollow,
    /// Staging is emptied: every run sends everything.
    Purge,
}

/// What the server does when a client's key is used from a machine it has not recorded for that
/// client (`on-new-machine`; see `server::machines`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNewMachine {
    /// Refuse the request (audited, alert mailed); `rsbackup accept-machine` lets it in.
    Refuse,
    /// Allow it, record the machine, audit and mail the administrator once per new machine.
    Alert,
    /// Allow it and record the machine (audited like every request).
    Accept,
}

impl OnNewMachine {
    /// The name used in `server.toml`.
    pub fn name(self) -> &'static str {
        match self {
            OnNewMachine::Refuse => "refuse",
            OnNewMachine::Alert => "alert",
            OnNewMachine::Accept => "accept",
        }
    }
}

/// One OpenSSH public key: `ALGORITHM BASE64 [COMMENT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    /// e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// The base64 key blob, which identifies the key.
    pub blob: String,
    /// The comment, possibly empty.
    pub comment: String,
}

const KEY_ALGORITHMS: [&str; 7] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

impl SshPublicKey {
    /// Parse one key line. Options in front of the key (`command=...`, `from=...`) are refused:
    /// the server writes those itself in `authorized-keys`.
    pub fn parse(line: &str) -> Result<SshPublicKey, String> {
        if line.chars().any(|c| c.is_control()) {
            return Err("the key contains a control character (a newline?)".into());
        }
        let mut parts = line.trim().splitn(3, ' ');
        let algorithm = parts.next().unwrap_or_default();
        if !KEY_ALGORITHMS.contains(&algorithm) {
            return Err(format!(
                "{:?} is not a known key type (one of {}); give the key alone, without options",
                algorithm,
                KEY_ALGORITHMS.join(", ")
            ));
        }
        let blob = parts.next().unwrap_or_default();
        let base64 = |b: u8| b.is_ascii_alphanumeric() || b"+/=".contains(&b);
        if blob.len() < 16 || !blob.bytes().all(base64) {
            return Err("the key data after the type is missing or not base64".into());
        }
        // The blob must be a whole key of the type it is written with: sshd skips a line whose
        // key does not decode, which would lock the client out without a word.
        let decoded =
            ssh_key::PublicKey::from_openssh(&format!("{algorithm} {blob}")).map_err(|e| {
                format!(
                    "the key data after {algorithm} is not a whole {algorithm} public key ({e}): \
                     was it cut or mistyped?"
                )
            })?;
        if decoded.algorithm().as_str() != algorithm {
            return Err(format!(
                "the key data is a {} key, but the line says {algorithm}",
                decoded.algorithm().as_str()
            ));
        }
        Ok(SshPublicKey {
            algorithm: algorithm.to_owned(),
            blob: blob.to_owned(),
            comment: parts.next().unwrap_or_default().trim().to_owned(),
        })
    }
}

/// Everything one client may do, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientPolicy {
    /// The client's name.
    pub name: ClientName,
    /// Its ssh public keys (at least one).
    pub keys: Vec<SshPublicKey>,
    /// Source networks it may connect from (at least one; plain addresses are /32 or /128).
    pub addresses: Vec<IpNet>,
    /// When it may connect (at least one window).
    pub windows: Vec<TimeWindow>,
    /// The zone the windows are read in.
    pub timezone: TimeZone,
    /// The zone's name as written, for messages.
    pub timezone_name: String,
    /// Commands it may run.
    pub commands: BTreeSet<Command>,
    /// What stays in staging after `complete`.
    pub staging_mode: StagingMode,
    /// `hollow` only: staged files left whole (plaintext) so that rsync sends them as deltas.
    pub keep_basis: Vec<BasisPattern>,
    /// Most bytes its staging may hold; `None`: no limit.
    pub quota: Option<u64>,
    /// May it download (rsync `--sender`) from its staging area?
    pub restore: bool,
    /// Its own age recipient (`restore-recipient`): its sessions go into its own dedup scope,
    /// their keys wrapped to it too, so that it restores them itself (`restore-fetch`).
    pub restore_recipient: Option<String>,
    /// Hooks the server runs on `prepare`.
    pub prepare_hooks: Vec<Hook>,
    /// Hooks the server runs after a successful `complete`.
    pub complete_hooks: Vec<Hook>,
    /// How long a run may stay between `prepare` and `complete` before its lease expires and
    /// the next `prepare` may take it over (`lease-hours`).
    pub lease_timeout: Duration,
    /// What a request from a machine not yet recorded for this client gets (`on-new-machine`).
    pub on_new_machine: OnNewMachine,
    /// How often `watch` expects a session (`expect-every`, `expect-state`).
    pub expect: super::watch::Expectation,
}

/// The validated `server.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The repository (store and index).
    pub repository: PathBuf,
    /// Each client's staging directory is `staging_root/NAME`.
    pub staging_root: PathBuf,
    /// Where audit records are appended.
    pub audit_log: PathBuf,
    /// The state file that coalesces refusal alerts (see `server::alerts`).
    pub alert_state: PathBuf,
    /// The rsync binary the server runs.
    pub rsync_path: PathBuf,
    /// `[rsync-limits]`: resource limits of every rsync run for a client.
    pub rsync_limits: super::RsyncLimits,
    /// Refusal alerts closer together than this are coalesced.
    pub alert_coalesce: Duration,
    /// How mail leaves the server.
    pub mail: MailConfig,
    /// Who gets run notices and refusal alerts.
    pub admin: Vec<Mailbox>,
    /// The clients, by name.
    pub clients: BTreeMap<ClientName, ClientPolicy>,
    /// `[retention]` and `[clients.NAME.retention]`.
    pub retention: RetentionConfig,
    /// `[mirrors.NAME]` and `[mirror-of.NAME]`.
    pub mirrors: super::mirror::MirrorConfig,
    /// `[watch]`: what `watch` keeps, mails and rewrites.
    pub watch: super::watch::WatchConfig,
    /// `[log]`: where log lines go.
    pub log: super::watch::LogConfig,
}

impl ServerConfig {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<ServerConfig> {
        let text = read_config_file(path)?;
        ServerConfig::parse(&text, path)
    }

    /// Validate `text`, naming `path` in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ServerConfig> {
        let src = SourceFile::new(path, text);
        let mut raw: RawServer = src.parse()?;
        let Some(admin) = raw.mail.admin.take() else {
            return Err(src.error("[mail] admin = [\"...\"] is missing: who gets refusal alerts?"));
        };
        let admin = src.mailboxes(admin, "admin")?;
        let mail = src.mail(raw.mail)?;
        if raw.defaults.keys.is_some() {
            let span = raw
                .defaults
                .keys
                .as_ref()
                .map(|k| k.span())
                .unwrap_or_default();
            return Err(src.error_at(
                &span,
                "[defaults] keys: keys belong to one client, not to the defaults",
            ));
        }
        let alert_coalesce = match raw.alert_coalesce_minutes {
            None => DEFAULT_ALERT_COALESCE_MINUTES,
            Some(m) if *m.get_ref() <= 24 * 60 => m.into_inner(),
            Some(m) => {
                return Err(src.error_at(&m.span(), "alert-coalesce-minutes is over a day (1440)"));
            }
        };
        if raw.defaults.retention.is_some() {
            return Err(src.error("[defaults.retention]: write the defaults as [retention]"));
        }
        src.no_default_restore_recipient(&raw.defaults.restore_recipient)?;
        let defaults = src.default_values(raw.defaults)?;
        let mut recipient_owner = BTreeMap::new();
        let mut clients = BTreeMap::new();
        let mut retention = Vec::new();
        let mut key_owner: BTreeMap<String, ClientName> = BTreeMap::new();
        for (name, mut raw_client) in raw.clients {
            let span = name.span();
            let name =
                ClientName::parse(name.get_ref()).map_err(|e| src.error_at(&span, e.message()))?;
            if let Some(r) = raw_client.retention.take() {
                retention.push((name.clone(), r));
            }
            let restore_recipient = src.restore_recipient(
                name.as_str(),
                raw_client.restore_recipient.take(),
                &mut recipient_owner,
            )?;
            let mut policy = src.policy(&name, raw_client, &defaults)?;
            policy.restore_recipient = restore_recipient;
            for key in &policy.keys {
                if let Some(other) = key_owner.insert(key.blob.clone(), name.clone()) {
                    let whose = if other == name {
                        "appears twice in its keys".to_owned()
                    } else {
                        format!("is also a key of client {other}; a key must identify one client")
                    };
                    return Err(src.error_at(
                        &span,
                        format!(
                            "client {name}: ssh key {} {}... {whose}",
                            key.algorithm,
                            &key.blob[..key.blob.len().min(24)]
                        ),
                    ));
                }
            }
            clients.insert(name, policy);
        }
        let alert_state = match raw.alert_state {
            Some(p) => src.absolute_path(p, "alert-state")?,
            None => PathBuf::from(DEFAULT_ALERT_STATE),
        };
        Ok(ServerConfig {
            path: path.to_owned(),
            repository: src.absolute_path(raw.repository, "repository")?,
            staging_root: src.absolute_path(raw.staging_root, "staging-root")?,
            audit_log: match raw.audit_log {
                Some(p) => src.absolute_path(p, "audit-log")?,
                None => PathBuf::from(DEFAULT_AUDIT_LOG),
            },
            watch: src.watch(raw.watch.unwrap_or_default(), &alert_state)?,
            log: src.log(raw.log.unwrap_or_default())?,
            alert_state,
            rsync_path: match raw.rsync_path {
                Some(p) => src.absolute_path(p, "rsync-path")?,
                None => PathBuf::from(DEFAULT_RSYNC_PATH),
            },
            rsync_limits: src.rsync_limits(raw.rsync_limits)?,
            alert_coalesce: Duration::from_secs(alert_coalesce * 60),
            mail,
            admin,
            clients,
            retention: src.retention(raw.retention, retention)?,
            mirrors: src.mirrors(raw.mirrors, raw.mirror_of)?,
        })
    }

    /// The client's policy, if it is configured.
    pub fn client(&self, name: &str) -> Option<&ClientPolicy> {
        self.clients
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, p)| p)
    }

    /// Settings that load but do not do what they seem to, one line each, for the commands an
    /// administrator runs by hand (`authorized-keys`) to print: `restore = true` with a
    /// `hollow` or `purge` staging area (such downloads are refused at request time).
    pub fn warnings(&self) -> Vec<String> {
        let basis = self
            .clients
            .values()
            .filter(|p| !p.keep_basis.is_empty() && p.staging_mode != StagingMode::Hollow)
            .map(|p| {
                format!(
                    "{}: client {}: keep-basis has no effect with staging-mode = {}: it names \
                     the files a hollow staging area keeps whole",
                    self.path.display(),
                    p.name,
                    if p.staging_mode == StagingMode::Keep {
                        "keep (every file stays whole)"
                    } else {
                        "purge (no file stays)"
                    }
                )
            });
        self.clients
            .values()
            .filter(|p| p.restore && p.staging_mode != StagingMode::Keep)
            .map(|p| {
                format!(
                    "{}: client {}: restore = true has no effect with staging-mode = {:?}: \
                     downloads from such staging are refused (it holds no files to restore)",
                    self.path.display(),
                    p.name,
                    match p.staging_mode {
                        StagingMode::Hollow => "hollow",
                        _ => "purge",
                    }
                )
            })
            .chain(basis)
            .collect()
    }

    /// The client's staging directory (not checked on disk).
    pub fn staging_dir(&self, name: &ClientName) -> PathBuf {
        self.staging_root.join(name.as_str())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawServer {
    repository: Spanned<PathBuf>,
    staging_root: Spanned<PathBuf>,
    audit_log: Option<Spanned<PathBuf>>,
    alert_state: Option<Spanned<PathBuf>>,
    rsync_path: Option<Spanned<PathBuf>>,
    rsync_limits: Option<super::limits::RawRsyncLimits>,
    alert_coalesce_minutes: Option<Spanned<u64>>,
    mail: RawMail,
    #[serde(default)]
    defaults: RawPolicy,
    #[serde(default)]
    clients: BTreeMap<Spanned<String>, RawPolicy>,
    retention: Option<RawRetention>,
    #[serde(default)]
    mirrors: BTreeMap<Spanned<String>, super::mirror::RawMirrorTarget>,
    #[serde(default)]
    mirror_of: BTreeMap<Spanned<String>, super::mirror::RawMirrorOf>,
    watch: Option<super::watch::RawWatch>,
    log: Option<super::watch::RawLog>,
}

/// `[defaults]` and `[clients.NAME]` share these keys; a client's value replaces the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    keys: Option<Spanned<Vec<String>>>,
    addresses: Option<Spanned<Vec<String>>>,
    windows: Option<Spanned<Vec<String>>>,
    timezone: Option<Spanned<String>>,
    commands: Option<Spanned<Vec<String>>>,
    staging_mode: Option<Spanned<String>>,
    keep_basis: Option<Spanned<Vec<String>>>,
    quota: Option<Spanned<toml::Value>>,
    restore: Option<bool>,
    restore_recipient: Option<Spanned<String>>,
    prepare_hooks: Option<Vec<RawHook>>,
    complete_hooks: Option<Vec<RawHook>>,
    lease_hours: Option<Spanned<toml::Value>>,
    on_new_machine: Option<Spanned<String>>,
    retention: Option<RawRetention>,
    expect_every: Option<Spanned<String>>,
    expect_state: Option<Spanned<String>>,
}

/// The values of `[defaults]` or of one `[clients.NAME]`, each checked, each still optional:
/// what a client leaves out it takes from the defaults.
#[derive(Debug)]
struct PolicyValues {
    addresses: Option<Vec<IpNet>>,
    windows: Option<Vec<TimeWindow>>,
    /// The zone and its name as written.
    timezone: Option<(TimeZone, String)>,
    commands: Option<BTreeSet<Command>>,
    staging_mode: Option<StagingMode>,
    keep_basis: Option<Vec<BasisPattern>>,
    quota: Option<u64>,
    restore: Option<bool>,
    prepare_hooks: Option<Vec<Hook>>,
    complete_hooks: Option<Vec<Hook>>,
    lease_hours: Option<u64>,
    on_new_machine: Option<OnNewMachine>,
    expect_every: Option<Duration>,
    expect_state: Option<super::watch::ExpectState>,
}

impl PolicyValues {
    /// Each value of `self`, else the default's (a client's value replaces the default whole).
    fn or(self, defaults: &PolicyValues) -> PolicyValues {
        fn pick<T: Clone>(own: Option<T>, default: &Option<T>) -> Option<T> {
            own.or_else(|| default.clone())
        }
        PolicyValues {
            addresses: pick(self.addresses, &defaults.addresses),
            windows: pick(self.windows, &defaults.windows),
            timezone: pick(self.timezone, &defaults.timezone),
            commands: pick(self.commands, &defaults.commands),
            staging_mode: pick(self.staging_mode, &defaults.staging_mode),
            keep_basis: pick(self.keep_basis, &defaults.keep_basis),
            quota: pick(self.quota, &defaults.quota),
            restore: pick(self.restore, &defaults.restore),
            prepare_hooks: pick(self.prepare_hooks, &defaults.prepare_hooks),
            complete_hooks: pick(self.complete_hooks, &defaults.complete_hooks),
            lease_hours: pick(self.lease_hours, &defaults.lease_hours),
            on_new_machine: pick(self.on_new_machine, &defaults.on_new_machine),
            expect_every: pick(self.expect_every, &defaults.expect_every),
            expect_state: pick(self.expect_state, &defaults.expect_state),
        }
    }
}

impl SourceFile<'_> {
    /// Check the values `[defaults]` holds, on their own: a bad default is refused even while
    /// every client overrides it, before the day a new client takes it.
    fn default_values(&self, raw: RawPolicy) -> Result<PolicyValues> {
        self.policy_values(raw, "[defaults]", "a client that takes it")
    }

    /// Check each value `raw` sets. Errors start with `whose` (`client web1`, `[defaults]`);
    /// `subject` is who could not connect with an empty list.
    fn policy_values(&self, raw: RawPolicy, whose: &str, subject: &str) -> Result<PolicyValues> {
        let at = |span: &std::ops::Range<usize>, what: String| {
            self.error_at(span, format!("{whose}: {what}"))
        };
        let addresses = match raw.addresses {
            None => None,
            Some(list) if list.get_ref().is_empty() => {
                return Err(at(
                    &list.span(),
                    format!("addresses is empty: {subject} could never connect"),
                ));
            }
            Some(list) => Some(
                list.get_ref()
                    .iter()
                    .map(|a| {
                        parse_network(a).map_err(|e| at(&list.span(), format!("addresses: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };

        let windows = match raw.windows {
            None => None,
            Some(list) if list.get_ref().is_empty() => {
                return Err(at(
                    &list.span(),
                    format!("windows is empty: {subject} could never connect"),
                ));
            }
            Some(list) => Some(
                list.get_ref()
                    .iter()
                    .map(|w| TimeWindow::parse(w).map_err(|e| at(&list.span(), e)))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };

        let timezone = match raw.timezone {
            None => None,
            Some(tz) => {
                let zone = TimeZone::get(tz.get_ref()).map_err(|e| {
                    at(
                        &tz.span(),
                        format!(
                            "timezone {:?} is not a known time zone (e.g. \"Europe/Berlin\"): {e}",
                            tz.get_ref()
                        ),
                    )
                })?;
                Some((zone, tz.into_inner()))
            }
        };

        let commands = match raw.commands {
            None => None,
            Some(list) => Some(
                list.get_ref()
                    .iter()
                    .map(|c| {
                        Command::from_name(c).ok_or_else(|| {
                            at(
                                &list.span(),
                                format!(
                                    "commands: {c:?} is not one of prepare, upload, complete, \
                                     sessions, restore"
                                ),
                            )
                        })
                    })
                    .collect::<Result<BTreeSet<_>>>()?,
            ),
        };

        let staging_mode = match raw.staging_mode {
            None => None,
            Some(mode) => Some(match mode.get_ref().as_str() {
                "keep" => StagingMode::Keep,
                "hollow" => StagingMode::Hollow,
                "purge" => StagingMode::Purge,
                other => {
                    return Err(at(
                        &mode.span(),
                        format!("staging-mode = {other:?} is not one of keep, hollow, purge"),
                    ));
                }
            }),
        };

        let keep_basis = match raw.keep_basis {
            None => None,
            Some(list) if list.get_ref().len() > MAX_BASIS_PATTERNS => {
                return Err(at(
                    &list.span(),
                    format!(
                        "keep-basis has {} patterns, more than {MAX_BASIS_PATTERNS}",
                        list.get_ref().len()
                    ),
                ));
            }
            Some(list) => Some(
                list.get_ref()
                    .iter()
                    .map(|p| BasisPattern::parse(p).map_err(|e| at(&list.span(), e)))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };

        let quota = match raw.quota {
            None => None,
            Some(q) => {
                let bytes = match q.get_ref() {
                    toml::Value::Integer(n) => u64::try_from(*n).ok(),
                    toml::Value::String(s) => parse_size(s),
                    _ => None,
                };
                match bytes {
                    Some(b) if b > 0 => Some(b),
                    _ => {
                        return Err(at(
                            &q.span(),
                            format!(
                                "quota = {} is not a size such as \"200G\" or a byte count",
                                q.get_ref()
                            ),
                        ));
                    }
                }
            }
        };

        let lease_hours = match raw.lease_hours {
            None => None,
            Some(h) => match h.get_ref() {
                toml::Value::Integer(n) if (1..=MAX_LEASE_HOURS as i64).contains(n) => {
                    Some(*n as u64)
                }
                other => {
                    return Err(at(
                        &h.span(),
                        format!(
                            "lease-hours = {other} is not a whole number of hours from 1 to \
                             {MAX_LEASE_HOURS}"
                        ),
                    ));
                }
            },
        };

        let on_new_machine = match raw.on_new_machine {
            None => None,
            Some(v) => Some(match v.get_ref().as_str() {
                "refuse" => OnNewMachine::Refuse,
                "alert" => OnNewMachine::Alert,
                "accept" => OnNewMachine::Accept,
                other => {
                    return Err(at(
                        &v.span(),
                        format!("on-new-machine = {other:?} is not one of refuse, alert, accept"),
                    ));
                }
            }),
        };

        let hooks = |raw: Option<Vec<RawHook>>, what: &str| {
            raw.map(|list| self.hooks(list, &format!("{whose}: {what}")))
                .transpose()
        };
        Ok(PolicyValues {
            addresses,
            windows,
            timezone,
            commands,
            staging_mode,
            keep_basis,
            quota,
            restore: raw.restore,
            prepare_hooks: hooks(raw.prepare_hooks, "prepare-hooks")?,
            complete_hooks: hooks(raw.complete_hooks, "complete-hooks")?,
            lease_hours,
            on_new_machine,
            expect_every: raw
                .expect_every
                .map(|e| self.expect_every(e, whose))
                .transpose()?,
            expect_state: raw
                .expect_state
                .map(|e| self.expect_state(e, whose))
                .transpose()?,
        })
    }

    /// One client's policy: its own values (checked), else the checked defaults.
    fn policy(
        &self,
        name: &ClientName,
        mut raw: RawPolicy,
        defaults: &PolicyValues,
    ) -> Result<ClientPolicy> {
        let at = |span: &std::ops::Range<usize>, what: String| {
            self.error_at(span, format!("client {name}: {what}"))
        };
        let Some(keys) = raw.keys.take() else {
            return Err(self.error(format!(
                "client {name}: keys = [\"ssh-ed25519 ...\"] is missing"
            )));
        };
        if keys.get_ref().is_empty() {
            return Err(at(&keys.span(), "keys is empty".into()));
        }
        let keys = keys
            .get_ref()
            .iter()
            .map(|k| SshPublicKey::parse(k).map_err(|e| at(&keys.span(), format!("keys: {e}"))))
            .collect::<Result<Vec<_>>>()?;

        let values = self
            .policy_values(raw, &format!("client {name}"), "the client")?
            .or(defaults);
        let Some(addresses) = values.addresses else {
            return Err(self.error(format!(
                "client {name}: addresses is missing (deny by default: write [\"0.0.0.0/0\", \"::/0\"] \
                 to allow any address)"
            )));
        };
        let Some(windows) = values.windows else {
            return Err(self.error(format!(
                "client {name}: windows is missing (deny by default: write [\"daily 00:00-24:00\"] to \
                 allow any time)"
            )));
        };
        let (timezone, timezone_name) = values
            .timezone
            .unwrap_or_else(|| (TimeZone::UTC, "UTC".to_owned()));
        Ok(ClientPolicy {
            name: name.clone(),
            keys,
            addresses,
            timezone,
            timezone_name,
            commands: values
                .commands
                .unwrap_or_else(|| Command::DEFAULT.into_iter().collect()),
            staging_mode: values.staging_mode.unwrap_or(StagingMode::Hollow),
            keep_basis: values.keep_basis.unwrap_or_default(),
            quota: values.quota,
            restore: values.restore.unwrap_or(false),
            restore_recipient: None,
            prepare_hooks: values.prepare_hooks.unwrap_or_default(),
            complete_hooks: values.complete_hooks.unwrap_or_default(),
            lease_timeout: Duration::from_secs(
                values.lease_hours.unwrap_or(DEFAULT_LEASE_HOURS) * 3600,
            ),
            on_new_machine: values.on_new_machine.unwrap_or(OnNewMachine::Refuse),
            expect: super::watch::Expectation {
                every: values
                    .expect_every
                    .unwrap_or_else(|| super::watch::derived_every(&windows)),
                state: values
                    .expect_state
                    .unwrap_or(super::watch::ExpectState::Complete),
            },
            windows,
        })
    }
}

/// Parse `192.0.2.0/24`, `2001:db8::/32`, or a plain address (a /32 or /128). An IPv4-mapped
/// IPv6 address is stored as the IPv4 address it maps, so the rule and the connection agree.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let net: IpNet = text.parse().map_err(|_| {
        format!("{text:?} is neither an IP address nor a network such as 192.0.2.0/24")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
#[path = "server_tests.rs"]
pub(crate) mod tests;
