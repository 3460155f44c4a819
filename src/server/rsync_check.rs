//! The installed rsync's safety check ([`crate::server::rsync_version`]) as every upload and
//! download runs it: `rsync --version` and `dpkg-query` cost two process starts (40-100 ms on a
//! busy server) per request, so a verdict that accepted the binary is kept in
//! `STAGING-ROOT/.leases/rsync-check.json` (format-spec/staging-state.md), keyed by the
//! binary's identity: device, inode, size, modification and change time of the file the path
//! resolves to. Installing, upgrading, replacing, editing or re-linking the binary changes one
//! of them, and the check runs again. A refusal is never kept: a refused rsync is checked (and
//! refused) on every request. The directory is the server's own (0700, see
//! [`crate::server::staging_root::server_dir`]): no client can write the record.

use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, StatxFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::server::rsync_version::{RsyncSafety, check_rsync_safe};

/// Version of the kept verdict.
pub const RSYNC_CHECK_VERSION: u32 = 1;

/// The kept verdict (format-spec/staging-state.md, "rsync-check.json").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckedRsync {
    /// [`RSYNC_CHECK_VERSION`].
    pub version: u32,
    /// The configured path of the binary.
    pub rsync: PathBuf,
    /// The identity of the file it resolved to when it was checked.
    pub identity: BinaryIdentity,
    /// Why it was accepted, for the administrator reading the file.
    pub accepted: String,
}

/// What changes whenever the file behind a path is replaced or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryIdentity {
    /// `st_dev` (major and minor in one number).
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Inode change time, ns since the epoch (a `chmod`, a rewrite in place, a new link).
    pub ctime_ns: i64,
}

impl BinaryIdentity {
    /// The identity of the file `path` resolves to (symlinks followed, as `exec` follows them).
    pub fn of(path: &Path) -> std::io::Result<BinaryIdentity> {
        let stx = rustix::fs::statx(
            rustix::fs::CWD,
            path,
            AtFlags::empty(),
            StatxFlags::BASIC_STATS,
        )?;
        let ns = |t: &rustix::fs::StatxTimestamp| {
            t.tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.tv_nsec))
        };
        Ok(BinaryIdentity {
            dev: rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor),
            ino: stx.stx_ino,
            size: stx.stx_size,
            mtime_ns: ns(&stx.stx_mtime),
            ctime_ns: ns(&stx.stx_ctime),
        })
    }
}

/// `STAGING-ROOT/.leases/rsync-check.json`.
pub fn record_path(staging_root: &Path) -> PathBuf {
    staging_root.join(".leases").join("rsync-check.json")
}

/// Refuse an rsync with the known receiver vulnerabilities, unless the record at `record`
/// says this very binary was accepted before. An accepted binary with an absolute path is
/// recorded (best effort: a record that cannot be written only costs the next check).
pub fn check_installed_rsync(rsync: &Path, record: &Path) -> Result<()> {
    let identity = rsync
        .is_absolute()
        .then(|| BinaryIdentity::of(rsync).ok())
        .flatten();
    if let Some(identity) = identity
        && kept_verdict(record).is_some_and(|k| k.rsync == rsync && k.identity == identity)
    {
        return Ok(());
    }
    let safety = run_check(rsync)?;
    if let Some(identity) = identity {
        let kept = CheckedRsync {
            version: RSYNC_CHECK_VERSION,
            rsync: rsync.to_owned(),
            identity,
            accepted: match safety {
                RsyncSafety::Upstream(v) => format!(
                    "rsync {}.{}.{} (protocol {})",
                    v.version.0, v.version.1, v.version.2, v.protocol
                ),
                RsyncSafety::DebianPatched(dpkg) => format!("Debian's patched rsync {dpkg}"),
            },
        };
        let _ = keep_verdict(record, &kept);
    }
    Ok(())
}

/// The record at `path`, if it is one this build writes.
fn kept_verdict(path: &Path) -> Option<CheckedRsync> {
    let text = std::fs::read(path).ok()?;
    let kept: CheckedRsync = serde_json::from_slice(&text).ok()?;
    (kept.version == RSYNC_CHECK_VERSION).then_some(kept)
}

fn keep_verdict(path: &Path, kept: &CheckedRsync) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(kept).map_err(std::io::Error::other)?;
    crate::server::staging_root::replace_owner_only(path, &text)
}

/// Run `rsync --version` and `dpkg-query`, and judge their answers.
fn run_check(rsync: &Path) -> Result<RsyncSafety> {
    let run = |program: &Path, args: &[&str]| -> Option<String> {
        let out = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let version = run(rsync, &["--version"]).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("cannot run {} --version", rsync.display()),
        )
    })?;
    let dpkg = run(
        Path::new("/usr/bin/dpkg-query"),
        &["-W", "-f", "${Version}", "rsync"],
    );
    check_rsync_safe(rsync, &version, dpkg.as_deref())
        .map_err(|why| Error::new(ErrorKind::Config, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake rsync (a shell script answering `--version`) counts its runs: an accepted binary
    /// is checked once, then taken from the record until the file changes; a refused one is
    /// checked every time and never recorded.
    #[test]
    fn an_accepted_binary_is_checked_once_per_identity() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let fake = dir.path().join("rsync");
        let write = |version: &str| {
            let tmp = dir.path().join("rsync.new");
            std::fs::write(
                &tmp,
                format!(
                    "#!/bin/sh\necho run >> {}\necho 'rsync  version {version}  protocol version 32'\n",
                    runs.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            // A new file, as an upgrade installs one.
            std::fs::rename(&tmp, &fake).unwrap();
        };
        let count = || {
            std::fs::read_to_string(&runs)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let record = dir.path().join("rsync-check.json");

        write("3.4.1");
        check_installed_rsync(&fake, &record).unwrap();
        check_installed_rsync(&fake, &record).unwrap();
        assert_eq!(count(), 1, "the second request used the record");
        let kept = kept_verdict(&record).unwrap();
        assert_eq!(kept.rsync, fake);
        assert_eq!(kept.accepted, "rsync 3.4.1 (protocol 32)");

        // Replaced by an unsafe build: checked again, refused, and refused again.
        write("3.2.7");
        let err = check_installed_rsync(&fake, &record).unwrap_err();
        assert!(err.to_string().contains("CVE-2024-12084"), "{err}");
        check_installed_rsync(&fake, &record).unwrap_err();
        assert_eq!(count(), 3);

        // Another configured path to the same file is checked on its own.
        write("3.4.1");
        check_installed_rsync(&fake, &record).unwrap();
        let link = dir.path().join("rsync-link");
        std::os::unix::fs::symlink(&fake, &link).unwrap();
        check_installed_rsync(&link, &record).unwrap();
        assert_eq!(count(), 5);

        // A record this build does not write is ignored (and replaced).
        std::fs::write(&record, b"{\"version\": 2}").unwrap();
        check_installed_rsync(&link, &record).unwrap();
        assert_eq!(count(), 6);
        assert_eq!(kept_verdict(&record).unwrap().rsync, link);
    }
}
