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

/// Seeds for [`client_config`]: the `client.toml` examples of docs/configuration.md.
pub fn client_config_seeds() -> Vec<Vec<u8>> {
    documented_toml(|block| block.contains("[server]"))
}

/// The TOML examples of docs/configuration.md that `pick` chooses.
fn documented_toml(pick: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    include_str!("../../docs/configuration.md")
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .filter(|block| pick(block))
        .map(|block| block.as_bytes().to_vec())
        .collect()
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

/// Seeds for [`server_config`]: the fuzz server's own, and the `server.toml` examples of
/// docs/configuration.md.
pub fn server_config_seeds() -> Vec<Vec<u8>> {
    let mut seeds = documented_toml(|block| !block.contains("[server]"));
    seeds.push(super::server::server_config_text().as_bytes().to_vec());
    seeds
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
          ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111 web1@host\n"
            .to_vec(),
    ]
}
