//! Issue 11 part 4: the server owns its staging directories whatever modes a client sends, and
//! a root restore gives the target root the session's own root metadata.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{self, CompareOptions};
use crate::push_server::{ANY, Server};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// `runuser -u nobody -- ARGS`; runuser (util-linux) must be installed.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .args(args)
        .output()
        .expect("runuser (util-linux) must be installed (tools/test.sh)")
}

/// Another local user can neither list, read, nor create anything in `web1`'s staging; each
/// attempt is refused for want of permission (not for some other reason).
fn nobody_is_kept_out(staging: &Path, when: &str) {
    let web1 = staging.join("web1");
    let inside = |rel: &str| web1.join(rel).display().to_string();
    for args in [
        vec!["ls", "-a", &inside("")],
        vec!["ls", "-a", &inside("sub")],
        vec!["cat", &inside("sub/file")],
        vec!["touch", &inside("planted")],
        vec!["touch", &inside("sub/planted")],
        vec!["mkdir", &inside("sub/dir")],
    ] {
        let out = as_nobody(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Permission denied"),
            "{when}: nobody ran {args:?}: {out:?}"
        );
    }
    for planted in ["planted", "sub/planted", "sub/dir"] {
        assert!(
            !web1.join(planted).exists(),
            "{when}: {planted} was planted"
        );
    }
}

/// A source whose root is 0777 with a 0777 subdirectory and a 0666 file, pushed through the
/// real sshd into staging an older version left 0777 (root and client directory alike): the
/// next request sets the staging root and `staging/web1` back to 0700; after the push
/// `staging/web1` is 0700 again (the receiver had made it 0777); during a throttled upload
/// `nobody` can neither read nor plant anything in it; the server's own directories are 0700;
/// the session restored as root gives back 0777, 0777 and 0666.
#[test]
fn the_server_owns_staging_whatever_modes_arrive() {
    common::require_root("it changes users and owners");
    let keep = format!("{ANY}\nstaging-mode = \"keep\"");
    let s = Server::start(&[("web1", Some(&keep))], None);
    // Only the staging root may keep another user out: everything above it is open.
    common::set_mode(s.dir.path(), 0o755);
    let src = s.dir.path().join("src");
    common::write_file(&src.join("sub/file"), b"readable by all on the client\n");
    common::set_mode(&src.join("sub/file"), 0o666);
    common::set_mode(&src.join("sub"), 0o777);
    common::set_mode(&src, 0o777);

    // Left wide open by an older version.
    std::fs::create_dir(s.staging.join("web1")).unwrap();
    common::set_mode(&s.staging, 0o777);
    common::set_mode(&s.staging.join("web1"), 0o777);
    s.json("web1", "prepare");
    assert_eq!(mode(&s.staging), 0o700, "the staging root after prepare");
    assert_eq!(
        mode(&s.staging.join("web1")),
        0o700,
        "staging/web1 after prepare"
    );
    let out = s.rsync("web1", &src, &[]);
    assert!(out.status.success(), "{out:?}");
    // The receiver gives what it receives the client's modes (the owner's bits added); the
    // client's root landed on staging/web1 and was set back.
    assert_eq!(mode(&s.staging.join("web1/sub")), 0o777);
    assert_eq!(mode(&s.staging.join("web1/sub/file")), 0o666);
    assert_eq!(mode(&s.staging.join("web1")), 0o700, "after the upload");
    assert_eq!(mode(&s.staging), 0o700);
    nobody_is_kept_out(&s.staging, "after the upload");
    let done = s.json("web1", "complete rsync-exit=0");
    assert_eq!(done["state"], "complete", "{done:#}");
    let first = done["session"].as_i64().unwrap();
    for own in [".leases", ".machines"] {
        assert_eq!(mode(&s.staging.join(own)), 0o700, "{own}");
        for entry in std::fs::read_dir(s.staging.join(own)).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path) & 0o077, 0, "{}", path.display());
        }
    }

    // A throttled upload: nobody is kept out while it runs.
    common::write_file(&src.join("sub/big"), &common::pattern(7, 3 << 20));
    s.json("web1", "prepare");
    let mut client = s
        .rsync_command("web1", &src, &["--bwlimit=400"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let needle = s.staging.display().to_string();
    let until = Instant::now() + Duration::from_secs(20);
    while crate::confine::processes_mentioning(&needle).is_empty() {
        assert!(Instant::now() < until, "the server's rsync never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    nobody_is_kept_out(&s.staging, "during the upload");
    assert!(
        client.try_wait().unwrap().is_none(),
        "the throttled upload ended before it was checked: make it slower"
    );
    let status = client.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(mode(&s.staging.join("web1")), 0o700);
    let done = s.json("web1", "complete rsync-exit=0");
    assert_eq!(done["state"], "complete", "{done:#}");

    // Both sessions restore the client's modes, the root's included.
    for session in [first, done["session"].as_i64().unwrap()] {
        let target = s.dir.path().join(format!("restored-{session}"));
        s.repo.restore(session, &target);
        assert_eq!(mode(&target), 0o777, "the restored root");
        assert_eq!(mode(&target.join("sub")), 0o777);
        assert_eq!(mode(&target.join("sub/file")), 0o666);
    }
}

/// A staging root owned by another user is refused with an error naming it, and nothing is
/// done for the request.
#[test]
fn a_staging_root_of_another_user_is_refused() {
    common::require_root("it changes owners");
    let s = Server::start(&[("web1", Some(ANY))], None);
    std::os::unix::fs::chown(&s.staging, Some(65534), None).unwrap();
    let out = s.ssh("web1", None, "prepare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains(&s.staging.display().to_string()) && err.contains("owned by uid 65534"),
        "{err}"
    );
    assert!(!s.staging.join("web1").exists());
}

/// Issue 11 part 4, second half: the session's root (owned by 1234:5678, mode 0750, an ACL,
/// an xattr, its times) is what a root restore gives the target directory.
#[test]
fn a_root_restore_gives_the_target_the_sessions_root() {
    common::require_root("it restores owners");
    let keep = format!("{ANY}\nstaging-mode = \"keep\"");
    let s = Server::start(&[("web1", Some(&keep))], None);
    let src = s.dir.path().join("src");
    common::write_file(&src.join("etc/hostname"), b"web1\n");
    let acl = Command::new("setfacl")
        .args(["-m", "u:65534:rx"])
        .arg(&src)
        .status()
        .expect("setfacl (package acl) must be installed");
    assert!(acl.success());
    std::os::unix::fs::chown(&src, Some(1234), Some(5678)).unwrap();
    common::set_mode(&src, 0o750);
    assert!(
        common::set_xattr(&src, "user.origin", b"client root"),
        "user xattrs are needed here"
    );
    common::set_times_bottom_up(&src, 1_600_000_000);
    let done = s.push("web1", &src, &[]);
    let session = done["session"].as_i64().unwrap();
    let target = s.dir.path().join("restored");
    s.repo.restore(session, &target);
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1234, 5678, 0o750)
    );
    let diffs = common::compare_trees_with(&src, &target, &CompareOptions::default());
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let getfacl = |p: &Path| {
        let out = Command::new("getfacl")
            .args(["-p", "-n"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("# file:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(getfacl(&src), getfacl(&target));
    assert!(getfacl(&target).contains("user:65534:r-x"));

    // A subset restore and a restore into a non-empty directory leave the target's own
    // metadata alone (it stands for no directory of the session).
    let subset = s.dir.path().join("subset");
    s.repo.restore_run(session, &subset, &[b"etc"]).ok();
    let existing = s.dir.path().join("existing");
    common::write_file(&existing.join("mine"), b"the administrator's\n");
    common::set_mode(&existing, 0o711);
    s.repo
        .run_with_identity(
            "restore",
            &[
                common::arg("--session"),
                common::arg(session.to_string()),
                common::arg("--target"),
                common::arg(&existing),
                common::arg("--force"),
            ],
        )
        .ok();
    for (dir, want) in [(&subset, 0o755), (&existing, 0o711)] {
        let meta = std::fs::metadata(dir).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o7777),
            (0, want),
            "{}",
            dir.display()
        );
    }
    assert_eq!(
        std::fs::read(subset.join("etc/hostname")).unwrap(),
        b"web1\n"
    );
}
