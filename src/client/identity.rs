//! Who this client says it is on every request: its configured name and a machine identity
//! derived from the machine's `/etc/machine-id` (`machine-id-file`), sent as the prefix of
//! format-spec/wire.md ("The client identity prefix").
//!
//! The raw machine-id never leaves the machine: what travels is the first 16 bytes of BLAKE3 in
//! key-derivation mode with the context [`MACHINE_ID_CONTEXT`] over the file's first line, so
//! it cannot be matched against the machine-id other programs may show, yet is stable for as
//! long as the machine keeps its machine-id (a cloned VM that regenerates it becomes a new
//! machine, which is the point).

use std::path::Path;

use crate::config::ClientConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::format::client_identity::{MachineId, StatedIdentity};

/// The BLAKE3 key-derivation context of the machine identity.
pub const MACHINE_ID_CONTEXT: &str = "rsbackup 2026-12 client machine identity v1";

/// The machine identity from the contents of a machine-id file (its first line, trimmed).
/// An empty file or systemd's `uninitialized` is refused: an image whose machine-id is not set
/// yet would give every machine made from it the same identity.
pub fn machine_id_from(text: &str, path: &Path) -> Result<MachineId> {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() || line == "uninitialized" {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{} is empty or uninitialized: this machine has no machine-id yet (run \
                 systemd-machine-id-setup, or set machine-id-file in client.toml)",
                path.display()
            ),
        ));
    }
    let full = blake3::derive_key(MACHINE_ID_CONTEXT, line.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    Ok(MachineId::from_bytes(id))
}

/// This client's identity for the wire: its name and the identity of the machine whose
/// machine-id file `config` names.
pub fn stated_identity(config: &ClientConfig) -> Result<StatedIdentity> {
    let path = &config.machine_id_file;
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!(
                "cannot read the machine id {} ({e}); set machine-id-file in {}",
                path.display(),
                config.path.display()
            ),
        )
    })?;
    Ok(StatedIdentity {
        client: config.name.to_string(),
        machine: machine_id_from(&text, path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_stably_and_never_the_raw_id() {
        let p = Path::new("/etc/machine-id");
        let raw = "4c4c4544004d3610804cb4c04f4e4d32";
        let a = machine_id_from(&format!("{raw}\n"), p).unwrap();
        assert_eq!(
            a,
            machine_id_from(raw, p).unwrap(),
            "trailing newline ignored"
        );
        assert_ne!(a.to_string(), raw);
        // Pinned: the identity a machine sends must not change between versions.
        let identity = StatedIdentity {
            client: "web1".into(),
            machine: a,
        };
        let command = format!("{} prepare", identity.prefix());
        crate::format::pack::vector_file::check_or_write(
            "client-identity.txt",
            &[
                ("expect", "success".to_owned()),
                (
                    "description",
                    "the prepare command of client web1 (data: SSH_ORIGINAL_COMMAND as ASCII)"
                        .to_owned(),
                ),
                ("machine-id-file-line", raw.to_owned()),
                ("machine", a.to_string()),
            ],
            command.as_bytes(),
        );
        assert_ne!(
            a,
            machine_id_from("4c4c4544004d3610804cb4c04f4e4d33", p).unwrap()
        );
        for bad in ["", "\n", "uninitialized\n"] {
            let err = machine_id_from(bad, p).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(err.message().contains("/etc/machine-id is empty"), "{err}");
        }
    }
}
