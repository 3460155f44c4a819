//! From `lstat` and the extended attribute calls to manifest metadata.

use std::ffi::{CStr, CString};

use rustix::fs::Stat;
use rustix::io::Errno;

use crate::format::manifest::Meta;

/// The `lstat` fields ingest needs, in fixed-width types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
    pub rdev: u64,
    pub nlink: u64,
}

impl FileStat {
    // The casts normalise the platform's `struct stat` field widths; values never exceed them.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    pub fn from_stat(st: &Stat) -> FileStat {
        FileStat {
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size.max(0) as u64,
            blocks: st.st_blocks.max(0) as u64,
            mtime_sec: st.st_mtime as i64,
            mtime_nsec: (st.st_mtime_nsec as u32).min(999_999_999),
            ctime_ns: (st.st_ctime as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(st.st_ctime_nsec as i64),
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
            rdev: st.st_rdev as u64,
            nlink: st.st_nlink as u64,
        }
    }

    pub fn mtime_ns(&self) -> i64 {
        self.mtime_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(self.mtime_nsec))
    }

    pub fn file_type(&self) -> rustix::fs::FileType {
        rustix::fs::FileType::from_raw_mode(self.mode as _)
    }

    /// Fewer blocks allocated than the size needs: the file may have holes worth finding.
    pub fn maybe_sparse(&self) -> bool {
        self.blocks.saturating_mul(512) < self.size
    }

    pub fn meta(&self, xattrs: Vec<(Vec<u8>, Vec<u8>)>) -> Meta {
        Meta {
            mode: self.mode & 0o7777,
            uid: self.uid,
            gid: self.gid,
            mtime_sec: self.mtime_sec,
            mtime_nsec: self.mtime_nsec,
            xattrs,
        }
    }
}

/// Read all extended attributes of `path` without following a final symlink, sorted by name.
/// A filesystem without xattr support has none.
pub(super) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

pub(super) fn read_xattrs(path: &CStr, buf: &mut Vec<u8>) -> Result<Xattrs, Errno> {
    if buf.len() < 1024 {
        buf.resize(1024, 0);
    }
    let len = loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let need = rustix::fs::llistxattr_query(path)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    let names: Vec<Vec<u8>> = buf[..len]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let cname = CString::new(name.clone()).map_err(|_| Errno::INVAL)?;
        let mut value = vec![0u8; 256];
        let got = loop {
            match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut value[..]) {
                Ok(n) => break Some(n),
                Err(Errno::RANGE) => {
                    let need = rustix::fs::lgetxattr_query(path, cname.as_c_str())?;
                    value.resize(need.max(value.len() * 2), 0);
                }
                // Removed between list and get: it is no longer there to back up.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            }
        };
        if let Some(n) = got {
            value.truncate(n);
            out.push((name, value));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

impl crate::files_cache::CachedFile {
    /// The identifying fields of a files-cache row for `st`, with no extents yet.
    pub(super) fn of_stat(st: &FileStat, has_xattrs: bool) -> Self {
        crate::files_cache::CachedFile {
            size: st.size,
            mtime_ns: st.mtime_ns(),
            ctime_ns: st.ctime_ns,
            ino: st.ino,
            dev: st.dev,
            has_xattrs,
            extents: Vec::new(),
        }
    }
}
