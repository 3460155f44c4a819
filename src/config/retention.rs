//! Retention in `server.toml`: a `[retention]` table of defaults and one
//! `[clients.NAME.retention]` table per client, key by key replacing the default.
//!
//! ```toml
//! [retention]
//! keep-daily = 7
//! keep-weekly = 4
//! keep-monthly = 12
//! keep-within = "2d"          # a jiff span: "30d", "1w 2d", "36h"
//! timezone = "Europe/Berlin"  # days, weeks, months, years are counted here (default UTC)
//! auto = true                 # roll off at the end of every `complete` (default true)
//! repack-threshold = 0.5      # rewrite packs less than half live (repository-wide only)
//!
//! [clients.db1.retention]
//! keep-last = 30
//! ```

use std::collections::BTreeMap;

use jiff::Span;
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use super::{ClientName, SourceFile};
use crate::error::Result;
use crate::gc::{ClientRules, DEFAULT_REPACK_THRESHOLD, Rules};
use crate::retention::Policy;

/// The retention settings of one client, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRetention {
    /// The rules and their time zone.
    pub rules: ClientRules,
    /// The zone's name as written, for messages.
    pub timezone_name: String,
    /// Roll off at the end of every `complete` of this client.
    pub auto: bool,
}

/// `[retention]` and every `[clients.NAME.retention]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// For clients without a table of their own (and for sessions of clients no longer
    /// configured).
    pub default: ClientRetention,
    /// Per configured client.
    pub clients: BTreeMap<String, ClientRetention>,
    /// Packs whose live fraction is below this are rewritten by a collect.
    pub repack_threshold: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            default: ClientRetention {
                rules: ClientRules::utc(Policy::default()),
                timezone_name: "UTC".into(),
                auto: true,
            },
            clients: BTreeMap::new(),
            repack_threshold: DEFAULT_REPACK_THRESHOLD,
        }
    }
}

impl RetentionConfig {
    /// The settings of `client`.
    pub fn for_client(&self, client: &str) -> &ClientRetention {
        self.clients.get(client).unwrap_or(&self.default)
    }

    /// The rules of every client, for [`crate::gc::prune`].
    pub fn rules(&self) -> Rules {
        Rules {
            default: self.default.rules.clone(),
            clients: self
                .clients
                .iter()
                .map(|(k, v)| (k.clone(), v.rules.clone()))
                .collect(),
        }
    }
}

/// A retention table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    auto: Option<bool>,
    repack_threshold: Option<Spanned<f64>>,
}

impl SourceFile<'_> {
    /// Validate `[retention]` and the per-client tables.
    pub(crate) fn retention(
        &self,
        default: Option<RawRetention>,
        clients: Vec<(ClientName, RawRetention)>,
    ) -> Result<RetentionConfig> {
        let default = default.unwrap_or_default();
        let repack_threshold = match &default.repack_threshold {
            None => DEFAULT_REPACK_THRESHOLD,
            Some(t) if (0.0..1.0).contains(t.get_ref()) => *t.get_ref(),
            Some(t) => {
                return Err(self.error_at(
                    &t.span(),
                    format!(
                        "[retention] repack-threshold = {} is out of range: give a live fraction \
                         from 0 (never repack) to below 1, e.g. 0.5",
                        t.get_ref()
                    ),
                ));
            }
        };
        let empty = RawRetention::default();
        let base = self.client_retention("[retention]", &default, &empty)?;
        let mut out = BTreeMap::new();
        for (name, raw) in clients {
            if let Some(t) = &raw.repack_threshold {
                return Err(self.error_at(
                    &t.span(),
                    format!(
                        "[clients.{name}.retention] repack-threshold: packs are shared by all \
                         clients; set it in [retention]"
                    ),
                ));
            }
            let what = format!("[clients.{name}.retention]");
            out.insert(
                name.as_str().to_string(),
                self.client_retention(&what, &raw, &default)?,
            );
        }
        Ok(RetentionConfig {
            default: base,
            clients: out,
            repack_threshold,
        })
    }

    /// One client's settings: its own keys, else the defaults'.
    fn client_retention(
        &self,
        what: &str,
        own: &RawRetention,
        default: &RawRetention,
    ) -> Result<ClientRetention> {
        let n = |o: Option<u32>, d: Option<u32>| o.or(d).unwrap_or(0);
        let keep_within = match own.keep_within.as_ref().or(default.keep_within.as_ref()) {
            None => None,
            Some(s) => Some(parse_span(s.get_ref()).map_err(|e| {
                self.error_at(
                    &s.span(),
                    format!("{what} keep-within = {:?}: {e}", s.get_ref()),
                )
            })?),
        };
        let (timezone, timezone_name) = match own.timezone.as_ref().or(default.timezone.as_ref()) {
            None => (TimeZone::UTC, "UTC".to_owned()),
            Some(tz) => (
                TimeZone::get(tz.get_ref()).map_err(|e| {
                    self.error_at(
                        &tz.span(),
                        format!(
                            "{what} timezone {:?} is not a known time zone (e.g. \
                             \"Europe/Berlin\"): {e}",
                            tz.get_ref()
                        ),
                    )
                })?,
                tz.get_ref().clone(),
            ),
        };
        Ok(ClientRetention {
            rules: ClientRules {
                policy: Policy {
                    keep_last: n(own.keep_last, default.keep_last),
                    keep_hourly: n(own.keep_hourly, default.keep_hourly),
                    keep_daily: n(own.keep_daily, default.keep_daily),
                    keep_weekly: n(own.keep_weekly, default.keep_weekly),
                    keep_monthly: n(own.keep_monthly, default.keep_monthly),
                    keep_yearly: n(own.keep_yearly, default.keep_yearly),
                    keep_within,
                },
                timezone,
            },
            timezone_name,
            auto: own.auto.or(default.auto).unwrap_or(true),
        })
    }
}

/// Parse a keep-within span such as `30d`, `1w 2d`, `36h` (jiff's friendly format). It must be
/// positive: a zero or negative span would keep nothing, which is never what was meant.
pub fn parse_span(text: &str) -> std::result::Result<Span, String> {
    let span: Span = text
        .parse()
        .map_err(|e| format!("not a duration such as \"30d\" or \"36h\" ({e})"))?;
    if !span.is_positive() {
        return Err("the duration must be positive".into());
    }
    Ok(span)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::ServerConfig;
    use super::*;

    fn example() -> String {
        "repository = \"/srv/rsbackup/repo\"\n\
         staging-root = \"/srv/rsbackup/staging\"\n\
         [mail]\n\
         from = \"rsbackup@backup.example.org\"\n\
         admin = [\"root@example.org\"]\n\
         transport = \"directory\"\n\
         directory = \"/var/spool/rsbackup-mail\"\n\
         [defaults]\n\
         windows = [\"daily 00:00-24:00\"]\n\
         addresses = [\"192.0.2.10\"]\n\
         [clients.web1]\n\
         keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111\"]\n\
         [clients.db1]\n\
         keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE222222222222222222222222222222222222222222\"]\n"
            .to_string()
    }
    use crate::error::ErrorKind;

    fn parse(text: &str) -> Result<ServerConfig> {
        ServerConfig::parse(text, Path::new("/etc/rsbackup/server.toml"))
    }

    #[test]
    fn defaults_apply_key_by_key_and_clients_override() {
        let text = format!(
            "{}\n[retention]\nkeep-daily = 7\nkeep-within = \"2d\"\ntimezone = \
             \"Europe/Berlin\"\nauto = false\nrepack-threshold = 0.25\n\n\
             [clients.db1.retention]\nkeep-last = 30\nkeep-daily = 0\nauto = true\n",
            example()
        );
        let c = parse(&text).unwrap();
        let r = &c.retention;
        assert_eq!(r.repack_threshold, 0.25);
        let web = r.for_client("web1");
        assert_eq!(web.rules.policy.keep_daily, 7);
        assert!(!web.auto);
        assert_eq!(web.timezone_name, "Europe/Berlin");
        let db = r.for_client("db1");
        assert_eq!(db.rules.policy.keep_last, 30);
        assert_eq!(db.rules.policy.keep_daily, 0);
        assert!(db.rules.policy.keep_within.is_some());
        assert!(db.auto);
        assert_eq!(db.timezone_name, "Europe/Berlin");
        // A client not in the file (sessions left from a removed client) gets the defaults.
        assert_eq!(r.for_client("gone").rules.policy.keep_daily, 7);
    }

    #[test]
    fn without_a_table_nothing_is_rolled_off() {
        let c = parse(&example()).unwrap();
        assert!(c.retention.for_client("web1").rules.policy.is_empty());
        assert!(c.retention.for_client("web1").auto);
        assert_eq!(c.retention.repack_threshold, DEFAULT_REPACK_THRESHOLD);
    }

    fn refused(extra: &str, needle: &str) {
        let text = format!("{}\n{extra}\n", example());
        let err = parse(&text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains(needle), "{}", err.message());
        // file:line: with a real line number
        let line: usize = err.message().split(':').nth(1).unwrap().parse().unwrap();
        assert!(line > 1, "{}", err.message());
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        refused("[retention]\nkeep-within = \"soon\"", "keep-within");
        refused("[retention]\nkeep-within = \"-3d\"", "positive");
        refused("[retention]\nkeep-last = -1", "expected u32");
        refused("[retention]\nkeep-lats = 3", "keep-lats");
        refused("[retention]\ntimezone = \"Mars/Base\"", "Mars/Base");
        refused("[retention]\nrepack-threshold = 1.5", "out of range");
        refused(
            "[clients.db1.retention]\nrepack-threshold = 0.3",
            "shared by all clients",
        );
    }

    #[test]
    fn spans() {
        assert!(parse_span("30d").is_ok());
        assert!(parse_span("1w 2d").is_ok());
        assert!(parse_span("1y 6mo").is_ok());
        assert!(parse_span("0d").is_err());
        assert!(parse_span("").is_err());
    }
}
