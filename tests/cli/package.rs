//! The Debian package, installed on this machine: tools/deb.sh builds it from the binary under
//! test, lintian finds no error, `dpkg -i` creates the account and directories with the right
//! owners and modes, `systemd-analyze verify` accepts the units, docs/install.md's server and
//! client steps run as written against a loopback sshd (a real push as the package's account,
//! then a restore), each unit's ExecStart runs as its User=, and `dpkg -r` / `dpkg -P` remove
//! it: the account stays while it owns files and goes once it owns none.
//!
//! It changes the machine (a package, an account, /etc/rsbackup, /var/lib/rsbackup), as root.
//! A machine where rsbackup is installed by someone else is refused, not overwritten.

use std::path::Path;

use crate::common::{require_root, sample_tree, tempdir};
use crate::install_doc::*;
use crate::sshd::Sshd;

const ACCOUNT: &str = "rsbackup";
/// Left by this test right after installing, so a later run may clean up after a crashed one.
const MARKER: &str = "/var/lib/rsbackup/.package-test";
const UNITS: [&str; 4] = [
    "rsbackup-run",
    "rsbackup-prune",
    "rsbackup-check",
    "rsbackup-watch",
];

/// Remove what a previous, interrupted run of this test left; refuse a real installation.
fn clean_machine() {
    if Path::new(MARKER).exists() {
        let _ = std::process::Command::new("dpkg")
            .args(["-P", "rsbackup"])
            .output();
        for path in [
            "/var/lib/rsbackup",
            "/etc/rsbackup",
            "/var/log/rsbackup",
            "/root/rsbackup-identity.txt",
            "/root/restore-web1",
        ] {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
        if account_exists(ACCOUNT) {
            must(&["userdel", ACCOUNT]);
        }
    }
    for path in [
        "/etc/rsbackup",
        "/var/lib/rsbackup",
        "/root/rsbackup-identity.txt",
    ] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists and was not made by this test: it needs a machine without rsbackup"
        );
    }
    assert!(
        !package_present("rsbackup") && !account_exists(ACCOUNT),
        "the rsbackup package or account is already on this machine and was not installed by \
         this test: it needs a machine without them"
    );
}

fn build_package(out: &Path) -> String {
    let deb_sh = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/deb.sh");
    let printed = must(&[
        deb_sh,
        "--binary",
        env!("CARGO_BIN_EXE_rsbackup"),
        "--out",
        out.to_str().unwrap(),
    ]);
    let deb = printed.trim().to_owned();
    let arch = must(&["dpkg", "--print-architecture"]);
    let name = Path::new(&deb)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("rsbackup_") && name.ends_with(&format!("_{}.deb", arch.trim())),
        "{name}"
    );
    deb
}

fn check_installed_files() {
    let (uid, gid) = ids(ACCOUNT);
    assert_ne!(uid, 0);
    let shadow = must(&["getent", "shadow", ACCOUNT]);
    assert_eq!(
        shadow.split(':').nth(1),
        Some("*"),
        "password field: key login needs it unlocked"
    );
    let passwd = must(&["getent", "passwd", ACCOUNT]);
    assert!(
        passwd.trim().ends_with(":/var/lib/rsbackup:/bin/sh"),
        "{passwd}"
    );
    assert_dir("/etc/rsbackup", 0, gid, 0o750);
    assert_dir("/var/lib/rsbackup", uid, gid, 0o750);
    assert_dir("/var/lib/rsbackup/staging", uid, gid, 0o700);
    let adm = ids("root").1;
    let adm = must(&["getent", "group", "adm"])
        .split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .unwrap_or(adm);
    assert_dir("/var/log/rsbackup", uid, adm, 0o750);
    for file in [
        "/usr/bin/rsbackup",
        "/usr/share/man/man1/rsbackup.1.gz",
        "/usr/share/man/man1/rsbackup-run.1.gz",
        "/usr/share/man/man1/rsbackup-add-client.1.gz",
        "/usr/share/man/man1/rsbackup-repair-index.1.gz",
        "/usr/share/bash-completion/completions/rsbackup",
        "/usr/share/zsh/vendor-completions/_rsbackup",
        "/usr/share/fish/vendor_completions.d/rsbackup.fish",
        "/usr/share/doc/rsbackup/copyright",
        "/usr/share/doc/rsbackup/examples/server.toml",
        "/usr/share/doc/rsbackup/examples/client.toml",
        "/usr/share/doc/rsbackup/examples/offsite-server.toml",
    ] {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    // Every page is roff that man can render, and names its command.
    let page = must(&["sh", "-c", "zcat /usr/share/man/man1/rsbackup-run.1.gz"]);
    assert!(
        page.contains(".TH rsbackup-run 1") && page.contains("Exit codes"),
        "{page}"
    );
    // The example configurations load.
    for (flag, file) in [
        ("--server", "server.toml"),
        ("--server", "offsite-server.toml"),
    ] {
        let path = format!("/usr/share/doc/rsbackup/examples/{file}");
        let out = run_as(
            "root",
            &["/usr/bin/rsbackup", "config", "check", flag, &path],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Findings about this machine's paths are expected; a load error is not (it is the
        // one `rsbackup: FILE...` line, where findings are `FILE:LINE: ...` lines).
        let load_error = stderr
            .lines()
            .any(|l| l.starts_with(&format!("rsbackup: {path}:")) && !l.ends_with("(above)"));
        assert!(!load_error, "the example does not load: {stderr}");
    }
    let mut units = Vec::new();
    for unit in UNITS {
        for kind in ["service", "timer"] {
            units.push(format!("/lib/systemd/system/{unit}.{kind}"));
        }
    }
    let mut verify = vec!["systemd-analyze", "verify"];
    verify.extend(units.iter().map(String::as_str));
    let out = std::process::Command::new(verify[0])
        .args(&verify[1..])
        .output()
        .expect("cannot run systemd-analyze (apt package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Without systemd as PID 1 verify still reads the units; it cannot check the dependencies
    // on units of a running system, which it says in lines naming other units.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("rsbackup")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn package_installs_follows_install_md_runs_its_units_and_purges() {
    require_root("dpkg -i, an account, sshd");
    clean_machine();
    let work = tempdir();
    let deb = build_package(work.path());
    let lintian = std::process::Command::new("lintian")
        .args(["--fail-on", "error", &deb])
        .output()
        .expect("cannot run lintian (apt package lintian)");
    assert!(
        lintian.status.success(),
        "lintian found errors:\n{}",
        String::from_utf8_lossy(&lintian.stdout)
    );

    let sshd = Sshd::start("");
    // sshd reads the account's authorized_keys, which the install steps write.
    let keys = sshd.dir().join("authorized_keys");
    std::fs::remove_file(&keys).unwrap();
    std::os::unix::fs::symlink("/var/lib/rsbackup/.ssh/authorized_keys", &keys).unwrap();
    let mail = work.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    std::fs::set_permissions(&mail, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let source = work.path().join("source");
    sample_tree(&source);
    let port = sshd.port;
    let table: Vec<(&str, String)> = vec![
        (
            "ssh-keyscan -t ed25519 backup.example.org",
            format!("ssh-keyscan -t ed25519 -p {port} 127.0.0.1"),
        ),
        (
            "host = \"backup.example.org\"",
            "host = \"127.0.0.1\"".into(),
        ),
        ("port = 22", format!("port = {port}")),
        ("192.0.2.10", "127.0.0.1".into()),
        (
            "transport = \"sendmail\"",
            format!(
                "transport = \"directory\"\ndirectory = \"{}\"",
                mail.display()
            ),
        ),
        (
            "sources = [\"/etc\", \"/home\"]",
            format!("sources = [\"{}\"]", source.display()),
        ),
        ("/root/web1.pub", "/etc/rsbackup/id_ed25519.pub".into()),
    ];
    let doc = std::fs::read_to_string(INSTALL_DOC).unwrap();
    assert_placeholders_used(&doc, &table);
    let dir = Path::new(&deb).parent().unwrap();

    let server = substitute(&blocks(&doc, "install-server"), &table);
    run_script("server", &server, dir);
    std::fs::write(MARKER, "").unwrap();
    check_installed_files();

    let client = substitute(&blocks(&doc, "install-client"), &table);
    let out = run_script("client", &client, dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("added client web1"), "{stdout}");
    assert!(
        stdout.contains("/etc/rsbackup/client.toml: ok"),
        "config check: {stdout}"
    );
    assert!(
        stdout.contains("ok     server") && stdout.contains("ok     rsync --dry-run"),
        "run --dry-run: {stdout}"
    );
    let restored = Path::new("/root/restore-web1");
    // Each source comes back under its full path.
    let tree = restored.join(source.strip_prefix("/").unwrap());
    assert!(
        crate::common::compare_trees(&source, &tree).is_empty(),
        "the restored tree differs: {:?}",
        crate::common::compare_trees(&source, &tree)
    );
    assert!(
        std::fs::read_dir(&mail).unwrap().count() >= 1,
        "the run mailed its job report"
    );

    // Each unit's command, as its account, against what the steps set up.
    for unit in UNITS {
        let (argv, user) = exec_start(&format!("/lib/systemd/system/{unit}.service"));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let expected_user = if unit == "rsbackup-run" {
            "root"
        } else {
            ACCOUNT
        };
        assert_eq!(user, expected_user, "{unit}: User=");
        let out = run_as(&user, &argv);
        assert_success(&format!("{unit}: {argv:?} as {user}"), &out);
    }
    // Nothing above (restore as root included) left a file the account cannot write.
    let out = run_as(
        ACCOUNT,
        &[
            "/usr/bin/rsbackup",
            "config",
            "check",
            "--server",
            "/etc/rsbackup/server.toml",
        ],
    );
    assert!(out.status.success(), "{out:?}");

    // Remove: the program goes, the configuration, data and account stay.
    must(&["dpkg", "-r", "rsbackup"]);
    assert!(!Path::new("/usr/bin/rsbackup").exists());
    assert!(!Path::new("/lib/systemd/system/rsbackup-run.timer").exists());
    assert!(Path::new("/etc/rsbackup/server.toml").exists() && account_exists(ACCOUNT));
    // Purge while the account owns the repository: it stays, and so does the repository.
    let out = std::process::Command::new("dpkg")
        .args(["-P", "rsbackup"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        account_exists(ACCOUNT),
        "purge removed an account that owns a repository"
    );
    assert!(Path::new("/var/lib/rsbackup/repository/repository.toml").exists());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keeping the account rsbackup"),
        "{out:?}"
    );

    // Reinstall over the kept account, remove what it owns, purge: the account goes. (The
    // restored tree's top directory has the staging directory's owner, the account.)
    std::fs::remove_dir_all(restored).unwrap();
    must(&["dpkg", "-i", &deb]);
    check_installed_files();
    for path in ["/var/lib/rsbackup", "/etc/rsbackup", "/var/log/rsbackup"] {
        for entry in std::fs::read_dir(path).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() && !entry.is_symlink() {
                std::fs::remove_dir_all(&entry).unwrap();
            } else {
                std::fs::remove_file(&entry).unwrap();
            }
        }
    }
    must(&["dpkg", "-P", "rsbackup"]);
    assert!(!package_present("rsbackup"));
    assert!(
        !account_exists(ACCOUNT),
        "purge left an account that owns nothing"
    );
    for path in ["/var/lib/rsbackup", "/etc/rsbackup", "/var/log/rsbackup"] {
        assert!(!Path::new(path).exists(), "purge left {path}");
    }
    std::fs::remove_file("/root/rsbackup-identity.txt").unwrap();
    drop(sshd);
}
