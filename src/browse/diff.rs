//! What changed between two sessions: a merge walk of their manifests, which are both sorted in
//! manifest order. The second session is read by a helper thread into a small bounded channel,
//! so at most a few hundred entries of it are in memory besides one manifest chunk of each.
//!
//! Content is compared by extent lists (chunk ids and holes), never by reading data: equal
//! lists mean equal content; different lists mean changed content (or the same bytes cut
//! differently, which only a change of chunker parameters can cause). One exception: a small
//! file kept inline (manifest version 2) on one side and in a chunk on the other (a session
//! from before inline content, or from `hollow` staging) is compared by its bytes.

use std::cmp::Ordering;
use std::ops::ControlFlow;

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::{Body, Entry, Extent, MAX_INLINE_LEN, cmp_paths};
use crate::ids::SessionId;
use crate::reader::{LostChunk, SessionReader};

/// One aspect in which two entries of the same path differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aspect {
    /// The kind (file, directory, symlink...).
    Type,
    /// A file's content (its extent list).
    Content,
    /// Permission bits.
    Mode,
    /// Numeric owner or group.
    Owner,
    /// Modification time.
    Mtime,
    /// Extended attributes other than ACLs.
    Xattrs,
    /// POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`).
    Acls,
    /// A symlink's or hard link's target.
    Target,
    /// A device's number.
    Device,
    /// Why an entry could not be backed up.
    Reason,
}

/// What happened to a path from the first session to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Only in the second session.
    Added,
    /// Only in the first.
    Removed,
    /// In both, different.
    Changed,
}

/// One difference.
#[derive(Debug, Clone)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The entry in the first session (none when added).
    pub old: Option<Entry>,
    /// The entry in the second session (none when removed).
    pub new: Option<Entry>,
    /// For a change, how the entries differ (never empty).
    pub aspects: Vec<Aspect>,
}

impl Change {
    /// The path that changed.
    pub fn path(&self) -> &[u8] {
        match (&self.new, &self.old) {
            (Some(e), _) | (None, Some(e)) => &e.path,
            (None, None) => b"",
        }
    }
}

/// Counts of a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Paths only in the second session.
    pub added: u64,
    /// Paths only in the first.
    pub removed: u64,
    /// Paths in both that differ.
    pub changed: u64,
    /// Of the changed, those whose content differs.
    pub content_changed: u64,
    /// Paths in both, equal.
    pub unchanged: u64,
    /// Logical bytes of the added files.
    pub added_bytes: u64,
    /// Logical bytes of the removed files.
    pub removed_bytes: u64,
    /// Logical size of the second session's files minus the first's, over the compared paths.
    pub size_delta: i64,
}

/// The result of [`diff`]: counts, and the manifest chunks that could not be read (the
/// entries they described show up as added or removed, or not at all).
#[derive(Debug, Default)]
pub struct Diff {
    /// Counts.
    pub summary: Summary,
    /// Lost manifest chunks, with their session.
    pub lost: Vec<(SessionId, LostChunk)>,
}

/// Logical size of a file entry, 0 for anything else.
pub fn entry_size(entry: &Entry) -> u64 {
    match entry.body {
        Body::File { size, .. } => size,
        _ => 0,
    }
}

fn is_acl(name: &[u8]) -> bool {
    name == b"system.posix_acl_access" || name == b"system.posix_acl_default"
}

/// How `a` and `b` (entries of the same path) differ; empty when they do not.
pub fn aspects(a: &Entry, b: &Entry) -> Vec<Aspect> {
    let mut out = Vec::new();
    match (&a.body, &b.body) {
        (Body::File { extents: x, .. }, Body::File { extents: y, .. }) => {
            if x != y {
                out.push(Aspect::Content);
            }
        }
        (Body::Symlink { target: x }, Body::Symlink { target: y })
        | (Body::Hardlink { target: x }, Body::Hardlink { target: y }) => {
            if x != y {
                out.push(Aspect::Target);
            }
        }
        (Body::CharDev { rdev: x }, Body::CharDev { rdev: y })
        | (Body::BlockDev { rdev: x }, Body::BlockDev { rdev: y }) => {
            if x != y {
                out.push(Aspect::Device);
            }
        }
        (Body::Unreadable { message: x }, Body::Unreadable { message: y }) => {
            if x != y {
                out.push(Aspect::Reason);
            }
        }
        (x, y) if std::mem::discriminant(x) == std::mem::discriminant(y) => {}
        _ => out.push(Aspect::Type),
    }
    let (m, n) = (&a.meta, &b.meta);
    if m.mode != n.mode {
        out.push(Aspect::Mode);
    }
    if (m.uid, m.gid) != (n.uid, n.gid) {
        out.push(Aspect::Owner);
    }
    if (m.mtime_sec, m.mtime_nsec) != (n.mtime_sec, n.mtime_nsec) {
        out.push(Aspect::Mtime);
    }
    let split = |x: &[(Vec<u8>, Vec<u8>)], acl: bool| -> Vec<(Vec<u8>, Vec<u8>)> {
        x.iter()
            .filter(|(name, _)| is_acl(name) == acl)
            .cloned()
            .collect()
    };
    if split(&m.xattrs, false) != split(&n.xattrs, false) {
        out.push(Aspect::Xattrs);
    }
    if split(&m.xattrs, true) != split(&n.xattrs, true) {
        out.push(Aspect::Acls);
    }
    out
}

/// What the thread reading the second session sends.
enum Msg {
    Entry(Entry),
    Lost(LostChunk),
    /// The walk failed: the main side stops at once rather than take the rest as removed.
    Failed(Error),
}

/// Compare sessions `a` and `b` below `prefix` (empty: everything), calling `visit` with each
/// difference in manifest order. A damaged manifest chunk of either session does not end the
/// diff: it is listed in the result. `NotFound` for a session that does not exist.
pub fn diff(
    reader: &SessionReader,
    a: SessionId,
    b: SessionId,
    prefix: &[u8],
    visit: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<Diff> {
    // Fail early and clearly on a missing session rather than from inside the thread.
    reader.session(a)?;
    reader.session(b)?;
    let (tx, rx) = crossbeam_channel::bounded::<Msg>(256);
    std::thread::scope(|scope| {
        let helper = scope.spawn(move || {
            let walked = reader.walk_salvaging(
                b,
                &mut |entry| {
                    if !super::under(&entry.path, prefix) {
                        return Ok(ControlFlow::Continue(()));
                    }
                    // A closed channel means the main side stopped (with an error of its own).
                    Ok(match tx.send(Msg::Entry(entry)) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    })
                },
                &mut |lost| {
                    let _ = tx.send(Msg::Lost(lost));
                    Ok(())
                },
            );
            if let Err(e) = walked {
                let _ = tx.send(Msg::Failed(e));
            }
        });
        let mut merge = Merge {
            reader,
            rx,
            pending: None,
            out: Diff::default(),
            b,
        };
        let mut lost_a = Vec::new();
        let walked = reader.walk_salvaging(
            a,
            &mut |old| {
                if !super::under(&old.path, prefix) {
                    return Ok(ControlFlow::Continue(()));
                }
                merge.old(old, visit)?;
                Ok(ControlFlow::Continue(()))
            },
            &mut |lost| {
                lost_a.push((a, lost));
                Ok(())
            },
        );
        let result = walked.and_then(|()| merge.rest(visit));
        // Unblock the helper whatever happened, then hear its outcome.
        let Merge { rx, mut out, .. } = merge;
        drop(rx);
        if helper.join().is_err() {
            return Err(Error::new(ErrorKind::Internal, "the diff reader panicked"));
        }
        result?;
        lost_a.append(&mut out.lost);
        out.lost = lost_a;
        Ok(out)
    })
}

/// Whether `a` and `b`, file entries whose extent lists differ, hold the same bytes because one
/// keeps its content inline and the other in chunks. Only files up to the inline limit are
/// read; a chunk that cannot be read counts as a change.
fn same_small_content(reader: &SessionReader, a: &Entry, b: &Entry) -> bool {
    let (
        Body::File {
            size: sa,
            extents: x,
        },
        Body::File {
            size: sb,
            extents: y,
        },
    ) = (&a.body, &b.body)
    else {
        return false;
    };
    let inline_on_one_side = x.iter().any(Extent::is_inline) != y.iter().any(Extent::is_inline);
    if sa != sb || *sa > MAX_INLINE_LEN as u64 || !inline_on_one_side {
        return false;
    }
    let bytes = |extents: &[Extent]| -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for e in extents {
            match e {
                Extent::Inline { data } => out.extend_from_slice(data),
                Extent::Hole { len } => out.resize(out.len() + *len as usize, 0),
                Extent::Chunk { id, len } => {
                    let data = reader.read_chunk(id).ok()?;
                    if data.len() != *len as usize {
                        return None;
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
        Some(out)
    };
    matches!((bytes(x), bytes(y)), (Some(p), Some(q)) if p == q)
}

/// The merge state: the next entry of the second session not yet matched.
struct Merge<'r> {
    reader: &'r SessionReader,
    rx: crossbeam_channel::Receiver<Msg>,
    pending: Option<Entry>,
    out: Diff,
    b: SessionId,
}

impl Merge<'_> {
    /// The next entry of the second session, noting lost chunks on the way.
    fn next(&mut self) -> Result<Option<Entry>> {
        if let Some(e) = self.pending.take() {
            return Ok(Some(e));
        }
        loop {
            match self.rx.recv() {
                Err(_) => return Ok(None),
                Ok(Msg::Entry(e)) => return Ok(Some(e)),
                Ok(Msg::Lost(l)) => self.out.lost.push((self.b, l)),
                Ok(Msg::Failed(e)) => return Err(e),
            }
        }
    }

    fn added(&mut self, new: Entry, visit: &mut dyn FnMut(Change) -> Result<()>) -> Result<()> {
        let s = &mut self.out.summary;
        s.added += 1;
        s.added_bytes += entry_size(&new);
        s.size_delta += entry_size(&new) as i64;
        visit(Change {
            kind: ChangeKind::Added,
            old: None,
            new: Some(new),
            aspects: Vec::new(),
        })
    }

    /// An entry of the first session: settle every entry of the second that sorts before it.
    fn old(&mut self, old: Entry, visit: &mut dyn FnMut(Change) -> Result<()>) -> Result<()> {
        while let Some(new) = self.next()? {
            match cmp_paths(&new.path, &old.path) {
                Ordering::Less => self.added(new, visit)?,
                Ordering::Equal => {
                    let s = &mut self.out.summary;
                    s.size_delta += entry_size(&new) as i64 - entry_size(&old) as i64;
                    let mut aspects = aspects(&old, &new);
                    if aspects.contains(&Aspect::Content)
                        && same_small_content(self.reader, &old, &new)
                    {
                        aspects.retain(|a| *a != Aspect::Content);
                    }
                    if aspects.is_empty() {
                        s.unchanged += 1;
                        return Ok(());
                    }
                    s.changed += 1;
                    if aspects.contains(&Aspect::Content) {
                        s.content_changed += 1;
                    }
                    return visit(Change {
                        kind: ChangeKind::Changed,
                        old: Some(old),
                        new: Some(new),
                        aspects,
                    });
                }
                Ordering::Greater => {
                    self.pending = Some(new);
                    break;
                }
            }
        }
        let s = &mut self.out.summary;
        s.removed += 1;
        s.removed_bytes += entry_size(&old);
        s.size_delta -= entry_size(&old) as i64;
        visit(Change {
            kind: ChangeKind::Removed,
            old: Some(old),
            new: None,
            aspects: Vec::new(),
        })
    }

    /// After the first session ends, everything left in the second was added.
    fn rest(&mut self, visit: &mut dyn FnMut(Change) -> Result<()>) -> Result<()> {
        while let Some(new) = self.next()? {
            self.added(new, visit)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
