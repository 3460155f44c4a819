//! Issue 11: a hostile client stays inside its staging. Each attack goes through the real sshd
//! forced command and the real rsync, and stays in the suite.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use crate::push_server::{ANY, Server};

/// Command lines of live processes that mention `needle` (zombies have none).
pub(crate) fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(needle) {
            found.push(format!("{pid}: {line}"));
        }
    }
    found
}

/// Wait up to `limit` for no process to mention `needle`; the ones left.
fn left_running(needle: &str, limit: Duration) -> Vec<String> {
    let until = Instant::now() + limit;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 11 part 2: filter rules travel inside the rsync protocol. A `.rsync-rules` file in
/// the client's staging (left there by an earlier upload) with `merge PATH`, read by the
/// server's receiver through `--filter='dir-merge .rsync-rules'`, and `--filter='dir-merge
/// PATH'` itself: PATH naming server.toml, another client's staged file, the repository's
/// secret, a missing path and /dev/zero. The client gets the same answer for every one (the
/// confined receiver sees them all as missing names inside staging), nothing of those files
/// reaches staging, and no process of the request outlives the client by 5 s.
#[test]
fn protocol_filter_rules_cannot_reach_outside_staging() {
    let keep = format!("{ANY}\nstaging-mode = \"keep\"");
    let s = Server::start(&[("web1", Some(&keep)), ("web2", Some(&keep))], None);
    let src = s.dir.path().join("src");
    common::write_file(&src.join("plain"), b"plain file\n");
    std::fs::create_dir_all(s.staging.join("web2")).unwrap();
    let other = s.staging.join("web2/secret-of-web2");
    common::write_file(&other, b"- web2 private\n");
    let secret = s.repo.repo.join("keys/secret");
    assert!(
        secret.exists(),
        "the test repository has {}",
        secret.display()
    );
    let missing = s.dir.path().join("no/such/file");
    let targets = [
        s.config.clone(),
        other.clone(),
        secret.clone(),
        missing.clone(),
        Path::new("/dev/zero").to_path_buf(),
    ];
    // The client's own rsync would read an absolute dir-merge file on this machine (it is the
    // same box here): a client-side mount namespace hides the server's files from it.
    let hide = format!(
        "mount -t tmpfs none '{staging}' && mount -t tmpfs none '{repo}' && \
         mount --bind /dev/null '{config}' && exec \"$@\"",
        staging = s.staging.display(),
        repo = s.repo.repo.display(),
        config = s.config.display(),
    );
    let mut answers = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let t = target.display().to_string();
        // Vector 1: the staged rules file.
        std::fs::create_dir_all(s.staging.join("web1")).unwrap();
        common::write_file(
            &s.staging.join("web1/.rsync-rules"),
            format!("merge {t}\n").as_bytes(),
        );
        s.json("web1", "prepare");
        let started = Instant::now();
        let out = s.rsync("web1", &src, &["--filter=dir-merge .rsync-rules"]);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{t}: the upload took {:?}",
            started.elapsed()
        );
        let text = String::from_utf8_lossy(&out.stderr).replace(&t, "PATH");
        answers.push((format!("staged merge {t}"), out.status.code(), text));
        for needle in [s.staging.display(), s.config.display()] {
            let left = left_running(&needle.to_string(), Duration::from_secs(5));
            assert!(left.is_empty(), "{t}: still running 5 s later: {left:?}");
        }
        let _ = s.ssh("web1", None, "complete");

        // Vector 2: --filter='dir-merge PATH', the client's rsync blind to the server's files.
        if i < 4 {
            s.json("web1", "prepare");
            let mut cmd = Command::new("unshare");
            cmd.args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &hide,
                "sh",
            ]);
            let direct = s.rsync_command("web1", &src, &[&format!("--filter=dir-merge {t}")]);
            cmd.arg(direct.get_program()).args(direct.get_args());
            let out = cmd
                .output()
                .expect("unshare (util-linux) must be installed");
            let text = String::from_utf8_lossy(&out.stderr).replace(&t, "PATH");
            answers.push((format!("dir-merge {t}"), out.status.code(), text));
            let _ = s.ssh("web1", None, "complete");
        }
    }
    // The missing path's answer is the one every other path must get.
    let staged_missing = answers
        .iter()
        .find(|(what, ..)| what == &format!("staged merge {}", missing.display()))
        .unwrap()
        .clone();
    for (what, code, text) in &answers {
        if what.starts_with("staged") {
            assert_eq!(
                (code, text),
                (&staged_missing.1, &staged_missing.2),
                "{what} answered differently from a missing path"
            );
        }
    }
    let direct_missing = answers
        .iter()
        .find(|(what, ..)| what == &format!("dir-merge {}", missing.display()))
        .unwrap()
        .clone();
    for (what, code, text) in &answers {
        if what.starts_with("dir-merge") {
            assert_eq!(
                (code, text),
                (&direct_missing.1, &direct_missing.2),
                "{what} answered differently from a missing path"
            );
        }
    }
    // Nothing of those files is in web1's staging.
    let config_text = std::fs::read(&s.config).unwrap();
    for rel in common::walk(&s.staging.join("web1")) {
        let p = s
            .staging
            .join("web1")
            .join(std::str::from_utf8(&rel).unwrap());
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                bytes != config_text && !bytes.starts_with(b"- web2"),
                "{}",
                p.display()
            );
        }
    }
    assert_eq!(
        std::fs::read(s.staging.join("web1/plain")).unwrap(),
        b"plain file\n",
        "the upload itself still works"
    );
}

/// Issue 11 part 2: a client that goes away mid-upload leaves nothing running: its rsync's
/// whole process group is killed and reaped within 5 s.
#[test]
fn a_client_that_hangs_up_leaves_no_process() {
    let s = Server::start(&[("web1", Some(ANY))], None);
    let src = s.dir.path().join("src");
    common::write_file(&src.join("big"), &common::pattern(3, 8 << 20));
    s.json("web1", "prepare");
    let mut client = s
        .rsync_command("web1", &src, &["--bwlimit=200"])
        .spawn()
        .unwrap();
    let needle = format!("{}", s.staging.display());
    let until = Instant::now() + Duration::from_secs(20);
    while processes_mentioning(&needle).is_empty() {
        assert!(Instant::now() < until, "the server's rsync never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    client.kill().unwrap();
    client.wait().unwrap();
    for needle in [needle, s.config.display().to_string()] {
        let left = left_running(&needle, Duration::from_secs(5));
        assert!(
            left.is_empty(),
            "still running 5 s after the client: {left:?}"
        );
    }
}

/// Issue 11 part 3: with `quota = "1M"`, a 20 MB upload is stopped as it crosses the quota:
/// `complete` records no session from it, staging is as it was before that run (keep) or
/// empty (purge), the administrator gets a mail, and the next run works once the quota is
/// raised.
#[test]
fn quota_stops_the_upload_that_crosses_it() {
    let (s, src) = one_push_under_a_1m_quota(10_000);
    let before = common::walk(&s.staging.join("web1"));

    common::write_file(&src.join("big"), &common::pattern(2, 20 << 20));
    s.json("web1", "prepare");
    stopped_over_quota(&s, &src);
    assert_eq!(
        common::walk(&s.staging.join("web1")),
        before,
        "staging is as it was before the stopped run"
    );
    let mails = s.smtp().wait_for(1, Duration::from_secs(10));
    assert!(
        mails
            .iter()
            .any(|m| crate::push_client::decode_mail(m).contains("over its quota")),
        "{mails:?}"
    );

    // Raised quota: the next run works and restores equal.
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace("quota = \"1M\"", "quota = \"100M\""),
    )
    .unwrap();
    let done = s.push("web1", &src, &[]);
    assert_eq!(done["state"], "complete", "{done:#}");
    s.restore_equals(done["session"].as_i64().unwrap(), &src);

    // Purge mode: the stopped run leaves staging empty.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text = text
        .replace("quota = \"100M\"", "quota = \"1M\"")
        .replace("\"keep\"", "\"purge\"");
    std::fs::write(&s.config, text).unwrap();
    std::fs::remove_dir_all(s.staging.join("web1")).unwrap();
    common::write_file(&src.join("big2"), &common::pattern(3, 20 << 20));
    s.json("web1", "prepare");
    let _ = s.rsync("web1", &src, &[]);
    assert!(!s.ssh("web1", None, "complete").status.success());
    assert_eq!(s.sessions(), 2);
    // Only the staging directory itself is left.
    assert_eq!(
        common::walk(&s.staging.join("web1")),
        vec![Vec::<u8>::new()]
    );
}

/// The upload's quota watch starts from what staging already holds (measured by the same walk
/// that strips transport xattrs before the upload): with 800 kB staged under a 1 MB quota, an
/// upload of 400 kB, itself far under the quota, is stopped as staging crosses it, and no
/// session is recorded from it.
#[test]
fn quota_counts_what_staging_held_before_the_upload() {
    let (s, src) = one_push_under_a_1m_quota(800_000);
    common::write_file(&src.join("new"), &common::pattern(2, 400_000));
    let prepared = s.json("web1", "prepare");
    let held = prepared["staging_allocated_bytes"].as_u64().unwrap();
    assert!(
        (800_000..1_000_000).contains(&held),
        "staging holds the first file, under the quota: {prepared:#}"
    );
    stopped_over_quota(&s, &src);
}

/// A server whose client `web1` keeps its staging under a quota of 1 MB, after one complete
/// push of a file of `bytes` (pattern 1) from the returned source directory.
fn one_push_under_a_1m_quota(bytes: usize) -> (Server, std::path::PathBuf) {
    let body = format!("{ANY}\nstaging-mode = \"keep\"\nquota = \"1M\"");
    let s = Server::start(&[("web1", Some(&body))], None);
    let src = s.dir.path().join("src");
    common::write_file(&src.join("first"), &common::pattern(1, bytes));
    let first = s.push("web1", &src, &[]);
    assert_eq!(first["state"], "complete", "{first:#}");
    (s, src)
}

/// After `prepare`: the upload of `src` is stopped over the quota, `complete` records no
/// session, and the stop is audited as a refusal.
fn stopped_over_quota(s: &Server, src: &Path) {
    let out = s.rsync("web1", src, &[]);
    let done = s.ssh("web1", None, "complete");
    assert!(
        !done.status.success(),
        "complete after an upload that took staging over its quota: {done:?}\nrsync: {out:?}"
    );
    assert_eq!(s.sessions(), 1, "no session from the stopped upload");
    let audit = s.audit();
    assert!(
        audit
            .iter()
            .any(|row| row[3] == "refuse" && row[4].contains("upload stopped")),
        "{audit:?}"
    );
}

/// Issue 11 part 1: an unprivileged user on the client sets `user.rsync.security.capability`,
/// `user.rsync.trusted.x` and `user.rsync.system.posix_acl_access` on a file of their own;
/// after a push with the real client (`rsbackup run` through sshd) and a root restore, getcap,
/// getfattr and getfacl show nothing privileged. A capability root set is still restored, and
/// taken off (file unchanged) it is gone from the next session. Access and default ACLs come
/// back equal (`getfacl -R`).
#[test]
fn an_unprivileged_users_xattrs_never_become_privileged() {
    use crate::push_client::{Client, Server, code};
    assert!(
        common::is_root(),
        "this test sets capabilities and changes users"
    );
    let client = Client::new();
    let src = client.src.clone();
    let mine = src.join("mine");
    common::write_file(&mine, b"#!/bin/sh\nid\n");
    common::must("chown", &["65534:65534", mine.to_str().unwrap()]);
    let cap = "0sAQAAAgAgAAAAAAAAAAAAAAAAAAA="; // cap_net_raw+ep, as setcap writes it
    let acl = "0sAgAAAAEABwD/////AgAHAP7/AAAEAAUA/////xAABwD/////IAAFAP////8=";
    for (name, value) in [
        ("user.rsync.security.capability", cap),
        ("user.rsync.trusted.x", "0sAQ=="),
        ("user.rsync.system.posix_acl_access", acl),
    ] {
        common::must(
            "setpriv",
            &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "setfattr",
                "-n",
                name,
                "-v",
                value,
                mine.to_str().unwrap(),
            ],
        );
    }
    let real = src.join("captrue");
    std::fs::copy("/usr/bin/true", &real).unwrap();
    common::must("setcap", &["cap_net_raw+ep", real.to_str().unwrap()]);
    let shared = src.join("shared");
    std::fs::create_dir(&shared).unwrap();
    common::write_file(&shared.join("doc"), b"doc\n");
    common::must(
        "setfacl",
        &["-m", "u:65534:rx,g:65534:r", shared.to_str().unwrap()],
    );
    common::must(
        "setfacl",
        &["-d", "-m", "u:65534:rwx,o::-", shared.to_str().unwrap()],
    );
    common::must(
        "setfacl",
        &["-m", "u:65534:rw", shared.join("doc").to_str().unwrap()],
    );

    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"keep\"",
    );
    let (config, _mail) = client.config_for(&server);
    client.run(&config, &[]).code(code::OK);
    let restored = server.restore_latest("restored-1").join(client.staged());

    let caps = common::must("getcap", &["-r", restored.to_str().unwrap()]);
    let caps: Vec<&str> = caps.lines().collect();
    assert_eq!(caps.len(), 1, "{caps:?}");
    assert!(
        caps[0].contains("captrue") && caps[0].contains("cap_net_raw=ep"),
        "{caps:?}"
    );
    let names = common::must(
        "getfattr",
        &[
            "-d",
            "-m",
            "-",
            "--absolute-names",
            restored.join("mine").to_str().unwrap(),
        ],
    );
    for bad in ["security.", "trusted.", "system.", "user.rsync."] {
        assert!(!names.contains(bad), "{bad} on the user's file:\n{names}");
    }
    assert_eq!(
        common::acls_of(&src.join("shared")),
        common::acls_of(&restored.join("shared"))
    );
    let mine_acl = common::must(
        "getfacl",
        &["-p", "-n", restored.join("mine").to_str().unwrap()],
    );
    assert!(
        !mine_acl
            .lines()
            .any(|l| l.starts_with("mask::") || l.starts_with("user:6")),
        "a forged ACL on the user's file:\n{mine_acl}"
    );
    // rsync itself finds nothing to change between the source and the restore (but the
    // user's file, whose user.rsync.* names are dropped by design).
    let diff = common::must(
        "rsync",
        &[
            "-naHAXc",
            "--numeric-ids",
            "--exclude=/mine",
            "--out-format=%i %n",
            &format!("{}/", src.display()),
            &format!("{}/", restored.display()),
        ],
    );
    let changed: Vec<&str> = diff.lines().filter(|l| !l.ends_with(" ./")).collect();
    assert!(changed.is_empty(), "{changed:?}");

    // The capability taken off an unchanged file is gone from the next session.
    common::must("setcap", &["-r", real.to_str().unwrap()]);
    client.run(&config, &[]).code(code::OK);
    let restored = server.restore_latest("restored-2").join(client.staged());
    let caps = common::must("getcap", &["-r", restored.to_str().unwrap()]);
    assert_eq!(caps.trim(), "", "a removed capability came back");
}

/// A download (`restore = true`) goes through the read-only module of the confined daemon:
/// the client gets its staged tree back as it sent it (symlink un-munged, mode from fake super),
/// and a filter rule naming a server file answers like a missing one there too.
#[test]
fn a_permitted_download_reads_staging_through_the_module() {
    let body = format!("{ANY}\nstaging-mode = \"keep\"\nrestore = true");
    let s = Server::start(&[("web1", Some(&body))], None);
    let src = s.dir.path().join("src");
    common::write_file(&src.join("dir/file"), b"content\n");
    common::set_mode(&src.join("dir/file"), 0o4750);
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
    s.push("web1", &src, &[]);

    let back = s.dir.path().join("back");
    let out = s.download_command("web1", &back, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(back.join("dir/file")).unwrap(), b"content\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(back.join("dir/file"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4750);
    assert_eq!(
        std::fs::read_link(back.join("link")).unwrap(),
        Path::new("/etc/passwd")
    );

    // The sender (the server) reads a staged per-directory rules file naming a server file.
    let mut answers = Vec::new();
    for target in [s.config.clone(), s.dir.path().join("missing")] {
        let t = target.display().to_string();
        common::write_file(
            &s.staging.join("web1/.rsync-rules"),
            format!("merge {t}\n").as_bytes(),
        );
        let again = s.dir.path().join(format!("again-{}", answers.len()));
        let out = s
            .download_command("web1", &again, &["--filter=dir-merge .rsync-rules"])
            .output()
            .unwrap();
        answers.push((
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).replace(&t, "PATH"),
        ));
    }
    assert_eq!(answers[0], answers[1], "{answers:?}");
}

/// `[rsync-limits] idle-seconds`: a client that opens an upload and then sends nothing is
/// dropped after the idle limit, and nothing of its request is left running.
#[test]
fn an_idle_client_is_dropped() {
    use std::io::Write;
    let s = Server::start(&[("web1", Some(ANY))], None);
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str("\n[rsync-limits]\nidle-seconds = 2\n");
    std::fs::write(&s.config, text).unwrap();
    s.json("web1", "prepare");
    let mut ssh = s
        .ssh_command("web1", "rsync --server -logDtpre.iLsfxCIvu --delete . .")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = ssh.stdin.take().unwrap();
    // The protocol version, then silence (the channel stays open).
    stdin.write_all(&32u32.to_le_bytes()).unwrap();
    stdin.flush().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = ssh.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "an idle client was not dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "dropped before it was idle"
    );
    drop(stdin);
    for needle in [
        s.staging.display().to_string(),
        s.config.display().to_string(),
    ] {
        let left = left_running(&needle, Duration::from_secs(5));
        assert!(left.is_empty(), "still running: {left:?}");
    }
}

/// Issue 11 part 1, the server's half: a client that does send `user.rsync.*` names (an rsync
/// without rsbackup's sending-side filter, with `--filter='!'` and `+x` rules trying to undo
/// any other rule) still gets none of them into staging; a real privileged attribute (root's
/// `trusted.*` here) still arrives under the receiver's own `user.rsync.` name.
#[test]
fn the_server_refuses_user_rsync_names_whatever_the_client_sends() {
    assert!(common::is_root(), "this test sets trusted.* attributes");
    let keep = format!("{ANY}\nstaging-mode = \"keep\"");
    let s = Server::start(&[("web1", Some(&keep))], None);
    let src = s.dir.path().join("src");
    let f = src.join("f");
    common::write_file(&f, b"data\n");
    let f = f.to_str().unwrap().to_owned();
    common::must(
        "setfattr",
        &[
            "-n",
            "user.rsync.security.capability",
            "-v",
            "0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=",
            &f,
        ],
    );
    common::must(
        "setfattr",
        &["-n", "user.rsync.trusted.y", "-v", "forged", &f],
    );
    common::must("setfattr", &["-n", "trusted.real", "-v", "root-set", &f]);
    s.json("web1", "prepare");
    let out = s.rsync("web1", &src, &["--filter=!", "--filter=+x user.rsync.**"]);
    assert!(out.status.success(), "{out:?}");
    let staged = common::xattrs(&s.staging.join("web1/f"));
    let names: Vec<String> = staged
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "user.rsync.security.capability" || n == "user.rsync.trusted.y"),
        "{names:?}"
    );
    assert_eq!(
        staged
            .get(&b"user.rsync.trusted.real"[..])
            .map(Vec::as_slice),
        Some(&b"root-set"[..]),
        "{names:?}"
    );
    let done = s.json("web1", "complete rsync-exit=0");
    assert_eq!(done["state"], "complete", "{done:#}");
}
