//! `rsbackup ls --repo R --session ID --identity F [--long | --json] [PATH]`: list a session's
//! paths.

use std::ffi::OsString;
use std::io::Write;
use std::ops::ControlFlow;

use anyhow::Result;
use rsbackup::browse::under;
use rsbackup::format::manifest::{Body, Entry};
use rsbackup::{Error, ErrorKind};

use crate::Outcome;
use crate::entry_json::{EntryJson, json_line};
use crate::output::{path_bytes, path_display, time};

/// Arguments of `ls`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    at: crate::open::SessionArgs,
    /// Show type, mode, owner, size and mtime.
    #[arg(long, short = 'l')]
    long: bool,
    /// One JSON object per entry, one per line: path, type, mode, uid, gid, size, mtime,
    /// target, xattr names.
    #[arg(long, conflicts_with = "long")]
    json: bool,
    /// List only this path and what is below it.
    #[arg(value_name = "PATH")]
    path: Option<OsString>,
}

/// Run `ls`.
pub fn run(args: Args) -> Result<Outcome> {
    let prefix = match &args.path {
        Some(p) => crate::open::session_path(p)?,
        None => Vec::new(),
    };
    let (session, reader) = args.at.open()?;
    let mut out = crate::output::Stdout::new();
    let mut found = false;
    let mut line = Vec::with_capacity(256);
    let mut lost = 0u64;
    let mut visit = |entry: Entry| -> rsbackup::Result<()> {
        if !under(&entry.path, &prefix) {
            return Ok(());
        }
        found = true;
        line.clear();
        if args.json {
            json_line(&EntryJson::new(&entry), &mut line)?;
            return out
                .write_all(&line)
                .map_err(|e| Error::io("cannot write to standard output", e));
        }
        if args.long {
            long_line(&entry, &mut line);
        } else {
            path_bytes(&entry.path, &mut line);
            if matches!(entry.body, Body::Dir) && !entry.path.is_empty() {
                line.push(b'/');
            }
        }
        line.push(b'\n');
        out.write_all(&line)
            .map_err(|e| Error::io("cannot write to standard output", e))
    };
    // A damaged manifest chunk loses only the entries it describes: named on standard error,
    // and the listing goes on with the next one (exit 3, as restore).
    reader.walk_salvaging(
        session,
        &mut |entry| visit(entry).map(|()| ControlFlow::Continue(())),
        &mut |chunk| {
            lost += 1;
            crate::entry_json::warn_lost(session, &chunk);
            Ok(())
        },
    )?;
    out.flush()?;
    if lost > 0 {
        eprintln!(
            "rsbackup: ls is partial: {lost} manifest chunk{} could not be read",
            if lost == 1 { "" } else { "s" }
        );
        return Ok(Outcome::Partial);
    }
    if !found {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} is not in session {session}", path_display(&prefix)),
        )
        .into());
    }
    Ok(Outcome::Ok)
}

fn long_line(entry: &Entry, line: &mut Vec<u8>) {
    let m = &entry.meta;
    let (kind, size, suffix): (char, String, Vec<u8>) = match &entry.body {
        Body::Dir => ('d', "-".into(), Vec::new()),
        Body::File { size, .. } => ('-', size.to_string(), Vec::new()),
        Body::Symlink { target } => ('l', "-".into(), {
            let mut s = b" -> ".to_vec();
            path_bytes(target, &mut s);
            s
        }),
        Body::Hardlink { target } => ('-', "-".into(), {
            let mut s = b" => ".to_vec();
            path_bytes(target, &mut s);
            s.extend_from_slice(b" (hard link)");
            s
        }),
        Body::CharDev { rdev } => ('c', dev(*rdev), Vec::new()),
        Body::BlockDev { rdev } => ('b', dev(*rdev), Vec::new()),
        Body::Fifo => ('p', "-".into(), Vec::new()),
        Body::Socket => ('s', "-".into(), Vec::new()),
        Body::Unreadable { message } => (
            '?',
            "-".into(),
            format!(" (not backed up: {message})").into_bytes(),
        ),
    };
    let head = format!(
        "{}{} {:>5} {:>5} {:>13} {} ",
        kind,
        perms(m.mode),
        m.uid,
        m.gid,
        size,
        time(m.mtime_sec)
    );
    line.extend_from_slice(head.as_bytes());
    path_bytes(&entry.path, line);
    line.extend_from_slice(&suffix);
}

fn dev(rdev: u64) -> String {
    // Linux encoding of major/minor in a dev_t.
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
    format!("{major},{minor}")
}

/// `rwxr-xr-x` with setuid, setgid and sticky bits as `ls` shows them.
pub fn perms(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (i, (bit, on, off)) in special.iter().enumerate() {
        let shift = 6 - 3 * i as u32;
        let r = mode >> shift & 4 != 0;
        let w = mode >> shift & 2 != 0;
        let x = mode >> shift & 1 != 0;
        s.push(if r { 'r' } else { '-' });
        s.push(if w { 'w' } else { '-' });
        s.push(match (mode & bit != 0, x) {
            (true, true) => *on,
            (true, false) => *off,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_render_like_ls() {
        assert_eq!(perms(0o755), "rwxr-xr-x");
        assert_eq!(perms(0o4755), "rwsr-xr-x");
        assert_eq!(perms(0o2644), "rw-r-Sr--");
        assert_eq!(perms(0o1777), "rwxrwxrwt");
        assert_eq!(dev((8 << 8) | 1), "8,1");
    }
}
