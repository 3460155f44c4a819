//! Path rules and the order of the entry stream (format-spec/manifest.md "Paths", "Order"),
//! checked the same way by the builder and the reader. Memory stays bounded by one path: the
//! open directories are exactly the component prefixes of the innermost one.

use std::cmp::Ordering;

use super::entry::Problem;
use super::{Extent, MAX_EXTENTS_PER_ENTRY, entry::extents_len};

/// Longest path, in bytes.
pub(super) const MAX_PATH_LEN: usize = 65536;

/// Why `path` breaks the "Paths" rules, if it does.
pub(super) fn path_problem(path: &[u8], is_root: bool) -> Option<&'static str> {
    if is_root {
        return (!path.is_empty()).then_some("the root entry must have the empty path");
    }
    if path.is_empty() {
        return Some("only the root entry may have the empty path");
    }
    if path.len() > MAX_PATH_LEN {
        return Some("longer than 65536 bytes");
    }
    if path.contains(&0) {
        return Some("contains a NUL byte");
    }
    if path.starts_with(b"/") {
        return Some("starts with '/' (must be relative)");
    }
    if path.ends_with(b"/") {
        return Some("ends with '/'");
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" => return Some("has an empty component ('//')"),
            b"." => return Some("has a '.' component"),
            b".." => return Some("has a '..' component"),
            _ => {}
        }
    }
    None
}

/// `a` is `b` or a directory above it (the empty path is above everything).
fn is_component_prefix(a: &[u8], b: &[u8]) -> bool {
    a.is_empty() || a == b || (b.starts_with(a) && b[a.len()] == b'/')
}

/// Manifest order of two paths: component by component, each by its bytes.
pub fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    let mut a = a.split(|&c| c == b'/').filter(|c| !c.is_empty());
    let mut b = b.split(|&c| c == b'/').filter(|c| !c.is_empty());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

/// Lossy, quoted form of a path for messages; a path of more than 512 bytes is shortened so
/// that a message stays readable.
pub(super) fn show(path: &[u8]) -> String {
    const SHOWN: usize = 512;
    if path.is_empty() {
        "(root)".into()
    } else if path.len() > SHOWN {
        format!(
            "{:?}... ({} bytes)",
            String::from_utf8_lossy(&path[..SHOWN]),
            path.len()
        )
    } else {
        format!("{:?}", String::from_utf8_lossy(path))
    }
}

/// A file whose extents do not yet add up to its size: continuations must follow.
struct Pending {
    path: Vec<u8>,
    size: u64,
    sum: u64,
    last_count: usize,
}

/// The order state of one entry stream.
#[derive(Default)]
pub(super) struct OrderCheck {
    started: bool,
    /// Path of the innermost open directory; its component prefixes are the other open ones.
    open: Vec<u8>,
    /// Name of the last entry seen directly inside `open`.
    last_child: Option<Vec<u8>>,
    pending: Option<Pending>,
}

impl OrderCheck {
    /// A non-continuation entry at `path`.
    pub(super) fn entry(
        &mut self,
        path: &[u8],
        is_dir: bool,
        hardlink_target: Option<&[u8]>,
    ) -> Result<(), Problem> {
        if let Some(p) = &self.pending {
            return Err(format!(
                "file {} has extents for {} of its {} bytes, but the entry after it is not its \
                 continuation",
                show(&p.path),
                p.sum,
                p.size
            ));
        }
        if !self.started {
            if !path.is_empty() || !is_dir {
                return Err("the first entry must be the root directory (empty path)".into());
            }
            self.started = true;
            return Ok(());
        }
        if let Some(problem) = path_problem(path, false) {
            return Err(format!("bad path: {problem}"));
        }
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], path),
        };
        if !is_component_prefix(parent, &self.open) {
            return Err(format!(
                "out of order: its parent {} is not a directory entry on the current branch \
                 (open directory: {})",
                show(parent),
                show(&self.open)
            ));
        }
        if parent.len() < self.open.len() {
            // Leave the directories below `parent`; the one directly inside it becomes the
            // last child seen there.
            let skip = if parent.is_empty() {
                0
            } else {
                parent.len() + 1
            };
            let child = self.open[skip..]
                .split(|&b| b == b'/')
                .next()
                .unwrap_or(&[]);
            self.last_child = Some(child.to_vec());
            self.open.truncate(parent.len());
        }
        if let Some(last) = &self.last_child
            && name <= last.as_slice()
        {
            return Err(format!(
                "out of order: siblings must be strictly increasing by name, but it comes after \
                 {}",
                show(last)
            ));
        }
        if let Some(target) = hardlink_target {
            if let Some(problem) = path_problem(target, false) {
                return Err(format!("hard link target {}: {problem}", show(target)));
            }
            if cmp_paths(target, path) != Ordering::Less {
                return Err(format!(
                    "hard link target {} does not come before the link",
                    show(target)
                ));
            }
            if is_component_prefix(target, path) {
                return Err(format!(
                    "hard link target {} is a directory above the link",
                    show(target)
                ));
            }
        }
        if is_dir {
            self.open.clear();
            self.open.extend_from_slice(path);
            self.last_child = None;
        } else {
            self.last_child = Some(name.to_vec());
        }
        Ok(())
    }

    /// The extents of a kind-2 entry just accepted by [`OrderCheck::entry`].
    pub(super) fn file(
        &mut self,
        path: &[u8],
        size: u64,
        extents: &[Extent],
    ) -> Result<(), Problem> {
        let sum = extents_len(extents)?;
        if sum > size {
            return Err(format!(
                "extents add up to {sum} bytes, more than the size {size}"
            ));
        }
        if sum < size {
            self.pending = Some(Pending {
                path: path.to_vec(),
                size,
                sum,
                last_count: extents.len(),
            });
        }
        Ok(())
    }

    /// A kind-9 entry; `split` when it is in a version 3 chunk, where it may continue an entry
    /// of fewer than 32768 extents.
    pub(super) fn continued(
        &mut self,
        path: &[u8],
        extents: &[Extent],
        split: bool,
    ) -> Result<(), Problem> {
        let Some(p) = &mut self.pending else {
            return Err("a continuation that does not follow an incomplete file".into());
        };
        if p.path != path {
            return Err(format!(
                "a continuation of a different path than the file before it ({})",
                show(&p.path)
            ));
        }
        if p.last_count != MAX_EXTENTS_PER_ENTRY && !split {
            return Err(format!(
                "a continuation after an entry of only {} extents (only a full entry of {} \
                 continues, outside a version 3 chunk)",
                p.last_count, MAX_EXTENTS_PER_ENTRY
            ));
        }
        if extents.is_empty() {
            return Err("a continuation with no extents".into());
        }
        let sum = extents_len(extents)?
            .checked_add(p.sum)
            .filter(|&s| s <= p.size)
            .ok_or_else(|| format!("extents add up to more than the size {}", p.size))?;
        p.sum = sum;
        p.last_count = extents.len();
        if sum == p.size {
            self.pending = None;
        }
        Ok(())
    }

    /// Start again after a gap (a manifest chunk that could not be read): `path` is the first
    /// entry after it. Its ancestors count as open directories (their entries may have been
    /// in the lost chunk), nothing is pending, and the entry is then checked as usual.
    pub(super) fn resync(&mut self, path: &[u8]) {
        self.started = true;
        self.pending = None;
        self.open.clear();
        if let Some(i) = path.iter().rposition(|&b| b == b'/') {
            self.open.extend_from_slice(&path[..i]);
        }
        self.last_child = None;
    }

    /// Drop a file waiting for continuations (its continuations were in a lost chunk).
    pub(super) fn drop_pending(&mut self) {
        self.pending = None;
    }

    /// Whether a file still waits for continuations.
    pub(super) fn file_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// End of the stream.
    pub(super) fn finish(&self) -> Result<(), Problem> {
        if !self.started {
            return Err("the manifest has no entries (not even the root directory)".into());
        }
        if let Some(p) = &self.pending {
            return Err(format!(
                "the manifest ends inside file {}: extents for {} of its {} bytes",
                show(&p.path),
                p.sum,
                p.size
            ));
        }
        Ok(())
    }
}
