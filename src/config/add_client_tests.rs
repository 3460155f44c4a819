use std::path::{Path, PathBuf};

use super::*;
use crate::error::ErrorKind;

const NEW_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE333333333333333333333333333333333333333333 app1@host";

fn base() -> String {
    format!(
        "# the backup server\n{}\n# end of the clients\n",
        crate::config::server::tests::example()
    )
}

fn new_client(name: &str, key: &str) -> NewClient {
    NewClient {
        name: name.to_owned(),
        key_text: format!("{key}\n"),
        key_file: PathBuf::from("/tmp/app1.pub"),
        addresses: vec!["192.0.2.20".into(), "2001:db8:20::/64".into()],
        windows: vec!["daily 01:00-05:00".into()],
    }
}

fn append(text: &str, client: &NewClient) -> Result<(String, ServerConfig)> {
    append_client(text, Path::new("/etc/rsbackup/server.toml"), client)
}

#[test]
fn appends_a_table_and_keeps_the_text_before_it() {
    let text = base();
    let (out, config) = append(&text, &new_client("app1", NEW_KEY)).unwrap();
    assert!(
        out.starts_with(&text),
        "the file before the new table changed"
    );
    let tail = &out[text.len()..];
    assert!(tail.contains("[clients.app1]\n"), "{tail}");
    assert!(tail.contains(NEW_KEY), "{tail}");
    let app1 = config.client("app1").expect("app1 loads");
    assert_eq!(app1.keys[0].comment, "app1@host");
    assert_eq!(app1.addresses.len(), 2);
    assert_eq!(app1.windows.len(), 1);
    // The existing clients are untouched.
    assert!(config.client("web1").is_some() && config.client("db1").is_some());
}

#[test]
fn without_windows_the_defaults_apply_without_addresses_the_loader_refuses() {
    let mut client = new_client("app1", NEW_KEY);
    client.windows.clear();
    let (out, config) = append(&base(), &client).unwrap();
    assert!(!out[base().len()..].contains("windows"), "{out}");
    assert_eq!(
        config.client("app1").unwrap().windows.len(),
        2,
        "[defaults] windows"
    );
    client.addresses.clear();
    let msg = append(&base(), &client).unwrap_err().to_string();
    assert!(msg.contains("client app1: addresses is missing"), "{msg}");
}

#[test]
fn refuses_a_duplicate_name_and_says_where() {
    let err = append(&base(), &new_client("web1", NEW_KEY)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let msg = err.to_string();
    assert!(
        msg.contains("web1 exists already") && msg.contains("server.toml"),
        "{msg}"
    );
    assert!(msg.contains("(line "), "{msg}");
}

#[test]
fn refuses_a_bad_key_a_private_key_and_two_keys() {
    let msg = append(&base(), &new_client("app1", "not-a-key AAAA"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("--key /tmp/app1.pub") && msg.contains("not a known key type"),
        "{msg}"
    );
    let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n";
    let msg = append(&base(), &new_client("app1", private))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("private key"), "{msg}");
    let two = format!("{NEW_KEY}\n{NEW_KEY}");
    let msg = append(&base(), &new_client("app1", &two))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("more than one key"), "{msg}");
    let msg = append(&base(), &new_client("app1", "# only a comment"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("holds no key"), "{msg}");
}

#[test]
fn refuses_a_key_another_client_has() {
    let web1_key = crate::config::server::tests::example()
        .lines()
        .find_map(|l| {
            l.strip_prefix("keys = [\"")
                .map(|k| k.trim_end_matches("\"]").to_owned())
        })
        .unwrap();
    let err = append(&base(), &new_client("app1", &web1_key)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[test]
fn refuses_bad_names_addresses_and_windows() {
    let msg = append(&base(), &new_client("App/1", NEW_KEY))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("client name"), "{msg}");
    let mut client = new_client("app1", NEW_KEY);
    client.addresses = vec!["192.0.2.300".into()];
    let msg = append(&base(), &client).unwrap_err().to_string();
    assert!(msg.contains("--address \"192.0.2.300\""), "{msg}");
    let mut client = new_client("app1", NEW_KEY);
    client.windows = vec!["someday 01:00-02:00".into()];
    let msg = append(&base(), &client).unwrap_err().to_string();
    assert!(msg.contains("--window") && msg.contains("someday"), "{msg}");
}

#[test]
fn a_file_that_does_not_load_is_reported_as_it_is() {
    let text = base().replace("staging-root", "staging-rot");
    let msg = append(&text, &new_client("app1", NEW_KEY))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("server.toml:"), "{msg}");
}
