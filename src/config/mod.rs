//! Configuration files: `server.toml` and `client.toml`, parsed raw (serde) then validated, with
//! errors that name the file and line.
//!
//! Each file goes through two stages. The *raw* structs mirror the TOML exactly (kebab-case keys,
//! unknown keys refused) and keep the byte span of every value that is validated later, through
//! [`toml::Spanned`]. The *validated* structs hold parsed values only (client names, CIDRs, time
//! windows, time zones, hooks), so that a value that does not parse is refused when the file is
//! loaded, with its file and line, and not at 2 a.m. when a client first uses it.
//!
//! The format of both files is documented, with commented examples, in `docs/configuration.md`.

pub mod add_client;
pub mod basis;
pub mod client;
pub mod limits;
pub mod mail;
pub mod mirror;
pub mod preflight;
mod restore_recipient;
pub mod retention;
pub mod server;
pub mod source;
pub mod watch;
pub mod window;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;

use crate::error::{Error, ErrorKind, Result};

pub use client::ClientConfig;
pub use limits::RsyncLimits;
pub use mail::{MailConfig, MailTransport, SmtpSecurity};
pub use retention::{ClientRetention, RetentionConfig};
pub use server::{ClientPolicy, Command, ServerConfig, SshPublicKey, StagingMode};
pub use window::TimeWindow;

/// Longest client name accepted, in bytes.
pub const MAX_CLIENT_NAME_LEN: usize = 64;

/// Longest hook timeout accepted: one day.
pub const MAX_HOOK_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;

/// Hook timeout when the file does not set one.
pub const DEFAULT_HOOK_TIMEOUT_SECONDS: u64 = 300;

/// A client's name: 1 to 64 bytes of `a-z 0-9 . _ -`, starting with a letter or digit.
///
/// The name becomes a directory under the staging root and a word in the forced command, so the
/// alphabet is kept small enough that it can never be a path separator, `..`, or a shell word
/// with a special meaning.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientName(String);

impl ClientName {
    /// Check `name` and wrap it; the error says which rule it breaks.
    pub fn parse(name: &str) -> Result<ClientName> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "client name {:?} is not valid: {why} (names are 1-{MAX_CLIENT_NAME_LEN} characters \
                 of a-z 0-9 . _ -, starting with a letter or digit)",
                // Debug escaping keeps control characters out of the message; cut, because
                // the name may come from an untrusted command line.
                name.chars().take(80).collect::<String>()
            ))
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_CLIENT_NAME_LEN {
            return Err(bad("it is too long"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(bad("it contains a character outside a-z 0-9 . _ -"));
        }
        let first = name.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(bad("it does not start with a letter or digit"));
        }
        Ok(ClientName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A command run by a hook: an argv list (never a shell string) and a time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The program (an absolute path: hooks run with a cleared environment, without `PATH`)
    /// followed by its arguments.
    pub argv: Vec<String>,
    /// How long the hook may run before it is killed and counted as failed.
    pub timeout: Duration,
}

/// A hook as written in the file: `{ argv = ["/usr/bin/x", "arg"], timeout-seconds = 60 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawHook {
    argv: Spanned<Vec<String>>,
    timeout_seconds: Option<Spanned<u64>>,
}

/// A file's name and text, to turn byte spans into `file:line: what` errors.
pub(crate) struct SourceFile<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> SourceFile<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        SourceFile { path, text }
    }

    /// The 1-based line on which `span` starts.
    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// A configuration error at the line of `span`.
    pub(crate) fn error_at(&self, span: &Range<usize>, what: impl fmt::Display) -> Error {
        Error::new(
            ErrorKind::Config,
            format!("{}:{}: {what}", self.path.display(), self.line_of(span)),
        )
    }

    /// A configuration error about the whole file (something missing, not something wrong).
    pub(crate) fn error(&self, what: impl fmt::Display) -> Error {
        Error::new(
            ErrorKind::Config,
            format!("{}: {what}", self.path.display()),
        )
    }

    /// Deserialize the raw structs; syntax errors and unknown keys come back with their line.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        toml::from_str(self.text).map_err(|e| {
            let what = e.message().trim_end().to_owned();
            match e.span() {
                Some(span) => self.error_at(&span, what),
                None => self.error(what),
            }
        })
    }

    /// Validate a hook list.
    pub(crate) fn hooks(&self, raw: Vec<RawHook>, what: &str) -> Result<Vec<Hook>> {
        raw.into_iter().map(|h| self.hook(h, what)).collect()
    }

    fn hook(&self, raw: RawHook, what: &str) -> Result<Hook> {
        let span = raw.argv.span();
        let argv = raw.argv.into_inner();
        let Some(program) = argv.first() else {
            return Err(self.error_at(
                &span,
                format!("{what}: argv is empty; give the program and its arguments"),
            ));
        };
        if !program.starts_with('/') {
            return Err(self.error_at(
                &span,
                format!(
                    "{what}: program {program:?} is not an absolute path (hooks run without PATH and \
                     without a shell)"
                ),
            ));
        }
        if let Some(arg) = argv.iter().find(|a| a.contains('\0')) {
            return Err(self.error_at(
                &span,
                format!("{what}: argument {arg:?} contains a NUL byte"),
            ));
        }
        let timeout = match raw.timeout_seconds {
            None => DEFAULT_HOOK_TIMEOUT_SECONDS,
            Some(t) => {
                let secs = *t.get_ref();
                if secs == 0 || secs > MAX_HOOK_TIMEOUT_SECONDS {
                    return Err(self.error_at(
                        &t.span(),
                        format!(
                            "{what}: timeout-seconds = {secs} is out of range (1 to {MAX_HOOK_TIMEOUT_SECONDS})"
                        ),
                    ));
                }
                secs
            }
        };
        Ok(Hook {
            argv,
            timeout: Duration::from_secs(timeout),
        })
    }

    /// An absolute path, with the key name for the error.
    pub(crate) fn absolute_path(&self, raw: Spanned<PathBuf>, key: &str) -> Result<PathBuf> {
        let span = raw.span();
        let path = raw.into_inner();
        if !path.is_absolute() {
            return Err(self.error_at(
                &span,
                format!("{key} = {:?} is not an absolute path", path.display()),
            ));
        }
        Ok(path)
    }
}

/// Read and return a file's text; the error names the file.
pub(crate) fn read_config_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading configuration file {}", path.display()), e))
}

/// Parse a size such as `500M`, `200G`, `1T` or a plain number of bytes (binary units).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    if digits.is_empty() {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    let shift = match unit.trim_start() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => return None,
    };
    value.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names() {
        for good in ["web1", "a", "0db", "db-1.example_x", &"a".repeat(64)] {
            assert_eq!(ClientName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "-web",
            ".web",
            "_web",
            "Web1",
            "web 1",
            "web/1",
            "..",
            "wéb",
            "web\n",
            &"a".repeat(65),
        ] {
            let err = ClientName::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("2K"), Some(2048));
        assert_eq!(parse_size("200G"), Some(200 << 30));
        assert_eq!(parse_size("1 TiB"), Some(1 << 40));
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("10X"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn line_numbers() {
        let text = "a = 1\nb = 2\nc = 3\n";
        let src = SourceFile::new(Path::new("/etc/x.toml"), text);
        assert_eq!(src.line_of(&(0..1)), 1);
        assert_eq!(src.line_of(&(6..7)), 2);
        assert_eq!(src.line_of(&(12..13)), 3);
        let err = src.error_at(&(12..13), "bad c");
        assert_eq!(err.message(), "/etc/x.toml:3: bad c");
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}
