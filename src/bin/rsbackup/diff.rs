//! `rsbackup diff --repo R --identity K [--client C] SESSION_A SESSION_B [PATH] [--json]`: what
//! changed from one session to another.

use std::ffi::OsString;
use std::io::Write;

use anyhow::Result;
use rsbackup::browse::diff::{Aspect, Change, ChangeKind, Summary, diff, entry_size};
use rsbackup::format::manifest::Entry;
use rsbackup::{Error, ErrorKind};
use serde::Serialize;

use crate::Outcome;
use crate::entry_json::{EntryJson, json_line, kind_name, warn_lost};
use crate::output::{path_bytes, size};

/// Arguments of `diff`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    at: crate::open::RepoIdentityArgs,
    /// The client, for `latest` (or to confirm the sessions' client).
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// One JSON object per change, one per line, then one with the summary.
    #[arg(long)]
    json: bool,
    /// The older session: an id, or `latest` with --client.
    #[arg(value_name = "SESSION_A")]
    a: String,
    /// The newer session: an id, or `latest` with --client.
    #[arg(value_name = "SESSION_B")]
    b: String,
    /// Compare only this path and what is below it.
    #[arg(value_name = "PATH")]
    path: Option<OsString>,
}

/// One change in `--json` output.
#[derive(Serialize)]
struct ChangeJson {
    change: ChangeKind,
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    /// For `changed`: how.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aspects: Vec<Aspect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old: Option<EntryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new: Option<EntryJson>,
}

/// The last line of `--json` output.
#[derive(Serialize)]
struct SummaryJson<'a> {
    summary: &'a Summary,
    /// Manifest chunks that could not be read (the diff is then partial).
    lost_manifest_chunks: usize,
}

/// An aspect in words, with the old and new value where short: `content 12 -> 20 bytes`,
/// `mode 0644 -> 0600`, `owner 0:0 -> 1000:1000`.
fn aspect_words(aspect: Aspect, old: &Entry, new: &Entry) -> String {
    let (m, n) = (&old.meta, &new.meta);
    match aspect {
        Aspect::Type => format!("type {} -> {}", kind_name(&old.body), kind_name(&new.body)),
        Aspect::Content => format!("content {} -> {} bytes", entry_size(old), entry_size(new)),
        Aspect::Mode => format!("mode {:04o} -> {:04o}", m.mode, n.mode),
        Aspect::Owner => format!("owner {}:{} -> {}:{}", m.uid, m.gid, n.uid, n.gid),
        Aspect::Mtime => "mtime".into(),
        Aspect::Xattrs => "xattrs".into(),
        Aspect::Acls => "acls".into(),
        Aspect::Target => "target".into(),
        Aspect::Device => "device".into(),
        Aspect::Reason => "reason".into(),
    }
}

/// One line of text for a change: `+`, `-` or `M`, the type, the size, the path, and for a
/// change what changed.
fn text_line(c: &Change, line: &mut Vec<u8>) {
    let (mark, entry) = match c.kind {
        ChangeKind::Added => ('+', c.new.as_ref()),
        ChangeKind::Removed => ('-', c.old.as_ref()),
        ChangeKind::Changed => ('M', c.new.as_ref()),
    };
    let Some(entry) = entry else { return };
    let head = format!(
        "{mark} {:<8} {:>13}  ",
        kind_name(&entry.body),
        entry_size(entry)
    );
    line.extend_from_slice(head.as_bytes());
    path_bytes(&entry.path, line);
    if let (Some(old), Some(new)) = (&c.old, &c.new) {
        let words: Vec<String> = c
            .aspects
            .iter()
            .map(|&a| aspect_words(a, old, new))
            .collect();
        line.extend_from_slice(format!("  [{}]", words.join(", ")).as_bytes());
    }
    line.push(b'\n');
}

fn summary_line(a: &str, b: &str, s: &Summary) -> String {
    format!(
        "{a} -> {b}: {} added ({}), {} removed ({}), {} changed ({} in content), {} unchanged; \
         size {}{}",
        s.added,
        size(s.added_bytes),
        s.removed,
        size(s.removed_bytes),
        s.changed,
        s.content_changed,
        s.unchanged,
        if s.size_delta < 0 { "-" } else { "+" },
        size(s.size_delta.unsigned_abs())
    )
}

/// Run `diff`.
pub fn run(args: Args) -> Result<Outcome> {
    let prefix = match &args.path {
        Some(p) => crate::open::session_path(p)?,
        None => Vec::new(),
    };
    let repo = crate::open::repo(&args.at.repo)?;
    let index = repo.index()?;
    let client = args.client.as_deref();
    let a = crate::open::session(&index, &args.at.repo, &args.a, client)?;
    let b = crate::open::session(&index, &args.at.repo, &args.b, client)?;
    drop(index);
    let reader = crate::open::reader(&repo, &args.at.identity)?;
    let mut out = crate::output::Stdout::new();
    let mut line = Vec::with_capacity(256);
    let result = diff(&reader, a, b, &prefix, &mut |c| {
        line.clear();
        if args.json {
            let entry = c.new.as_ref().or(c.old.as_ref());
            let j = ChangeJson {
                change: c.kind,
                path: String::from_utf8_lossy(c.path()).into_owned(),
                kind: entry.map_or("dir", |e| kind_name(&e.body)),
                aspects: c.aspects.clone(),
                old: c.old.as_ref().map(EntryJson::new),
                new: c.new.as_ref().map(EntryJson::new),
            };
            json_line(&j, &mut line)?;
        } else {
            text_line(&c, &mut line);
        }
        out.write_all(&line)
            .map_err(|e| Error::io("cannot write to standard output", e))
    })?;
    let s = &result.summary;
    if s.added + s.removed + s.changed + s.unchanged == 0 && result.lost.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} is in neither session {a} nor session {b}",
                crate::output::path_display(&prefix)
            ),
        )
        .into());
    }
    line.clear();
    if args.json {
        let j = SummaryJson {
            summary: s,
            lost_manifest_chunks: result.lost.len(),
        };
        json_line(&j, &mut line)?;
    } else {
        line.extend_from_slice(summary_line(&a.to_string(), &b.to_string(), s).as_bytes());
        line.push(b'\n');
    }
    out.write_all(&line)?;
    out.flush()?;
    for (session, lost) in &result.lost {
        warn_lost(*session, lost);
    }
    if !result.lost.is_empty() {
        eprintln!(
            "rsbackup: diff is partial: {} manifest chunk{} could not be read; entries they \
             described may show as added or removed",
            result.lost.len(),
            if result.lost.len() == 1 { "" } else { "s" }
        );
        return Ok(Outcome::Partial);
    }
    Ok(Outcome::Ok)
}
