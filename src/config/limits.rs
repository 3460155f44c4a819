//! `[rsync-limits]` of server.toml: the resource limits of every rsync the server runs for a
//! client (see `server::supervise`).
//!
//! ```toml
//! [rsync-limits]
//! cpu-seconds = 21600      # RLIMIT_CPU
//! memory = "4G"            # RLIMIT_AS (address space), a size or a byte count
//! open-files = 256         # RLIMIT_NOFILE
//! idle-seconds = 900       # nothing moved either way for this long: the client is gone
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{SourceFile, parse_size};
use crate::error::Result;

/// Limits of one client request's rsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsyncLimits {
    /// CPU seconds.
    pub cpu_seconds: u64,
    /// Address space, bytes.
    pub memory: u64,
    /// Open files.
    pub open_files: u64,
    /// No byte moved in either direction for this long: the request is ended.
    pub idle: Duration,
}

impl Default for RsyncLimits {
    fn default() -> RsyncLimits {
        RsyncLimits {
            // A night's upload of a large tree: hours of checksumming at most.
            cpu_seconds: 6 * 3600,
            // rsync keeps about 100 bytes per file of its list: 4 GiB is tens of millions.
            memory: 4 << 30,
            open_files: 256,
            idle: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawRsyncLimits {
    cpu_seconds: Option<Spanned<u64>>,
    memory: Option<Spanned<toml::Value>>,
    open_files: Option<Spanned<u64>>,
    idle_seconds: Option<Spanned<u64>>,
}

impl SourceFile<'_> {
    pub(crate) fn rsync_limits(&self, raw: Option<RawRsyncLimits>) -> Result<RsyncLimits> {
        let mut limits = RsyncLimits::default();
        let Some(raw) = raw else {
            return Ok(limits);
        };
        let ranged = |v: &Spanned<u64>, key: &str, low: u64, high: u64| {
            let n = *v.get_ref();
            if (low..=high).contains(&n) {
                Ok(n)
            } else {
                Err(self.error_at(
                    &v.span(),
                    format!("[rsync-limits] {key} = {n} is outside {low}..={high}"),
                ))
            }
        };
        if let Some(v) = &raw.cpu_seconds {
            limits.cpu_seconds = ranged(v, "cpu-seconds", 10, 7 * 24 * 3600)?;
        }
        if let Some(v) = &raw.open_files {
            limits.open_files = ranged(v, "open-files", 32, 1 << 20)?;
        }
        if let Some(v) = &raw.idle_seconds {
            limits.idle = Duration::from_secs(ranged(v, "idle-seconds", 1, 24 * 3600)?);
        }
        if let Some(v) = &raw.memory {
            let bytes = match v.get_ref() {
                toml::Value::Integer(n) => u64::try_from(*n).ok(),
                toml::Value::String(s) => parse_size(s),
                _ => None,
            };
            limits.memory = match bytes {
                Some(b) if b >= 64 << 20 => b,
                _ => {
                    return Err(self.error_at(
                        &v.span(),
                        format!(
                            "[rsync-limits] memory = {} is not a size of at least 64M such as \"4G\"",
                            v.get_ref()
                        ),
                    ));
                }
            };
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::ServerConfig;

    const BASE: &str = "repository = \"/srv/repo\"\nstaging-root = \"/srv/staging\"\n\
        [mail]\nfrom = \"a@example.org\"\nadmin = [\"root@example.org\"]\n\
        transport = \"directory\"\ndirectory = \"/tmp/mail\"\n";

    fn parse(extra: &str) -> crate::error::Result<ServerConfig> {
        ServerConfig::parse(
            &format!("{BASE}{extra}"),
            Path::new("/etc/rsbackup/server.toml"),
        )
    }

    #[test]
    fn defaults_and_values() {
        let c = parse("").unwrap();
        assert_eq!(c.rsync_limits, super::RsyncLimits::default());
        let c = parse(
            "[rsync-limits]\ncpu-seconds = 60\nmemory = \"1G\"\nopen-files = 64\nidle-seconds = 3\n",
        )
        .unwrap();
        assert_eq!(c.rsync_limits.cpu_seconds, 60);
        assert_eq!(c.rsync_limits.memory, 1 << 30);
        assert_eq!(c.rsync_limits.open_files, 64);
        assert_eq!(c.rsync_limits.idle.as_secs(), 3);
    }

    #[test]
    fn bad_values_name_the_line() {
        for (bad, needle) in [
            ("idle-seconds = 0", "idle-seconds = 0 is outside"),
            ("memory = \"1K\"", "memory = \"1K\" is not a size"),
            ("open-files = 3", "open-files = 3 is outside"),
            ("cpu = 3", "unknown field"),
        ] {
            let e = parse(&format!("[rsync-limits]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(needle) && e.contains("server.toml"),
                "{bad}: {e}"
            );
        }
    }
}
