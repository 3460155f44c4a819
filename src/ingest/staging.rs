//! Reading a staging area written by the server's rsync receiver (`rsbackup serve`).
//!
//! The receiver runs with `--munge-links` and `--fake-super`, so what is on the staging disk is
//! not quite what the client has:
//!
//! * **Munged symlinks**: every symlink target starts with `/rsyncd-munged/`; the prefix is
//!   stripped.
//! * **Fake super**: ownership, the full mode (setuid bits, file type) and device numbers are in
//!   the `user.rsync.%stat` xattr, `"<octal st_mode> <major>,<minor> <uid>:<gid>"`; only present
//!   when they differ from the file on disk. Device nodes, FIFOs, sockets and symlinks are
//!   plain regular files whose `%stat` names the real kind (a symlink's content is its target).
//!   The client's xattrs outside the `user` namespace are kept as `user.rsync.<name>`.
//!   Decoding takes mode, type, rdev, uid and gid from `%stat`; turns `%aacl` and `%dacl`
//!   (ACLs sent with `-A`) back into `system.posix_acl_access` and `system.posix_acl_default`;
//!   maps `user.rsync.<ns>.<name>` back to `<ns>.<name>` for the `security` and `trusted`
//!   namespaces only; and drops `user.rsync.system.*` (rsync never sends `system.*` names, so
//!   the receiver never makes these) and the rest of rsync's bookkeeping.
//!
//!   Decoding trusts that every `user.rsync.*` name in staging was made by the receiver. The
//!   server makes that true (issue 11): its receiver refuses every `user.rsync.*` name from the
//!   wire (a daemon filter rule the client cannot change), and before each upload the server
//!   takes the older ones off staging (`server::staging_clean::strip_transport_xattrs`). A
//!   client therefore cannot forge these, from an unprivileged user's `setfattr` up.
//! * **Hollow placeholders** (staging mode `hollow`): a regular file that is its own untouched
//!   placeholder (its `(dev, ino, btime, size, mtime)` match the server's placeholder row, and it
//!   still has no blocks) reuses the row's extents with fresh metadata; a file that looks like a
//!   placeholder (size > 0, no blocks) without a matching row is recorded as unreadable and
//!   removed from staging so that the client sends it again. See docs/architecture.md.
//!
//! Everything is off by default: `rsbackup ingest DIR` reads a plain directory as it is.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};

use super::Done;
use super::meta::{FileStat, Xattrs};
use crate::format::manifest::{Body, Extent, Meta};

/// The prefix `--munge-links` puts before every symlink target.
pub const MUNGE_PREFIX: &[u8] = b"/rsyncd-munged/";
/// The xattr `--fake-super` keeps mode, rdev and ownership in.
pub const FAKE_SUPER_STAT: &[u8] = b"user.rsync.%stat";
/// The xattr `--fake-super` keeps a client's access ACL in (see `fake_acl`).
pub const FAKE_SUPER_ACCESS_ACL: &[u8] = b"user.rsync.%aacl";
/// The xattr `--fake-super` keeps a directory's default ACL in.
pub const FAKE_SUPER_DEFAULT_ACL: &[u8] = b"user.rsync.%dacl";
/// The prefix under which `--fake-super` keeps the client's non-user xattrs.
pub const FAKE_SUPER_PREFIX: &[u8] = b"user.rsync.";
/// Longest symlink target read from a fake-super symlink file.
const MAX_LINK_TARGET: usize = 4096;

/// The message of a file that looks like a placeholder but has no matching record.
pub const PLACEHOLDER_WITHOUT_RECORD: &str =
    "placeholder without record: content must be sent again";

/// How to decode the staging area (all off: a plain directory).
#[derive(Debug, Clone, Default)]
pub struct StagingDecode {
    /// Strip `/rsyncd-munged/` from symlink targets.
    pub munged_links: bool,
    /// Take metadata and kinds from `user.rsync.%stat` and un-prefix `user.rsync.` xattrs.
    pub fake_super: bool,
    /// Hollow mode: the placeholders left by the last `complete`.
    pub placeholders: Option<Arc<Placeholders>>,
    /// Told about every regular file read or reused (for the next placeholder table).
    pub ingested: Option<crossbeam_channel::Sender<IngestedFile>>,
    /// Paths in staging (relative, `/`-separated) that are not ingested at all: the staged
    /// copy of a source the client did not send this time (its guard failed) is not what the
    /// client has now, and must not be recorded as if it were.
    pub left_out: Vec<Vec<u8>>,
    /// What went wrong with the transfer into staging, as the client reported it to
    /// `complete` (rsync's exit, skipped sources); the session is then `partial` with this as
    /// its reason, whatever the ingest itself finds.
    pub transfer_problem: Option<String>,
    /// Most bytes the session may add to the repository's packs (the client's quota): the
    /// ingest that would add more stops with an [`crate::error::ErrorKind::Refused`] error and
    /// records no session. `None`: no limit.
    pub new_bytes_limit: Option<u64>,
}

/// One placeholder the server left in staging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceholderRow {
    /// Device of the staging filesystem.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Birth time (`statx` `STATX_BTIME`), nanoseconds.
    pub btime_ns: i64,
    /// Size in bytes.
    pub size: u64,
    /// mtime, nanoseconds.
    pub mtime_ns: i64,
    /// The content's extents as ingested.
    pub extents: Vec<Extent>,
}

/// The placeholder table, by path relative to the staging root.
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    /// Rows by path.
    pub rows: HashMap<Vec<u8>, PlaceholderRow>,
    /// The table file holds exactly these rows, written under the index's current garbage
    /// collection generation: rewriting it with the same rows would change nothing.
    pub current: bool,
}

/// A regular file the ingest took content for, as it was on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestedFile {
    /// Path relative to the source.
    pub path: Vec<u8>,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size.
    pub size: u64,
    /// mtime, nanoseconds.
    pub mtime_ns: i64,
    /// Extents stored.
    pub extents: Vec<Extent>,
}

/// `(mode, major, minor, uid, gid)` from a `%stat` value.
pub fn parse_fake_super_stat(value: &[u8]) -> Option<(u32, u32, u32, u32, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut words = text.split(' ');
    let mode = u32::from_str_radix(words.next()?, 8).ok()?;
    let (major, minor) = words.next()?.split_once(',')?;
    let (uid, gid) = words.next()?.split_once(':')?;
    if words.next().is_some() {
        return None;
    }
    Some((
        mode,
        major.parse().ok()?,
        minor.parse().ok()?,
        uid.parse().ok()?,
        gid.parse().ok()?,
    ))
}

/// Apply `--fake-super` decoding to one entry's stat and xattrs. Returns the decoded stat
/// (type and permission bits, rdev, owner) and the xattrs as the client had them.
pub(crate) fn decode_meta(
    decode: &StagingDecode,
    mut st: FileStat,
    mut xattrs: Xattrs,
) -> (FileStat, Xattrs) {
    if !decode.fake_super {
        return (st, xattrs);
    }
    if let Some((_, v)) = xattrs.iter().find(|(n, _)| n == FAKE_SUPER_STAT)
        && let Some((mode, major, minor, uid, gid)) = parse_fake_super_stat(v)
    {
        st.mode = mode;
        st.rdev = rustix::fs::makedev(major, minor);
        st.uid = uid;
        st.gid = gid;
    }
    let mut acls = Vec::new();
    for (name, value) in &xattrs {
        if name == FAKE_SUPER_ACCESS_ACL {
            if let Some(acl) = super::fake_acl::access_acl(value, st.mode) {
                acls.push((b"system.posix_acl_access".to_vec(), acl));
            }
        } else if name == FAKE_SUPER_DEFAULT_ACL
            && let Ok(Some(acl)) = super::fake_acl::default_acl(value)
        {
            acls.push((b"system.posix_acl_default".to_vec(), acl));
        }
    }
    xattrs.retain(|(n, _)| !n.starts_with(b"user.rsync.%"));
    // Only what the receiver makes becomes privileged: `security.*` and `trusted.*` names the
    // client had. rsync never sends `system.*` names (ACLs travel as ACLs, above), so a
    // `user.rsync.system.*` name was never the receiver's and is dropped.
    xattrs.retain(|(n, _)| !n.starts_with(b"user.rsync.system."));
    for (name, _) in &mut xattrs {
        if let Some(rest) = name.strip_prefix(FAKE_SUPER_PREFIX)
            && [&b"security."[..], b"trusted."]
                .iter()
                .any(|ns| rest.starts_with(ns))
        {
            *name = rest.to_vec();
        }
    }
    xattrs.retain(|(n, _)| !(n == b"system.posix_acl_access" || n == b"system.posix_acl_default"));
    xattrs.extend(acls);
    xattrs.sort();
    xattrs.dedup_by(|a, b| a.0 == b.0);
    (st, xattrs)
}

/// Remove from `names` (the entries of the staging directory at `dir`, `b""` for the root)
/// those [`StagingDecode::left_out`] names.
pub(super) fn drop_left_out(decode: &StagingDecode, dir: &[u8], names: &mut Vec<CString>) {
    if decode.left_out.is_empty() {
        return;
    }
    names.retain(|n| {
        !decode.left_out.iter().any(|l| {
            let (parent, name) = match l.iter().rposition(|&b| b == b'/') {
                Some(i) => (&l[..i], &l[i + 1..]),
                None => (&l[..0], &l[..]),
            };
            parent == dir && name == n.as_bytes()
        })
    });
}

/// A symlink target as the client had it.
pub(super) fn link_target(decode: &StagingDecode, target: Vec<u8>) -> Vec<u8> {
    if decode.munged_links
        && let Some(rest) = target.strip_prefix(MUNGE_PREFIX)
    {
        return rest.to_vec();
    }
    target
}

/// A regular file on disk whose `%stat` names another kind: its body (or why not).
/// `None` when the entry is what it looks like.
pub(super) fn fake_super_body(
    decode: &StagingDecode,
    on_disk: FileType,
    st: &FileStat,
    dir: &OwnedFd,
    name: &CString,
) -> Option<Result<Body, String>> {
    if !decode.fake_super || on_disk != FileType::RegularFile {
        return None;
    }
    Some(Ok(match st.file_type() {
        FileType::RegularFile => return None,
        FileType::CharacterDevice => Body::CharDev { rdev: st.rdev },
        FileType::BlockDevice => Body::BlockDev { rdev: st.rdev },
        FileType::Fifo => Body::Fifo,
        FileType::Socket => Body::Socket,
        FileType::Symlink => {
            let target = match read_small(dir, name) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            Body::Symlink {
                target: link_target(decode, target),
            }
        }
        other => {
            return Some(Err(format!(
                "staged regular file claims to be {other:?} in {}",
                String::from_utf8_lossy(FAKE_SUPER_STAT)
            )));
        }
    }))
}

fn read_small(dir: &OwnedFd, name: &CString) -> Result<Vec<u8>, String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
        .map_err(|e| format!("cannot open staged symlink: {e}"))?;
    let mut file = std::fs::File::from(fd);
    let mut buf = Vec::new();
    use std::io::Read;
    (&mut file)
        .take(MAX_LINK_TARGET as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read staged symlink: {e}"))?;
    if buf.len() > MAX_LINK_TARGET || buf.is_empty() || buf.contains(&0) {
        return Err("staged symlink target is empty, too long or holds a NUL byte".into());
    }
    Ok(buf)
}

/// Birth time of `name` in `dir`, nanoseconds; `None` when the filesystem does not report it.
pub fn btime_at(dir: &OwnedFd, name: &CString) -> std::io::Result<Option<i64>> {
    let stx = rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME)?;
    if StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::BTIME) {
        let t = stx.stx_btime;
        Ok(Some(
            t.tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.tv_nsec)),
        ))
    } else {
        Ok(None)
    }
}

/// Hollow mode: decide a regular file before it is read. `Some(done)` when it is its own
/// untouched placeholder (extents reused) or a placeholder without a record (unreadable, and
/// removed from staging); `None` to read it as content.
pub(super) fn placeholder_check(
    decode: &StagingDecode,
    dir: &OwnedFd,
    name: &CString,
    path: &[u8],
    st: &FileStat,
    meta: &Meta,
) -> Option<Done> {
    let table = decode.placeholders.as_ref()?;
    let looks_hollow = st.size > 0 && st.blocks == 0;
    if let Some(row) = table.rows.get(path)
        && looks_hollow
        && (row.dev, row.ino, row.size, row.mtime_ns) == (st.dev, st.ino, st.size, st.mtime_ns())
        && btime_at(dir, name).ok().flatten() == Some(row.btime_ns)
    {
        return Some(Done::entry(
            path.to_vec(),
            meta.clone(),
            Body::File {
                size: st.size,
                extents: row.extents.clone(),
            },
        ));
    }
    if !looks_hollow {
        return None;
    }
    // Without its record the content is unknown; reading it would store zeros. Remove it so
    // that rsync's quick check no longer skips it and the client sends the content again.
    let removed = rustix::fs::unlinkat(dir, name, AtFlags::empty());
    let mut msg = PLACEHOLDER_WITHOUT_RECORD.to_owned();
    if let Err(e) = removed {
        msg.push_str(&format!(" (and it could not be removed from staging: {e})"));
    }
    Some(Done::unreadable(path.to_vec(), meta.clone(), msg))
}

/// Tell the caller about a regular file whose content this ingest stored.
pub(super) fn report_ingested(decode: &StagingDecode, done: &Done) {
    let Some(tx) = &decode.ingested else { return };
    if done.error.is_some() {
        return;
    }
    let (Some(entry), Some((_, cached))) = (&done.entry, &done.cache) else {
        return;
    };
    if let Body::File { extents, .. } = &entry.body {
        // Hollow mode stores no inline content (see `Shared::inline_max`); a file that had
        // some would need its content in the placeholder table, so it is not reported and
        // hollowing removes it from staging instead.
        if extents.iter().any(Extent::is_inline) {
            return;
        }
        let _ = tx.send(IngestedFile {
            path: done.path.clone(),
            dev: cached.dev,
            ino: cached.ino,
            size: cached.size,
            mtime_ns: cached.mtime_ns,
            extents: extents.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_values() {
        assert_eq!(
            parse_fake_super_stat(b"20644 1,3 0:0"),
            Some((0o20644, 1, 3, 0, 0))
        );
        assert_eq!(
            parse_fake_super_stat(b"100755 0,0 1234:5678"),
            Some((0o100755, 0, 0, 1234, 5678))
        );
        for bad in [
            &b""[..],
            b"100644",
            b"100644 0,0",
            b"1x 0,0 0:0",
            b"100644 0,0 0:0 x",
        ] {
            assert_eq!(parse_fake_super_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn meta_and_xattrs_decoded_only_when_asked() {
        let st = FileStat {
            mode: 0o100644,
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            ctime_ns: 0,
            ino: 1,
            dev: 1,
            rdev: 0,
            nlink: 1,
        };
        let xattrs = vec![
            (b"user.foo".to_vec(), b"1".to_vec()),
            (b"user.rsync.%aacl".to_vec(), b"x".to_vec()),
            (b"user.rsync.%stat".to_vec(), b"20600 8,1 12:34".to_vec()),
            (b"user.rsync.evil".to_vec(), b"2".to_vec()),
            (b"user.rsync.trusted.t".to_vec(), b"3".to_vec()),
        ];
        let (same, x) = decode_meta(&StagingDecode::default(), st, xattrs.clone());
        assert_eq!((same, x.len()), (st, 5));
        let on = StagingDecode {
            fake_super: true,
            ..Default::default()
        };
        let (d, x) = decode_meta(&on, st, xattrs);
        assert_eq!(d.file_type(), FileType::CharacterDevice);
        assert_eq!((d.mode & 0o7777, d.uid, d.gid), (0o600, 12, 34));
        assert_eq!(d.rdev, rustix::fs::makedev(8, 1));
        let names: Vec<&[u8]> = x.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b"trusted.t"[..], b"user.foo", b"user.rsync.evil"]);
    }

    /// A fresh fully sparse file `p` in `dir`: its descriptor, stat and true row.
    fn fresh(dir: &std::path::Path) -> Option<(OwnedFd, FileStat, PlaceholderRow)> {
        let file = dir.join("p");
        let _ = std::fs::remove_file(&file);
        std::fs::File::create(&file).unwrap().set_len(4096).unwrap();
        let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let st = FileStat::from_stat(&rustix::fs::lstat(&file).unwrap());
        let btime_ns = btime_at(&fd, &CString::new("p").unwrap()).unwrap()?;
        let row = PlaceholderRow {
            dev: st.dev,
            ino: st.ino,
            btime_ns,
            size: st.size,
            mtime_ns: st.mtime_ns(),
            extents: vec![Extent::Hole { len: 4096 }],
        };
        Some((fd, st, row))
    }

    fn table(row: PlaceholderRow) -> StagingDecode {
        StagingDecode {
            placeholders: Some(Arc::new(Placeholders {
                rows: [(b"p".to_vec(), row)].into_iter().collect(),
                current: false,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn placeholder_needs_every_part_of_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let name = CString::new("p").unwrap();
        // Hollow mode is refused on a filesystem without birth times; its proof still has to
        // be tested, so a test filesystem without them is a failure, not a pass.
        let (fd, st, row) = fresh(dir.path()).expect(
            "the filesystem of TMPDIR has no birth times: the hollow mode's proof cannot be \
             tested here (set TMPDIR to an ext4, xfs or btrfs directory)",
        );
        let meta = st.meta(Vec::new());
        // Its own untouched placeholder: the row's extents, fresh metadata.
        let done = placeholder_check(&table(row.clone()), &fd, &name, b"p", &st, &meta).unwrap();
        assert!(done.error.is_none());
        assert!(matches!(
            done.entry.unwrap().body,
            Body::File { size: 4096, .. }
        ));
        // A file with blocks is content, whatever the row says.
        let mut full = st;
        full.blocks = 8;
        assert!(placeholder_check(&table(row), &fd, &name, b"p", &full, &meta).is_none());
        // Hollow mode off: nothing decided here.
        let off = StagingDecode::default();
        assert!(placeholder_check(&off, &fd, &name, b"p", &st, &meta).is_none());

        // Another birth time (an inode number reused), inode, size or mtime: the look-alike is
        // unreadable and removed from staging.
        type Change = fn(&mut PlaceholderRow);
        let changes: [Change; 4] = [
            |r| r.btime_ns += 1,
            |r| r.ino += 1,
            |r| r.size += 1,
            |r| r.mtime_ns += 1,
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let (fd, st, mut row) = fresh(dir.path()).unwrap();
            change(&mut row);
            let meta = st.meta(Vec::new());
            let done = placeholder_check(&table(row), &fd, &name, b"p", &st, &meta).unwrap();
            assert_eq!(
                done.error.as_deref(),
                Some(PLACEHOLDER_WITHOUT_RECORD),
                "{i}"
            );
            assert!(!dir.path().join("p").exists(), "{i}: removed");
        }
    }

    #[test]
    fn munged_targets() {
        let on = StagingDecode {
            munged_links: true,
            ..Default::default()
        };
        assert_eq!(link_target(&on, b"/rsyncd-munged/../x".to_vec()), b"../x");
        assert_eq!(link_target(&on, b"plain".to_vec()), b"plain");
        let off = StagingDecode::default();
        assert_eq!(
            link_target(&off, b"/rsyncd-munged/x".to_vec()),
            b"/rsyncd-munged/x"
        );
    }
}
