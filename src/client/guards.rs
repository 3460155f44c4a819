//! The per-source guards of client.toml (`must-exist`, `must-be-mountpoint`,
//! `must-not-be-empty`, `one-file-system`), checked after the init hooks (which may mount what
//! is to be sent) and before any transfer. A source that fails its guard is not sent; `complete`
//! is told (`skipped=`), so that its old copy in staging is not recorded as if it were current,
//! and the session is `partial`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::config::ClientConfig;
use crate::config::source::SourceGuard;

/// What a guard says of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it, with these extra excludes (mount points below it, for `one-file-system`).
    Send(Vec<String>),
    /// It does not exist and need not (`must-exist = false`): there is nothing to send.
    Absent,
    /// Do not send it, and why.
    Failed(String),
}

/// The sources to send, and what was left out.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The configuration with only the sources to send (and their excludes).
    pub sending: ClientConfig,
    /// (source, why) of every source whose guard failed.
    pub failed: Vec<(PathBuf, String)>,
    /// Sources that do not exist and need not.
    pub absent: Vec<PathBuf>,
    /// One line per source, for the job report.
    pub lines: Vec<String>,
}

/// Check every source's guard against `mounts` (see [`mount_points`]).
pub fn plan(config: &ClientConfig, mounts: &[PathBuf]) -> Plan {
    let mut sending = config.clone();
    sending.sources.clear();
    sending.source_guards.clear();
    let mut failed = Vec::new();
    let mut absent = Vec::new();
    let mut lines = Vec::new();
    for (source, guard) in config.sources.iter().zip(&config.source_guards) {
        match check(source, guard, mounts) {
            Verdict::Send(excludes) => {
                lines.push(format!("{}: ok", source.display()));
                for e in &excludes {
                    lines.push(format!("  excluded (another file system): {e}"));
                }
                sending.sources.push(source.clone());
                sending.source_guards.push(*guard);
                sending.excludes.extend(excludes);
            }
            Verdict::Absent => {
                lines.push(format!(
                    "{}: does not exist (must-exist = false): nothing to send",
                    source.display()
                ));
                absent.push(source.clone());
            }
            Verdict::Failed(why) => {
                lines.push(format!("{}: NOT SENT: {why}", source.display()));
                failed.push((source.clone(), why));
            }
        }
    }
    // An anchored exclude below a source that is not sent would match nothing (and rsync's
    // command is refused for it): leave it out with its source.
    let gone: Vec<&PathBuf> = failed.iter().map(|(p, _)| p).chain(&absent).collect();
    sending
        .excludes
        .retain(|pattern| !gone.iter().any(|source| under(pattern, source)));
    Plan {
        sending,
        failed,
        absent,
        lines,
    }
}

/// `pattern` names `source` or a path below it (both as the administrator writes them).
pub(crate) fn under(pattern: &str, source: &Path) -> bool {
    let base = source.as_os_str().as_bytes();
    let base = base.strip_suffix(b"/").unwrap_or(base);
    pattern
        .as_bytes()
        .strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
}

/// Check one source.
pub fn check(source: &Path, guard: &SourceGuard, mounts: &[PathBuf]) -> Verdict {
    let meta = match std::fs::symlink_metadata(source) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if guard.must_exist {
                Verdict::Failed(
                    "does not exist (an unmounted disk or a wrong path?); set must-exist = \
                     false if it may be missing"
                        .into(),
                )
            } else {
                Verdict::Absent
            };
        }
        Err(e) => return Verdict::Failed(format!("cannot be examined: {e}")),
    };
    let real = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_owned());
    if guard.must_be_mountpoint && !mounts.contains(&real) {
        return Verdict::Failed(
            "is not a mount point (must-be-mountpoint): is its file system mounted?".into(),
        );
    }
    if guard.must_not_be_empty {
        let empty = if meta.is_dir() {
            match std::fs::read_dir(source) {
                Ok(mut entries) => entries.next().is_none(),
                Err(e) => return Verdict::Failed(format!("cannot be listed: {e}")),
            }
        } else {
            meta.len() == 0
        };
        if empty {
            return Verdict::Failed("is empty (must-not-be-empty)".into());
        }
    }
    let mut excludes = Vec::new();
    if guard.one_file_system {
        for mount in mounts {
            if let Ok(rest) = mount.strip_prefix(&real)
                && !rest.as_os_str().is_empty()
            {
                excludes.push(format!("{}/", source.join(rest).display()));
            }
        }
    }
    Verdict::Send(excludes)
}

/// The mount points of this machine, from `/proc/self/mountinfo` (empty when it cannot be
/// read: then every `must-be-mountpoint` guard fails, which is the safe side).
pub fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default()
}

/// The fifth field of each line, with the kernel's octal escapes (`\040` for a space) undone.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| {
            let bytes = field.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\\'
                    && let Some(code) = field
                        .get(i + 1..i + 4)
                        .and_then(|o| u8::from_str_radix(o, 8).ok())
                {
                    out.push(code);
                    i += 4;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            PathBuf::from(OsString::from_vec(out))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("f"), b"x").unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let d = SourceGuard::default();
        assert_eq!(check(&full, &d, &[]), Verdict::Send(vec![]));
        let missing = dir.path().join("missing");
        assert!(
            matches!(check(&missing, &d, &[]), Verdict::Failed(w) if w.contains("does not exist"))
        );
        let optional = SourceGuard {
            must_exist: false,
            ..d
        };
        assert_eq!(check(&missing, &optional, &[]), Verdict::Absent);
        let mountpoint = SourceGuard {
            must_be_mountpoint: true,
            ..d
        };
        assert!(
            matches!(check(&full, &mountpoint, &[]), Verdict::Failed(w) if w.contains("not a mount point"))
        );
        let real = std::fs::canonicalize(&full).unwrap();
        assert_eq!(
            check(&full, &mountpoint, std::slice::from_ref(&real)),
            Verdict::Send(vec![])
        );
        let not_empty = SourceGuard {
            must_not_be_empty: true,
            ..d
        };
        assert!(
            matches!(check(&empty, &not_empty, &[]), Verdict::Failed(w) if w.contains("is empty"))
        );
        let one_fs = SourceGuard {
            one_file_system: true,
            ..d
        };
        assert_eq!(
            check(&full, &one_fs, &[PathBuf::from("/"), real.join("mnt/disk")]),
            Verdict::Send(vec![format!("{}/", full.join("mnt/disk").display())])
        );
        assert_eq!(
            parse_mountinfo(
                "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n\
                 30 22 0:30 / /media/my\\040disk rw - vfat /dev/sdb1 rw\n"
            ),
            [PathBuf::from("/"), PathBuf::from("/media/my disk")]
        );
        assert!(under("/srv/data/cache/", Path::new("/srv/data")));
        assert!(!under("/srv/database/", Path::new("/srv/data")));
    }
}
