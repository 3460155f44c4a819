//! `add-client` and `config check` as an administrator meets them: the file's text and mode
//! kept, duplicates and bad keys refused with where, problems printed as `FILE:LINE: what`.

use std::os::unix::fs::PermissionsExt;

use crate::common::{arg, exit, rsbackup, tempdir};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOOfI9egnneCRX64m24oMI8eRKBaziNfe31p4slq1JX8 root@web1";

fn server_toml(dir: &std::path::Path) -> String {
    format!(
        r#"# the backup server: kept as written
repository = "{d}/repo"
staging-root = "{d}/staging"   # uploads land here

[mail]
from = "rsbackup@backup.example.org"
admin = ["root@example.org"]
transport = "directory"
directory = "{d}"
"#,
        d = dir.display()
    )
}

#[test]
fn add_client_appends_keeps_text_and_mode_and_refuses_duplicates() {
    let dir = tempdir();
    let config = dir.path().join("server.toml");
    let text = server_toml(dir.path());
    std::fs::write(&config, &text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let key = dir.path().join("web1.pub");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();

    let run = rsbackup([
        arg("add-client"),
        arg("web1"),
        arg("--key"),
        arg(&key),
        arg("--address"),
        arg("192.0.2.10"),
        arg("--window"),
        arg("daily 01:00-05:00"),
        arg("--config"),
        arg(&config),
    ]);
    run.ok();
    assert!(
        run.stdout_str().contains("rsbackup authorized-keys"),
        "{}",
        run.stdout_str()
    );
    let after = std::fs::read_to_string(&config).unwrap();
    assert!(after.starts_with(&text), "{after}");
    assert!(
        after.contains("[clients.web1]") && after.contains(KEY),
        "{after}"
    );
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    rsbackup([arg("authorized-keys"), arg("--config"), arg(&config)]).ok();

    let again = rsbackup([
        arg("add-client"),
        arg("web1"),
        arg("--key"),
        arg(&key),
        arg("--config"),
        arg(&config),
    ]);
    again.fails_with(
        exit::CONFIG,
        &["a client named web1 exists already", "(line 11)"],
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        after,
        "a refusal wrote the file"
    );

    std::fs::write(&key, "ssh-dss AAAA root@old\n").unwrap();
    rsbackup([
        arg("add-client"),
        arg("web2"),
        arg("--key"),
        arg(&key),
        arg("--address"),
        arg("192.0.2.11"),
        arg("--config"),
        arg(&config),
    ])
    .fails_with(1, &["--key", "web1.pub", "not a known key type"]);
}

#[test]
fn config_check_prints_file_line_and_fails_until_paths_exist() {
    let dir = tempdir();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, server_toml(dir.path())).unwrap();
    let check = || rsbackup([arg("config"), arg("check"), arg("--server"), arg(&config)]);
    let run = check();
    run.code(exit::CONFIG);
    let at = |line: u32, what: &str| format!("{}:{line}: {what}", config.display());
    for needle in [
        at(2, "repository = "),
        at(3, "staging-root = "),
        "audit-log = \"/var/log/rsbackup/audit.log\"".to_owned(),
        "problems (above)".to_owned(),
    ] {
        assert!(run.stderr.contains(&needle), "{needle:?} in {}", run.stderr);
    }
    // Wrong syntax: the loader's file:line error.
    std::fs::write(&config, "repository = \n").unwrap();
    check().fails_with(exit::CONFIG, &[&format!("{}:1", config.display())]);
    // Neither or both of --server and --client: a usage error.
    rsbackup([arg("config"), arg("check")]).code(2);
}

#[test]
fn usage_errors_point_at_the_subcommands_help_and_help_help_works() {
    rsbackup(["restore", "--bogus"]).fails_with(2, &["(see rsbackup restore --help)"]);
    rsbackup(["repair", "index", "--bogus"]).fails_with(2, &["(see rsbackup repair index --help)"]);
    rsbackup(["bogus"]).fails_with(2, &["(see rsbackup --help)"]);
    let help = rsbackup(["help", "--help"]);
    help.ok();
    assert!(
        help.stdout_str()
            .contains("Usage: rsbackup [OPTIONS] <COMMAND>"),
        "{}",
        help.stdout_str()
    );
    // mirror-serve is listed, and so are run's own codes.
    let top = rsbackup(["--help"]).stdout_str();
    assert!(
        top.contains("mirror-serve") && top.contains("13  run-locked"),
        "{top}"
    );
}

#[test]
fn man_pages_and_completions_cover_every_listed_command() {
    let dir = tempdir();
    rsbackup([arg("generate-man"), arg(dir.path())]).ok();
    let top = rsbackup(["--help"]).stdout_str();
    let commands: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(
        commands.len() > 15 && commands.contains(&"add-client"),
        "{commands:?}"
    );
    for command in &commands {
        let page = dir.path().join(format!("rsbackup-{command}.1"));
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("no man page for {command}: {e}"));
        assert!(
            text.contains(&format!(".TH rsbackup-{command} 1")),
            "{page:?}"
        );
    }
    assert!(
        !dir.path().join("rsbackup-generate-man.1").exists(),
        "hidden commands get none"
    );
    for shell in ["bash", "zsh", "fish"] {
        rsbackup([arg("generate-completions"), arg(shell), arg(dir.path())]).ok();
    }
    let bash = std::fs::read_to_string(dir.path().join("rsbackup.bash")).unwrap();
    assert!(
        bash.contains("add-client") && bash.contains("--dry-run"),
        "bash completion"
    );
}

#[test]
fn sessions_print_local_times_with_their_zone() {
    let repo = crate::common::TestRepo::new();
    let source = tempdir();
    crate::common::write_file(&source.path().join("a"), b"a");
    repo.ingest("web1", source.path());
    let run = crate::common::rsbackup_env(
        [arg("sessions"), arg("--repo"), arg(repo.path("repo"))],
        &[("TZ", "Europe/Berlin")],
    );
    run.ok();
    let out = run.stdout_str();
    let row = out
        .lines()
        .find(|l| l.contains("web1"))
        .expect("a row for web1");
    assert!(
        row.contains(" CET ") || row.contains(" CEST "),
        "the start time names its zone: {row}"
    );
}

// The exit-code tables of usage.md, --help and the binary: tests/cli/conventions.rs.

#[test]
fn repo_and_identity_come_from_the_environment_unless_given() {
    let repo = crate::common::TestRepo::new();
    let source = tempdir();
    crate::common::write_file(&source.path().join("hello"), b"hello");
    let session = repo.ingest("web1", source.path());
    let repo_dir = repo.path("repo");
    let identity = repo.path("identity.txt");
    let env = [
        ("RSBACKUP_REPO", repo_dir.to_str().unwrap()),
        ("RSBACKUP_IDENTITY", identity.to_str().unwrap()),
    ];
    let run = crate::common::rsbackup_env(["sessions"], &env);
    run.ok();
    assert!(run.stdout_str().contains("web1"), "{}", run.stdout_str());
    let cat =
        crate::common::rsbackup_env(["cat", "--session", &session.to_string(), "hello"], &env);
    cat.ok();
    assert_eq!(cat.stdout, b"hello");
    // A flag wins over the environment.
    let other = tempdir();
    crate::common::rsbackup_env([arg("sessions"), arg("--repo"), arg(other.path())], &env).code(4);
}
