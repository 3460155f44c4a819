use super::*;
use crate::error::ErrorKind;

const KEY1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111 web1@host";
const KEY2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE222222222222222222222222222222222222222222 db1@host";

pub(crate) fn example() -> String {
    format!(
        r#"repository = "/srv/rsbackup/repo"
staging-root = "/srv/rsbackup/staging"

[mail]
from = "rsbackup@backup.example.org"
admin = ["root@example.org"]
transport = "directory"
directory = "/var/spool/rsbackup-mail"

[defaults]
windows = ["mon-fri 22:00-06:00", "sat,sun 00:00-24:00"]
timezone = "Europe/Berlin"
staging-mode = "hollow"

[clients.web1]
keys = ["{KEY1}"]
addresses = ["192.0.2.10", "2001:db8::/64"]
quota = "200G"
prepare-hooks = [{{ argv = ["/usr/local/bin/check-space", "web1"], timeout-seconds = 60 }}]

[clients.db1]
keys = ["{KEY2}"]
addresses = ["198.51.100.0/24"]
commands = ["prepare", "upload", "complete"]
staging-mode = "keep"
restore = true
windows = ["daily 01:00-05:00"]
timezone = "UTC"
"#
    )
}

fn parse(text: &str) -> Result<ServerConfig> {
    ServerConfig::parse(text, Path::new("/etc/rsbackup/server.toml"))
}

/// Parse the example with `from` replaced by `to`, expecting an error at `line` that
/// mentions `needle`.
fn refused(from: &str, to: &str, line: usize, needle: &str) {
    let text = example();
    assert!(text.contains(from), "test bug: {from:?} not in example");
    let err = parse(&text.replacen(from, to, 1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let msg = err.message();
    assert!(
        msg.starts_with(&format!("/etc/rsbackup/server.toml:{line}:")),
        "{msg}"
    );
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

#[test]
fn example_parses_with_defaults_applied() {
    let cfg = parse(&example()).unwrap();
    assert_eq!(cfg.repository, Path::new("/srv/rsbackup/repo"));
    assert_eq!(cfg.audit_log, Path::new(DEFAULT_AUDIT_LOG));
    assert_eq!(cfg.alert_state, Path::new(DEFAULT_ALERT_STATE));
    assert_eq!(
        cfg.alert_coalesce,
        Duration::from_secs(DEFAULT_ALERT_COALESCE_MINUTES * 60)
    );
    assert_eq!(cfg.admin.len(), 1);
    let web1 = cfg.client("web1").unwrap();
    assert_eq!(web1.keys[0].comment, "web1@host");
    assert_eq!(
        web1.addresses,
        vec![
            "192.0.2.10/32".parse::<IpNet>().unwrap(),
            "2001:db8::/64".parse().unwrap()
        ]
    );
    assert_eq!(web1.windows.len(), 2);
    assert_eq!(web1.timezone_name, "Europe/Berlin");
    assert_eq!(web1.staging_mode, StagingMode::Hollow);
    assert_eq!(web1.quota, Some(200 << 30));
    assert!(!web1.restore);
    assert_eq!(web1.commands.len(), 4);
    assert_eq!(web1.prepare_hooks[0].timeout, Duration::from_secs(60));
    assert!(web1.complete_hooks.is_empty());
    let db1 = cfg.client("db1").unwrap();
    assert_eq!(db1.staging_mode, StagingMode::Keep);
    assert!(db1.restore);
    assert!(!db1.commands.contains(&Command::Sessions));
    assert_eq!(db1.timezone_name, "UTC");
    assert!(cfg.client("nobody").is_none());
    assert_eq!(
        cfg.staging_dir(&db1.name),
        Path::new("/srv/rsbackup/staging/db1")
    );
}

#[test]
fn syntax_errors_and_unknown_keys_name_the_line() {
    refused("staging-root =", "stagin-root =", 2, "unknown field");
    refused(
        "quota = \"200G\"",
        "quota = \"200G\"\nsize = 3",
        19,
        "unknown field",
    );
    refused("[clients.db1]", "[clients.db1\n", 21, "");
    refused("restore = true", "restore = \"yes\"", 26, "");
}

#[test]
fn bad_values_name_the_line() {
    refused("[clients.db1]", "[clients.DB1]", 21, "client name \"DB1\"");
    refused("[clients.db1]", "[clients.\"../x\"]", 21, "not valid");
    refused(
        "\"198.51.100.0/24\"",
        "\"198.51.100.7/24\"",
        23,
        "host bits",
    );
    refused(
        "\"198.51.100.0/24\"",
        "\"198.51.100.300\"",
        23,
        "neither an IP",
    );
    refused(
        "\"daily 01:00-05:00\"",
        "\"daily 1:00-05:00\"",
        27,
        "time window",
    );
    refused(
        "timezone = \"UTC\"",
        "timezone = \"Mars/Olympus\"",
        28,
        "not a known time zone",
    );
    refused(
        "staging-mode = \"keep\"",
        "staging-mode = \"kept\"",
        25,
        "keep, hollow, purge",
    );
    refused(
        "\"prepare\", \"upload\"",
        "\"prepare\", \"download\"",
        24,
        "\"download\" is not one of",
    );
    refused("quota = \"200G\"", "quota = \"200Q\"", 18, "not a size");
    refused("quota = \"200G\"", "quota = -5", 18, "not a size");
    refused(
        "\"/usr/local/bin/check-space\"",
        "\"check-space\"",
        19,
        "not an absolute path",
    );
    refused(
        "timeout-seconds = 60",
        "timeout-seconds = 0",
        19,
        "out of range",
    );
    refused(
        "keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2",
        "keys = [\"command=\\\"x\\\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2",
        22,
        "not a known key type",
    );
    refused(
        "\"root@example.org\"",
        "\"root at example\"",
        6,
        "not a mail address",
    );
    refused(
        "repository = \"/srv",
        "repository = \"srv",
        1,
        "not an absolute path",
    );
    refused(
        "transport = \"directory\"",
        "transport = \"pigeon\"",
        7,
        "not one of",
    );
}

#[test]
fn lease_hours_default_and_override() {
    let cfg = parse(&example()).unwrap();
    let twelve = Duration::from_secs(DEFAULT_LEASE_HOURS * 3600);
    assert_eq!(twelve, Duration::from_secs(12 * 3600));
    assert_eq!(cfg.client("web1").unwrap().lease_timeout, twelve);
    assert_eq!(cfg.client("db1").unwrap().lease_timeout, twelve);

    // A server-wide default in [defaults], replaced by a client's own value.
    let text = example()
        .replace(
            "staging-mode = \"hollow\"\n",
            "staging-mode = \"hollow\"\nlease-hours = 2\n",
        )
        .replace("restore = true\n", "restore = true\nlease-hours = 168\n");
    let cfg = parse(&text).unwrap();
    assert_eq!(
        cfg.client("web1").unwrap().lease_timeout,
        Duration::from_secs(2 * 3600)
    );
    assert_eq!(
        cfg.client("db1").unwrap().lease_timeout,
        Duration::from_secs(168 * 3600)
    );
}

#[test]
fn bad_lease_hours_name_the_line_and_client() {
    refused(
        "restore = true",
        "restore = true\nlease-hours = 0",
        27,
        "client db1: lease-hours = 0 is not a whole number of hours from 1 to 168",
    );
    refused(
        "restore = true",
        "restore = true\nlease-hours = 169",
        27,
        "client db1: lease-hours = 169 is not a whole number of hours from 1 to 168",
    );
    refused(
        "restore = true",
        "restore = true\nlease-hours = -1",
        27,
        "client db1: lease-hours = -1 is not a whole number",
    );
    refused(
        "restore = true",
        "restore = true\nlease-hours = \"12h\"",
        27,
        "client db1: lease-hours = \"12h\" is not a whole number",
    );
    refused(
        "quota = \"200G\"",
        "quota = \"200G\"\nlease-hours = 1.5",
        19,
        "client web1: lease-hours = 1.5 is not a whole number",
    );
    // A bad default is reported at its own line, as the default's (clients take it here).
    refused(
        "staging-mode = \"hollow\"",
        "staging-mode = \"hollow\"\nlease-hours = 0",
        14,
        "[defaults]: lease-hours = 0 is not a whole number",
    );
}

/// A server.toml whose `[defaults]` holds `default_line` (on line 11) and whose two clients
/// each hold `client_line`. Addresses and windows, needed by every client, are in the clients,
/// except the one `default_line` sets.
fn overridden_default(default_line: &str, client_line: &str) -> String {
    let key = default_line.split(" = ").next().unwrap();
    let client_body: String = [
        client_line,
        "addresses = [\"192.0.2.0/24\"]",
        "windows = [\"daily 00:00-24:00\"]",
    ]
    .iter()
    .enumerate()
    .filter(|(i, line)| *i == 0 || !line.starts_with(&format!("{key} = ")))
    .map(|(_, line)| format!("{line}\n"))
    .collect();
    format!(
        r#"repository = "/srv/rsbackup/repo"
staging-root = "/srv/rsbackup/staging"

[mail]
from = "rsbackup@backup.example.org"
admin = ["root@example.org"]
transport = "directory"
directory = "/var/spool/rsbackup-mail"

[defaults]
{default_line}

[clients.web1]
keys = ["{KEY1}"]
{client_body}
[clients.db1]
keys = ["{KEY2}"]
{client_body}"#
    )
}

/// Bad values in [defaults] are refused even while every client sets its own, with the line
/// and `[defaults]`: they would break the first new client that takes them.
#[test]
fn bad_default_is_refused_though_every_client_overrides_it() {
    let cases = [
        (
            "addresses = []",
            "addresses = [\"192.0.2.0/24\"]",
            "addresses is empty: a client that takes it could never connect",
        ),
        (
            "addresses = [\"10.0.0.1/8\"]",
            "addresses = [\"192.0.2.0/24\"]",
            "addresses: \"10.0.0.1/8\" has host bits set",
        ),
        (
            "windows = [\"daily 1:00-05:00\"]",
            "windows = [\"daily 01:00-05:00\"]",
            "time window \"daily 1:00-05:00\"",
        ),
        (
            "windows = []",
            "windows = [\"daily 01:00-05:00\"]",
            "windows is empty",
        ),
        (
            "timezone = \"Europe/Berln\"",
            "timezone = \"Europe/Berlin\"",
            "timezone \"Europe/Berln\" is not a known time zone",
        ),
        (
            "commands = [\"prepare\", \"download\"]",
            "commands = [\"prepare\"]",
            "commands: \"download\" is not one of",
        ),
        (
            "staging-mode = \"hollw\"",
            "staging-mode = \"hollow\"",
            "staging-mode = \"hollw\" is not one of keep, hollow, purge",
        ),
        (
            "quota = \"200Q\"",
            "quota = \"200G\"",
            "quota = \"200Q\" is not a size",
        ),
        (
            "lease-hours = 0",
            "lease-hours = 12",
            "lease-hours = 0 is not a whole number of hours from 1 to 168",
        ),
        (
            "prepare-hooks = [{ argv = [\"check-space\"] }]",
            "prepare-hooks = []",
            "prepare-hooks: program \"check-space\" is not an absolute path",
        ),
        (
            "complete-hooks = [{ argv = [\"/bin/true\"], timeout-seconds = 0 }]",
            "complete-hooks = []",
            "complete-hooks: timeout-seconds = 0 is out of range",
        ),
    ];
    for (bad_default, own, needle) in cases {
        // The same file with a good default loads: only the default's value is at fault.
        let good = overridden_default(own, own);
        parse(&good).unwrap_or_else(|e| panic!("{own:?} as the default: {e}"));
        let err = parse(&overridden_default(bad_default, own)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let msg = err.message();
        assert!(
            msg.starts_with("/etc/rsbackup/server.toml:11: [defaults]: "),
            "{bad_default:?}: {msg}"
        );
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
}

/// A good default still works as before: a client's own value replaces it whole, a client
/// without one takes it.
#[test]
fn good_default_is_overridden_or_taken() {
    let text = example()
        .replace(
            "staging-mode = \"hollow\"\n",
            "staging-mode = \"hollow\"\nquota = \"1T\"\ncommands = [\"sessions\"]\nlease-hours = 2\n\
             addresses = [\"203.0.113.0/24\"]\n\
             complete-hooks = [{ argv = [\"/usr/local/bin/mirror-now\"] }]\n",
        )
        .replace(
            "restore = true\n",
            "restore = true\nquota = \"1G\"\nlease-hours = 36\ncomplete-hooks = []\n",
        );
    let cfg = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let web1 = cfg.client("web1").unwrap();
    let db1 = cfg.client("db1").unwrap();
    // web1 sets its own quota and addresses and takes the rest.
    assert_eq!(web1.quota, Some(200 << 30));
    assert_eq!(web1.addresses.len(), 2);
    assert_eq!(web1.commands, BTreeSet::from([Command::Sessions]));
    assert_eq!(web1.lease_timeout, Duration::from_secs(2 * 3600));
    assert_eq!(web1.staging_mode, StagingMode::Hollow);
    assert_eq!(web1.timezone_name, "Europe/Berlin");
    assert_eq!(web1.complete_hooks.len(), 1);
    // db1 overrides every one of them; lists replace the default whole (not merged).
    assert_eq!(db1.quota, Some(1 << 30));
    assert_eq!(
        db1.addresses,
        vec!["198.51.100.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(db1.commands.len(), 3);
    assert!(!db1.commands.contains(&Command::Sessions));
    assert_eq!(db1.lease_timeout, Duration::from_secs(36 * 3600));
    assert_eq!(db1.staging_mode, StagingMode::Keep);
    assert_eq!(db1.timezone_name, "UTC");
    assert_eq!(db1.windows.len(), 1);
    assert!(db1.complete_hooks.is_empty());
}

#[test]
fn unknown_key_in_defaults_is_refused() {
    refused(
        "staging-mode = \"hollow\"",
        "staging-mode = \"hollow\"\nstagingmode = \"keep\"",
        14,
        "unknown field `stagingmode`",
    );
    // A key of another section, written into [defaults] by mistake.
    refused(
        "timezone = \"Europe/Berlin\"",
        "timezone = \"Europe/Berlin\"\nstaging-root = \"/srv\"",
        13,
        "unknown field `staging-root`",
    );
}

#[test]
fn duplicate_key_is_refused() {
    let text = example().replace(KEY2, KEY1);
    let err = parse(&text).unwrap_err();
    assert!(err.message().contains("also a key of client"), "{err}");
    let text = example().replace(
        &format!("keys = [\"{KEY2}\"]"),
        &format!("keys = [\"{KEY2}\", \"{KEY2} copy\"]"),
    );
    let err = parse(&text).unwrap_err();
    assert!(
        err.message()
            .contains("client db1: ssh key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... appears twice"),
        "{err}"
    );
}

#[test]
fn missing_windows_or_addresses_deny_by_default() {
    let text = example().replace(
        "windows = [\"mon-fri 22:00-06:00\", \"sat,sun 00:00-24:00\"]\n",
        "",
    );
    let err = parse(&text).unwrap_err();
    assert!(
        err.message().contains("client web1: windows is missing"),
        "{err}"
    );
    let text = example().replace("addresses = [\"198.51.100.0/24\"]\n", "");
    let err = parse(&text).unwrap_err();
    assert!(
        err.message().contains("client db1: addresses is missing"),
        "{err}"
    );
    let text = example().replace("addresses = [\"198.51.100.0/24\"]", "addresses = []");
    assert!(
        parse(&text)
            .unwrap_err()
            .message()
            .contains("addresses is empty")
    );
}

#[test]
fn keys_in_defaults_and_smtp_rules() {
    let text = example().replace(
        "[defaults]\n",
        &format!("[defaults]\nkeys = [\"{KEY1}\"]\n"),
    );
    assert!(
        parse(&text)
            .unwrap_err()
            .message()
            .contains("keys belong to one client")
    );
    let smtp = example().replace(
        "transport = \"directory\"\ndirectory = \"/var/spool/rsbackup-mail\"",
        "transport = \"smtp\"\nhost = \"mail.example.org\"\nsecurity = \"none\"",
    );
    assert!(
        parse(&smtp)
            .unwrap_err()
            .message()
            .contains("only allowed for a loopback host")
    );
    let smtp = smtp.replace("mail.example.org", "127.0.0.1");
    let cfg = parse(&smtp).unwrap();
    assert!(matches!(
        cfg.mail.transport,
        crate::config::MailTransport::Smtp { port: 25, .. }
    ));
    let wrong_key = example().replace("directory = \"/var", "host = \"x\"\ndirectory = \"/var");
    assert!(
        parse(&wrong_key)
            .unwrap_err()
            .message()
            .contains("host has no meaning")
    );
    let client_key = example().replace("admin = [", "reports-to = [\"a@b.c\"]\nadmin = [");
    assert!(
        parse(&client_key)
            .unwrap_err()
            .message()
            .contains("reports-to is not used")
    );
}

#[test]
fn networks() {
    assert_eq!(
        parse_network("::ffff:192.0.2.1").unwrap(),
        "192.0.2.1/32".parse::<IpNet>().unwrap()
    );
    assert_eq!(
        parse_network("2001:db8::1").unwrap(),
        "2001:db8::1/128".parse::<IpNet>().unwrap()
    );
    assert_eq!(
        parse_network("0.0.0.0/0").unwrap(),
        "0.0.0.0/0".parse::<IpNet>().unwrap()
    );
    for bad in [
        "",
        "192.0.2.1/33",
        "192.0.2",
        "host.example.org",
        "10.0.0.1/8",
    ] {
        assert!(parse_network(bad).is_err(), "{bad}");
    }
}

#[test]
fn ssh_keys() {
    let k = SshPublicKey::parse(KEY1).unwrap();
    assert_eq!(k.algorithm, "ssh-ed25519");
    for bad in [
        "",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519",
        "ssh-ed25519 not*base64!!!!!!!!!!!!",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1 x\nssh-ed25519 AAAA",
        "restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1",
    ] {
        assert!(SshPublicKey::parse(bad).is_err(), "{bad:?}");
    }
    // Base64 that is not a whole key: cut short (a copy that lost its end), or a key of
    // another type than the line says. sshd would skip such a line without a word.
    let cut = &KEY1[..KEY1.find(' ').unwrap() + 40];
    let err = SshPublicKey::parse(cut).unwrap_err();
    assert!(err.contains("not a whole ssh-ed25519 public key"), "{err}");
    let relabelled = KEY1.replacen("ssh-ed25519", "ecdsa-sha2-nistp256", 1);
    assert!(SshPublicKey::parse(&relabelled).is_err(), "{relabelled}");
}

const CONFIGURATION_MD: &str = include_str!("../../docs/configuration.md");

/// The ```toml blocks of docs/configuration.md, in order.
fn documented_toml_blocks() -> Vec<&'static str> {
    CONFIGURATION_MD
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect()
}

/// The example of a whole server.toml with clients (the offsite box's example has none).
fn documented_server_example() -> &'static str {
    documented_toml_blocks()
        .into_iter()
        .find(|b| b.contains("staging-root =") && b.contains("[clients.web1]"))
        .expect("server example")
}

/// The commented examples in docs/configuration.md must load as they are.
#[test]
fn documented_examples_load() {
    let blocks = documented_toml_blocks();
    let server = &documented_server_example();
    let cfg = parse(server).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.clients.len(), 2);
    let retention = blocks
        .iter()
        .find(|b| b.starts_with("[retention]"))
        .expect("retention example");
    let with_retention = parse(&format!("{server}\n{retention}")).unwrap_or_else(|e| panic!("{e}"));
    let db1 = &with_retention.retention.for_client("db1").rules.policy;
    assert_eq!((db1.keep_last, db1.keep_daily, db1.keep_yearly), (30, 7, 5));
    let web1 = &with_retention.retention.for_client("web1").rules.policy;
    assert_eq!((web1.keep_last, web1.keep_weekly), (3, 4));
    assert!(web1.keep_within.is_some());
    assert_eq!(
        cfg.alert_state,
        Path::new("/var/lib/rsbackup/alert-state.json")
    );
    assert_eq!(cfg.client("db1").unwrap().keys.len(), 2);
    assert_eq!(
        cfg.client("web1").unwrap().staging_mode,
        StagingMode::Hollow
    );
    assert_eq!(
        cfg.client("db1").unwrap().lease_timeout,
        Duration::from_secs(36 * 3600)
    );
    let client = blocks
        .iter()
        .find(|b| b.contains("errors-to ="))
        .expect("client example");
    let cfg = crate::config::ClientConfig::parse(client, Path::new("/etc/rsbackup/client.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.name.as_str(), "web1");
    let hooks = blocks
        .iter()
        .find(|b| b.starts_with("init-hooks"))
        .expect("hook example");
    let with_hooks =
        format!("{hooks}\n{client}").replacen("init-hooks = [{ argv", "# init-hooks = [{ argv", 1);
    let cfg = crate::config::ClientConfig::parse(&with_hooks, Path::new("/x"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.init_hooks.len(), 2);
}

/// The mirror examples in docs/configuration.md load as they are, and its sample errors are the
/// ones the code gives for those mistakes.
#[test]
fn documented_mirror_examples_load() {
    let blocks = documented_toml_blocks();
    let primary = blocks
        .iter()
        .find(|b| b.starts_with("[mirrors."))
        .expect("[mirrors.NAME] example");
    let primary = format!("{}\n{primary}", documented_server_example());
    let cfg = parse(&primary).unwrap_or_else(|e| panic!("{e}"));
    let target = cfg.mirrors.target("offsite").expect("[mirrors.offsite]");
    assert_eq!(target.host, "offsite.example.net");
    assert_eq!(target.port, 2222);
    assert_eq!(target.user, "rsbackup");
    assert_eq!(target.ssh_key, Path::new("/etc/rsbackup/mirror_ed25519"));
    assert_eq!(
        target.ssh_options,
        [
            "UserKnownHostsFile=/etc/rsbackup/known_hosts",
            "ConnectTimeout=30"
        ]
    );
    assert!(target.after_complete);
    assert!(!target.follow_deletes);
    assert!(cfg.mirrors.mirror_of.is_empty());

    let offsite = blocks
        .iter()
        .find(|b| b.contains("[mirror-of."))
        .expect("offsite box example");
    let cfg = parse(offsite).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.clients.is_empty() && cfg.mirrors.targets.is_empty());
    assert_eq!(cfg.repository, Path::new("/srv/rsbackup/repo"));
    let main = cfg.mirrors.mirror_of("main").expect("[mirror-of.main]");
    assert_eq!(main.repository, Path::new("/srv/rsbackup/mirror-of-main"));
    assert_eq!(
        main.addresses,
        vec![
            "192.0.2.10/32".parse::<IpNet>().unwrap(),
            "2001:db8:10::/64".parse().unwrap()
        ]
    );
    assert_eq!(main.windows.len(), 1);
    assert_eq!(main.timezone.iana_name(), Some("UTC"));
    assert!(!main.follow_deletes, "append-only as documented");

    // The sample errors, each from one mistake in the examples above.
    let samples = CONFIGURATION_MD
        .split("### What the mirror sections refuse")
        .nth(1)
        .and_then(|s| s.split("For example:\n\n```\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("sample errors");
    let mistakes = [
        (
            primary.as_str(),
            "host = \"offsite.example.net\"",
            "host = \"root@offsite\"",
        ),
        (
            primary.as_str(),
            "\"ConnectTimeout=30\"",
            "\"ConnectTimeout 30\"",
        ),
        (*offsite, "\"192.0.2.10\"", "\"192.0.2.10/24\""),
        (
            *offsite,
            "addresses = [\"192.0.2.10\", \"2001:db8:10::/64\"]",
            "",
        ),
    ];
    assert_eq!(samples.lines().count(), mistakes.len());
    for ((text, from, to), sample) in mistakes.into_iter().zip(samples.lines()) {
        assert!(text.contains(from), "test bug: {from:?} not in the example");
        let err = parse(&text.replacen(from, to, 1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.message(), sample);
    }
}

#[test]
fn on_new_machine_default_override_and_bad_values() {
    let cfg = parse(&example()).unwrap();
    assert_eq!(
        cfg.client("web1").unwrap().on_new_machine,
        OnNewMachine::Refuse
    );
    let text = example()
        .replace(
            "staging-mode = \"hollow\"\n",
            "staging-mode = \"hollow\"\non-new-machine = \"alert\"\n",
        )
        .replace(
            "restore = true\n",
            "restore = true\non-new-machine = \"accept\"\n",
        );
    let cfg = parse(&text).unwrap();
    assert_eq!(
        cfg.client("web1").unwrap().on_new_machine,
        OnNewMachine::Alert
    );
    assert_eq!(
        cfg.client("db1").unwrap().on_new_machine,
        OnNewMachine::Accept
    );
    assert_eq!(OnNewMachine::Accept.name(), "accept");
    refused(
        "restore = true",
        "restore = true\non-new-machine = \"allow\"",
        27,
        "client db1: on-new-machine = \"allow\" is not one of refuse, alert, accept",
    );
    refused(
        "staging-mode = \"hollow\"",
        "staging-mode = \"hollow\"\non-new-machine = \"warn\"",
        14,
        "[defaults]: on-new-machine = \"warn\" is not one of",
    );
    refused(
        "restore = true",
        "restore = true\non-new-machine = true",
        27,
        "expected a string",
    );
}

#[test]
fn restore_without_keep_staging_is_a_warning() {
    assert!(parse(&example()).unwrap().warnings().is_empty());
    let text = example().replace(
        "staging-mode = \"keep\"\nrestore = true",
        "staging-mode = \"purge\"\nrestore = true",
    );
    let warnings = parse(&text).unwrap().warnings();
    assert_eq!(
        warnings,
        [
            "/etc/rsbackup/server.toml: client db1: restore = true has no effect with staging-mode = \
          \"purge\": downloads from such staging are refused (it holds no files to restore)"
        ]
    );
}
