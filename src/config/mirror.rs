//! Mirror sections of `server.toml`: on the primary, `[mirrors.NAME]` (where to push and how to
//! reach it); on the offsite box, `[mirror-of.NAME]` (which repository a primary may fill, from
//! where, when, and whether it may delete). See `docs/configuration.md` and format-spec/wire.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::IpNet;
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use super::server::parse_network;
use super::{ClientName, SourceFile, TimeWindow};
use crate::error::Result;

/// ssh port when `[mirrors.NAME]` does not name one.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// How the primary reaches one mirror (`[mirrors.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorTarget {
    /// The target's name (same alphabet as client names).
    pub name: ClientName,
    /// Host name or address of the offsite box.
    pub host: String,
    /// Its ssh port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The private key that sshd on the mirror binds to `mirror-serve --mirror-of`.
    pub ssh_key: PathBuf,
    /// Extra `-o` options for ssh (`UserKnownHostsFile=...`, `ConnectTimeout=...`).
    pub ssh_options: Vec<String>,
    /// Start a mirror run after each `complete` (detached from the client's connection).
    pub after_complete: bool,
    /// Ask the mirror to forget sessions the primary rolled off (the mirror may refuse).
    pub follow_deletes: bool,
    /// `status` and `watch` call the mirror lagging when a session older than this is not on
    /// it yet (`expect-every`).
    pub expect_every: std::time::Duration,
}

/// What a primary may do to this box's mirror repository (`[mirror-of.NAME]`).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorOf {
    /// The name the forced command gives (`mirror-serve --mirror-of NAME`).
    pub name: ClientName,
    /// The mirror repository (created on first contact).
    pub repository: PathBuf,
    /// Whether the primary may make this mirror forget sessions it rolled off.
    pub follow_deletes: bool,
    /// Source networks the primary may connect from.
    pub addresses: Vec<IpNet>,
    /// When it may connect.
    pub windows: Vec<TimeWindow>,
    /// The zone the windows are read in.
    pub timezone: TimeZone,
    /// How long a connection may wait for the primary's next message before it is dropped.
    pub idle_timeout: std::time::Duration,
}

/// `idle-timeout-seconds` of `[mirror-of.NAME]` when not given: rsync's `--timeout` of the
/// push path, 10 minutes.
pub const DEFAULT_MIRROR_IDLE_TIMEOUT_SECONDS: u64 = 600;

/// The largest `idle-timeout-seconds`: a day.
pub const MAX_MIRROR_IDLE_TIMEOUT_SECONDS: u64 = 86_400;

impl MirrorOf {
    /// Whether the primary may connect now from `ip` (an address rule and a time window must
    /// both allow it); the refusal says which did not.
    pub fn allows(&self, ip: std::net::IpAddr, now: jiff::Timestamp) -> Result<(), String> {
        if !self.addresses.iter().any(|net| net.contains(&ip)) {
            let allowed: Vec<String> = self.addresses.iter().map(|n| n.to_string()).collect();
            return Err(format!(
                "mirror-of {}: address {ip} is not in its addresses ({})",
                self.name,
                allowed.join(", ")
            ));
        }
        if !self.windows.iter().any(|w| w.contains(now, &self.timezone)) {
            let local = now.to_zoned(self.timezone.clone());
            let windows: Vec<String> = self.windows.iter().map(|w| w.to_string()).collect();
            return Err(format!(
                "mirror-of {}: {} ({:?}, {}) is not within its windows ({})",
                self.name,
                local.strftime("%Y-%m-%d %H:%M"),
                local.weekday(),
                self.timezone.iana_name().unwrap_or("its timezone"),
                windows.join(", ")
            ));
        }
        Ok(())
    }
}

/// Both kinds of mirror sections of one `server.toml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MirrorConfig {
    /// `[mirrors.NAME]`: targets this server pushes to.
    pub targets: BTreeMap<ClientName, MirrorTarget>,
    /// `[mirror-of.NAME]`: primaries this box mirrors.
    pub mirror_of: BTreeMap<ClientName, MirrorOf>,
}

impl MirrorConfig {
    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&MirrorTarget> {
        self.targets
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, t)| t)
    }

    /// The `[mirror-of.NAME]` section named `name`.
    pub fn mirror_of(&self, name: &str) -> Option<&MirrorOf> {
        self.mirror_of
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, m)| m)
    }
}

/// `[mirrors.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawMirrorTarget {
    host: Spanned<String>,
    port: Option<Spanned<u16>>,
    user: Spanned<String>,
    ssh_key: Spanned<PathBuf>,
    #[serde(default)]
    ssh_options: Vec<Spanned<String>>,
    #[serde(default)]
    after_complete: bool,
    #[serde(default)]
    follow_deletes: bool,
    expect_every: Option<Spanned<String>>,
}

/// `[mirror-of.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawMirrorOf {
    repository: Spanned<PathBuf>,
    #[serde(default)]
    follow_deletes: bool,
    addresses: Option<Spanned<Vec<String>>>,
    windows: Option<Spanned<Vec<String>>>,
    timezone: Option<Spanned<String>>,
    idle_timeout_seconds: Option<Spanned<i64>>,
}

/// A word safe to hand to ssh as one argument: no whitespace, no control characters, and not
/// starting with `-` (which ssh would read as an option).
fn plain_word(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && s.chars().all(|c| c.is_ascii_graphic())
}

impl SourceFile<'_> {
    /// Validate both kinds of mirror sections.
    pub(crate) fn mirrors(
        &self,
        targets: BTreeMap<Spanned<String>, RawMirrorTarget>,
        mirror_of: BTreeMap<Spanned<String>, RawMirrorOf>,
    ) -> Result<MirrorConfig> {
        let mut out = MirrorConfig::default();
        for (name, raw) in targets {
            let span = name.span();
            let name = ClientName::parse(name.get_ref())
                .map_err(|e| self.error_at(&span, format!("[mirrors]: {}", e.message())))?;
            let at = |span: &std::ops::Range<usize>, what: &str| {
                self.error_at(span, format!("[mirrors.{name}] {what}"))
            };
            if !plain_word(raw.host.get_ref()) || raw.host.get_ref().contains('@') {
                return Err(at(
                    &raw.host.span(),
                    "host must be a host name or address (no spaces, no user@, no leading -)",
                ));
            }
            if !plain_word(raw.user.get_ref()) || raw.user.get_ref().contains('@') {
                return Err(at(&raw.user.span(), "user must be a plain user name"));
            }
            let ssh_key = self.absolute_path(raw.ssh_key, &format!("[mirrors.{name}] ssh-key"))?;
            for option in &raw.ssh_options {
                let text = option.get_ref();
                if !text.contains('=') || !text.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(at(
                        &option.span(),
                        &format!("ssh-options: {text:?} is not of the form Key=value"),
                    ));
                }
            }
            if let Some(port) = &raw.port
                && *port.get_ref() == 0
            {
                return Err(at(&port.span(), "port 0 is not a port"));
            }
            let expect_every = match raw.expect_every {
                Some(e) => self.expect_every(e, &format!("[mirrors.{name}]"))?,
                None => super::watch::DEFAULT_MIRROR_EXPECT_EVERY,
            };
            out.targets.insert(
                name.clone(),
                MirrorTarget {
                    name,
                    host: raw.host.into_inner(),
                    port: raw.port.map_or(DEFAULT_SSH_PORT, Spanned::into_inner),
                    user: raw.user.into_inner(),
                    ssh_key,
                    ssh_options: raw
                        .ssh_options
                        .into_iter()
                        .map(Spanned::into_inner)
                        .collect(),
                    after_complete: raw.after_complete,
                    follow_deletes: raw.follow_deletes,
                    expect_every,
                },
            );
        }
        for (name, raw) in mirror_of {
            let span = name.span();
            let name = ClientName::parse(name.get_ref())
                .map_err(|e| self.error_at(&span, format!("[mirror-of]: {}", e.message())))?;
            out.mirror_of
                .insert(name.clone(), self.mirror_of_section(name, &span, raw)?);
        }
        Ok(out)
    }

    /// One `[mirror-of.NAME]`; `header` is the span of its name (where a missing key is
    /// reported).
    fn mirror_of_section(
        &self,
        name: ClientName,
        header: &std::ops::Range<usize>,
        raw: RawMirrorOf,
    ) -> Result<MirrorOf> {
        let at = |span: &std::ops::Range<usize>, what: String| {
            self.error_at(span, format!("[mirror-of.{name}] {what}"))
        };
        let repository =
            self.absolute_path(raw.repository, &format!("[mirror-of.{name}] repository"))?;
        let Some(addresses) = raw.addresses else {
            return Err(at(
                header,
                "addresses is missing (deny by default: name the primary's address, or \
                 [\"0.0.0.0/0\", \"::/0\"] for any)"
                    .into(),
            ));
        };
        if addresses.get_ref().is_empty() {
            return Err(at(&addresses.span(), "addresses is empty".into()));
        }
        let parsed_addresses = addresses
            .get_ref()
            .iter()
            .map(|a| parse_network(a).map_err(|e| at(&addresses.span(), format!("addresses: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let windows = match raw.windows {
            None => vec![TimeWindow::parse("daily 00:00-24:00").map_err(|e| self.error(e))?],
            Some(w) if w.get_ref().is_empty() => {
                return Err(at(
                    &w.span(),
                    "windows is empty: the primary could never connect".into(),
                ));
            }
            Some(w) => w
                .get_ref()
                .iter()
                .map(|text| TimeWindow::parse(text).map_err(|e| at(&w.span(), e)))
                .collect::<Result<Vec<_>>>()?,
        };
        let timezone = match raw.timezone {
            None => TimeZone::UTC,
            Some(tz) => TimeZone::get(tz.get_ref()).map_err(|e| {
                at(
                    &tz.span(),
                    format!("timezone {:?} is not a known time zone: {e}", tz.get_ref()),
                )
            })?,
        };
        let idle_timeout_seconds = match raw.idle_timeout_seconds {
            None => DEFAULT_MIRROR_IDLE_TIMEOUT_SECONDS,
            Some(s) => u64::try_from(*s.get_ref())
                .ok()
                .filter(|v| (1..=MAX_MIRROR_IDLE_TIMEOUT_SECONDS).contains(v))
                .ok_or_else(|| {
                    at(
                        &s.span(),
                        format!(
                            "idle-timeout-seconds = {} is out of range (1 to \
                             {MAX_MIRROR_IDLE_TIMEOUT_SECONDS})",
                            s.get_ref()
                        ),
                    )
                })?,
        };
        Ok(MirrorOf {
            name,
            repository,
            follow_deletes: raw.follow_deletes,
            addresses: parsed_addresses,
            windows,
            timezone,
            idle_timeout: std::time::Duration::from_secs(idle_timeout_seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<MirrorConfig> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        struct Raw {
            #[serde(default)]
            mirrors: BTreeMap<Spanned<String>, RawMirrorTarget>,
            #[serde(default)]
            mirror_of: BTreeMap<Spanned<String>, RawMirrorOf>,
        }
        let src = SourceFile::new(Path::new("/etc/server.toml"), text);
        let raw: Raw = src.parse()?;
        src.mirrors(raw.mirrors, raw.mirror_of)
    }

    #[test]
    fn both_sections_parse_with_defaults() {
        let c = parse(
            "[mirrors.offsite]\nhost = \"backup.example.org\"\nuser = \"mirror\"\n\
             ssh-key = \"/etc/rsbackup/mirror_key\"\nafter-complete = true\n\
             [mirror-of.main]\nrepository = \"/srv/mirror\"\naddresses = [\"192.0.2.1\"]\n",
        )
        .unwrap();
        let t = c.target("offsite").unwrap();
        assert_eq!(t.port, DEFAULT_SSH_PORT);
        assert!(t.after_complete && !t.follow_deletes);
        let m = c.mirror_of("main").unwrap();
        assert!(
            !m.follow_deletes,
            "append-only unless the mirror says otherwise"
        );
        assert_eq!(m.repository, PathBuf::from("/srv/mirror"));
        assert_eq!(m.windows.len(), 1);
        assert!(c.mirror_of("offsite").is_none());
    }

    #[test]
    fn address_and_window_rules_apply() {
        let c = parse(
            "[mirror-of.m]\nrepository = \"/r\"\naddresses = [\"192.0.2.0/24\"]\n\
             windows = [\"daily 01:00-02:00\"]\n",
        )
        .unwrap();
        let m = c.mirror_of("m").unwrap();
        let at = |h: i64| jiff::Timestamp::from_second(1_795_651_200 + h * 3600).unwrap();
        let inside: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let outside: std::net::IpAddr = "198.51.100.1".parse().unwrap();
        let hour = |t: jiff::Timestamp| t.to_zoned(TimeZone::UTC).hour() as i64;
        let base = hour(at(0));
        let in_window = at((25 - base) % 24);
        let out_window = at((13 - base + 24) % 24);
        assert!(m.allows(inside, in_window).is_ok());
        assert_eq!(
            m.allows(outside, in_window).unwrap_err(),
            "mirror-of m: address 198.51.100.1 is not in its addresses (192.0.2.0/24)"
        );
        let late = m.allows(inside, out_window).unwrap_err();
        assert!(
            late.contains("13:00")
                && late.contains("is not within its windows (daily 01:00-02:00)"),
            "{late}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        let cases = [
            (
                "[mirrors.a]\nhost = \"-oProxyCommand=x\"\nuser = \"u\"\nssh-key = \"/k\"\n",
                "host",
            ),
            (
                "[mirrors.a]\nhost = \"h\"\nuser = \"u\"\nssh-key = \"k\"\n",
                "ssh-key",
            ),
            (
                "[mirrors.a]\nhost = \"h\"\nuser = \"u\"\nssh-key = \"/k\"\nport = 0\n",
                "server.toml:5: [mirrors.a] port 0",
            ),
            (
                "[mirrors.a]\nhost = \"h\"\nuser = \"u\"\nssh-key = \"/k\"\nbogus = 1\n",
                "bogus",
            ),
            (
                "[mirrors.A]\nhost = \"h\"\nuser = \"u\"\nssh-key = \"/k\"\n",
                "not valid",
            ),
            (
                "[mirror-of.m]\nrepository = \"/r\"\n",
                "server.toml:1: [mirror-of.m] addresses is missing",
            ),
            (
                "[mirrors.a]\nhost = \"h\"\nuser = \"u\"\nssh-key = \"/k\"\n\
                 ssh-options = [\"A=b\",\n  \"ConnectTimeout 30\"]\n",
                "server.toml:6: [mirrors.a] ssh-options: \"ConnectTimeout 30\"",
            ),
            (
                "[mirror-of.m]\nrepository = \"/r\"\naddresses = [\"nope\"]\n",
                "server.toml:3:",
            ),
            (
                "[mirror-of.m]\nrepository = \"/r\"\naddresses = []\n",
                "empty",
            ),
            (
                "[mirror-of.m]\nrepository = \"/r\"\naddresses = [\"::/0\"]\nwindows = [\"x\"]\n",
                "server.toml:4:",
            ),
            (
                "[mirror-of.m]\nrepository = \"/r\"\naddresses = [\"::/0\"]\n\
                 idle-timeout-seconds = 0\n",
                "server.toml:4: [mirror-of.m] idle-timeout-seconds = 0 is out of range",
            ),
            (
                "[mirror-of.m]\nrepository = \"/r\"\naddresses = [\"::/0\"]\n\
                 idle-timeout-seconds = 86401\n",
                "server.toml:4:",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(err.contains("/etc/server.toml"), "{err}");
        }
    }
}
