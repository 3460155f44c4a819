//! `restore-recipient` and the `restore` command in server.toml.

use std::path::Path;

use crate::config::server::tests::example;
use crate::config::{Command, ServerConfig};
use crate::error::ErrorKind;

fn parse(text: &str) -> crate::error::Result<ServerConfig> {
    ServerConfig::parse(text, Path::new("/etc/rsbackup/server.toml"))
}

fn recipient() -> String {
    crate::crypto::wrap::keygen().1
}

/// `text` with `line` added to the table of `[clients.NAME]` (after its `keys`).
fn with_line(text: &str, client: &str, line: &str) -> String {
    let head = format!("[clients.{client}]\n");
    let at = text.find(&head).unwrap() + head.len();
    format!("{}{line}\n{}", &text[..at], &text[at..])
}

fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].lines().count()
}

#[test]
fn a_client_may_have_a_restore_recipient_and_restore_only_when_listed() {
    let r = recipient();
    let text = with_line(&example(), "web1", &format!("restore-recipient = {r:?}"));
    let config = parse(&text).unwrap();
    let web1 = config.client("web1").unwrap();
    assert_eq!(web1.restore_recipient.as_deref(), Some(r.as_str()));
    assert!(config.client("db1").unwrap().restore_recipient.is_none());
    // Not among the commands a client gets without `commands`.
    assert!(!web1.commands.contains(&Command::Restore));
    let text = with_line(
        &text,
        "web1",
        "commands = [\"prepare\", \"upload\", \"complete\", \"restore\"]",
    );
    assert!(
        parse(&text)
            .unwrap()
            .client("web1")
            .unwrap()
            .commands
            .contains(&Command::Restore)
    );
}

#[test]
fn bad_shared_or_default_restore_recipients_are_refused_with_file_and_line() {
    let check = |text: String, needle: &str, why: &str| {
        let err = parse(&text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let at = format!("/etc/rsbackup/server.toml:{}:", line_of(&text, needle));
        assert!(err.message().starts_with(&at), "{err} is not at {at}");
        assert!(err.message().contains(why), "{err} lacks {why}");
    };
    let bad = with_line(&example(), "web1", "restore-recipient = \"age1nope\"");
    check(
        bad,
        "age1nope",
        "client web1: restore-recipient: recipient #1 \"age1nope\" is not an age X25519",
    );
    let r = recipient();
    let line = format!("restore-recipient = {r:?}");
    let shared = with_line(&with_line(&example(), "web1", &line), "db1", &line);
    // The second of the two in file order (clients are checked by name: db1 first).
    let err = parse(&shared).unwrap_err();
    assert!(
        err.message()
            .contains("restore-recipient is also client db1's"),
        "{err}"
    );
    let defaults = example().replace("[defaults]\n", &format!("[defaults]\n{line}\n"));
    check(defaults, &r, "[defaults] restore-recipient");
    let secret = with_line(
        &example(),
        "web1",
        "restore-recipient = \"AGE-SECRET-KEY-1QQQQ\"",
    );
    let err = parse(&secret).unwrap_err();
    assert!(err.message().contains("private key"), "{err}");
    assert!(!err.message().contains("AGE-SECRET-KEY-1QQQQ"), "{err}");
}
