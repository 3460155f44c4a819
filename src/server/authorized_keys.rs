//! `rsbackup authorized-keys`: the `authorized_keys` lines that bind each client's keys to its
//! forced command.

use std::collections::BTreeMap;

use crate::config::ServerConfig;
use crate::error::{Error, Result};

/// One line per key: `command="PREFIX --client NAME",restrict KEY`. `serve_prefix` is how sshd
/// should start the server, e.g. `/usr/bin/rsbackup serve` (with `--config FILE` when the file
/// is not in the default place). A key that appears twice, in one client or two, is refused:
/// sshd would use the first line only, and the other client would silently be someone else.
pub fn authorized_keys_lines(config: &ServerConfig, serve_prefix: &str) -> Result<Vec<String>> {
    if serve_prefix.is_empty()
        || serve_prefix
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(Error::invalid(format!(
            "forced command prefix {serve_prefix:?} is empty or contains a quote, backslash or control character"
        )));
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut lines = Vec::new();
    for (name, policy) in &config.clients {
        for key in &policy.keys {
            if let Some(other) = seen.insert(&key.blob, name.as_str()) {
                return Err(Error::new(
                    crate::ErrorKind::Config,
                    format!(
                        "{}: ssh key {} {}... appears twice (clients {other} and {name}); a key must identify one client",
                        config.path.display(),
                        key.algorithm,
                        &key.blob[..key.blob.len().min(24)]
                    ),
                ));
            }
            let mut line = format!(
                "command=\"{serve_prefix} --client {name}\",restrict {} {}",
                key.algorithm, key.blob
            );
            if !key.comment.is_empty() {
                line.push(' ');
                line.push_str(&key.comment);
            }
            lines.push(line);
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::SshPublicKey;

    const TEXT: &str = r#"repository = "/srv/repo"
staging-root = "/srv/staging"
[mail]
from = "rsbackup@example.org"
admin = ["root@example.org"]
transport = "directory"
directory = "/tmp/mail"
[defaults]
addresses = ["192.0.2.0/24"]
windows = ["daily 00:00-24:00"]
[clients.web1]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111 web1@host", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDygXUhsuHsR9+nkmxONByzzpgZ0ttqcFcFuChmvkGAncMyvOooWzmJMLuCtA36APqcc/4nceYZOJbSgxCVKy5XkRzJvVilIOUVc2GPQk8xldStpy3j6U6oDXQUU0QOXpDelniYyd0qrh/a8zd7fEBRNO6pCwcR9Z6gcmvks6bPAQE6HERNtIXAhHmUzSiIGZa027vZfm6V8VSNl5KcgVp2auTL8+f30IANv3JAZNtXj/PSgFgLctELjlHuTu44V+c4OzW2/UF5NBBDqa67ghvMUSBJfwMW1ahJwg/68LMJ3HggMy2tHYCt0J3vTSFJHSwijKPnklEtmlc7wnkzJck1"]
[clients.db1]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE222222222222222222222222222222222222222222"]
"#;

    #[test]
    fn lines_bind_keys_to_clients() {
        let cfg = ServerConfig::parse(TEXT, Path::new("/etc/rsbackup/server.toml")).unwrap();
        let lines = authorized_keys_lines(&cfg, "/usr/bin/rsbackup serve").unwrap();
        assert_eq!(
            lines,
            [
                "command=\"/usr/bin/rsbackup serve --client db1\",restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE222222222222222222222222222222222222222222",
                "command=\"/usr/bin/rsbackup serve --client web1\",restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111 web1@host",
                "command=\"/usr/bin/rsbackup serve --client web1\",restrict ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDygXUhsuHsR9+nkmxONByzzpgZ0ttqcFcFuChmvkGAncMyvOooWzmJMLuCtA36APqcc/4nceYZOJbSgxCVKy5XkRzJvVilIOUVc2GPQk8xldStpy3j6U6oDXQUU0QOXpDelniYyd0qrh/a8zd7fEBRNO6pCwcR9Z6gcmvks6bPAQE6HERNtIXAhHmUzSiIGZa027vZfm6V8VSNl5KcgVp2auTL8+f30IANv3JAZNtXj/PSgFgLctELjlHuTu44V+c4OzW2/UF5NBBDqa67ghvMUSBJfwMW1ahJwg/68LMJ3HggMy2tHYCt0J3vTSFJHSwijKPnklEtmlc7wnkzJck1",
            ]
        );
        assert!(authorized_keys_lines(&cfg, "rsbackup serve\" ,no-restrict").is_err());
        assert!(authorized_keys_lines(&cfg, "").is_err());
    }

    #[test]
    fn duplicate_key_is_refused_even_when_built_in_code() {
        let mut cfg = ServerConfig::parse(TEXT, Path::new("/etc/rsbackup/server.toml")).unwrap();
        let dup = SshPublicKey::parse("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDygXUhsuHsR9+nkmxONByzzpgZ0ttqcFcFuChmvkGAncMyvOooWzmJMLuCtA36APqcc/4nceYZOJbSgxCVKy5XkRzJvVilIOUVc2GPQk8xldStpy3j6U6oDXQUU0QOXpDelniYyd0qrh/a8zd7fEBRNO6pCwcR9Z6gcmvks6bPAQE6HERNtIXAhHmUzSiIGZa027vZfm6V8VSNl5KcgVp2auTL8+f30IANv3JAZNtXj/PSgFgLctELjlHuTu44V+c4OzW2/UF5NBBDqa67ghvMUSBJfwMW1ahJwg/68LMJ3HggMy2tHYCt0J3vTSFJHSwijKPnklEtmlc7wnkzJck1 other").unwrap();
        cfg.clients.values_mut().next().unwrap().keys.push(dup);
        let err = authorized_keys_lines(&cfg, "rsbackup serve").unwrap_err();
        assert!(err.message().contains("appears twice (clients"), "{err}");
        // And the file itself refuses it at load time.
        let text = TEXT.replace(&"2".repeat(42), &"1".repeat(42));
        assert!(
            ServerConfig::parse(&text, Path::new("/x.toml"))
                .unwrap_err()
                .message()
                .contains("also a key of client")
        );
    }
}
