//! The JSON form of a manifest entry, shared by `ls --json`, `find --json` and `diff --json`,
//! and the one-line warning for a manifest chunk that could not be read.

use rsbackup::format::manifest::{Body, Entry};
use rsbackup::ids::SessionId;
use rsbackup::reader::LostChunk;
use serde::Serialize;

/// One entry as JSON. Paths and link targets are UTF-8 strings (a byte that is not valid UTF-8
/// becomes U+FFFD); the root is `""`.
#[derive(Serialize)]
pub struct EntryJson {
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    /// Permission bits in octal, e.g. `"0644"`.
    mode: String,
    uid: u32,
    gid: u32,
    /// Logical size of a regular file; absent for other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    /// Seconds since the epoch.
    mtime: i64,
    mtime_nsec: u32,
    /// A symlink's target, or the path a hard link points to.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    /// Names of the extended attributes (ACLs are `system.posix_acl_*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<String>,
    /// Why an `unreadable` entry was not backed up.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The name of an entry's kind: `dir`, `file`, `symlink`, `hardlink`, `chardev`, `blockdev`,
/// `fifo`, `socket` or `unreadable`.
pub fn kind_name(body: &Body) -> &'static str {
    match body {
        Body::Dir => "dir",
        Body::File { .. } => "file",
        Body::Symlink { .. } => "symlink",
        Body::Hardlink { .. } => "hardlink",
        Body::CharDev { .. } => "chardev",
        Body::BlockDev { .. } => "blockdev",
        Body::Fifo => "fifo",
        Body::Socket => "socket",
        Body::Unreadable { .. } => "unreadable",
    }
}

impl EntryJson {
    /// The JSON form of `entry`.
    pub fn new(entry: &Entry) -> EntryJson {
        let m = &entry.meta;
        let (size, target, rdev, reason) = match &entry.body {
            Body::File { size, .. } => (Some(*size), None, None, None),
            Body::Symlink { target } | Body::Hardlink { target } => {
                (None, Some(lossy(target)), None, None)
            }
            Body::CharDev { rdev } | Body::BlockDev { rdev } => (None, None, Some(*rdev), None),
            Body::Unreadable { message } => (None, None, None, Some(message.clone())),
            Body::Dir | Body::Fifo | Body::Socket => (None, None, None, None),
        };
        EntryJson {
            path: lossy(&entry.path),
            kind: kind_name(&entry.body),
            mode: format!("{:04o}", m.mode),
            uid: m.uid,
            gid: m.gid,
            size,
            mtime: m.mtime_sec,
            mtime_nsec: m.mtime_nsec,
            target,
            rdev,
            xattrs: m.xattrs.iter().map(|(n, _)| lossy(n)).collect(),
            reason,
        }
    }
}

/// Write `value` as one line of JSON.
pub fn json_line<T: Serialize>(value: &T, out: &mut Vec<u8>) -> rsbackup::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(|e| {
        rsbackup::Error::new(rsbackup::ErrorKind::Internal, format!("JSON output: {e}"))
    })?;
    out.push(b'\n');
    Ok(())
}

/// Tell, on standard error, of a manifest chunk of `session` that could not be read.
pub fn warn_lost(session: SessionId, lost: &LostChunk) {
    eprintln!(
        "rsbackup: session {session}: manifest chunk {} of {} ({}) cannot be read, the entries \
         it describes are missing: {}",
        lost.seq + 1,
        lost.count,
        lost.id,
        lost.error
    );
}
