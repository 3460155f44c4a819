//! Starting a mirror run after `complete` without holding the client's connection open.
//!
//! The run is a separate `rsbackup mirror --mail-failures` process with its standard streams on
//! `/dev/null` (so sshd sees the client's channel close as soon as `complete` answers) in its own
//! process group (so nothing aimed at the session's group reaches it). Its failures go to the
//! administrator by mail, from that process.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The command that mirrors `repository` to the target `target` of the configuration `config`.
pub fn after_complete_command(
    exe: &Path,
    config: &Path,
    repository: &Path,
    target: &str,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("mirror")
        .arg("--config")
        .arg(config)
        .arg("--repo")
        .arg(repository)
        .arg("--to")
        .arg(target)
        .arg("--mail-failures")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    cmd
}

/// Start [`after_complete_command`] and return at once with the child's process id. The child
/// is not waited for: when the caller exits, init reaps it.
pub fn spawn_after_complete(
    exe: &Path,
    config: &Path,
    repository: &Path,
    target: &str,
) -> Result<u32> {
    let child = after_complete_command(exe, config, repository, target)
        .spawn()
        .map_err(|e| {
            Error::io(
                format_args!("starting the mirror run to {target} ({})", exe.display()),
                e,
            )
        })?;
    Ok(child.id())
}
