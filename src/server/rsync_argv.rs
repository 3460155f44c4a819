//! The rsync upload: validate the `rsync --server ...` command line that rsbackup's client sends,
//! and build the argument list the server gives its confined rsync daemon itself
//! ([`RsyncRequest::daemon_args`]; see [`crate::server::rsync_daemon`]). The allow-list decides
//! what the client may ask for; it does not confine rsync (filter rules travel inside the
//! protocol, where no command line shows them): the daemon module does.
//!
//! The client runs
//! `rsync -a -H [-A -X] --numeric-ids --delete --partial --stats --modify-window=-1 SRC/ host:`;
//! its rsync asks ssh to run, for example,
//!
//! ```text
//! rsync --server -lHogDtpre.iLsfxCIvu --delete --stats -@-1 --partial --numeric-ids . .
//! ```
//!
//! (learned from rsync 3.2.7 with a fake `-e` program that prints its argv). The short options
//! come as one bundle whose `e` starts the client's capability string (`.iLsfxCIvu`: protocol
//! sub-version, then feature letters). Every short letter and every long option must be on a
//! fixed allow-list; anything that names a path (`--temp-dir`, `--partial-dir`, `--backup-dir`,
//! `--log-file`, `--files-from`), runs a program (`--rsync-path`, `-e` with a value), hides the
//! real arguments from us (`-s`, `--protect-args`, `--secluded-args`), deletes on the sending side
//! (`--remove-source-files`), or follows links out of the tree (`-K`, `-L`) is refused because it
//! is not on the list. The paths must be `.` and `.`: the destination is always the client's own
//! staging directory, which the server names itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Short option letters accepted in the bundle (besides `e`, which starts the capabilities).
///
/// archive mode (`-a` = `-rlptgoD`), `-H` hard links, `-A` ACLs, `-X` xattrs, `-z` compress,
/// `-v` verbose, `-S` sparse, `-c` checksum, `-x` one file system (sender side, harmless),
/// `-W` whole file, `-I` ignore times, `-R` relative paths (each source lands in staging at its
/// full path; the receiver still writes only inside the module).
pub const ALLOWED_SHORT: &str = "rlptgoDHAXzvScxWIR";

/// Capability letters rsync 3.2/3.4 clients send after `-e.`.
pub const ALLOWED_CAPABILITIES: &str = "iLsfxCIvu";

/// Long options accepted exactly as written.
///
/// `--delete` (deletions as the transfer goes) and `--delete-delay` (deletions after it) are the
/// deletion forms accepted: they only ever delete inside the destination. rsbackup's client sends
/// `--delete-delay`, and `--delay-updates` (new contents wait in `.~tmp~` directories until the
/// transfer ends) when `prepare` named a quota, so that an upload stopped half-way over its
/// quota has changed as little of staging as rsync allows. They must come from the client: a receiver
/// given `--delay-updates` that its sender does not know breaks the protocol on larger trees
/// (seen with rsync 3.5.0 and 20,000 files), so the server passes options through, never adds. `--inplace` is absent on purpose: it rewrites staging files in
/// place, which would defeat the hollow staging mode's placeholders.
pub const ALLOWED_LONG: [&str; 7] = [
    "--delete",
    "--delete-delay",
    "--delay-updates",
    "--stats",
    "--partial",
    "--numeric-ids",
    "--safe-links",
];

/// `--modify-window=-1` as rsync sends it to the server: compare modification times to the
/// nanosecond. Without it rsync compares whole seconds, so a file rewritten with its old size in
/// the same second as the last run, or a directory that changed in the same second as its staged
/// copy, kept the stale copy (or time) in staging.
pub const NANOSECOND_TIMES: &str = "-@-1";

/// Long options accepted with a numeric value (`--timeout=600`).
pub const ALLOWED_LONG_NUMERIC: [&str; 2] = ["--timeout", "--bwlimit"];

/// A validated rsync server request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsyncRequest {
    /// `--sender`: the client downloads (restore) rather than uploads.
    pub sender: bool,
    /// The short option letters, in the order sent, without `e`.
    pub short: String,
    /// The capability string after `e` (e.g. `.iLsfxCIvu`), if sent.
    pub capabilities: Option<String>,
    /// The long options, in the order sent.
    pub long: Vec<String>,
}

impl RsyncRequest {
    /// Parse the words of a command line that starts with `rsync`. `words` come from the
    /// caller's split on ASCII spaces (see `authz`); the reason for a refusal is returned.
    pub fn parse(words: &[&str]) -> Result<RsyncRequest, String> {
        let mut words = words.iter().copied();
        if words.next() != Some("rsync") {
            return Err("not an rsync command (the program must be \"rsync\")".into());
        }
        if words.next() != Some("--server") {
            return Err("rsync without --server as its first option".into());
        }
        let mut req = RsyncRequest {
            sender: false,
            short: String::new(),
            capabilities: None,
            long: Vec::new(),
        };
        let mut paths = Vec::new();
        for word in words {
            if !paths.is_empty() || !word.starts_with('-') {
                paths.push(word);
                continue;
            }
            if word == "--sender" {
                req.sender = true;
            } else if word == NANOSECOND_TIMES {
                req.long.push(word.to_owned());
            } else if let Some(long) = word.strip_prefix("--") {
                req.long_option(long)?;
            } else {
                req.short_bundle(&word[1..])?;
            }
        }
        check_paths(&paths)?;
        Ok(req)
    }

    fn long_option(&mut self, long: &str) -> Result<(), String> {
        let word = format!("--{long}");
        if ALLOWED_LONG.contains(&word.as_str()) {
            self.long.push(word);
            return Ok(());
        }
        if let Some((name, value)) = word.split_once('=')
            && ALLOWED_LONG_NUMERIC.contains(&name)
        {
            if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "rsync option {name} needs a plain number, not {value:?}"
                ));
            }
            self.long.push(word);
            return Ok(());
        }
        let name = word.split_once('=').map_or(word.as_str(), |(n, _)| n);
        Err(format!("rsync option {name} is not allowed"))
    }

    fn short_bundle(&mut self, bundle: &str) -> Result<(), String> {
        if bundle.is_empty() {
            return Err("a lone \"-\" is not an rsync option".into());
        }
        for (i, letter) in bundle.char_indices() {
            if letter == 'e' {
                if self.capabilities.is_some() {
                    return Err("rsync capability string (-e) sent twice".into());
                }
                self.capabilities = Some(check_capabilities(&bundle[i + 1..])?);
                return Ok(());
            }
            match letter {
                's' => return Err("rsync -s (--protect-args/--secluded-args) is not allowed: it hides the real arguments".into()),
                l if ALLOWED_SHORT.contains(l) => self.short.push(l),
                other => return Err(format!("rsync option -{other} is not allowed")),
            }
        }
        Ok(())
    }

    /// The argument list the server gives its confined rsync daemon
    /// ([`crate::server::rsync_daemon`]) for this request: `--server`, the validated options as
    /// the client sent them, `.`, and `MODULE/` (the generated module whose path is the client's
    /// staging). Symlinks are munged, `fake super` is on and the path is confined by the daemon's
    /// module, not by these words.
    pub fn daemon_args(&self, module: &str) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["--server".into()];
        if self.sender {
            argv.push("--sender".into());
        }
        let mut bundle = format!("-{}", self.short);
        if let Some(caps) = &self.capabilities {
            bundle.push('e');
            bundle.push_str(caps);
        }
        if bundle.len() > 1 {
            argv.push(bundle.into());
        }
        argv.extend(self.long.iter().map(OsString::from));
        argv.push(".".into());
        argv.push(format!("{module}/").into());
        argv
    }
}

/// Where `--delay-updates` keeps a directory's new files until the transfer ends.
pub const DELAY_DIR: &str = ".~tmp~";

fn check_capabilities(caps: &str) -> Result<String, String> {
    // Sub-version prefix: "." for release builds, "PROTOCOL.SUBPROTOCOL" (e.g. "32.1") for
    // pre-releases; then the feature letters.
    let Some((protocol, rest)) = caps.split_once('.') else {
        return Err(format!("rsync capability string {caps:?} has no \".\""));
    };
    let letters = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let subprotocol = &rest[..rest.len() - letters.len()];
    if !protocol.bytes().all(|b| b.is_ascii_digit())
        || protocol.len() > 3
        || subprotocol.len() > 3
        || protocol.is_empty() != subprotocol.is_empty()
        || letters.chars().any(|c| !ALLOWED_CAPABILITIES.contains(c))
    {
        return Err(format!(
            "rsync capability string {caps:?} is not one rsbackup knows"
        ));
    }
    Ok(caps.to_owned())
}

fn check_paths(paths: &[&str]) -> Result<(), String> {
    for p in paths {
        if p.starts_with('/') {
            return Err(format!(
                "rsync path {p:?} is absolute; only the client's own staging area can be written"
            ));
        }
        if p.split('/').any(|part| part == "..") {
            return Err(format!("rsync path {p:?} contains \"..\""));
        }
    }
    match paths {
        [".", dest] if *dest == "." || *dest == "./" => Ok(()),
        [".", dest] => Err(format!(
            "rsync destination {dest:?} is not allowed: the client writes to \"host:\" and the \
             server picks the staging directory"
        )),
        [] | [_] => Err("rsync command without the \". DEST\" paths".into()),
        _ => Err(format!(
            "rsync command with {} path arguments; expected \". .\"",
            paths.len()
        )),
    }
}

/// The client's staging directory, checked: `root/name` must exist, be a directory and not a
/// symlink, and resolve inside the canonical `root`. Returns the canonical path.
pub fn checked_staging_dir(root: &Path, name: &crate::config::ClientName) -> Result<PathBuf> {
    let root = root
        .canonicalize()
        .map_err(|e| Error::io(format!("staging root {}", root.display()), e))?;
    let dir = root.join(name.as_str());
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| {
        Error::io(
            format!("staging directory of client {name}: {}", dir.display()),
            e,
        )
    })?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(Error::invalid(format!(
            "staging directory of client {name}: {} is not a directory (a symlink?); refusing to \
             write through it",
            dir.display()
        )));
    }
    let canonical = dir.canonicalize().map_err(|e| {
        Error::io(
            format!("staging directory of client {name}: {}", dir.display()),
            e,
        )
    })?;
    if canonical != dir {
        return Err(Error::invalid(format!(
            "staging directory of client {name}: {} resolves to {}, outside the staging root",
            dir.display(),
            canonical.display()
        )));
    }
    Ok(canonical)
}

#[cfg(test)]
#[path = "rsync_argv_tests.rs"]
mod tests;
