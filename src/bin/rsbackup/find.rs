//! `rsbackup find --repo R --identity K [--client C] [--session ID] PATTERN... [--json]`:
//! which sessions hold paths matching glob patterns.

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::Result;
use rsbackup::browse::find::Patterns;
use rsbackup::format::manifest::Body;
use rsbackup::ids::SessionId;
use rsbackup::ingest::validate_client_name;
use rsbackup::{Error, ErrorKind};
use serde::Serialize;

use crate::Outcome;
use crate::entry_json::{EntryJson, json_line, kind_name, warn_lost};
use crate::output::{path_bytes, time};

/// Arguments of `find`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    at: crate::open::RepoIdentityArgs,
    /// Only this client's sessions.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// Only this session (an id, or `latest` with --client).
    #[arg(long, value_name = "ID|latest")]
    session: Option<String>,
    /// One JSON object per match, one per line.
    #[arg(long)]
    json: bool,
    /// Glob patterns: `*` stays within a path component, `**` crosses them; a pattern without
    /// `/` matches the last component.
    #[arg(value_name = "PATTERN", required = true)]
    patterns: Vec<String>,
}

/// One match in `--json` output.
#[derive(Serialize)]
struct Match<'a> {
    session: i64,
    client: &'a str,
    /// Server time the session started, seconds since the epoch.
    started: i64,
    #[serde(flatten)]
    entry: EntryJson,
}

/// Run `find`.
pub fn run(args: Args) -> Result<Outcome> {
    if let Some(client) = &args.client {
        validate_client_name(client)?;
    }
    let patterns = Patterns::new(&args.patterns)?;
    let repo = crate::open::repo(&args.at.repo)?;
    let sessions = match &args.session {
        Some(s) => {
            let index = repo.index()?;
            let id = crate::open::session(&index, &args.at.repo, s, args.client.as_deref())?;
            vec![index.session(id)?]
        }
        None => repo.index()?.sessions(args.client.as_deref())?,
    };
    let reader = crate::open::reader(&repo, &args.at.identity)?;
    let mut out = crate::output::Stdout::new();
    let mut line = Vec::with_capacity(256);
    let (mut matches, mut lost) = (0u64, 0u64);
    for info in &sessions {
        let session = SessionId(info.id);
        reader.walk_salvaging(
            session,
            &mut |entry| {
                if !patterns.matches(&entry.path) {
                    return Ok(ControlFlow::Continue(()));
                }
                matches += 1;
                line.clear();
                if args.json {
                    let m = Match {
                        session: info.id,
                        client: &info.client,
                        started: info.started,
                        entry: EntryJson::new(&entry),
                    };
                    json_line(&m, &mut line)?;
                } else {
                    let size = match entry.body {
                        Body::File { size, .. } => size.to_string(),
                        _ => "-".into(),
                    };
                    let head = format!(
                        "{:>6}  {}  {}  {:<8} {:>13}  {}  ",
                        info.id,
                        time(info.started),
                        info.client,
                        kind_name(&entry.body),
                        size,
                        time(entry.meta.mtime_sec)
                    );
                    line.extend_from_slice(head.as_bytes());
                    path_bytes(&entry.path, &mut line);
                    line.push(b'\n');
                }
                out.write_all(&line)
                    .map_err(|e| Error::io("cannot write to standard output", e))?;
                Ok(ControlFlow::Continue(()))
            },
            &mut |chunk| {
                lost += 1;
                warn_lost(session, &chunk);
                Ok(())
            },
        )?;
    }
    out.flush()?;
    if lost > 0 {
        eprintln!(
            "rsbackup: find is partial: {lost} manifest chunk{} could not be read",
            if lost == 1 { "" } else { "s" }
        );
        return Ok(Outcome::Partial);
    }
    if matches == 0 {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no path matching {} in {} session{}",
                args.patterns.join(" "),
                sessions.len(),
                if sessions.len() == 1 { "" } else { "s" }
            ),
        )
        .into());
    }
    Ok(Outcome::Ok)
}
