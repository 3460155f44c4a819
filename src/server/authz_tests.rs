use std::path::Path;

use super::*;

const UPLOAD: &str =
    "rsync --server -lHogDtpre.iLsfxCIvu --delete --stats --partial --numeric-ids . .";
const DOWNLOAD: &str = "rsync --server --sender -lHogDtpre.iLsfxCIvu --numeric-ids . .";

fn config() -> ServerConfig {
    let text = r#"repository = "/srv/repo"
staging-root = "/srv/staging"
[mail]
from = "rsbackup@example.org"
admin = ["root@example.org"]
transport = "directory"
directory = "/tmp/mail"

[clients.web1]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1111111111111111111111111111111111111111"]
addresses = ["192.0.2.10", "2001:db8::/64"]
windows = ["mon-fri 22:00-06:00", "sat,sun 00:00-24:00"]
timezone = "Europe/Berlin"

[clients.db1]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2222222222222222222222222222222222222222"]
addresses = ["0.0.0.0/0", "::/0"]
windows = ["daily 00:00-24:00"]
commands = ["prepare", "upload"]
restore = true
"#;
    ServerConfig::parse(text, Path::new("/etc/rsbackup/server.toml")).unwrap()
}

/// Saturday 2026-11-28 03:00 in Berlin (02:00 UTC): inside web1's Friday-night window.
fn saturday_night() -> Timestamp {
    "2026-11-28T02:00:00Z".parse().unwrap()
}

fn conn(ip: &str) -> String {
    format!("{ip} 50022 192.0.2.1 22")
}

fn decide(client: &str, ip: &str, cmd: &str, now: Timestamp) -> Decision {
    authorize(&config(), client, Some(&conn(ip)), Some(cmd), now)
}

#[test]
fn allowed_requests() {
    let d = decide("web1", "192.0.2.10", UPLOAD, saturday_night());
    assert!(d.allowed, "{}", d.reason);
    assert!(matches!(d.request, Some(Request::Upload(_))));
    assert_eq!(d.client_ip, Some("192.0.2.10".parse().unwrap()));
    for cmd in ["prepare", "complete", "sessions"] {
        let d = decide("web1", "2001:db8::42", cmd, saturday_night());
        assert!(d.allowed, "{cmd}: {}", d.reason);
        assert_eq!(d.request.unwrap().name(), cmd);
    }
    let d = decide("db1", "203.0.113.9", DOWNLOAD, saturday_night());
    assert!(d.allowed, "{}", d.reason);
    assert!(matches!(d.request, Some(Request::Download(_))));
}

#[test]
fn unknown_client_and_bad_connection() {
    let d = decide("nobody", "192.0.2.10", "prepare", saturday_night());
    assert!(!d.allowed);
    assert!(
        d.reason.contains("\"nobody\" is not configured"),
        "{}",
        d.reason
    );
    let d = authorize(&config(), "web1", None, Some("prepare"), saturday_night());
    assert!(
        !d.allowed && d.reason.contains("SSH_CONNECTION is not set"),
        "{}",
        d.reason
    );
    for bad in [
        "",
        "garbage 1 2 3",
        "192.0.2.10\n 1 2 3",
        "192.0.2.300 1 2 3",
    ] {
        let d = authorize(
            &config(),
            "web1",
            Some(bad),
            Some("prepare"),
            saturday_night(),
        );
        assert!(!d.allowed, "{bad:?}");
    }
}

#[test]
fn addresses() {
    let d = decide("web1", "192.0.2.11", "prepare", saturday_night());
    assert!(!d.allowed);
    assert!(
        d.reason
            .contains("address 192.0.2.11 is not in its addresses"),
        "{}",
        d.reason
    );
    // IPv4-mapped IPv6 matches the IPv4 rule, and is reported as IPv4.
    let d = decide("web1", "::ffff:192.0.2.10", "prepare", saturday_night());
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.client_ip, Some("192.0.2.10".parse().unwrap()));
    let d = decide("web1", "::ffff:192.0.2.11", "prepare", saturday_night());
    assert!(!d.allowed);
    assert!(!decide("web1", "2001:db9::1", "prepare", saturday_night()).allowed);
    assert!(decide("web1", "2001:db8::1%eth0", "prepare", saturday_night()).allowed);
}

#[test]
fn windows() {
    // Friday 2026-11-27 14:00 Berlin: outside.
    let d = decide(
        "web1",
        "192.0.2.10",
        "prepare",
        "2026-11-27T13:00:00Z".parse().unwrap(),
    );
    assert!(!d.allowed);
    assert!(
        d.reason
            .contains("2026-11-27 14:00 (Friday, Europe/Berlin) is outside its windows"),
        "{}",
        d.reason
    );
    // Monday 05:59 Berlin: the Sunday window ended at 24:00, but Monday 22:00-06:00 does not
    // cover Monday morning; Sunday is not in mon-fri.
    assert!(
        !decide(
            "web1",
            "192.0.2.10",
            "prepare",
            "2026-11-30T04:59:00Z".parse().unwrap()
        )
        .allowed
    );
    // Tuesday 05:59 Berlin: inside Monday's window that crosses midnight.
    assert!(
        decide(
            "web1",
            "192.0.2.10",
            "prepare",
            "2026-12-01T04:59:00Z".parse().unwrap()
        )
        .allowed
    );
    // Tuesday 06:00 Berlin: the window has ended.
    assert!(
        !decide(
            "web1",
            "192.0.2.10",
            "prepare",
            "2026-12-01T05:00:00Z".parse().unwrap()
        )
        .allowed
    );
}

#[test]
fn commands_are_checked_after_everything_else() {
    let d = decide("db1", "192.0.2.10", "complete", saturday_night());
    assert!(!d.allowed);
    assert!(
        d.reason.contains("command complete is not in its commands"),
        "{}",
        d.reason
    );
    assert_eq!(d.request, Some(Request::Complete));
    let d = decide("web1", "192.0.2.10", DOWNLOAD, saturday_night());
    assert!(!d.allowed);
    assert!(d.reason.contains("restore = true"), "{}", d.reason);
}

#[test]
fn command_parsing_attacks() {
    let long = format!("{UPLOAD} {}", "x".repeat(MAX_COMMAND_BYTES));
    for (cmd, needle) in [
        ("", "empty words"),
        ("prepare\n", "0x0a"),
        ("prepare\nrm -rf /", "0x0a"),
        ("prepare\0", "0x00"),
        ("prepare\t", "0x09"),
        ("prépare", "0xc3"),
        ("prepare  ", "empty words"),
        (" prepare", "empty words"),
        ("prepare now", "takes no arguments"),
        ("prepare;id", "unknown command"),
        ("'prepare'", "quoting"),
        ("\"prepare\"", "quoting"),
        ("prep\\are", "quoting"),
        ("`id`", "quoting"),
        ("bash -i", "unknown command"),
        ("scp -t /", "unknown command"),
        ("internal-sftp", "unknown command"),
        (long.as_str(), "over the limit"),
        (
            "rsync --server --sender -lHogDtpre.iLsfxCIvu . /etc",
            "absolute",
        ),
        (
            "rsync --server -lHogDtpre.iLsfxCIvu --delete . ../db1",
            "\"..\"",
        ),
    ] {
        let err = parse_command(Some(cmd)).expect_err(cmd);
        assert!(err.contains(needle), "{cmd:?}: {err:?} lacks {needle:?}");
        let d = decide("web1", "192.0.2.10", cmd, saturday_night());
        assert!(!d.allowed, "{cmd:?}");
    }
    assert!(
        parse_command(None)
            .unwrap_err()
            .contains("interactive login")
    );
}

#[test]
fn refusal_message_says_nothing_specific() {
    assert!(!REFUSAL_MESSAGE.contains("address"));
    assert!(!REFUSAL_MESSAGE.contains("window"));
}

proptest::proptest! {
    /// Whatever arrives in SSH_ORIGINAL_COMMAND, parsing never panics, and anything accepted
    /// is plain printable ASCII without quotes.
    #[test]
    fn any_command_is_handled(cmd in "\\PC{0,80}|[ -~\\n\\t]{0,200}") {
        if parse_command(Some(&cmd)).is_ok() {
            proptest::prop_assert!(cmd.bytes().all(|b| (0x20..0x7f).contains(&b)));
            proptest::prop_assert!(!cmd.contains(['"', '\'', '`', '\\']));
        }
        let record = crate::server::audit::escape_for_log(&cmd, 256);
        proptest::prop_assert!(record.len() <= 256);
        proptest::prop_assert!(record.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }

    /// Random rsync words: only the allow-listed shapes pass, and the destination never moves.
    #[test]
    fn any_rsync_line_keeps_the_destination(
        opts in proptest::collection::vec("-[lHogDtpreAXsKLT.iCIvu]{1,12}|--(delete|stats|partial|sender|timeout|inplace|[a-z-]{1,14})(=[0-9a-z/.]{0,6})?", 0..6),
        paths in proptest::collection::vec("\\.|\\./|\\.\\.|[./a-z]{1,6}", 0..4),
    ) {
        let mut words = vec!["rsync", "--server"];
        words.extend(opts.iter().map(String::as_str));
        words.extend(paths.iter().map(String::as_str));
        if let Ok(req) = RsyncRequest::parse(&words) {
            let argv = req.daemon_args("upload");
            proptest::prop_assert_eq!(argv.last().unwrap(), "upload/");
            proptest::prop_assert!(!argv.iter().any(|a| a.to_str().unwrap().starts_with('/')));
            proptest::prop_assert!(!req.short.contains(['s', 'K', 'L', 'T', 'M', 'f', 'B']));
        }
    }
}
