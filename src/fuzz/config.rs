//! Targets for the configuration files and their values. An administrator writes these, not an
//! attacker, but a typo must give an error naming the file and line, never a crash.

use std::path::Path;

use crate::config::retention::parse_span;
use crate::config::server::parse_network;
use crate::config::{ClientConfig, ClientName, ServerConfig, SshPublicKey, TimeWindow, parse_size};
use crate::format::client_identity::MachineId;
use crate::server::authorized_keys::authorized_keys_lines;

/// `client.toml`; a refusal names the file.
pub fn client_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = ClientConfig::parse(&text, Path::new("/fuzz/client.toml")) {
        assert!(e.message().contains("/fuzz/client.toml"), "{e}");
    }
}

/// Seeds for [`client_config`].
pub fn client_config_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"name = "web1"
sources = ["/etc", "/var/www"]
excludes = ["*.tmp", "/var/www/cache/"]
init-hooks = [{ argv = ["/usr/local/bin/dump-db", "--all"], timeout-seconds = 900 }]
cleanup-hooks = [{ argv = ["/bin/rm", "-f", "/var/backups/db.sql"] }]

[server]
host = "backup.example.org"
port = 2222
ssh-key = "/etc/rsbackup/id_ed25519"

[mail]
from = "rsbackup@web1.example.org"
errors-to = ["ops@example.org"]
reports-to = ["backup-reports@example.org"]
transport = "smtp"
host = "mail.example.org"
security = "tls"
username = "web1"
password-file = "/etc/rsbackup/smtp-password"
"#
        .to_vec(),
    ]
}

/// `server.toml`; a refusal names the file, and an accepted one gives its authorized_keys
/// lines and windows that print and parse back equal.
pub fn server_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match ServerConfig::parse(&text, Path::new("/fuzz/server.toml")) {
        Err(e) => assert!(e.message().contains("/fuzz/server.toml"), "{e}"),
        Ok(config) => {
            let _ = authorized_keys_lines(&config, "/usr/bin/rsbackup serve");
            for client in config.clients.values() {
                for w in &client.windows {
                    assert_eq!(&TimeWindow::parse(&w.to_string()).expect("reparse"), w);
                }
            }
        }
    }
}

/// Seeds for [`server_config`].
pub fn server_config_seeds() -> Vec<Vec<u8>> {
    let example = super::server::server_config_text();
    let more = example.replace(
        "[clients.web1]",
        "[defaults]\nwindows = [\"mon-fri 22:00-06:00\", \"sat,sun 00:00-24:00\"]\n\
         timezone = \"Europe/Berlin\"\nstaging-mode = \"hollow\"\n\n[clients.db1]\n\
         keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2222222222222222222222222222222222222222 \
         db1@host\"]\naddresses = [\"198.51.100.0/24\", \"2001:db8::/64\"]\nquota = \"200G\"\n\
         prepare-hooks = [{ argv = [\"/usr/local/bin/check-space\", \"db1\"], timeout-seconds = \
         60 }]\n\n[clients.web1]",
    );
    vec![example.as_bytes().to_vec(), more.into_bytes()]
}

/// One config value a line: each line is tried as a window, a network, a size, a span, a
/// client name, an ssh public key and a machine id. Windows and networks print and parse back
/// equal.
pub fn values(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(w) = TimeWindow::parse(line) {
            assert_eq!(TimeWindow::parse(&w.to_string()).expect("reparse"), w);
        }
        if let Ok(net) = parse_network(line) {
            assert_eq!(parse_network(&net.to_string()).expect("reparse"), net);
        }
        let _ = parse_size(line);
        let _ = parse_span(line);
        if let Ok(name) = ClientName::parse(line) {
            assert_eq!(name.as_str(), line);
        }
        let _ = SshPublicKey::parse(line);
        if let Ok(id) = MachineId::parse(line) {
            assert_eq!(id.to_string(), line);
        }
    }
}

/// Seeds for [`values`].
pub fn values_seeds() -> Vec<Vec<u8>> {
    vec![
        b"mon-fri 22:00-06:00\nfri-mon 00:00-24:00\ndaily 01:30-01:31\n* 23:59-00:01\n\
          192.0.2.0/24\n2001:db8::/32\n::ffff:192.0.2.1\n500M\n200G\n1T\n4096\n30d\n1w 2d\n36h\n\
          web1\ndb-1.example\n0123456789abcdef0123456789abcdef\n\
          ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1111111111111111111111111111111111111111 web1@host\n"
            .to_vec(),
    ]
}
