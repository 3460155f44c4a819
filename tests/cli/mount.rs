//! Integration tests: mount. The real binary mounts a repository through the kernel's FUSE
//! (`/dev/fuse`): the view equals the source under `diff -r` and an lstat compare (modes,
//! owners, nanosecond mtimes, symlink targets, xattrs and ACLs, hard links with their link
//! count), `latest` names the newest session, a damaged chunk fails only its file's reads with
//! EIO, and SIGTERM, SIGINT or an outside `fusermount3 -u` end the mount cleanly with exit 0.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::check_damage::{flip_byte, largest_data_chunk};
use crate::common::*;
use crate::manifest_damage;
use crate::restore_fidelity::full_tree;

/// FUSE must be there: these tests fail, never skip, without it.
fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "the mount tests need /dev/fuse (a kernel with FUSE; in a container, pass the device)"
    );
    must("fusermount3", &["-V"]);
}

/// Whether `point` is a mountpoint in /proc/mounts.
fn is_mounted(point: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let point = point.to_str().unwrap();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(point))
}

/// A running `rsbackup mount`, stopped (and unmounted if need be) on drop.
struct Mount {
    child: Option<Child>,
    point: PathBuf,
    stderr: PathBuf,
}

impl Mount {
    /// `rsbackup mount --repo R --identity I ARGS POINT`, waiting until the kernel shows it.
    fn start(t: &TestRepo, point: &Path, args: &[&str]) -> Mount {
        require_fuse();
        fs::create_dir_all(point).unwrap();
        let point = point.canonicalize().unwrap();
        let stderr = t.path(&format!(
            "mount-{}.err",
            point.file_name().unwrap().to_string_lossy()
        ));
        let child = Command::new(bin())
            .arg("mount")
            .arg("--repo")
            .arg(&t.repo)
            .arg("--identity")
            .arg(&t.identity)
            .args(args)
            .arg(&point)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mount {
            child: Some(child),
            point,
            stderr,
        };
        let start = Instant::now();
        while !is_mounted(&m.point) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mount exited with {status} before mounting: {}", m.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "not mounted after 20 s: {}",
                m.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// A path inside the mount.
    fn at(&self, rel: &str) -> PathBuf {
        self.point.join(rel)
    }

    /// Send `signal` (or run `fusermount3 -u` when `None`) and wait for the exit; returns the
    /// exit code.
    fn stop(&mut self, signal: Option<rustix::process::Signal>) -> i32 {
        let mut child = self.child.take().expect("mount already stopped");
        match signal {
            Some(signal) => {
                let pid = rustix::process::Pid::from_child(&child);
                rustix::process::kill_process(pid, signal).unwrap();
            }
            None => {
                must("fusermount3", &["-u", self.point.to_str().unwrap()]);
            }
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("mount did not exit within 20 s: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if is_mounted(&self.point) {
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

/// The restore tests' full tree (every kind of entry, other owners and a device as root) plus
/// ACLs: an access ACL on a file, a default ACL on a directory.
fn tree_with_acls(root: &Path) {
    require_root("the mount view shows other owners and devices as recorded");
    full_tree(root);
    let shared = root.join("shared");
    fs::create_dir_all(&shared).unwrap();
    write_file(&shared.join("notes"), b"shared notes\n");
    must(
        "setfacl",
        &["-m", "u:65534:rw", shared.join("notes").to_str().unwrap()],
    );
    must(
        "setfacl",
        &["-d", "-m", "g:65534:rx", shared.to_str().unwrap()],
    );
    set_times_bottom_up(root, 1_650_000_000);
}

#[test]
fn the_mount_shows_every_session_as_recorded_and_latest_is_the_newest() {
    let t = TestRepo::new();
    let src = t.path("src");
    tree_with_acls(&src);
    let first = t.ingest("host1", &src);
    fs::write(src.join("hello.txt"), b"changed after the first session\n").unwrap();
    write_file(&src.join("added-later"), b"only in the second session\n");
    set_times_bottom_up(&src, 1_660_000_000);
    let second = t.ingest("host1", &src);
    t.ingest("host2", &t.path("src").join("docs"));

    let m = Mount::start(&t, &t.path("mnt"), &[]);
    let host1 = m.at("host1");
    let mut names: Vec<String> = fs::read_dir(&host1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].starts_with(&format!("{first}-")), "{names:?}");
    assert!(names[1].starts_with(&format!("{second}-")), "{names:?}");
    assert_eq!(names[2], "latest");
    assert_eq!(
        fs::read_link(host1.join("latest")).unwrap(),
        Path::new(&names[1]),
        "latest points at the newest session"
    );
    assert!(m.at("host2/latest/readme.md").is_file());

    // The newest session, through the link: equal to the source in every recorded respect.
    let latest = host1.join("latest/");
    let diffs = compare_trees(&src, &latest);
    assert!(
        diffs.is_empty(),
        "mount differs from the source:\n{}",
        diffs.join("\n")
    );
    let diff = Command::new("diff")
        .args([
            "-r",
            "--no-dereference",
            "-x",
            "special-fifo",
            "-x",
            "null-device",
        ])
        .arg(&src)
        .arg(&latest)
        .output()
        .expect("diff (diffutils) must be installed");
    assert!(
        diff.status.success(),
        "diff -r: {}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    // What compare_trees looks at, spelled out for the parts that are easy to get wrong.
    let link = fs::metadata(latest.join("links/second")).unwrap();
    let original = fs::metadata(latest.join("links/original")).unwrap();
    assert_eq!((link.ino(), link.nlink()), (original.ino(), 3));
    let owned = fs::symlink_metadata(latest.join("modes/owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1234, 5678, 0o4750)
    );
    let dev = fs::symlink_metadata(latest.join("null-device")).unwrap();
    assert_eq!(dev.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(
        acls_of(&src.join("shared")),
        acls_of(&latest.join("shared"))
    );
    assert!(acls_of(&latest.join("shared")).contains("user:65534:rw-"));
    assert_eq!(
        fs::read_link(latest.join("links/dangling")).unwrap(),
        Path::new("../nowhere/at/all")
    );
    let sparse = fs::metadata(latest.join("data/sparse.img")).unwrap();
    assert!(
        sparse.blocks() < 1024,
        "a hole takes no blocks: {}",
        sparse.blocks()
    );

    // The older session still has what changed since.
    let old = host1.join(&names[0]);
    assert_eq!(fs::read(old.join("hello.txt")).unwrap(), b"hello, world\n");
    assert!(!old.join("added-later").exists());
    assert!(latest.join("added-later").exists());

    // Read-only.
    let err = fs::OpenOptions::new()
        .write(true)
        .open(latest.join("hello.txt"))
        .unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
}

#[test]
fn a_tree_over_many_manifest_chunks_lists_and_reads_whole() {
    // 3,241 entries in dozens of small manifest chunks: lookups and listings cross chunk
    // boundaries, and directories span several chunks.
    let (t, src, session) = manifest_damage::setup();
    let chunks = manifest_damage::manifest_chunks(&t.repo, session).len();
    assert!(
        chunks >= 10,
        "only {chunks} manifest chunks: the test needs more"
    );
    let m = Mount::start(&t, &t.path("mnt"), &["--client", "host"]);
    let diffs = compare_trees(&src, &m.at("host/latest/"));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn a_damaged_manifest_chunk_loses_only_its_entries_from_the_mount() {
    let (t, src, session) = manifest_damage::setup();
    let chunks = manifest_damage::manifest_chunks(&t.repo, session);
    let (pack, offset, length) = &chunks[chunks.len() / 2];
    manifest_damage::flip(pack, offset + length / 2);

    let m = Mount::start(&t, &t.path("mnt"), &[]);
    let root = m.at("host/latest/");
    let shown = walk(&root);
    let total = walk(&src).len();
    assert!(
        shown.len() < total && shown.len() > total / 2,
        "{} of {total} paths shown with one of {} manifest chunks lost",
        shown.len(),
        chunks.len()
    );
    // What is shown is right: every shown file reads back equal to its source.
    for rel in &shown {
        let (a, b) = (
            src.join(OsStr::from_bytes(rel)),
            root.join(OsStr::from_bytes(rel)),
        );
        if fs::symlink_metadata(&a).unwrap().is_file() {
            assert_eq!(
                fs::read(&a).unwrap(),
                fs::read(&b).unwrap(),
                "{}",
                show(rel)
            );
        }
    }
    let stderr = m.stderr();
    assert!(
        stderr.contains(&format!(
            "manifest chunk {} of {}",
            chunks.len() / 2 + 1,
            chunks.len()
        )) && stderr.contains("cannot be read"),
        "stderr does not name the lost manifest chunk: {stderr}"
    );
}

#[test]
fn a_damaged_chunk_fails_only_its_reads_with_eio() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("victim.bin"), &pattern(1, 200_000));
    write_file(&src.join("fine.txt"), b"still readable\n");
    t.ingest("host1", &src);
    let victim = largest_data_chunk(&t.repo);
    flip_byte(&victim.pack, victim.offset + victim.length / 2);

    let m = Mount::start(&t, &t.path("mnt"), &[]);
    let mut buf = Vec::new();
    let err = fs::File::open(m.at("host1/latest/victim.bin"))
        .unwrap()
        .read_to_end(&mut buf)
        .unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::IO.raw_os_error()),
        "{err}"
    );
    // Listing and the other file are unaffected; the mount is still serving.
    assert_eq!(
        fs::metadata(m.at("host1/latest/victim.bin")).unwrap().len(),
        200_000
    );
    assert_eq!(
        fs::read(m.at("host1/latest/fine.txt")).unwrap(),
        b"still readable\n"
    );
    let stderr = m.stderr();
    assert!(
        stderr.contains(&victim.chunk) && stderr.contains("victim.bin"),
        "stderr names neither the chunk nor the file: {stderr}"
    );
}

#[test]
fn sigterm_sigint_and_an_outside_unmount_end_the_mount_cleanly() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("f"), b"x");
    t.ingest("host1", &src);
    let stops = [
        ("term", Some(rustix::process::Signal::TERM)),
        ("int", Some(rustix::process::Signal::INT)),
        ("fusermount", None),
    ];
    for (name, signal) in stops {
        let mut m = Mount::start(&t, &t.path(name), &[]);
        assert_eq!(fs::read(m.at("host1/latest/f")).unwrap(), b"x");
        assert_eq!(m.stop(signal), 0, "{name}: {}", m.stderr());
        assert!(!is_mounted(&m.point), "{name}: still in /proc/mounts");
        assert_eq!(
            fs::read_dir(&m.point).unwrap().count(),
            0,
            "{name}: the mountpoint is not an empty directory afterwards"
        );
        assert!(m.stderr().contains("unmounted"), "{name}: {}", m.stderr());
    }

    // Still in use (a process inside it): detached at once, the process told why its reads
    // fail from then on; nothing stays mounted.
    let mut m = Mount::start(&t, &t.path("busy"), &[]);
    let mut inside = Command::new("sleep")
        .arg("60")
        .current_dir(m.at("host1/latest"))
        .spawn()
        .unwrap();
    assert_eq!(
        m.stop(Some(rustix::process::Signal::TERM)),
        0,
        "{}",
        m.stderr()
    );
    let _ = inside.kill();
    let _ = inside.wait();
    assert!(!is_mounted(&m.point), "busy: still in /proc/mounts");
    assert_eq!(fs::read_dir(&m.point).unwrap().count(), 0);
    assert!(m.stderr().contains("lazily"), "busy: {}", m.stderr());
}

#[test]
fn bad_mountpoints_a_wrong_identity_and_an_unknown_client_are_refused_before_mounting() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("f"), b"x");
    t.ingest("host1", &src);
    let run = |point: &Path, identity: &Path, extra: &[&str]| {
        let mut args = vec![
            arg("mount"),
            arg("--repo"),
            arg(&t.repo),
            arg("--identity"),
            arg(identity),
        ];
        args.extend(extra.iter().map(arg));
        args.push(arg(point));
        rsbackup(args)
    };

    let full = t.path("full");
    write_file(&full.join("keep"), b"k");
    run(&full, &t.identity, &[]).fails_with(exit::TARGET_NOT_EMPTY, &["full", "not empty"]);
    let file = t.path("a-file");
    fs::write(&file, b"f").unwrap();
    run(&file, &t.identity, &[]).fails_with(exit::TARGET_NOT_DIRECTORY, &["a-file"]);

    let empty = t.path("empty");
    fs::create_dir(&empty).unwrap();
    let other = t.path("other-identity.txt");
    rsbackup([arg("keygen"), arg("--output"), arg(&other)]).ok();
    run(&empty, &other, &[]).fails_with(exit::WRONG_IDENTITY, &[]);
    run(&empty, &t.identity, &["--client", "nobody"]).fails_with(exit::NOT_FOUND, &["nobody"]);
    assert!(!is_mounted(&empty.canonicalize().unwrap()));
}

/// The mount step of the bad day (docs/usage.md, `bad-day-mount`) runs as written after the
/// procedure's first block, and what it copies out equals the source.
#[test]
fn the_bad_day_mount_step_runs_as_written() {
    require_root("the procedure runs as root");
    require_fuse();
    let t = TestRepo::new();
    let src = t.path("src");
    full_tree(&src);
    let session = t.ingest("web1", &src);
    let mnt = t.path("mnt");
    let target = t.path("restore/web1");
    let table = [
        ("repo", t.repo.display().to_string()),
        ("client", "web1".to_owned()),
        ("identity", t.identity.display().to_string()),
        ("target", target.display().to_string()),
        ("host", "unused@127.0.0.1".to_owned()),
        ("root", String::new()),
        ("session", session.to_string()),
        ("mnt", mnt.display().to_string()),
        ("wanted", "links".to_owned()),
    ];
    crate::bad_day::run_procedure(
        &["bad-day-procedure", "bad-day-mount"],
        &table,
        "",
        t.dir.path(),
    );
    let copy = PathBuf::from(format!("{}.copy", target.display()));
    let diffs = compare_trees(&src.join("links"), &copy);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert!(!is_mounted(&mnt), "the procedure left the mount behind");
}
