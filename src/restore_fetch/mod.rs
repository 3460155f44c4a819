//! A client restores its own sessions, decrypting on the client (format-spec/wire.md "Restore
//! fetch", format-spec/keys.md "Client scopes").
//!
//! The server's forced command answers `restore-fetch` ([`serve`]) with what the client's own
//! sessions hold, sealed as stored, and the data keys wrapped as stored; the client
//! ([`remote`]) opens them with its own identity, which only keys of its own dedup scope are
//! wrapped to, and verifies every chunk before the shared restore ([`crate::restore`]) writes
//! it. [`connect_ssh`] runs the request over the same ssh the push uses.

pub mod remote;
pub mod serve;
pub mod wire;

use std::io::Read;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use crate::client::remote::{Connection, server_label, ssh_command};
use crate::config::ClientConfig;
use crate::crypto::wrap::Identities;
use crate::error::{Error, ErrorKind, Result};

pub use remote::RemoteSource;

/// The word of the request after the client identity prefix.
pub const COMMAND: &str = "restore-fetch";

/// Exit code of `rsbackup serve` for a refused request.
const SERVE_REFUSED: i32 = crate::server::REFUSED_EXIT as i32;

/// A `restore-fetch` over ssh: the connection and the ssh process carrying it.
pub struct SshFetch {
    /// The chunks of the client's sessions, opened with its identity.
    pub source: RemoteSource<ChildStdout, ChildStdin>,
    child: Child,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

/// Start `ssh ... 'PREFIX restore-fetch'` to the server of `config` and greet it with
/// protocol `version` (see [`RemoteSource::connect`]).
pub fn connect_ssh(
    config: &ClientConfig,
    conn: &Connection,
    identities: Identities,
    version: u32,
) -> Result<SshFetch> {
    let identity = crate::client::identity::stated_identity(config)?;
    let mut command = ssh_command(config, conn, &identity, COMMAND);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| Error::io(format_args!("starting {}", config.ssh_path.display()), e))?;
    let (Some(stdin), Some(stdout), Some(mut err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::new(
            ErrorKind::Internal,
            "ssh started without its pipes",
        ));
    };
    // Bounded: ssh's and the server's messages, never the data.
    let stderr = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut err).take(64 << 10).read_to_end(&mut out);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        out
    });
    match RemoteSource::connect(stdout, stdin, config.name.as_str(), identities, version) {
        Ok(source) => Ok(SshFetch {
            source,
            child,
            stderr,
        }),
        Err(e) => {
            let _ = child.kill();
            let status = child.wait().ok();
            let said = stderr.join().unwrap_or_default();
            Err(explain(config, e, status.and_then(|s| s.code()), &said))
        }
    }
}

impl SshFetch {
    /// Close the connection and wait for ssh; an error names what ssh or the server said.
    pub fn finish(self) -> Result<()> {
        let SshFetch {
            source,
            mut child,
            stderr,
        } = self;
        drop(source);
        let status = child.wait().map_err(|e| Error::io("waiting for ssh", e))?;
        let said = stderr.join().unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Io,
            format!(
                "restore-fetch ended with {status}: {}",
                String::from_utf8_lossy(&said).trim()
            ),
        ))
    }
}

/// A failed greeting, in words: refused by the server, ssh could not connect, or other.
fn explain(config: &ClientConfig, e: Error, code: Option<i32>, said: &[u8]) -> Error {
    let said = String::from_utf8_lossy(said).trim().to_owned();
    let server = server_label(config);
    match code {
        Some(SERVE_REFUSED) => Error::new(
            ErrorKind::Refused,
            format!(
                "{server} refused restore-fetch for client {} ({said}); the server's \
                 administrator has the reason (it needs commands = [..., \"restore\"] and a \
                 restore-recipient for this client, from this address, in its windows)",
                config.name
            ),
        ),
        Some(255) => Error::new(ErrorKind::Io, format!("ssh to {server} failed: {said}")),
        _ if !said.is_empty() => Error::new(e.kind(), format!("{}: {said}", e.message())),
        _ => e,
    }
}

#[cfg(test)]
mod tests;
