use super::*;
use crate::config::ClientName;
use crate::server::rsync_version::*;

/// What rsync 3.2.7 sends for `rsync -a -H --numeric-ids --delete --partial --stats src/ host:`.
const CLIENT_SENDS: &str =
    "rsync --server -lHogDtpre.iLsfxCIvu --delete --stats --partial --numeric-ids . .";

fn parse(cmd: &str) -> Result<RsyncRequest, String> {
    let words: Vec<&str> = cmd.split(' ').collect();
    RsyncRequest::parse(&words)
}

fn refused(cmd: &str, needle: &str) {
    let err = parse(cmd).expect_err(cmd);
    assert!(err.contains(needle), "{cmd:?}: {err:?} lacks {needle:?}");
}

#[test]
fn accepts_what_the_client_sends() {
    let req = parse(CLIENT_SENDS).unwrap();
    assert!(!req.sender);
    assert_eq!(req.short, "lHogDtpr");
    assert_eq!(req.capabilities.as_deref(), Some(".iLsfxCIvu"));
    assert_eq!(
        req.long,
        ["--delete", "--stats", "--partial", "--numeric-ids"]
    );
    // Variants captured from rsync 3.2.7: -AX, -z, -v, --timeout, --bwlimit, "host:." target.
    for ok in [
        "rsync --server -lHogDtpAXre.iLsfxCIvu --delete --stats --partial --numeric-ids . .",
        "rsync --server -lHogDtprze.iLsfxCIvu --delete --stats --partial --numeric-ids . .",
        "rsync --server -vlHogDtpre.iLsfxCIvu --delete --stats --partial --numeric-ids . .",
        "rsync --server -lHogDtpre.iLsfxCIvu --timeout=600 --delete --stats --partial --numeric-ids . .",
        "rsync --server -lHogDtpre.iLsfxCIvu --bwlimit=100 --delete --stats --partial --numeric-ids . ./",
        "rsync --server -lHogDtpre31.0iLsfxCIvu --delete . .",
    ] {
        parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // --modify-window=-1 (nanosecond times), as rsync 3.2.7 sends it; kept in the server argv.
    let ns =
        "rsync --server -lHogDtpXre.iLsfxCIvu --delete --stats -@-1 --partial --numeric-ids . .";
    let req = parse(ns).unwrap();
    assert_eq!(
        req.long,
        ["--delete", "--stats", "-@-1", "--partial", "--numeric-ids"]
    );
    let argv = req.daemon_args("upload");
    assert!(argv.iter().any(|a| a == "-@-1"), "{argv:?}");
    // Any other window (whole seconds, or wider) is refused.
    for bad in ["-@1", "-@-2", "-@", "-@0"] {
        let cmd = format!("rsync --server -lHogDtpre.iLsfxCIvu {bad} . .");
        assert!(parse(&cmd).is_err(), "{bad} accepted");
    }
}

#[test]
fn daemon_args_are_built_by_the_server() {
    let req = parse(CLIENT_SENDS).unwrap();
    let argv = req.daemon_args("upload");
    let argv: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
    // The options as the client sent them (never one added: a receiver option its sender does
    // not know can break the protocol); the path is the module's, which the server's daemon
    // configuration confines to staging.
    assert_eq!(
        argv,
        [
            "--server",
            "-lHogDtpre.iLsfxCIvu",
            "--delete",
            "--stats",
            "--partial",
            "--numeric-ids",
            ".",
            "upload/"
        ]
    );
    let delayed =
        parse("rsync --server -lHogDtpre.iLsfxCIvu --delete --delete-delay --delay-updates . .")
            .unwrap();
    let argv = delayed.daemon_args("upload");
    assert!(argv.contains(&OsString::from("--delete-delay")), "{argv:?}");
    assert!(
        argv.contains(&OsString::from("--delay-updates")),
        "{argv:?}"
    );
    let down = parse("rsync --server --sender -lHogDtpre.iLsfxCIvu --numeric-ids . .").unwrap();
    assert!(down.sender);
    let argv = down.daemon_args("restore");
    assert_eq!(argv[1], "--sender");
    assert!(!argv.contains(&OsString::from("--delay-updates")));
    assert_eq!(argv.last().unwrap(), "restore/");
}

#[test]
fn path_attacks() {
    refused(
        "rsync --server -lHogDtpre.iLsfxCIvu --delete . ..",
        "\"..\"",
    );
    refused(
        "rsync --server -lHogDtpre.iLsfxCIvu --delete . a/../../etc",
        "\"..\"",
    );
    refused(
        "rsync --server -lHogDtpre.iLsfxCIvu --delete . /etc",
        "absolute",
    );
    refused(
        "rsync --server -lHogDtpre.iLsfxCIvu --delete . /srv/staging/db1",
        "absolute",
    );
    refused(
        "rsync --server -lHogDtpre.iLsfxCIvu --delete /etc .",
        "absolute",
    );
    refused(
        "rsync --server -lHogDtpre.iLsfxCIvu --delete . sub/dir",
        "destination",
    );
    refused(
        "rsync --server -lHogDtpre.iLsfxCIvu --delete . . .",
        "3 path arguments",
    );
    refused("rsync --server -lHogDtpre.iLsfxCIvu --delete .", "paths");
    refused("rsync --server -lHogDtpre.iLsfxCIvu --delete", "paths");
    // An option after the paths is a path, and paths must be ". .".
    refused(
        "rsync --server -lHogDtpre.iLsfxCIvu . . --log-file=/tmp/x",
        "3 path arguments",
    );
    refused("rsync --server -lHogDtpre.iLsfxCIvu . -K", "destination");
}

#[test]
fn program_and_server_flag() {
    refused(
        "/usr/bin/rsync --server -lHogDtpre.iLsfxCIvu . .",
        "program must be",
    );
    refused("sh -c rsync", "program must be");
    refused(
        "rsync -lHogDtpre.iLsfxCIvu --server . .",
        "--server as its first",
    );
    refused("rsync", "--server as its first");
}

#[test]
fn option_attacks() {
    for (cmd, needle) in [
        ("rsync --server -slHogDtpre.iLsfxCIvu", "-s"),
        ("rsync --server -lHogDtpsre.iLsfxCIvu . .", "-s"),
        (
            "rsync --server --protect-args -lHogDtpre.iLsfxCIvu . .",
            "--protect-args",
        ),
        (
            "rsync --server --secluded-args -lHogDtpre.iLsfxCIvu . .",
            "--secluded-args",
        ),
        ("rsync --server -e ssh . .", "capability string \"\""),
        ("rsync --server -lHe.iLsfxCIvu -e.iL . .", "twice"),
        ("rsync --server -lHe.iLsfxCIvu;id . .", "capability string"),
        ("rsync --server -lHe.iLsfxCIvuZ . .", "capability string"),
        ("rsync --server -lHe32.iL . .", "capability string"),
        ("rsync --server -lHe.0iL . .", "capability string"),
        ("rsync --server -lHe3x.iL . .", "capability string"),
        (
            "rsync --server --rsync-path=/tmp/evil -lHe.iL . .",
            "--rsync-path",
        ),
        (
            "rsync --server --files-from=/etc/shadow -lHe.iL . .",
            "--files-from",
        ),
        (
            "rsync --server --log-file=/root/.ssh/authorized_keys -lHe.iL . .",
            "--log-file",
        ),
        ("rsync --server --temp-dir=/tmp -lHe.iL . .", "--temp-dir"),
        ("rsync --server -T /tmp -lHe.iL . .", "-T"),
        (
            "rsync --server --partial-dir=/tmp -lHe.iL . .",
            "--partial-dir",
        ),
        (
            "rsync --server --partial-dir .rsync-partial -lHe.iL . .",
            "--partial-dir",
        ),
        (
            "rsync --server --backup-dir=/tmp -lHe.iL . .",
            "--backup-dir",
        ),
        ("rsync --server -b -lHe.iL . .", "-b"),
        (
            "rsync --server --remove-source-files -lHe.iL . .",
            "--remove-source-files",
        ),
        ("rsync --server -lHKe.iL . .", "-K"),
        ("rsync --server -lHLe.iL . .", "-L"),
        ("rsync --server -lHe.iL --inplace . .", "--inplace"),
        (
            "rsync --server -lHe.iL --delete-after . .",
            "--delete-after",
        ),
        (
            "rsync --server -lHe.iL --delete-excluded . .",
            "--delete-excluded",
        ),
        (
            "rsync --server -lHe.iL --delete-missing-args . .",
            "--delete-missing-args",
        ),
        ("rsync --server -lHe.iL --delete=yes . .", "--delete"),
        ("rsync --server -lHe.iL --timeout=10x . .", "plain number"),
        ("rsync --server -lHe.iL --timeout= . .", "plain number"),
        ("rsync --server -lHe.iL --stats=1 . .", "--stats"),
        ("rsync --server -lHe.iL --munge-links . .", "--munge-links"),
        (
            "rsync --server -lHe.iL --no-munge-links . .",
            "--no-munge-links",
        ),
        ("rsync --server -M--log-file=/x -lHe.iL . .", "-M"),
        ("rsync --server -f+/etc -lHe.iL . .", "-f"),
        ("rsync --server - . .", "lone"),
        ("rsync --server -lHé.iL . .", "-é"),
    ] {
        refused(cmd, needle);
    }
}

#[test]
fn staging_dir_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("staging");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(root.join("web1")).unwrap();
    std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("elsewhere"), root.join("db1")).unwrap();
    std::fs::write(root.join("file1"), b"x").unwrap();
    let name = |n: &str| ClientName::parse(n).unwrap();
    let dir = checked_staging_dir(&root, &name("web1")).unwrap();
    assert_eq!(dir, root.canonicalize().unwrap().join("web1"));
    assert!(
        checked_staging_dir(&root, &name("db1"))
            .unwrap_err()
            .message()
            .contains("symlink")
    );
    assert!(checked_staging_dir(&root, &name("file1")).is_err());
    assert!(checked_staging_dir(&root, &name("missing")).is_err());
    // A symlinked root is fine: it is resolved first, and the client directory checked under it.
    std::os::unix::fs::symlink(&root, tmp.path().join("link")).unwrap();
    assert_eq!(
        checked_staging_dir(&tmp.path().join("link"), &name("web1")).unwrap(),
        dir
    );
}

#[test]
fn rsync_versions() {
    let v = parse_rsync_version("rsync  version 3.2.7  protocol version 32\nCopyright").unwrap();
    assert_eq!(v.version, (3, 2, 7));
    assert_eq!(v.protocol, 32);
    let v = parse_rsync_version("rsync  version v3.4.1  protocol version 32");
    assert!(v.is_err(), "{v:?}");
    assert!(parse_rsync_version("").is_err());
    assert!(parse_rsync_version("openrsync: protocol version 29").is_err());
    let pre = parse_rsync_version("rsync  version 3.4.0pre1  protocol version 32").unwrap();
    assert!(pre.version < MIN_SAFE_RSYNC);

    let bin = Path::new("/usr/bin/rsync");
    let new = "rsync  version 3.4.1  protocol version 32";
    assert!(matches!(
        check_rsync_safe(bin, new, None),
        Ok(RsyncSafety::Upstream(_))
    ));
    let old = "rsync  version 3.2.7  protocol version 32";
    assert!(
        check_rsync_safe(bin, old, None)
            .unwrap_err()
            .contains("CVE-2024-12084")
    );
    assert!(check_rsync_safe(bin, old, Some("3.2.7-1")).is_err());
    assert!(check_rsync_safe(bin, old, Some("3.2.7-1+deb12u0")).is_err());
    assert!(check_rsync_safe(bin, old, Some("3.2.7-1+deb12u")).is_err());
    assert_eq!(
        check_rsync_safe(bin, old, Some("3.2.7-1+deb12u5\n")),
        Ok(RsyncSafety::DebianPatched("3.2.7-1+deb12u5".into()))
    );
    assert!(
        check_rsync_safe(
            Path::new("/usr/local/bin/rsync"),
            old,
            Some("3.2.7-1+deb12u5")
        )
        .is_err()
    );
    let other = "rsync  version 3.2.6  protocol version 31";
    assert!(check_rsync_safe(bin, other, Some("3.2.7-1+deb12u5")).is_err());
    let pre = "rsync  version 3.4.0pre1  protocol version 32";
    assert!(check_rsync_safe(bin, pre, None).is_err());
}

#[test]
fn installed_rsync_is_understood() {
    // The real rsync on this machine, when there is one: its version line must parse.
    let out = std::process::Command::new("rsync")
        .arg("--version")
        .output()
        .expect("rsync is not installed: tools/test.sh installs it (apt-get install rsync)");
    let v = parse_rsync_version(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(v.version >= (3, 0, 0));
}

/// The real rsync: what the client's rsync asks ssh to run must parse as an upload.
#[test]
fn real_rsync_round_trip() {
    use std::os::unix::fs::PermissionsExt;
    let rsync = Path::new("/usr/bin/rsync");
    assert!(
        rsync.exists(),
        "/usr/bin/rsync is not installed: tools/test.sh installs it (apt-get install rsync)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file"), b"content").unwrap();
    std::fs::hard_link(src.join("sub/file"), src.join("hardlink")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("escape")).unwrap();
    let root = tmp.path().join("staging");
    std::fs::create_dir_all(root.join("web1")).unwrap();
    let _staging = checked_staging_dir(&root, &ClientName::parse("web1").unwrap()).unwrap();

    // Pass 1: a fake ssh that records the remote command words.
    let fake_ssh = tmp.path().join("fake-ssh");
    let words = tmp.path().join("words");
    let script = |body: String| {
        std::fs::write(&fake_ssh, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&fake_ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(format!(
        "shift 3\necho \"$*\" > {}\nexit 1\n",
        words.display()
    ));
    let client = |ssh: &Path| {
        std::process::Command::new(rsync)
            .args([
                "-a",
                "-H",
                "--numeric-ids",
                "--delete",
                "--partial",
                "--stats",
                "--modify-window=-1",
                // The client identity prefix rides in front of the remote rsync.
                "--rsync-path=rsbackup-client=web1 rsbackup-machine=0123456789abcdef0123456789abcdef rsync",
                "-e",
            ])
            .arg(ssh)
            .arg(format!("{}/", src.display()))
            .arg("web1@backup:")
            .output()
            .unwrap()
    };
    client(&fake_ssh);
    let sent = std::fs::read_to_string(&words).unwrap();
    let request = match crate::server::authz::parse_command(Some(sent.trim_end())) {
        Ok((_, crate::server::authz::Request::Upload(r))) => r,
        other => panic!("{sent:?}: {other:?}"),
    };

    // What the server does with it (the confined daemon over the ssh channel) is proven end to
    // end through sshd: tests/cli/push_server.rs and tests/cli/confine.rs.
    assert!(!request.sender);
}
