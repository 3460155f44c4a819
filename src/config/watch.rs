//! What `server.toml` says about watching the fleet: each client's expectation (`expect-every`,
//! `expect-state` in `[clients.NAME]` or `[defaults]`), a mirror's `expect-every`, the `[watch]`
//! table (state file, daily digest, status page and metrics file that `watch` regenerates), and
//! the `[log]` table (where log lines go). See `docs/configuration.md`.

use std::path::PathBuf;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use super::{SourceFile, TimeWindow};
use crate::error::Result;

/// The syslog socket when `[log]` does not name one.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
/// The systemd journal's native socket when `[log]` does not name one.
pub const DEFAULT_JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Watch state file name, beside the alert state, when `[watch] state` is not given.
pub const DEFAULT_WATCH_STATE_NAME: &str = "watch-state.json";
/// Slack added to the longest gap between a client's windows to derive `expect-every`: a run
/// that starts late in its window, or takes a while, is not overdue.
pub const EXPECT_SLACK: Duration = Duration::from_secs(2 * 3600);
/// `expect-every` of a mirror target when not given.
pub const DEFAULT_MIRROR_EXPECT_EVERY: Duration = Duration::from_secs(26 * 3600);
/// Longest `expect-every` accepted: a year.
pub const MAX_EXPECT_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);

/// Which sessions count as a client's backup for `expect-every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectState {
    /// Only complete sessions (the default).
    Complete,
    /// Complete or partial sessions.
    Partial,
}

impl ExpectState {
    /// The name used in `server.toml`.
    pub fn name(self) -> &'static str {
        match self {
            ExpectState::Complete => "complete",
            ExpectState::Partial => "partial",
        }
    }
}

/// A client's expectation, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    /// A client whose newest counted session is older than this is overdue.
    pub every: Duration,
    /// Which sessions count.
    pub state: ExpectState,
}

/// The `[watch]` table, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    /// The durable state of `watch` (which clients are alerted overdue, the last digest).
    pub state: PathBuf,
    /// When to mail the daily digest, minutes after midnight in `timezone`; `None`: no digest.
    pub digest: Option<u16>,
    /// The zone `digest` is read in (and the status page's times are shown in).
    pub timezone: TimeZone,
    /// The status page `watch` rewrites after every run, if any.
    pub html: Option<PathBuf>,
    /// The node_exporter textfile `watch` rewrites after every run, if any.
    pub prometheus: Option<PathBuf>,
}

/// The `[log]` table, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The systemd journal's native socket, tried first: the fields arrive as journal fields.
    pub journal_socket: PathBuf,
    /// The syslog datagram socket, when the journal's cannot be reached.
    pub syslog_socket: PathBuf,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            journal_socket: PathBuf::from(DEFAULT_JOURNAL_SOCKET),
            syslog_socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
        }
    }
}

/// `[watch]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawWatch {
    state: Option<Spanned<PathBuf>>,
    digest: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    html: Option<Spanned<PathBuf>>,
    prometheus: Option<Spanned<PathBuf>>,
}

/// `[log]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawLog {
    syslog_socket: Option<Spanned<PathBuf>>,
    journal_socket: Option<Spanned<PathBuf>>,
}

/// Parse a span of time such as `26h`, `90m`, `2d`, `1w`, or `1d12h`.
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a span of time such as \"26h\", \"90m\", \"2d\" or \"1d12h\" \
             (units m, h, d, w)"
        )
    };
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    let every = Duration::from_secs(total);
    if every > MAX_EXPECT_EVERY {
        return Err(format!("{text:?} is longer than a year"));
    }
    Ok(every)
}

/// `expect-every` derived from a client's windows: the longest time from the start of one
/// window to the start of the next (a week for windows on one weekday only), plus
/// [`EXPECT_SLACK`]. A daily window gives 26 hours, `mon-fri` 74 hours.
pub fn derived_every(windows: &[TimeWindow]) -> Duration {
    let mut starts: Vec<u32> = windows
        .iter()
        .flat_map(TimeWindow::starts_in_week)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    const WEEK: u32 = 7 * 24 * 60;
    let longest = match starts.as_slice() {
        [] | [_] => WEEK,
        many => {
            let mut gap = many[0] + WEEK - many[many.len() - 1];
            for pair in many.windows(2) {
                gap = gap.max(pair[1] - pair[0]);
            }
            gap
        }
    };
    Duration::from_secs(u64::from(longest) * 60) + EXPECT_SLACK
}

/// Minutes after midnight of `HH:MM`.
fn parse_time_of_day(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl SourceFile<'_> {
    /// `expect-every` as written, checked.
    pub(crate) fn expect_every(&self, raw: Spanned<String>, whose: &str) -> Result<Duration> {
        parse_every(raw.get_ref())
            .map_err(|e| self.error_at(&raw.span(), format!("{whose}: expect-every: {e}")))
    }

    /// `expect-state` as written, checked.
    pub(crate) fn expect_state(&self, raw: Spanned<String>, whose: &str) -> Result<ExpectState> {
        match raw.get_ref().as_str() {
            "complete" => Ok(ExpectState::Complete),
            "partial" => Ok(ExpectState::Partial),
            other => Err(self.error_at(
                &raw.span(),
                format!(
                    "{whose}: expect-state = {other:?} is not one of complete, partial \
                     (partial counts partial sessions too)"
                ),
            )),
        }
    }

    /// The `[watch]` table; `alert_state` places the default state file beside it.
    pub(crate) fn watch(
        &self,
        raw: RawWatch,
        alert_state: &std::path::Path,
    ) -> Result<WatchConfig> {
        let state = match raw.state {
            Some(p) => self.absolute_path(p, "[watch] state")?,
            None => alert_state.with_file_name(DEFAULT_WATCH_STATE_NAME),
        };
        let digest = match raw.digest {
            None => None,
            Some(d) => Some(parse_time_of_day(d.get_ref()).ok_or_else(|| {
                self.error_at(
                    &d.span(),
                    format!(
                        "[watch] digest = {:?} is not a time of day HH:MM such as \"08:00\"",
                        d.get_ref()
                    ),
                )
            })?),
        };
        let timezone = match raw.timezone {
            None => TimeZone::UTC,
            Some(tz) => TimeZone::get(tz.get_ref()).map_err(|e| {
                self.error_at(
                    &tz.span(),
                    format!(
                        "[watch] timezone {:?} is not a known time zone: {e}",
                        tz.get_ref()
                    ),
                )
            })?,
        };
        Ok(WatchConfig {
            state,
            digest,
            timezone,
            html: raw
                .html
                .map(|p| self.absolute_path(p, "[watch] html"))
                .transpose()?,
            prometheus: raw
                .prometheus
                .map(|p| self.absolute_path(p, "[watch] prometheus"))
                .transpose()?,
        })
    }

    /// The `[log]` table.
    pub(crate) fn log(&self, raw: RawLog) -> Result<LogConfig> {
        Ok(LogConfig {
            journal_socket: match raw.journal_socket {
                Some(p) => self.absolute_path(p, "[log] journal-socket")?,
                None => PathBuf::from(DEFAULT_JOURNAL_SOCKET),
            },
            syslog_socket: match raw.syslog_socket {
                Some(p) => self.absolute_path(p, "[log] syslog-socket")?,
                None => PathBuf::from(DEFAULT_SYSLOG_SOCKET),
            },
        })
    }
}

/// The text of the table `[name]` of a TOML file, read line by line: from its header to the
/// next table header, keeping only the lines that parse on their own (a broken line inside the
/// table, or a value spread over several lines, is left out). For a `server.toml` that does
/// not parse as a whole.
fn table_text(text: &str, name: &str) -> Option<String> {
    let header = format!("[{name}]");
    let mut out: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if out.is_some() {
                break;
            }
            if trimmed.split('#').next().map(str::trim) == Some(header.as_str()) {
                out = Some(String::new());
            }
            continue;
        }
        if let Some(body) = &mut out
            && toml::from_str::<toml::Table>(line).is_ok()
        {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// The `[mail]` table and its `admin` of a `server.toml` that does not load, read alone, so
/// that the administrator can be told the file is broken. `path` is named in errors.
pub fn salvage_mail(
    text: &str,
    path: &std::path::Path,
) -> Result<(super::MailConfig, Vec<lettre::message::Mailbox>)> {
    #[derive(Deserialize)]
    struct Only {
        mail: super::mail::RawMail,
    }
    let body = table_text(text, "mail").ok_or_else(|| {
        crate::error::Error::new(
            crate::error::ErrorKind::Config,
            format!("{}: no [mail] table", path.display()),
        )
    })?;
    let fragment = format!("[mail]\n{body}");
    let src = SourceFile::new(path, &fragment);
    let mut raw: Only = src.parse()?;
    let admin = raw
        .mail
        .admin
        .take()
        .ok_or_else(|| src.error("[mail] admin is missing"))?;
    let admin = src.mailboxes(admin, "admin")?;
    Ok((src.mail(raw.mail)?, admin))
}

/// `alert-state` of a `server.toml` that may not load, read alone from the lines before the
/// first table; the default when it cannot be read.
pub fn salvage_alert_state(text: &str) -> PathBuf {
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Only {
        alert_state: Option<PathBuf>,
    }
    text.lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| toml::from_str::<Only>(l).ok())
        .find_map(|o| o.alert_state)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from(super::server::DEFAULT_ALERT_STATE))
}

/// The `[log]` table of a `server.toml` that may not load, read alone; the defaults when it
/// cannot be read either.
pub fn salvage_log(text: &str, path: &std::path::Path) -> LogConfig {
    #[derive(Deserialize)]
    struct Only {
        log: RawLog,
    }
    let Some(body) = table_text(text, "log") else {
        return LogConfig::default();
    };
    let fragment = format!("[log]\n{body}");
    let src = SourceFile::new(path, &fragment);
    src.parse::<Only>()
        .and_then(|o| src.log(o.log))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_and_log_of_a_broken_file() {
        let text = "repository = \"/r\"\nbroken = = =\n[log]\nsyslog-socket = \"/run/x.sock\"\nx = = 1\n\
                    [mail]\nfrom = \"a@b.c\"\nadmin = [\"root@b.c\"]\ntransport = \"directory\"\n\
                    directory = \"/tmp/m\"\n[clients.x]\nkeys = 3\n";
        let path = std::path::Path::new("/etc/rsbackup/server.toml");
        let (mail, admin) = salvage_mail(text, path).unwrap();
        assert_eq!(admin[0].email.to_string(), "root@b.c");
        assert_eq!(mail.from.email.to_string(), "a@b.c");
        assert_eq!(
            salvage_log(text, path).syslog_socket,
            PathBuf::from("/run/x.sock")
        );
        assert!(salvage_mail("[mail]\nfrom = 3\n", path).is_err());
        assert_eq!(
            salvage_alert_state("x = = 1\nalert-state = \"/v/a.json\"\n[mail]\n"),
            PathBuf::from("/v/a.json")
        );
        assert_eq!(
            salvage_alert_state("[mail]\nalert-state = \"/v/a.json\"\n"),
            PathBuf::from(crate::config::server::DEFAULT_ALERT_STATE)
        );
        assert_eq!(salvage_log("", path), LogConfig::default());
    }

    #[test]
    fn server_toml_keys() {
        use crate::config::ServerConfig;
        let base = crate::config::server::tests::example();
        let path = std::path::Path::new("/etc/rsbackup/server.toml");
        let cfg = ServerConfig::parse(&base, path).unwrap();
        let h = |n: u64| Duration::from_secs(n * 3600);
        // web1 takes the default windows (weekdays from 22:00, weekends from 00:00): the longest
        // gap between starts is Sunday 00:00 to Monday 22:00, 46 h, plus 2.
        assert_eq!(cfg.client("web1").unwrap().expect.every, h(48));
        assert_eq!(cfg.client("db1").unwrap().expect.every, h(26));
        assert_eq!(
            cfg.client("db1").unwrap().expect.state,
            ExpectState::Complete
        );
        assert_eq!(
            cfg.watch.state,
            PathBuf::from("/var/lib/rsbackup/watch-state.json")
        );
        assert_eq!(cfg.watch.digest, None);
        assert_eq!(cfg.log, LogConfig::default());

        let text = base.replace(
            "[defaults]\n",
            "[watch]\ndigest = \"07:30\"\nhtml = \"/var/www/i.html\"\n\
             [log]\nsyslog-socket = \"/run/log.sock\"\n\
             [defaults]\nexpect-every = \"3d\"\nexpect-state = \"partial\"\n",
        );
        let cfg = ServerConfig::parse(&text, path).unwrap();
        assert_eq!(cfg.client("web1").unwrap().expect.every, h(72));
        assert_eq!(
            cfg.client("web1").unwrap().expect.state,
            ExpectState::Partial
        );
        assert_eq!(cfg.watch.digest, Some(7 * 60 + 30));
        assert_eq!(cfg.log.syslog_socket, PathBuf::from("/run/log.sock"));

        for (bad, needle) in [
            (
                "expect-every = \"26\"",
                "server.toml:18: client web1: expect-every: \"26\"",
            ),
            (
                "expect-state = \"done\"",
                "server.toml:18: client web1: expect-state = \"done\"",
            ),
        ] {
            let text = base.replace("quota = \"200G\"", bad);
            let err = ServerConfig::parse(&text, path).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let text = base.replace("[defaults]\n", "[watch]\ndigest = \"8am\"\n[defaults]\n");
        let err = ServerConfig::parse(&text, path).unwrap_err().to_string();
        assert!(
            err.contains("server.toml:11: [watch] digest = \"8am\""),
            "{err}"
        );
    }

    /// The documented `[watch]` and `[log]` example loads, appended to a server.toml.
    #[test]
    fn documented_watch_example_loads() {
        let doc = include_str!("../../docs/configuration.md");
        let block = doc
            .split("```toml\n")
            .map(|b| b.split("```").next().unwrap())
            .find(|b| b.contains("[watch]\n"))
            .expect("the [watch] example");
        let text = format!("{}\n{block}", crate::config::server::tests::example());
        let cfg = crate::config::ServerConfig::parse(&text, std::path::Path::new("/s.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.watch.digest, Some(8 * 60));
        assert_eq!(cfg.watch.timezone.iana_name(), Some("Europe/Berlin"));
        assert_eq!(
            cfg.watch.html,
            Some(PathBuf::from("/var/www/rsbackup/index.html"))
        );
        assert!(cfg.watch.prometheus.is_some());
        assert_eq!(cfg.log, LogConfig::default());
    }

    #[test]
    fn spans_of_time() {
        assert_eq!(parse_every("26h").unwrap(), Duration::from_secs(26 * 3600));
        assert_eq!(
            parse_every("1d12h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(parse_every("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_every("1w").unwrap(), Duration::from_secs(7 * 86_400));
        for bad in ["", "26", "h", "0h", "3x", "-1h", "400d"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_from_windows() {
        let w = |t: &str| TimeWindow::parse(t).unwrap();
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(derived_every(&[w("daily 22:00-06:00")]), h(26));
        assert_eq!(derived_every(&[w("mon-fri 22:00-06:00")]), h(74));
        assert_eq!(derived_every(&[w("sun 01:00-05:00")]), h(7 * 24 + 2));
        // Two windows a day: the longest gap between starts counts.
        assert_eq!(
            derived_every(&[w("daily 02:00-03:00"), w("daily 14:00-15:00")]),
            h(14)
        );
    }
}
