//! `rsbackup sessions --repo R [--client NAME] [--json]`: list visible sessions, oldest first.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use rsbackup::ids::SessionId;
use rsbackup::index::{SessionInfo, SessionState};
use rsbackup::ingest::validate_client_name;
use rsbackup::store::records;

use crate::Outcome;
use crate::output::{duration, size, time};

/// A duration in whole seconds (session times have one-second resolution).
fn whole_seconds(secs: i64) -> String {
    if secs < 60 {
        format!("{} s", secs.max(0))
    } else {
        duration(secs as f64)
    }
}

/// Arguments of `sessions`.
#[derive(clap::Args)]
pub struct Args {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// Only this client's sessions.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// Print the sessions as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `sessions`.
pub fn run(args: Args) -> Result<Outcome> {
    if let Some(client) = &args.client {
        validate_client_name(client)?;
    }
    let repo = crate::open::repo(&args.repo)?;
    let sessions = repo.index()?.sessions(args.client.as_deref())?;
    // Each session's sources at their full paths (`None`: recorded before full paths). A
    // damaged record is named and costs only its own line: the list is what a bad day needs.
    let mut sources = Vec::with_capacity(sessions.len());
    for s in &sessions {
        sources.push(
            records::read_session_sources(repo.root(), SessionId(s.id)).unwrap_or_else(|e| {
                eprintln!("rsbackup: session {}: sources not shown: {e}", s.id);
                None
            }),
        );
    }
    if args.json {
        let mut list = Vec::with_capacity(sessions.len());
        for (s, sources) in sessions.iter().zip(&sources) {
            let mut value = serde_json::to_value(s)?;
            value["sources"] = match sources {
                Some(list) => list.iter().map(|p| lossy(p)).collect(),
                None => serde_json::Value::Null,
            };
            list.push(value);
        }
        crate::output::print_json(&list)?;
        return Ok(Outcome::Ok);
    }
    let mut out = crate::output::Stdout::new();
    if sessions.is_empty() {
        match &args.client {
            Some(c) => writeln!(out, "no sessions of client {c}")?,
            None => writeln!(out, "no sessions")?,
        }
        out.flush()?;
        return Ok(Outcome::Ok);
    }
    let rows: Vec<[String; 8]> = sessions.iter().map(row).collect();
    let header = [
        "ID",
        "CLIENT",
        "STATE",
        "STARTED",
        "TOOK",
        "ENTRIES",
        "SIZE",
        "NEW STORED",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            // Numbers right-aligned, words left-aligned.
            let right = matches!(i, 0 | 5 | 6 | 7);
            if i > 0 {
                line.push_str("  ");
            }
            if right {
                line.push_str(&format!("{cell:>w$}"));
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    // Why each partial session is partial, and where its sources were, below the table (too
    // long for a cell).
    for (s, sources) in sessions.iter().zip(&sources) {
        if let Some(reason) = &s.reason {
            writeln!(out, "session {} is partial: {reason}", s.id)?;
        }
        match sources {
            Some(list) if !list.is_empty() => {
                let list: Vec<String> = list.iter().map(|p| lossy(p)).collect();
                writeln!(out, "session {} sources: {}", s.id, list.join(" "))?;
            }
            _ => {}
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

fn row(s: &SessionInfo) -> [String; 8] {
    let state = match s.state {
        SessionState::Complete => "complete".to_string(),
        SessionState::Partial if s.stats.errors > 0 => {
            format!("partial ({} errors)", s.stats.errors)
        }
        SessionState::Partial => "partial".to_string(),
        SessionState::Running => "running".to_string(),
    };
    let state = if s.pinned {
        format!("{state}, pinned")
    } else {
        state
    };
    let took = match s.finished {
        Some(f) => whole_seconds(f - s.started),
        None => "-".into(),
    };
    [
        s.id.to_string(),
        s.client.clone(),
        state,
        time(s.started),
        took,
        s.stats.files.to_string(),
        size(s.stats.bytes),
        size(s.stats.new_bytes),
    ]
}

fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}
