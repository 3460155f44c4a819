//! `prepare renames`: the moves a client saw on its side, made in its staging before rsync
//! compares the trees, so that a renamed directory (or large file) is found in place instead of
//! being deleted and sent again.
//!
//! The list is advice, never trusted: each path is resolved one component at a time from the
//! staging directory's descriptor with `O_NOFOLLOW | O_DIRECTORY` (a symlink or anything but a
//! directory on the way stops it), the move is `renameat2(RENAME_NOREPLACE)` (it never replaces
//! an existing path), and a rename that cannot be made is skipped. Whatever the list says, the
//! rsync pass that follows makes staging equal to the client's tree: a wrong rename costs the
//! bandwidth of sending the files again, and placeholders keep their identity (same inode) under
//! their new path, so the ingest still tells them from content.

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rusqlite::{Connection, params};
use rustix::fs::{Mode, OFlags, RenameFlags};

use crate::error::{Error, Result};
use crate::format::rename_list::Rename;

/// What applying a rename list did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RenameReport {
    /// Renames the client sent.
    pub sent: u64,
    /// Renames made in staging.
    pub applied: u64,
    /// Placeholder rows moved with them.
    pub rows_moved: u64,
    /// Renames skipped, one line each (the first few).
    pub skipped: Vec<String>,
    /// Renames skipped in all.
    pub skipped_count: u64,
}

/// At most this many skipped renames are listed in the report.
const LISTED: usize = 20;

/// Moving the rows checks every placeholder row against every rename made: at most this many
/// such checks in one `prepare` (a few seconds), so that a list of thousands of renames over a
/// tree of millions of placeholders cannot hold the server for long. Renames past the budget
/// are skipped, which costs only bandwidth.
const MOVE_BUDGET: u64 = 200_000_000;

/// Make `renames` in the staging directory `dir`, in order, and move the placeholder rows of
/// the table at `table` (if it exists) with them.
pub fn apply(dir: &Path, renames: &[Rename], table: &Path) -> Result<RenameReport> {
    apply_within(dir, renames, table, MOVE_BUDGET)
}

fn apply_within(dir: &Path, renames: &[Rename], table: &Path, budget: u64) -> Result<RenameReport> {
    let mut report = RenameReport {
        sent: renames.len() as u64,
        ..Default::default()
    };
    let rows = if table.exists() {
        count_rows(table)?
    } else {
        0
    };
    let most = budget.checked_div(rows).unwrap_or(u64::MAX).max(1);
    let root = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening staging {}", dir.display()), e.into()))?;
    let mut done: Vec<&Rename> = Vec::new();
    for r in renames {
        let made = if report.applied >= most {
            Err(format!(
                "over the {most} renames one prepare makes with {rows} placeholder rows"
            ))
        } else {
            rename_beneath(&root, &r.from, &r.to)
        };
        match made {
            Ok(()) => {
                report.applied += 1;
                done.push(r);
            }
            Err(why) => {
                report.skipped_count += 1;
                if report.skipped.len() < LISTED {
                    report.skipped.push(format!(
                        "{} -> {}: {why}",
                        String::from_utf8_lossy(&r.from),
                        String::from_utf8_lossy(&r.to)
                    ));
                }
            }
        }
    }
    if !done.is_empty() && table.exists() {
        report.rows_moved = move_rows(table, &done)?;
    }
    Ok(report)
}

/// `renameat2(from, to, RENAME_NOREPLACE)`, both parents resolved beneath `root`. Missing
/// directories above `to` are made (mode 0700; rsync gives them the client's metadata) once
/// `from` is known to exist: a client that now sends its sources at their full paths moves
/// `www` to `var/www` before staging has a `var`.
fn rename_beneath(root: &OwnedFd, from: &[u8], to: &[u8]) -> std::result::Result<(), String> {
    if !crate::format::rename_list::path_ok(from) || !crate::format::rename_list::path_ok(to) {
        return Err("not a relative path inside staging".into());
    }
    if to.starts_with(from) && to.get(from.len()) == Some(&b'/') {
        return Err("a directory cannot move into itself".into());
    }
    let (from_dir, from_name) = parent_beneath(root, from, false)?;
    let from_dir = from_dir.as_ref().unwrap_or(root);
    rustix::fs::statat(
        from_dir,
        std::ffi::OsStr::from_bytes(from_name),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| std::io::Error::from(e).to_string())?;
    let (to_dir, to_name) = parent_beneath(root, to, true)?;
    let to_dir = to_dir.as_ref().unwrap_or(root);
    rustix::fs::renameat_with(
        from_dir,
        std::ffi::OsStr::from_bytes(from_name),
        to_dir,
        std::ffi::OsStr::from_bytes(to_name),
        RenameFlags::NOREPLACE,
    )
    .map_err(|e| std::io::Error::from(e).to_string())
}

/// The directory holding the last component of `path` (`None`: `root` itself), opened one
/// component at a time without following symlinks (`create`: a missing one is made), and that
/// last component.
fn parent_beneath<'p>(
    root: &OwnedFd,
    path: &'p [u8],
    create: bool,
) -> std::result::Result<(Option<OwnedFd>, &'p [u8]), String> {
    let mut parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let name = parts.pop().unwrap_or_default();
    let mut fd: Option<OwnedFd> = None;
    for part in parts {
        let at = fd.as_ref().unwrap_or(root);
        let name = std::ffi::OsStr::from_bytes(part);
        let open = || {
            rustix::fs::openat(
                at,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let next = match open() {
            Err(rustix::io::Errno::NOENT) if create => {
                rustix::fs::mkdirat(at, name, Mode::RWXU).and_then(|()| open())
            }
            other => other,
        }
        .map_err(|e| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(part),
                std::io::Error::from(e)
            )
        })?;
        fd = Some(next);
    }
    Ok((fd, name))
}

/// How many rows the placeholder table holds.
fn count_rows(table: &Path) -> Result<u64> {
    let what = || format!("counting rows of placeholder table {}", table.display());
    let conn = Connection::open(table).map_err(|e| Error::from(e).context(what()))?;
    let n: i64 = conn
        .query_row("SELECT count(*) FROM placeholders", [], |r| r.get(0))
        .map_err(|e| Error::from(e).context(what()))?;
    Ok(n.max(0) as u64)
}

/// Move the placeholder rows under each applied rename's old path to its new path.
fn move_rows(table: &Path, done: &[&Rename]) -> Result<u64> {
    let what = || format!("moving rows of placeholder table {}", table.display());
    let mut conn = Connection::open(table).map_err(|e| Error::from(e).context(what()))?;
    let tx = conn
        .transaction()
        .map_err(|e| Error::from(e).context(what()))?;
    let paths: Vec<Vec<u8>> = {
        let mut stmt = tx
            .prepare("SELECT path FROM placeholders")
            .map_err(|e| Error::from(e).context(what()))?;
        stmt.query_map([], |r| r.get(0))
            .map_err(|e| Error::from(e).context(what()))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::from(e).context(what()))?
    };
    let mut moved = 0;
    for old in paths {
        let mut new = old.clone();
        for r in done {
            if new == r.from {
                new = r.to.clone();
            } else if new.starts_with(&r.from) && new.get(r.from.len()) == Some(&b'/') {
                let mut p = r.to.clone();
                p.extend_from_slice(&new[r.from.len()..]);
                new = p;
            }
        }
        if new != old {
            tx.execute(
                "UPDATE OR REPLACE placeholders SET path = ?1 WHERE path = ?2",
                params![new, old],
            )
            .map_err(|e| Error::from(e).context(what()))?;
            moved += 1;
        }
    }
    tx.commit().map_err(|e| Error::from(e).context(what()))?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(from: &str, to: &str) -> Rename {
        Rename::new(from, to)
    }

    /// A forged list: `..`, absolute paths, a symlink in staging pointing outside, a rename onto
    /// an existing path, a swap, a directory into itself. Only the honest renames are made and
    /// nothing outside staging is touched.
    #[test]
    fn only_renames_beneath_staging_onto_free_names_are_made() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("victim")).unwrap();
        std::fs::write(outside.path().join("victim/f"), b"secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        std::fs::create_dir_all(s.join("www/old/sub")).unwrap();
        std::fs::write(s.join("www/old/sub/f"), b"x").unwrap();
        std::fs::write(s.join("a"), b"a").unwrap();
        std::fs::write(s.join("b"), b"b").unwrap();
        std::os::unix::fs::symlink(outside.path(), s.join("link")).unwrap();
        let table = dir.path().join("no-table.db");
        let list = vec![
            r("www/old", "www/new"),
            r("link/victim", "stolen"),
            r("a", "b"),
            r("www/new", "www/new/sub/x"),
            r("missing", "c"),
            r("stolen", "link/victim2"),
        ];
        let rep = apply(s, &list, &table).unwrap();
        assert_eq!(
            (rep.sent, rep.applied, rep.skipped_count),
            (6, 1, 5),
            "{rep:#?}"
        );
        assert!(s.join("www/new/sub/f").exists());
        assert_eq!(std::fs::read(s.join("a")).unwrap(), b"a");
        assert_eq!(std::fs::read(s.join("b")).unwrap(), b"b");
        assert_eq!(
            std::fs::read(outside.path().join("victim/f")).unwrap(),
            b"secret"
        );
        assert!(!s.join("stolen").exists());
        assert!(!outside.path().join("victim2").exists());
        // Paths a decoder would refuse are refused here too.
        for (from, to) in [("../x", "y"), ("/etc", "y"), ("a", "../y")] {
            let rep = apply(s, &[r(from, to)], &table).unwrap();
            assert_eq!(rep.applied, 0, "{from} -> {to}");
        }
    }

    /// The move of an old-layout source (`www`) to its full path (`var/www`) makes `var`; a
    /// rename of nothing makes no directory, and none is made through a symlink.
    #[test]
    fn missing_parents_are_made_only_for_a_path_that_exists() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        std::fs::create_dir_all(s.join("www/sub")).unwrap();
        std::fs::write(s.join("www/sub/f"), b"x").unwrap();
        std::fs::write(s.join("a"), b"a").unwrap();
        std::os::unix::fs::symlink(outside.path(), s.join("link")).unwrap();
        let table = dir.path().join("no-table.db");
        let list = vec![
            r("www", "var/www"),
            r("missing", "new/dir/x"),
            r("a", "link/made/a"),
        ];
        let rep = apply(s, &list, &table).unwrap();
        assert_eq!((rep.applied, rep.skipped_count), (1, 2), "{rep:#?}");
        assert_eq!(std::fs::read(s.join("var/www/sub/f")).unwrap(), b"x");
        assert!(!s.join("www").exists() && !s.join("new").exists());
        assert!(!outside.path().join("made").exists());
        assert!(s.join("a").exists());
    }

    #[test]
    fn placeholder_rows_move_with_their_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d/old")).unwrap();
        let table = dir.path().join("t.db");
        let c = Connection::open(&table).unwrap();
        c.execute_batch(
            "CREATE TABLE placeholders (path BLOB PRIMARY KEY, x INTEGER) WITHOUT ROWID;",
        )
        .unwrap();
        for p in [&b"d/old/f"[..], b"d/old", b"d/older", b"e"] {
            c.execute("INSERT INTO placeholders VALUES (?1, 1)", [p])
                .unwrap();
        }
        drop(c);
        let rep = apply(dir.path(), &[r("d/old", "d/new")], &table).unwrap();
        assert_eq!((rep.applied, rep.rows_moved), (1, 2), "{rep:#?}");
        let c = Connection::open(&table).unwrap();
        let mut paths: Vec<Vec<u8>> = c
            .prepare("SELECT path FROM placeholders ORDER BY path")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            [&b"d/new"[..], b"d/new/f", b"d/older", b"e"].map(|p| p.to_vec())
        );
        // A budget of 8 row checks over 4 rows: two renames are made, the third is skipped
        // (its directory stays where it was), and the rows follow only what was made.
        for d in ["x1", "x2", "x3"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let list = [r("x1", "y1"), r("x2", "y2"), r("x3", "y3")];
        let rep = apply_within(dir.path(), &list, &table, 8).unwrap();
        assert_eq!((rep.applied, rep.skipped_count), (2, 1), "{rep:#?}");
        assert!(rep.skipped[0].contains("over the 2 renames"), "{rep:#?}");
        assert!(dir.path().join("y2").is_dir() && dir.path().join("x3").is_dir());
    }
}
