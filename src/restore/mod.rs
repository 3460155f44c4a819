//! Restore a session (or some of its paths) into a target directory, byte for byte with its
//! metadata, never writing outside the target.
//!
//! The manifest streams in once, in pre-order. One thread (the walker, [`tree`]) creates
//! directories, links and special files, and creates every regular file empty; worker threads
//! fill the regular files in parallel while the manifest keeps streaming. Everything is created
//! relative to open directory descriptors with no-follow flags ([`fsops`]), so neither a symlink
//! restored from the session nor one already in a non-empty target is ever traversed.

mod files;
mod fsops;
mod gaps;
mod tree;

use std::collections::HashSet;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::{Body, Extent, validate_path};
use crate::ids::SessionId;
use crate::index::ChunkKind;
use crate::ingest::PathError;
use crate::reader::{ChunkSource, find_entry, walk_source};

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The target directory (created if missing).
    pub target: PathBuf,
    /// Restore only these paths (and what is below them); empty means everything.
    pub paths: Vec<Vec<u8>>,
    /// Allow a non-empty target.
    pub allow_non_empty: bool,
    /// Restore numeric ownership (the binary sets this when running as root).
    pub restore_owner: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Entries restored.
    pub entries: u64,
    /// Regular files restored.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Paths that failed, with why; a range of paths lost with a damaged manifest chunk is
    /// one error whose path is `FIRST .. LAST`.
    pub errors: Vec<PathError>,
    /// Manifest chunks that could not be read: the entries they described are not restored.
    pub lost_manifest_chunks: u64,
    /// The target's file system filled up: the restore stopped there (why, in words).
    pub disk_full: Option<String>,
}

/// Restore `session` as `opts` says. Fails outright for a bad target; a damaged file is listed in
/// `errors` and the rest is still restored.
pub fn restore(
    reader: &dyn ChunkSource,
    session: SessionId,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    restore_with_progress(reader, session, opts, &crate::progress::NoProgress)
}

/// [`restore`], reporting the regular files' bytes as they are written (one phase,
/// `restoring`; its total is the session's bytes for a full restore, unknown for a subset).
pub fn restore_with_progress(
    reader: &dyn ChunkSource,
    session: SessionId,
    opts: &RestoreOptions,
    progress: &dyn crate::progress::Progress,
) -> Result<RestoreReport> {
    let selection = Selection::new(&opts.paths)?;
    let target = inspect_target(opts)?;
    reader.session_root(session)?;
    let total = if selection.is_all() {
        reader.session_bytes(session)
    } else {
        None
    };
    progress.start("restoring", total);
    // A subset restore reads the manifest twice: first to refuse a path that is not in the
    // session before anything is written, and to learn which hard-link targets outside the
    // subset must have their content restored at a selected link.
    let wanted_link_targets = if selection.is_all() {
        HashSet::new()
    } else {
        prescan(reader, session, &selection)?
    };
    let root = target.open(opts)?;
    tree::run(
        reader,
        session,
        opts,
        &selection,
        wanted_link_targets,
        root,
        progress,
    )
}

/// Write the content of the regular file `path` of `session` to `out`.
pub fn cat(
    reader: &dyn ChunkSource,
    session: SessionId,
    path: &[u8],
    out: &mut dyn Write,
) -> Result<()> {
    let path = normalize(path)?;
    let shown = display(&path);
    if path.is_empty() {
        return Err(Error::invalid(format!(
            "the root of session {session} is a directory, not a file"
        )));
    }
    let not_found = || {
        Error::new(
            ErrorKind::NotFound,
            format!("{shown} is not in session {session}"),
        )
    };
    let entry = find_entry(reader, session, &path)?.ok_or_else(not_found)?;
    let body = match entry.body {
        Body::Hardlink { target } => {
            let linked = find_entry(reader, session, &target)?;
            match linked.map(|e| e.body) {
                Some(body @ Body::File { .. }) => body,
                _ => {
                    return Err(Error::corrupt(format!(
                        "{shown} in session {session} is a hard link to {}, which the \
                         manifest does not hold as a regular file",
                        display(&target)
                    )));
                }
            }
        }
        body => body,
    };
    let extents = match body {
        Body::File { extents, .. } => extents,
        Body::Dir => {
            return Err(Error::invalid(format!(
                "{shown} in session {session} is a directory, not a file"
            )));
        }
        Body::Unreadable { message } => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{shown} in session {session} was not backed up: {message}"),
            ));
        }
        other => {
            return Err(Error::invalid(format!(
                "{shown} in session {session} is a {}, not a regular file",
                kind_name(&other)
            )));
        }
    };
    let write_err = |e| Error::io(format!("writing the content of {shown}"), e);
    let zeros = [0u8; 64 << 10];
    for extent in &extents {
        match extent {
            Extent::Chunk { len, id } => {
                let data = reader
                    .read_chunk_of(id, ChunkKind::Data)
                    .map_err(|e| e.context(format!("{shown} in session {session}")))?;
                if data.len() != *len as usize {
                    return Err(Error::corrupt(format!(
                        "{shown} in session {session}: chunk {id} holds {} bytes but the \
                         manifest says {len}",
                        data.len()
                    )));
                }
                out.write_all(&data).map_err(write_err)?;
            }
            Extent::Inline { data } => out.write_all(data).map_err(write_err)?,
            Extent::Hole { len } => {
                let mut left = *len;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    out.write_all(&zeros[..n]).map_err(write_err)?;
                    left -= n as u64;
                }
            }
        }
    }
    out.flush().map_err(write_err)
}

/// A name for an entry's kind, for messages.
fn kind_name(body: &Body) -> &'static str {
    match body {
        Body::Dir => "directory",
        Body::File { .. } => "regular file",
        Body::Symlink { .. } => "symlink",
        Body::Hardlink { .. } => "hard link",
        Body::CharDev { .. } => "character device",
        Body::BlockDev { .. } => "block device",
        Body::Fifo => "fifo",
        Body::Socket => "socket",
        Body::Unreadable { .. } => "path that was not backed up",
    }
}

/// A session path for messages ("." for the root; non-UTF-8 bytes replaced).
pub(crate) fn display(path: &[u8]) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

/// A path as given by an administrator, in session form: no leading `/` or `./`, no trailing
/// `/`; the empty path (or `.`) means the root. Anything else invalid is refused.
fn normalize(path: &[u8]) -> Result<Vec<u8>> {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix(b"./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix(b"/") {
            p = rest;
        } else {
            break;
        }
    }
    while let Some(rest) = p.strip_suffix(b"/") {
        p = rest;
    }
    if p == b"." {
        p = b"";
    }
    if !p.is_empty() {
        validate_path(p, false).map_err(|e| {
            Error::invalid(format!(
                "{} is not a valid path in a session: {}",
                display(path),
                e.message()
            ))
        })?;
    }
    Ok(p.to_vec())
}

/// True when `path` is `root` or below it (the empty root holds everything).
pub(crate) fn is_under(path: &[u8], root: &[u8]) -> bool {
    root.is_empty()
        || path == root
        || (path.len() > root.len() && path.starts_with(root) && path[root.len()] == b'/')
}

/// Which paths a restore selects.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    /// Selected roots; empty means everything.
    roots: Vec<Vec<u8>>,
}

impl Selection {
    fn new(paths: &[Vec<u8>]) -> Result<Selection> {
        let mut roots = Vec::new();
        for path in paths {
            let p = normalize(path)?;
            if p.is_empty() {
                return Ok(Selection { roots: Vec::new() });
            }
            roots.push(p);
        }
        Ok(Selection { roots })
    }

    fn is_all(&self) -> bool {
        self.roots.is_empty()
    }

    /// The path is selected: it is, or is below, a selected path.
    pub(crate) fn selects(&self, path: &[u8]) -> bool {
        self.is_all() || self.roots.iter().any(|r| is_under(path, r))
    }

    /// The path is a directory above a selected path (to be created on the way to it).
    pub(crate) fn is_ancestor(&self, path: &[u8]) -> bool {
        self.roots
            .iter()
            .any(|r| r.as_slice() != path && is_under(r, path))
    }
}

/// Read the manifest once: every selected path must exist; returns the hard-link targets that
/// are not selected but are linked from a selected path.
fn prescan(
    reader: &dyn ChunkSource,
    session: SessionId,
    selection: &Selection,
) -> Result<HashSet<Vec<u8>>> {
    let mut found = vec![false; selection.roots.len()];
    let mut wanted = HashSet::new();
    let mut lost = 0;
    walk_source(
        reader,
        session,
        &mut |entry| {
            for (i, root) in selection.roots.iter().enumerate() {
                if entry.path == *root {
                    found[i] = true;
                }
            }
            if let Body::Hardlink { target } = &entry.body
                && selection.selects(&entry.path)
                && !selection.selects(target)
            {
                wanted.insert(target.clone());
            }
            Ok(ControlFlow::Continue(()))
        },
        Some(&mut |_| {
            lost += 1;
            Ok(())
        }),
    )?;
    // A path that may have been in a lost manifest chunk is not "not found": the restore
    // reports the lost range instead.
    if let Some(i) = found.iter().position(|f| !f)
        && lost == 0
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} is not in session {session}",
                display(&selection.roots[i])
            ),
        ));
    }
    Ok(wanted)
}

/// The state of the target before the restore.
enum TargetState {
    /// It does not exist: create it.
    Missing,
    /// An empty directory.
    Empty,
    /// A directory with something in it (allowed by the options).
    NonEmpty,
}

/// Refuse a target that is not a directory, or not empty without `allow_non_empty`.
fn inspect_target(opts: &RestoreOptions) -> Result<TargetState> {
    let shown = opts.target.display();
    match std::fs::metadata(&opts.target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TargetState::Missing),
        Err(e) => Err(Error::io(
            format!("examining the restore target {shown}"),
            e,
        )),
        Ok(m) if !m.is_dir() => Err(Error::new(
            ErrorKind::TargetNotDirectory,
            format!("the restore target {shown} exists and is not a directory"),
        )),
        Ok(_) => {
            let mut entries = std::fs::read_dir(&opts.target)
                .map_err(|e| Error::io(format!("listing the restore target {shown}"), e))?;
            if entries.next().is_none() {
                Ok(TargetState::Empty)
            } else if opts.allow_non_empty {
                Ok(TargetState::NonEmpty)
            } else {
                Err(Error::new(
                    ErrorKind::TargetNotEmpty,
                    format!(
                        "the restore target {shown} is not empty; restore into an empty or new \
                         directory (or allow a non-empty target explicitly)"
                    ),
                ))
            }
        }
    }
}

/// The opened target directory, and whether the session root's metadata may be applied to it
/// (only to a directory this restore created or found empty: never to an administrator's
/// existing directory).
pub(crate) struct TargetRoot {
    fd: std::os::fd::OwnedFd,
    fresh: bool,
}

impl TargetState {
    fn open(&self, opts: &RestoreOptions) -> Result<TargetRoot> {
        let shown = opts.target.display();
        if let TargetState::Missing = self {
            std::fs::create_dir_all(&opts.target)
                .map_err(|e| Error::io(format!("creating the restore target {shown}"), e))?;
        }
        // The target itself is the administrator's choice, so a symlink naming it is followed;
        // nothing below it ever is.
        let fd = rustix::fs::open(
            &opts.target,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening the restore target {shown}"), e.into()))?;
        Ok(TargetRoot {
            fd,
            fresh: !matches!(self, TargetState::NonEmpty),
        })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
