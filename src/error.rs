//! The library's one error type: a kind that callers act on, plus context in words an
//! administrator can act on. The binary maps kinds to exit codes.

use std::fmt;

/// What went wrong, as far as a caller needs to decide what to do.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The path is not an rsbackup repository (missing `repository.toml`).
    NotARepository,
    /// A persisted structure carries a version (or magic) this build does not know.
    UnsupportedVersion,
    /// The identity given is not an age identity, or cannot unwrap the repository's keys.
    WrongIdentity,
    /// Stored data failed a check: bad magic, bad length, failed authentication, wrong hash.
    Corrupt,
    /// A caller-supplied value is invalid (argument, path, name).
    InvalidInput,
    /// A restore target exists and is not empty.
    TargetNotEmpty,
    /// A restore target exists and is not a directory.
    TargetNotDirectory,
    /// Something named (a session, a path in a session) does not exist.
    NotFound,
    /// A lock is held by another process.
    Locked,
    /// The operating system refused access.
    PermissionDenied,
    /// The peer of a wire protocol broke it: a bad frame, a message out of turn, a request for
    /// something it was not offered. Said of what the other side sent, never of our own data.
    Protocol,
    /// The request is not allowed by this side's configuration (a mirror asked to forget
    /// sessions while append-only, or to overwrite what it holds).
    Refused,
    /// A configuration file is invalid.
    Config,
    /// The disk has no room left (ENOSPC, EDQUOT, SQLite's "database or disk is full").
    DiskFull,
    /// Any other I/O error.
    Io,
    /// An internal invariant was broken (a bug).
    Internal,
}

/// An error with its kind, a context message and an optional source.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach a source error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand for [`ErrorKind::Corrupt`].
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for [`ErrorKind::Protocol`].
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// An I/O error with what was being done and where; the kind follows the OS error.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                ErrorKind::DiskFull
            }
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            message: format!("{what}: {err}"),
            source: None,
        }
    }

    /// Add context in front of the message ("while doing X: <message>").
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        let kind = match &err {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                ErrorKind::Locked
            }
            rusqlite::Error::SqliteFailure(e, _)
                if e.code == rusqlite::ErrorCode::DatabaseCorrupt
                    || e.code == rusqlite::ErrorCode::NotADatabase =>
            {
                ErrorKind::Corrupt
            }
            rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull => {
                ErrorKind::DiskFull
            }
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => ErrorKind::Corrupt,
            _ => ErrorKind::Io,
        };
        Error::new(kind, "index database").with_source(err)
    }
}
