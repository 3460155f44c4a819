use super::*;

fn config(extra: &str) -> ClientConfig {
    let text = format!(
        r#"name = "web1"
sources = ["/etc", "/var/www/"]
excludes = ["*.tmp", "/var/www/cache/", "/etc/ssl/private"]
{extra}
[server]
host = "backup.example.org"
port = 2222
user = "rsb"
ssh-key = "/etc/rsbackup/id ed25519"
known-hosts = "/etc/rsbackup/known_hosts"

[mail]
from = "rsbackup@web1.example.org"
errors-to = ["ops@example.org"]
reports-to = ["ops@example.org"]
transport = "directory"
directory = "/var/spool/rsbackup"
"#
    );
    ClientConfig::parse(&text, Path::new("/etc/rsbackup/client.toml")).unwrap()
}

fn identity() -> StatedIdentity {
    StatedIdentity {
        client: "web1".into(),
        machine: crate::format::client_identity::MachineId::from_bytes([0xab; 16]),
    }
}

const PREFIX: &str = "rsbackup-client=web1 rsbackup-machine=abababababababababababababababab";

fn argv(command: &Command) -> Vec<String> {
    command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn ssh_runs_one_word_in_batch_mode() {
    let cfg = config("");
    let cmd = ssh_command(&cfg, &Connection::default(), &identity(), "prepare");
    assert_eq!(cmd.get_program(), "/usr/bin/ssh");
    let args = argv(&cmd);
    assert_eq!(
        &args[args.len() - 3..],
        [
            "rsb@backup.example.org".to_owned(),
            "--".to_owned(),
            format!("{PREFIX} prepare")
        ]
    );
    for want in [
        "BatchMode=yes",
        "ConnectTimeout=30",
        "UserKnownHostsFile=/etc/rsbackup/known_hosts",
        "StrictHostKeyChecking=yes",
        "/etc/rsbackup/id ed25519",
        "2222",
    ] {
        assert!(
            args.iter().any(|a| a == want),
            "{want} missing from {args:?}"
        );
    }
    let env: Vec<_> = cmd.get_envs().collect();
    assert!(
        env.iter()
            .any(|(k, v)| *k == "LC_ALL" && *v == Some("C".as_ref()))
    );
    assert_eq!(server_label(&cfg), "rsb@backup.example.org:2222");
}

#[test]
fn rsync_uses_only_what_the_server_accepts() {
    let cfg = config("");
    let conn = Connection {
        bwlimit_kib: Some(500),
        compress: true,
        ..Connection::default()
    };
    let args = argv(&rsync_command(&cfg, &conn, &identity()).unwrap());
    let head: Vec<&str> = args.iter().take(14).map(String::as_str).collect();
    assert_eq!(
        head,
        [
            "-a",
            "-H",
            "-A",
            "-X",
            "--filter=-x user.rsync.**",
            "--numeric-ids",
            "--delete",
            "--delete-delay",
            "--delay-updates",
            "--partial",
            "--stats",
            "--relative",
            "--modify-window=-1",
            "--timeout=600"
        ]
    );
    assert!(args.contains(&"-z".to_owned()));
    assert!(args.contains(&"--bwlimit=500".to_owned()));
    let e = args.iter().position(|a| a == "-e").unwrap();
    let rsh = &args[e + 1];
    assert!(
        rsh.starts_with("/usr/bin/ssh -i '/etc/rsbackup/id ed25519' -p 2222 "),
        "{rsh}"
    );
    assert!(rsh.contains("-o BatchMode=yes"), "{rsh}");
    let tail: Vec<&str> = args
        .iter()
        .rev()
        .take(6)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "--exclude=*.tmp",
            "--exclude=/var/www/cache/",
            "--exclude=/etc/ssl/private",
            "/etc",
            "/var/www",
            "rsb@backup.example.org:"
        ]
    );
    // The identity prefix in front of the remote rsync, as the server's parser wants it.
    let rsync_path = format!("--rsync-path={PREFIX} rsync");
    assert_eq!(
        args.iter().filter(|a| **a == rsync_path).count(),
        1,
        "{args:?}"
    );
    // No option the server's allow-list lacks (--rsync-path stays on the client's side).
    for a in &args {
        assert!(!a.starts_with("--inplace") && a != "-s");
    }
}

#[test]
fn sources_and_excludes_are_mapped_or_refused() {
    let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
    assert_eq!(transfer_sources(&p(&["/"])).unwrap(), p(&["/"]));
    // The same last component is no clash: each source lands at its full path.
    assert_eq!(
        transfer_sources(&p(&["/a/data", "/b/data/"])).unwrap(),
        p(&["/a/data", "/b/data"])
    );
    assert_eq!(staging_path(Path::new("/b/data/")), b"b/data");
    assert_eq!(staging_path(Path::new("/")), b"");
    let err = transfer_sources(&p(&["/var", "/var/www"])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("overlap"), "{err}");
    assert!(transfer_sources(&p(&["/", "/etc"])).is_err());

    let ex = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        transfer_excludes(&p(&["/home"]), &ex(&["/home/*/cache", "/home", "core"])).unwrap(),
        ex(&["/home/*/cache", "/home", "core"])
    );
    assert_eq!(
        transfer_excludes(&p(&["/srv/home"]), &ex(&["/srv/home/x/", "/srv/home"])).unwrap(),
        ex(&["/srv/home/x/", "/srv/home"])
    );
    assert_eq!(
        transfer_excludes(&p(&["/"]), &ex(&["/proc/"])).unwrap(),
        ex(&["/proc/"])
    );
    // "/srv/homes" is not under "/srv/home", and "/tmp" is under no source.
    for bad in ["/srv/homes/x", "/tmp/"] {
        let err = transfer_excludes(&p(&["/srv/home"]), &ex(&[bad])).unwrap_err();
        assert!(err.message().contains("under no source"), "{err}");
    }
}

#[test]
fn rsh_words_are_quoted_or_refused() {
    assert_eq!(rsh_word("plain".as_ref()).unwrap(), "plain");
    assert_eq!(rsh_word("a b".as_ref()).unwrap(), "'a b'");
    assert!(rsh_word("it's".as_ref()).is_err());
    assert!(rsh_word("a\nb".as_ref()).is_err());
}

#[test]
fn server_answers() {
    let out = "some notice\n{\"session\": 42, \"state\": \"complete\", \"files\": 10, \
               \"new_stored_bytes\": 1234, \"errors\": [{\"path\": \"a\", \"message\": \"gone\"}]}\n";
    let a = ServerAnswer::parse(out).unwrap();
    assert_eq!(a.text(&["session"]).as_deref(), Some("42"));
    assert_eq!(a.number(&["new_bytes", "new_stored_bytes"]), Some(1234));
    assert_eq!(a.errors(), vec!["a: gone".to_owned()]);
    assert_eq!(a.errors_left_out(), 0);
    let cut = ServerAnswer::parse(
        "{\"errors\": [{\"path\": \"a\", \"message\": \"gone\"}], \"errors_left_out\": 41}",
    )
    .unwrap();
    assert_eq!(cut.errors_left_out(), 41);
    assert_eq!(
        cut.problems(),
        vec![
            "a: gone".to_owned(),
            "... and 41 more path errors, not listed in the server's answer".to_owned()
        ]
    );
    let nested = ServerAnswer::parse("{\"ok\":true,\"ingest\":{\"state\":\"partial\"}}").unwrap();
    assert_eq!(nested.text(&["state"]).as_deref(), Some("partial"));
    assert_eq!(nested.number(&["files"]), None);
    let pretty = "warning: x\n{\n  \"ok\": false,\n  \"hooks\": [{\"argv\": [\"/bin/df\"], \"ok\": false, \"code\": 2}]\n}\n";
    let a = ServerAnswer::parse(pretty).unwrap();
    assert_eq!(a.text(&["ok"]).as_deref(), Some("false"));
    assert_eq!(
        a.problems(),
        vec!["server hook /bin/df: exit code 2".to_owned()]
    );
    assert_eq!(server_problem(pretty), "server hook /bin/df: exit code 2");
    assert_eq!(
        server_problem("x\nrsbackup: client web1: over its quota\n"),
        "rsbackup: client web1: over its quota"
    );
    assert_eq!(server_problem(""), "no output");
    for bad in ["", "not json", "[1,2]", "{broken", "42"] {
        assert!(ServerAnswer::parse(bad).is_none(), "{bad:?}");
    }
}
