//! A client's staging area after `complete`: `keep`, `purge`, or `hollow` (every regular file
//! replaced by a sparse placeholder of the same size and mtime), the durable placeholder table
//! that proves a placeholder untouched, and the space checks of `prepare`.
//!
//! The placeholder table is a small SQLite file per client, `R/cache/<client>.placeholders.db`,
//! beside the files cache but not part of it: one row per staged path left hollow, with the
//! placeholder's identity `(dev, ino, btime, size, mtime)` and the extents of the content it
//! stands for. It is rewritten whole (`.new`, fsync, rename) after every hollowing. Losing it
//! costs one resend of the files it covered, never wrong content: a placeholder without a row is
//! recorded as unreadable and removed from staging (see `ingest::staging`).

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use rustix::fs::{AtFlags, OFlags, StatxFlags, Timespec, Timestamps};

use crate::config::basis::{BasisPattern, any_matches};
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::Extent;
use crate::ids::ChunkId;
use crate::index::Index;
use crate::ingest::staging::{
    FAKE_SUPER_STAT, IngestedFile, PlaceholderRow, Placeholders, parse_fake_super_stat,
};

/// Version of the placeholder table file.
pub const PLACEHOLDERS_VERSION: i64 = 1;

/// `R/cache/<client>.placeholders.db`.
pub fn placeholders_path(repo_root: &Path, client: &str) -> PathBuf {
    repo_root
        .join("cache")
        .join(format!("{client}.placeholders.db"))
}

/// Load the placeholder table. A missing file is an empty table. When a garbage collection ran
/// since it was written, rows naming a chunk no longer in the index are dropped (their
/// placeholders then count as "without record" and are sent again).
pub fn load_placeholders(path: &Path, index: &Index) -> Result<Placeholders> {
    let mut table = Placeholders::default();
    if !path.exists() {
        return Ok(table);
    }
    let what = || format!("placeholder table {}", path.display());
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| Error::from(e).context(what()))?;
    let meta = |key: &str| -> Result<i64> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .map_err(|e| Error::from(e).context(what()))
    };
    if meta("version")? != PLACEHOLDERS_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!("{} has a version this build does not read", what()),
        ));
    }
    let verify = meta("gc-generation")? != index.gc_generation()?;
    let mut dropped = false;
    let mut stmt = conn
        .prepare("SELECT path, dev, ino, btime, size, mtime, extents FROM placeholders")
        .map_err(|e| Error::from(e).context(what()))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Vec<u8>>(6)?,
            ))
        })
        .map_err(|e| Error::from(e).context(what()))?;
    for row in rows {
        let (p, dev, ino, btime, size, mtime, ext) =
            row.map_err(|e| Error::from(e).context(what()))?;
        let Some(extents) = decode_extents(&ext) else {
            dropped = true;
            continue;
        };
        if verify {
            let mut all = true;
            for e in &extents {
                if let Extent::Chunk { id, .. } = e
                    && !index.has_chunk(id)?
                {
                    all = false;
                    break;
                }
            }
            if !all {
                dropped = true;
                continue;
            }
        }
        table.rows.insert(
            p,
            PlaceholderRow {
                dev: dev as u64,
                ino: ino as u64,
                btime_ns: btime,
                size: size as u64,
                mtime_ns: mtime,
                extents,
            },
        );
    }
    table.current = !verify && !dropped;
    Ok(table)
}

fn store_placeholders(path: &Path, rows: &[(Vec<u8>, PlaceholderRow)], gc_gen: i64) -> Result<()> {
    let what = || format!("writing placeholder table {}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(what(), e))?;
    }
    let tmp = path.with_extension("db.new");
    let _ = std::fs::remove_file(&tmp);
    let mut conn = Connection::open(&tmp).map_err(|e| Error::from(e).context(what()))?;
    let tx = conn
        .transaction()
        .map_err(|e| Error::from(e).context(what()))?;
    tx.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT;
         CREATE TABLE placeholders (
           path BLOB PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
           btime INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
           extents BLOB NOT NULL
         ) STRICT, WITHOUT ROWID;",
    )
    .map_err(|e| Error::from(e).context(what()))?;
    tx.execute(
        "INSERT INTO meta VALUES ('version', ?1), ('gc-generation', ?2)",
        params![PLACEHOLDERS_VERSION, gc_gen],
    )
    .map_err(|e| Error::from(e).context(what()))?;
    {
        let mut ins = tx
            .prepare("INSERT OR REPLACE INTO placeholders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .map_err(|e| Error::from(e).context(what()))?;
        for (p, r) in rows {
            ins.execute(params![
                p,
                r.dev as i64,
                r.ino as i64,
                r.btime_ns,
                r.size as i64,
                r.mtime_ns,
                encode_extents(&r.extents)
            ])
            .map_err(|e| Error::from(e).context(what()))?;
        }
    }
    tx.commit().map_err(|e| Error::from(e).context(what()))?;
    drop(conn);
    let f = std::fs::File::open(&tmp).map_err(|e| Error::io(what(), e))?;
    f.sync_all().map_err(|e| Error::io(what(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(what(), e))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Extents as bytes: per extent a tag (0 chunk: `len` u32 LE, 32-byte id; 1 hole: `len` u64 LE).
pub(crate) fn encode_extents(extents: &[Extent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(extents.len() * 37);
    for e in extents {
        match e {
            Extent::Chunk { len, id } => {
                out.push(0);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&id.0);
            }
            Extent::Hole { len } => {
                out.push(1);
                out.extend_from_slice(&len.to_le_bytes());
            }
            // Content never goes into this unencrypted table (ingest keeps no inline content
            // in hollow mode): a lone tag 2 does not decode, so such a row would be ignored.
            Extent::Inline { .. } => out.push(2),
        }
    }
    out
}

pub(crate) fn decode_extents(mut b: &[u8]) -> Option<Vec<Extent>> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = b.split_first() {
        match tag {
            0 if rest.len() >= 36 => {
                let len = u32::from_le_bytes(rest[..4].try_into().ok()?);
                let id = ChunkId(rest[4..36].try_into().ok()?);
                out.push(Extent::Chunk { len, id });
                b = &rest[36..];
            }
            1 if rest.len() >= 8 => {
                let len = u64::from_le_bytes(rest[..8].try_into().ok()?);
                out.push(Extent::Hole { len });
                b = &rest[8..];
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Does the filesystem of `dir` report birth times? Hollow mode needs them.
pub fn check_btime(dir: &Path) -> Result<()> {
    let stx = rustix::fs::statx(rustix::fs::CWD, dir, AtFlags::empty(), StatxFlags::BTIME)
        .map_err(|e| Error::io(format!("statx {}", dir.display()), e.into()))?;
    if StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::BTIME) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "staging mode hollow needs a filesystem that reports file birth times (statx \
                 STATX_BTIME), and the one holding {} does not; use ext4, xfs or btrfs, or \
                 staging-mode keep or purge",
                dir.display()
            ),
        ))
    }
}

/// A staged regular file, as `statx` saw it.
#[derive(Debug, Clone)]
struct Staged {
    path: Vec<u8>,
    full: PathBuf,
    dev: u64,
    ino: u64,
    btime_ns: Option<i64>,
    size: u64,
    blocks: u64,
    mtime_ns: i64,
    mtime: Timespec,
    atime: Timespec,
}

fn ns(t: &rustix::fs::StatxTimestamp) -> i64 {
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(t.tv_nsec))
}

/// Walk `dir` without following symlinks; call `f(relative path, full path, statx)`.
pub(crate) fn walk_tree(
    dir: &Path,
    rel: &[u8],
    f: &mut dyn FnMut(&[u8], &Path, &rustix::fs::Statx),
) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    // statx relative to the directory: no walk of the whole path from the root for each name.
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    for name in names {
        let full = dir.join(&name);
        let mut path = rel.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        let stx = rustix::fs::statx(
            &fd,
            name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS | StatxFlags::BTIME,
        )?;
        f(&path, &full, &stx);
        if u32::from(stx.stx_mode) & 0o170000 == 0o040000 {
            walk_tree(&full, &path, f)?;
        }
    }
    Ok(())
}

/// Space a staging tree uses: `(apparent bytes of regular files, allocated bytes)`.
pub fn staging_usage(dir: &Path) -> Result<(u64, u64)> {
    let mut apparent = 0u64;
    let mut allocated = 0u64;
    walk_tree(dir, b"", &mut |_, _, stx| {
        if u32::from(stx.stx_mode) & 0o170000 == 0o100000 {
            apparent = apparent.saturating_add(stx.stx_size);
        }
        allocated = allocated.saturating_add(crate::server::staging_clean::allocated_bytes(stx));
    })
    .map_err(|e| Error::io(format!("measuring staging {}", dir.display()), e))?;
    Ok((apparent, allocated))
}

/// Free bytes for an unprivileged writer on the filesystem of `dir`.
pub fn free_space(dir: &Path) -> Result<u64> {
    let v = rustix::fs::statvfs(dir)
        .map_err(|e| Error::io(format!("statvfs {}", dir.display()), e.into()))?;
    Ok(v.f_bavail.saturating_mul(v.f_frsize))
}

/// Empty `dir` (the directory itself stays). Symlinks are removed, never followed.
pub fn purge(dir: &Path) -> Result<u64> {
    let mut removed = 0;
    for entry in
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("purging {}", dir.display()), e))?
    {
        let entry = entry.map_err(|e| Error::io(format!("purging {}", dir.display()), e))?;
        let p = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let r = if is_dir {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| Error::io(format!("purging {}", p.display()), e))?;
        removed += 1;
    }
    Ok(removed)
}

/// What hollowing did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HollowReport {
    /// Files whose content was replaced by a placeholder.
    pub hollowed: u64,
    /// Placeholders that were already there, untouched, and stay.
    pub kept: u64,
    /// Files removed because their content is unknown (they will be sent again).
    pub removed: u64,
    /// Files left whole because `keep-basis` names them.
    pub kept_whole: u64,
    /// Problems, one line each.
    pub errors: Vec<String>,
    /// Staging after hollowing, `(apparent, allocated)` bytes, measured by the same walk, which
    /// also took every privileged `user.rsync.*` name off (see
    /// [`crate::server::staging_state`]); `None` when that failed.
    #[serde(skip)]
    pub usage: Option<(u64, u64)>,
}

/// After a committed ingest: make every regular file of `dir` a placeholder and write the new
/// table to `table_path`. `old` is the table the ingest used, `ingested` the files whose content
/// it stored. A file that is neither its own untouched placeholder nor exactly the file the
/// ingest read is removed: its content is not known to be in the repository. A file the ingest
/// read whose path matches `keep_basis` stays whole (it is the basis of the next delta).
pub fn hollow(
    dir: &Path,
    old: &Placeholders,
    ingested: Vec<IngestedFile>,
    keep_basis: &[BasisPattern],
    table_path: &Path,
    gc_generation: i64,
) -> Result<HollowReport> {
    let mut report = HollowReport::default();
    let ingested: HashMap<Vec<u8>, IngestedFile> =
        ingested.into_iter().map(|f| (f.path.clone(), f)).collect();
    let mut files: Vec<Staged> = Vec::new();
    // Untouched placeholders of one link each (an unchanged file: nearly all of them on a
    // quiet night), kept by path alone: their rows are the old table's.
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut tally = crate::server::staging_state::Tally::default();
    tally.strip(dir);
    walk_tree(dir, b"", &mut |path, full, stx| {
        tally.visit(full, stx);
        if u32::from(stx.stx_mode) & 0o170000 != 0o100000 {
            return;
        }
        // An empty file has no content to hide and is read as what it is: it stays, without
        // a row (removed, it was sent again on every run).
        if stx.stx_size == 0 {
            return;
        }
        let has_btime = StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::BTIME);
        let identity = (
            rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor),
            stx.stx_ino,
            stx.stx_size,
            ns(&stx.stx_mtime),
        );
        // An untouched placeholder (the common case: an unchanged file) is no special file:
        // those never get a row, and rsync replaces a file of another type by a new inode.
        let untouched = stx.stx_blocks == 0
            && old.rows.get(path).is_some_and(|r| {
                (r.dev, r.ino, r.size, r.mtime_ns) == identity
                    && (has_btime && r.btime_ns == ns(&stx.stx_btime))
            });
        if untouched && stx.stx_nlink == 1 && !ingested.contains_key(path) {
            kept.push(path.to_vec());
            return;
        }
        // A fake-super special file (symlink, device...) is tiny and stays as it is.
        if !untouched
            && let Ok(v) = xattr_value(full, FAKE_SUPER_STAT)
            && let Some((mode, ..)) = v.as_deref().and_then(parse_fake_super_stat)
            && mode & 0o170000 != 0o100000
        {
            return;
        }
        files.push(Staged {
            path: path.to_vec(),
            full: full.to_owned(),
            dev: rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor),
            ino: stx.stx_ino,
            btime_ns: has_btime.then(|| ns(&stx.stx_btime)),
            size: stx.stx_size,
            blocks: stx.stx_blocks,
            mtime_ns: ns(&stx.stx_mtime),
            mtime: Timespec {
                tv_sec: stx.stx_mtime.tv_sec,
                tv_nsec: stx.stx_mtime.tv_nsec as _,
            },
            atime: Timespec {
                tv_sec: stx.stx_atime.tv_sec,
                tv_nsec: stx.stx_atime.tv_nsec as _,
            },
        });
    })
    .map_err(|e| Error::io(format!("hollowing staging {}", dir.display()), e))?;

    // Hard links: one inode, several paths; decide per inode, write a row per path.
    let mut groups: HashMap<(u64, u64), Vec<Staged>> = HashMap::new();
    for f in files {
        groups.entry((f.dev, f.ino)).or_default().push(f);
    }
    report.kept = kept.len() as u64;
    let mut rows: Vec<(Vec<u8>, PlaceholderRow)> = Vec::new();
    for (_, group) in groups {
        let first = &group[0];
        let untouched = group.iter().find_map(|f| {
            old.rows.get(&f.path).filter(|r| {
                f.blocks == 0
                    && (r.dev, r.ino, r.size, r.mtime_ns) == (f.dev, f.ino, f.size, f.mtime_ns)
                    && Some(r.btime_ns) == f.btime_ns
            })
        });
        let read = group.iter().find_map(|f| {
            ingested.get(&f.path).filter(|i| {
                (i.dev, i.ino, i.size, i.mtime_ns) == (f.dev, f.ino, f.size, f.mtime_ns)
            })
        });
        let whole = read.is_some()
            && first.blocks > 0
            && group.iter().any(|f| any_matches(keep_basis, &f.path));
        let row = if whole {
            report.kept_whole += 1;
            continue;
        } else if let Some(r) = read {
            match make_placeholder(first) {
                Ok(btime_ns) => {
                    report.hollowed += 1;
                    // Every path of the inode counted its blocks; a placeholder has none.
                    let blocks: u64 = group.iter().map(|f| f.blocks.saturating_mul(512)).sum();
                    tally.allocated = tally.allocated.saturating_sub(blocks);
                    Some(PlaceholderRow {
                        dev: first.dev,
                        ino: first.ino,
                        btime_ns,
                        size: first.size,
                        mtime_ns: first.mtime_ns,
                        extents: r.extents.clone(),
                    })
                }
                Err(e) => {
                    report.errors.push(format!("{}: {e}", first.full.display()));
                    None
                }
            }
        } else if let Some(r) = untouched {
            report.kept += 1;
            Some(r.clone())
        } else {
            None
        };
        match row {
            Some(row) => rows.extend(group.iter().map(|f| (f.path.clone(), row.clone()))),
            None => {
                for f in &group {
                    match std::fs::remove_file(&f.full) {
                        Ok(()) => {
                            report.removed += 1;
                            tally.apparent = tally.apparent.saturating_sub(f.size);
                            tally.allocated =
                                tally.allocated.saturating_sub(f.blocks.saturating_mul(512));
                        }
                        Err(e) => report
                            .errors
                            .push(format!("removing {}: {e}", f.full.display())),
                    }
                }
            }
        }
    }
    // An unchanged tree leaves the table as it was: no rewrite (and no fsync) of every row.
    let same = old.current
        && report.hollowed == 0
        && report.removed == 0
        && report.errors.is_empty()
        && kept.len() + rows.len() == old.rows.len()
        && rows.iter().all(|(p, _)| old.rows.contains_key(p));
    if !same {
        rows.extend(
            kept.into_iter()
                .filter_map(|p| old.rows.get(&p).cloned().map(|row| (p, row))),
        );
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        store_placeholders(table_path, &rows, gc_generation)?;
    }
    report.usage = tally
        .failed
        .is_none()
        .then_some((tally.apparent, tally.allocated));
    Ok(report)
}

/// Replace the content of `f` by a hole of the same size, keep its mtime; the new birth time.
fn make_placeholder(f: &Staged) -> std::io::Result<i64> {
    let fd = rustix::fs::open(
        &f.full,
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
    )?;
    rustix::fs::ftruncate(&fd, 0)?;
    // No fsync: after a crash the file either still has blocks (read as content next time) or
    // is a hole without a table row (removed and sent again); neither is wrong content.
    rustix::fs::ftruncate(&fd, f.size)?;
    rustix::fs::futimens(
        &fd,
        &Timestamps {
            last_access: f.atime,
            last_modification: f.mtime,
        },
    )?;
    let stx = rustix::fs::statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )?;
    if stx.stx_blocks != 0 || ns(&stx.stx_mtime) != f.mtime_ns || stx.stx_size != f.size {
        return Err(std::io::Error::other("placeholder did not come out empty"));
    }
    if !StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::BTIME) {
        return Err(std::io::Error::other("no birth time"));
    }
    Ok(ns(&stx.stx_btime))
}

fn xattr_value(path: &Path, name: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let cname = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "staging_tests.rs"]
mod tests;
