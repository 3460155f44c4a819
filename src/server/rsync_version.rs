//! Is the installed rsync one without the known receiver CVEs?
//!
//! rsync 3.4.0 fixes CVE-2024-12084, -12085, -12086, -12087, -12088 and CVE-2024-12747. Debian
//! backported those fixes into `3.2.7-1+deb12u1` (DSA-5843-1), so a Debian 12 rsync reporting
//! 3.2.7 is accepted when `dpkg-query -W -f '${Version}' rsync` says `3.2.7-1+deb12uN` with
//! N >= 1 and the binary is dpkg's `/usr/bin/rsync`. Anything else older than 3.4.0 is refused:
//! other distributions' patched builds cannot be told apart from unpatched ones by version.
//!
//! The functions here are pure: the caller runs `rsync --version` and `dpkg-query` and passes
//! their output in.

use std::path::Path;

/// The oldest upstream rsync accepted.
pub const MIN_SAFE_RSYNC: (u32, u32, u32) = (3, 4, 0);

/// The Debian 12 package version prefix whose `+deb12uN` (N >= 1) builds carry the fixes.
pub const DEBIAN_PATCHED_PREFIX: &str = "3.2.7-1+deb12u";

/// The binary dpkg's rsync package installs.
pub const DEBIAN_RSYNC_PATH: &str = "/usr/bin/rsync";

/// rsync's version, from the first line of `rsync --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RsyncVersion {
    /// Major, minor, patch.
    pub version: (u32, u32, u32),
    /// The protocol version it speaks.
    pub protocol: u32,
}

/// Why the installed rsync was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RsyncSafety {
    /// Upstream version at or above [`MIN_SAFE_RSYNC`].
    Upstream(RsyncVersion),
    /// Debian's patched 3.2.7 build; the package version is kept.
    DebianPatched(String),
}

/// Parse `rsync  version 3.2.7  protocol version 32` (pre-release suffixes such as `3.4.0pre1`
/// count as the version before them, i.e. they fail the check).
pub fn parse_rsync_version(output: &str) -> Result<RsyncVersion, String> {
    let first = output.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split_ascii_whitespace().collect();
    let bad = || format!("cannot read the rsync version from {first:?}");
    let (Some(i), Some(p)) = (
        words.iter().position(|w| *w == "version"),
        words.iter().rposition(|w| *w == "version"),
    ) else {
        return Err(bad());
    };
    if words.first() != Some(&"rsync") || i == p {
        return Err(bad());
    }
    let text = words.get(i + 1).ok_or_else(bad)?;
    let mut numbers = text.split('.');
    let mut next = || -> Result<(u32, bool), String> {
        let part = numbers.next().unwrap_or("0");
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        let n = digits.parse().map_err(|_| bad())?;
        Ok((n, digits.len() != part.len()))
    };
    let (major, _) = next()?;
    let (minor, _) = next()?;
    let (patch, prerelease) = next()?;
    let mut version = (major, minor, patch);
    if prerelease {
        // 3.4.0pre1 is older than 3.4.0.
        version = match patch {
            0 => (major, minor.saturating_sub(1), u32::MAX),
            _ => (major, minor, patch - 1),
        };
    }
    let protocol = words
        .get(p + 1)
        .and_then(|w| w.parse().ok())
        .ok_or_else(bad)?;
    Ok(RsyncVersion { version, protocol })
}

/// Decide whether the rsync at `rsync_path` may be used as the upload receiver.
/// `dpkg_version` is the output of `dpkg-query -W -f '${Version}' rsync`, if dpkg knows rsync.
pub fn check_rsync_safe(
    rsync_path: &Path,
    version_output: &str,
    dpkg_version: Option<&str>,
) -> Result<RsyncSafety, String> {
    let v = parse_rsync_version(version_output)?;
    if v.version >= MIN_SAFE_RSYNC {
        return Ok(RsyncSafety::Upstream(v));
    }
    let shown = format!("{}.{}.{}", v.version.0, v.version.1, v.version.2);
    let refuse = |why: &str| {
        Err(format!(
            "{} is rsync {shown}, which has the receiver vulnerabilities CVE-2024-12084..12088 and \
             CVE-2024-12747 ({why}); install rsync 3.4.0 or later, or Debian's {}1 or later",
            rsync_path.display(),
            DEBIAN_PATCHED_PREFIX
        ))
    };
    let Some(dpkg) = dpkg_version.map(str::trim) else {
        return refuse("no Debian package version to show it was patched");
    };
    let Some(revision) = dpkg.strip_prefix(DEBIAN_PATCHED_PREFIX) else {
        return refuse(&format!("Debian package {dpkg:?} is not a patched build"));
    };
    let digits: String = revision
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if !digits.parse::<u32>().is_ok_and(|n| n >= 1) {
        return refuse(&format!("Debian package {dpkg:?} is not a patched build"));
    }
    if v.version != (3, 2, 7) {
        return refuse(&format!(
            "the binary does not match Debian package {dpkg:?}"
        ));
    }
    if rsync_path != Path::new(DEBIAN_RSYNC_PATH) {
        return refuse(&format!(
            "only {DEBIAN_RSYNC_PATH} is the binary of Debian package {dpkg:?}"
        ));
    }
    Ok(RsyncSafety::DebianPatched(dpkg.to_owned()))
}
