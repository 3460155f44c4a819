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
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111"]
addresses = ["192.0.2.10", "2001:db8::/64"]
windows = ["mon-fri 22:00-06:00", "sat,sun 00:00-24:00"]
timezone = "Europe/Berlin"

[clients.db1]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE222222222222222222222222222222222222222222"]
addresses = ["0.0.0.0/0", "::/0"]
windows = ["daily 00:00-24:00"]
commands = ["prepare", "upload"]
restore = true
staging-mode = "keep"
"#;
    ServerConfig::parse(text, Path::new("/etc/rsbackup/server.toml")).unwrap()
}

const MACHINE: &str = "0123456789abcdef0123456789abcdef";

/// `cmd` as client `client` sends it: after the identity prefix.
fn stated(client: &str, cmd: &str) -> String {
    format!("rsbackup-client={client} rsbackup-machine={MACHINE} {cmd}")
}

/// Saturday 2026-11-28 03:00 in Berlin (02:00 UTC): inside web1's Friday-night window.
fn saturday_night() -> Timestamp {
    "2026-11-28T02:00:00Z".parse().unwrap()
}

fn conn(ip: &str) -> String {
    format!("{ip} 50022 192.0.2.1 22")
}

fn decide(client: &str, ip: &str, cmd: &str, now: Timestamp) -> Decision {
    let cmd = stated(client, cmd);
    authorize(&config(), client, Some(&conn(ip)), Some(&cmd), now)
}

#[test]
fn allowed_requests() {
    let d = decide("web1", "192.0.2.10", UPLOAD, saturday_night());
    assert!(d.allowed, "{}", d.reason);
    assert!(matches!(d.request, Some(Request::Upload(_))));
    assert_eq!(d.client_ip, Some("192.0.2.10".parse().unwrap()));
    let identity = d.identity.unwrap();
    assert_eq!(identity.client, "web1");
    assert_eq!(identity.machine.to_string(), MACHINE);
    assert!(d.reason.contains(MACHINE), "{}", d.reason);
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
    assert_eq!(d.request, Some(Request::Complete(Default::default())));
    let d = decide("web1", "192.0.2.10", DOWNLOAD, saturday_night());
    assert!(!d.allowed);
    assert!(d.reason.contains("restore = true"), "{}", d.reason);
}

#[test]
fn command_parsing_attacks() {
    let long = format!("{UPLOAD} {}", "x".repeat(MAX_COMMAND_BYTES));
    for (cmd, needle) in [
        ("", "empty words"),
        ("prepare", "did not state its name"),
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
        // "prepare" alone lacks the prefix; everything else follows a good prefix.
        let full = if cmd == "prepare" {
            cmd.to_owned()
        } else {
            stated("web1", cmd)
        };
        let err = parse_command(Some(&full)).expect_err(cmd);
        assert!(err.contains(needle), "{cmd:?}: {err:?} lacks {needle:?}");
        let d = authorize(
            &config(),
            "web1",
            Some(&conn("192.0.2.10")),
            Some(&full),
            saturday_night(),
        );
        assert!(!d.allowed, "{cmd:?}");
    }
    assert!(
        parse_command(None)
            .unwrap_err()
            .contains("interactive login")
    );
}

#[test]
fn identity_prefix_is_required_and_must_name_the_keys_client() {
    let ask = |client: &str, cmd: &str| {
        authorize(
            &config(),
            client,
            Some(&conn("192.0.2.10")),
            Some(cmd),
            saturday_night(),
        )
    };
    // No prefix: an older client.
    let d = ask("web1", "prepare");
    assert!(!d.allowed);
    assert!(
        d.reason
            .starts_with("client web1: the client did not state its name"),
        "{}",
        d.reason
    );
    // db1's client.toml with web1's key: refused, both names and the machine in the reason.
    let d = ask("web1", &stated("db1", "prepare"));
    assert!(!d.allowed);
    assert!(
        d.reason
            .contains("states client db1, but came with client web1's ssh key"),
        "{}",
        d.reason
    );
    assert!(d.reason.contains(MACHINE), "{}", d.reason);
    assert_eq!(d.identity.unwrap().client, "db1");
    // The same for an upload: the prefix comes in front of the rsync command too.
    let d = ask("web1", &stated("db1", UPLOAD));
    assert!(
        !d.allowed && d.reason.contains("states client db1"),
        "{}",
        d.reason
    );
    let d = ask("web1", &stated("web1", UPLOAD));
    assert!(d.allowed, "{}", d.reason);
}

#[test]
fn downloads_only_from_keep_staging() {
    for (mode, allowed, needle) in [
        ("keep", true, "download allowed"),
        ("hollow", false, "holds placeholders"),
        ("purge", false, "is emptied after every backup"),
    ] {
        let mut cfg = config();
        let db1 = cfg
            .clients
            .iter_mut()
            .find(|(n, _)| n.as_str() == "db1")
            .unwrap()
            .1;
        db1.staging_mode = match mode {
            "keep" => StagingMode::Keep,
            "hollow" => StagingMode::Hollow,
            _ => StagingMode::Purge,
        };
        let cmd = stated("db1", DOWNLOAD);
        let d = authorize(
            &cfg,
            "db1",
            Some(&conn("192.0.2.10")),
            Some(&cmd),
            saturday_night(),
        );
        assert_eq!(d.allowed, allowed, "{mode}: {}", d.reason);
        assert!(d.reason.contains(needle), "{mode}: {}", d.reason);
        if !allowed {
            assert!(d.reason.contains("rsbackup restore --repo"), "{}", d.reason);
            assert!(!d.reason.contains('\n'));
        }
    }
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

#[test]
fn complete_takes_key_value_arguments_and_nothing_else() {
    let d = decide(
        "web1",
        "192.0.2.10",
        "complete rsync-exit=23 sources=www,etc skipped=data",
        saturday_night(),
    );
    assert!(d.allowed, "{}", d.reason);
    let Some(Request::Complete(args)) = d.request else {
        panic!("{:?}", d.request)
    };
    assert_eq!(args.rsync_exit, Some(23));
    assert_eq!(args.skipped, vec![b"data".to_vec()]);
    for bad in [
        "complete now",
        "complete rsync-exit=x",
        "prepare rsync-exit=0",
    ] {
        let d = decide("web1", "192.0.2.10", bad, saturday_night());
        assert!(!d.allowed, "{bad}");
    }
}

/// A command that is not UTF-8 is refused as such, naming the first bad byte; the client,
/// address and window checks still come first.
#[test]
fn a_command_that_is_not_utf8_is_refused_with_its_byte() {
    let command = [stated("web1", "prepare").as_bytes(), b"\xff"].concat();
    let d = authorize_bytes(
        &config(),
        "web1",
        Some(&conn("192.0.2.10")),
        Some(&command),
        saturday_night(),
    );
    assert!(!d.allowed);
    assert!(
        d.reason.ends_with(&format!(
            "command is not UTF-8 (byte 0xff at offset {})",
            command.len() - 1
        )),
        "{}",
        d.reason
    );
    let d = authorize_bytes(
        &config(),
        "web1",
        Some(&conn("198.51.100.1")),
        Some(&command),
        saturday_night(),
    );
    assert!(d.reason.contains("is not in its addresses"), "{}", d.reason);
}

/// `restore-fetch` takes no arguments, is not among the default commands, and needs a
/// `restore-recipient` besides `restore` in the client's commands.
#[test]
fn restore_fetch_needs_the_command_and_a_recipient() {
    let refused = |d: &Decision, why: &str| {
        assert!(!d.allowed);
        assert!(d.reason.contains(why), "{} lacks {why}", d.reason);
    };
    let d = decide("web1", "192.0.2.10", "restore-fetch", saturday_night());
    refused(&d, "command restore is not in its commands");
    assert_eq!(d.request, Some(Request::RestoreFetch));
    let d = decide("web1", "192.0.2.10", "restore-fetch now", saturday_night());
    refused(&d, "restore-fetch takes no arguments");

    let recipient = crate::crypto::wrap::keygen().1;
    let base = String::from(
        "repository = \"/srv/repo\"\nstaging-root = \"/srv/staging\"\n[mail]\n\
         from = \"rsbackup@example.org\"\nadmin = [\"root@example.org\"]\n\
         transport = \"directory\"\ndirectory = \"/tmp/mail\"\n\n[clients.web1]\n\
         keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111\"]\n\
         addresses = [\"192.0.2.10\"]\nwindows = [\"daily 00:00-24:00\"]\n\
         commands = [\"restore\"]\n",
    );
    let decide_with = |text: &str| {
        let config = ServerConfig::parse(text, Path::new("/etc/rsbackup/server.toml")).unwrap();
        let cmd = stated("web1", "restore-fetch");
        authorize(
            &config,
            "web1",
            Some(&conn("192.0.2.10")),
            Some(&cmd),
            saturday_night(),
        )
    };
    refused(
        &decide_with(&base),
        "restore-fetch needs a restore-recipient",
    );
    let with = format!("{base}restore-recipient = {recipient:?}\n");
    let d = decide_with(&with);
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.request.unwrap().name(), "restore-fetch");
    refused(
        &authorize(
            &ServerConfig::parse(&with, Path::new("/etc/rsbackup/server.toml")).unwrap(),
            "web1",
            Some(&conn("192.0.2.11")),
            Some(&stated("web1", "restore-fetch")),
            saturday_night(),
        ),
        "address 192.0.2.11 is not in its addresses",
    );
}
