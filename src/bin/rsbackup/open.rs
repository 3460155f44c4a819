//! What several commands share: opening the repository, loading an identity, resolving
//! `--session ID|latest`, and turning command-line paths into session paths.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rsbackup::crypto::wrap::Identities;
use rsbackup::ids::SessionId;
use rsbackup::index::Index;
use rsbackup::reader::SessionReader;
use rsbackup::repo::Repo;
use rsbackup::{Error, ErrorKind};

use crate::UsageError;

/// The flags of every command that reads one session with the identity (`ls`, `cat`,
/// `restore`).
#[derive(clap::Args)]
pub struct SessionArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    pub repo: PathBuf,
    /// Session id, or `latest` together with --client.
    #[arg(long, value_name = "ID|latest")]
    pub session: String,
    /// The client, for `--session latest` (or to confirm a session id's client).
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
    /// The age identity file that can unlock the repository.
    #[arg(long, value_name = "FILE", env = "RSBACKUP_IDENTITY")]
    pub identity: PathBuf,
}

/// Where the server configuration is unless `--config` or `RSBACKUP_SERVER_CONFIG` says.
pub const SERVER_CONFIG: &str = "/etc/rsbackup/server.toml";

/// `--config FILE` of the commands that read the server configuration. Not for the ssh forced
/// commands (`serve`, `mirror-serve`), which never take it from the environment.
#[derive(clap::Args)]
pub struct ServerConfigArg {
    /// The server configuration.
    #[arg(
        id = "config",
        long = "config",
        value_name = "FILE",
        default_value = SERVER_CONFIG,
        env = "RSBACKUP_SERVER_CONFIG"
    )]
    pub path: PathBuf,
}

/// The flags of the commands that read sessions with the identity but name them their own way
/// (`find`, `diff`).
#[derive(clap::Args)]
pub struct RepoIdentityArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    pub repo: PathBuf,
    /// The age identity file that can unlock the repository.
    #[arg(long, value_name = "FILE", env = "RSBACKUP_IDENTITY")]
    pub identity: PathBuf,
}

impl SessionArgs {
    /// Open the repository, resolve the session and unlock the repository with the identity.
    pub fn open(&self) -> Result<(SessionId, SessionReader)> {
        let repo = repo(&self.repo)?;
        let index = repo.index()?;
        let id = session(&index, &self.repo, &self.session, self.client.as_deref())?;
        Ok((id, reader(&repo, &self.identity)?))
    }
}

/// The repository this command opened, so that an error can be told apart as its full disk.
static OPENED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// An error of a command that opened a repository, said as "the repository's disk is full"
/// when the repository's filesystem has no room left and the error is an I/O one (a failure on
/// another disk, such as a restore target, keeps its own words).
pub fn explain_full_disk(err: anyhow::Error) -> anyhow::Error {
    let Some(root) = OPENED.get() else {
        return err;
    };
    match err.downcast::<Error>() {
        Ok(e) => rsbackup::store::space::explain(root, e).into(),
        Err(other) => other,
    }
}

/// Open the repository at `path`.
pub fn repo(path: &Path) -> Result<Repo> {
    let _ = OPENED.set(path.to_path_buf());
    if !path.exists() {
        return Err(Error::new(
            ErrorKind::NotARepository,
            format!(
                "{} is not a repository: the directory does not exist",
                path.display()
            ),
        )
        .into());
    }
    Ok(Repo::open(path)?)
}

/// `--identity-passphrase-file`, for every identity file this run loads.
static PASSPHRASE_FILE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Remember `--identity-passphrase-file` (once, before the command runs).
pub fn set_passphrase_file(path: Option<PathBuf>) {
    let _ = PASSPHRASE_FILE.set(path);
}

/// Load an identity file; a passphrase-protected one is opened with the passphrase from
/// `--identity-passphrase-file`, or asked on the terminal.
pub fn identities(path: &Path) -> Result<Identities> {
    let file = PASSPHRASE_FILE.get().cloned().flatten();
    Ok(Identities::load_with_passphrase(
        path,
        &mut || match &file {
            Some(f) => crate::passphrase::from_file(f),
            None => crate::passphrase::prompt(
                &format!("Passphrase for identity file {}: ", path.display()),
                &format!("identity file {}", path.display()),
                "--identity-passphrase-file",
            ),
        },
    )?)
}

/// Load the identity file and unlock the repository with it.
pub fn reader(repo: &Repo, identity: &Path) -> Result<SessionReader> {
    let identities = identities(identity)?;
    Ok(SessionReader::new(repo, identities)?)
}

/// Resolve `--session` (`ID` or `latest`) with the optional `--client`.
pub fn session(
    index: &Index,
    repo: &Path,
    session: &str,
    client: Option<&str>,
) -> Result<SessionId> {
    if session == "latest" {
        let Some(client) = client else {
            return Err(UsageError("--session latest needs --client NAME".into()).into());
        };
        let sessions = index.sessions(Some(client))?;
        let Some(last) = sessions.last() else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "client {client:?} has no sessions in repository {}",
                    repo.display()
                ),
            )
            .into());
        };
        return Ok(SessionId(last.id));
    }
    let id: SessionId = session.parse().map_err(|_| {
        UsageError(format!(
            "--session must be a session id or \"latest\", got {session:?}"
        ))
    })?;
    let info = index.session(id).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            Error::new(
                ErrorKind::NotFound,
                format!("session {id} not found in repository {}", repo.display()),
            )
        } else {
            e
        }
    })?;
    if let Some(client) = client
        && info.client != client
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "session {id} belongs to client {:?}, not {client:?}",
                info.client
            ),
        )
        .into());
    }
    Ok(id)
}

/// A command-line path as a session path: bytes, relative, without empty or `.` components.
/// `/`, `.` and the empty string name the session root (an empty path).
pub fn session_path(arg: &OsStr) -> Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    for part in arg.as_bytes().split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(UsageError(format!(
                    "path {:?} contains \"..\": give a path inside the session",
                    arg
                ))
                .into());
            }
            name => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_paths_become_session_paths() {
        let p = |s: &str| session_path(OsStr::new(s)).unwrap();
        assert_eq!(p("/etc/hosts"), b"etc/hosts");
        assert_eq!(p("./a//b/"), b"a/b");
        assert_eq!(p("/"), b"");
        assert_eq!(p("."), b"");
        assert!(session_path(OsStr::new("a/../b")).is_err());
        assert_eq!(
            session_path(OsStr::from_bytes(b"x/\xff")).unwrap(),
            b"x/\xff"
        );
    }
}
