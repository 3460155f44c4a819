//! `rsbackup restore --config client.toml ...`: a client restores its own sessions. The server's
//! `restore-fetch` sends what the client's sessions hold, sealed as stored; this side opens every
//! chunk with the client's own identity and restores it as `restore --repo` does.

use std::io::Write;

use anyhow::Result;
use rsbackup::client::remote::{Connection, control_path};
use rsbackup::config::ClientConfig;
use rsbackup::ids::SessionId;
use rsbackup::restore_fetch::connect_ssh;
use rsbackup::restore_fetch::wire::WireSession;
use rsbackup::{Error, ErrorKind};

use crate::Outcome;
use crate::restore::Args;

/// Run `restore --config`.
pub fn run(args: &Args) -> Result<Outcome> {
    let path = args.config.as_deref().unwrap_or(std::path::Path::new(""));
    let config = ClientConfig::load(path)?;
    // Listing opens nothing: no identity needed.
    let identities = if args.list {
        rsbackup::crypto::wrap::Identities(Vec::new())
    } else {
        crate::open::identities(crate::restore::identity(args)?)?
    };
    let opts = if args.list {
        None
    } else {
        Some(crate::restore::options(args)?)
    };
    let state_dir = args.state_dir.as_ref().unwrap_or(&config.state_dir);
    let conn = Connection {
        connect_timeout: config.transfer.connect_timeout,
        // The shared connection of the push, where its directory exists (a fresh machine
        // restoring after a loss may have none yet).
        control_path: state_dir
            .is_dir()
            .then(|| control_path(state_dir, config.name.as_str()))
            .flatten(),
        ..Connection::default()
    };
    // The oldest protocol that has what this restore asks, so that an older server serves it.
    let version = if args.to_original_paths {
        rsbackup::restore_fetch::wire::SOURCES_VERSION
    } else {
        rsbackup::restore_fetch::wire::MIN_PROTOCOL_VERSION
    };
    let fetch = connect_ssh(&config, &conn, identities, version)?;
    let sessions = fetch.source.sessions()?;
    let outcome = match opts {
        None => list(&config, &sessions),
        Some(opts) => {
            let session = pick(&config, &sessions, args.session.as_deref().unwrap_or(""))?;
            let sources = if args.to_original_paths {
                crate::restore::recorded_sources(session, fetch.source.sources(session)?)?
            } else {
                None
            };
            crate::restore::restore_from(&fetch.source, session, &opts, args, sources.as_deref())
        }
    };
    let closed = fetch.finish();
    rsbackup::client::remote::close_master(&config, &conn);
    let outcome = outcome?;
    closed?;
    Ok(outcome)
}

/// The session `--session` names among the client's own.
fn pick(config: &ClientConfig, sessions: &[WireSession], wanted: &str) -> Result<SessionId> {
    if wanted == "latest" {
        return match sessions.last() {
            Some(s) => Ok(SessionId(s.id)),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("client {} has no sessions on the server", config.name),
            )
            .into()),
        };
    }
    let id: i64 = wanted.parse().map_err(|_| {
        crate::UsageError(format!(
            "--session must be a session id or \"latest\", got {wanted:?}"
        ))
    })?;
    if !sessions.iter().any(|s| s.id == id) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "session {id} is not one of client {}'s sessions on the server (see `rsbackup \
                 restore --config {} --list`)",
                config.name,
                config.path.display()
            ),
        )
        .into());
    }
    Ok(SessionId(id))
}

/// Print the client's sessions, oldest first.
fn list(config: &ClientConfig, sessions: &[WireSession]) -> Result<Outcome> {
    let mut out = crate::output::Stdout::new();
    writeln!(out, "sessions of client {} on the server:", config.name)?;
    for s in sessions {
        let when = jiff::Timestamp::from_second(s.finished)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "{:>8}  {when}  {:<8}  {} entries, {}",
            s.id,
            if s.partial { "partial" } else { "complete" },
            s.files,
            crate::output::size_exact(s.bytes)
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
