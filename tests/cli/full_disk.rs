//! Integration tests: a repository on a real, small filesystem (tmpfs with `size=`) filled to
//! the last byte. `sessions`, `ls`, `restore` and `check` work (the index is opened read-only);
//! what cannot work says "the repository's disk is full" with the path; an ingest that runs
//! out of room stops while the index still has room, and the next prune reclaims its packs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A tmpfs of `size` mounted at `at`, unmounted on drop.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        require_root("mounting a small tmpfs to fill");
        fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (this test needs it): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            at: at.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let st = rustix::fs::statvfs(path).unwrap();
    st.f_bfree * st.f_frsize
}

/// Write zeros into `path` until the filesystem refuses (ENOSPC), then check it is full.
fn fill(path: &Path) {
    let mut f = fs::File::create(path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Smaller pieces for the last partial block.
    while f.write_all(&[0u8]).is_ok() {}
    let _ = f.sync_all();
    assert_eq!(
        free_bytes(path.parent().unwrap()),
        0,
        "the disk is not full"
    );
}

fn used_by(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A repository moved onto a 24 MiB tmpfs, with 256 KiB packs (so that an ingest seals packs
/// before it runs out of room) and one small session.
fn small_disk(t: &mut TestRepo) -> (Tmpfs, i64, PathBuf) {
    set_pack_target(&t.repo, 262144);
    let mnt = Tmpfs::mount(&t.path("mnt"), "24m");
    copy_dir(&t.repo, &mnt.at);
    t.repo = mnt.at.join("repo");
    let src = t.path("small");
    sample_tree(&src);
    write_file(&src.join("notes.txt"), &text_bytes());
    let id = t.ingest("c1", &src);
    (mnt, id, src)
}

fn text_bytes() -> Vec<u8> {
    text(3, 300_000)
}

#[track_caller]
fn says_disk_full(run: &Run, repo: &Path) {
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("the repository's disk is full")
            && run.stderr.contains(&repo.display().to_string()),
        "expected \"the repository's disk is full\" naming {}: {}",
        repo.display(),
        run.stderr
    );
    assert!(!run.stderr.contains("xShmMap"), "{}", run.stderr);
}

/// An ingest larger than the disk stops with room left for the index; on the disk then
/// filled to the last byte the read-only commands work and the others say the disk is full;
/// once room is made, one prune reclaims every pack the failed ingest left.
#[test]
fn full_disk_reads_work_and_prune_reclaims_a_failed_ingest() {
    let mut t = TestRepo::new();
    let (mnt, id, src) = small_disk(&mut t);
    let before = used_by(&t.repo);

    let big = t.path("big");
    write_file(&big.join("x"), &pattern(9, 40 << 20));
    let run = t.ingest_run("c1", &big);
    says_disk_full(&run, &t.repo);
    assert!(
        free_bytes(&mnt.at) >= 2 << 20,
        "the ingest left only {} bytes for the index",
        free_bytes(&mnt.at)
    );
    let free_after_ingest = free_bytes(&mnt.at);
    let left = used_by(&t.repo);
    assert!(
        left > before + (8 << 20),
        "the failed ingest left only {} bytes of packs: nothing to reclaim",
        left - before
    );

    fill(&mnt.at.join("filler"));
    // Reading works on the full disk.
    let run = t.run("sessions", &["--json"]);
    run.ok();
    assert_eq!(
        run.json().as_array().unwrap().len(),
        1,
        "{}",
        run.stdout_str()
    );
    t.run_with_identity("ls", &["--session", &id.to_string()])
        .ok();
    let target = t.path("restored");
    t.restore(id, &target);
    assert_trees_equal(&src, &target);
    for read_data in [false, true] {
        let run = t.check_run(read_data, false);
        assert!(
            run.code == 0 || run.code == 3,
            "check on a full disk failed: {run:?}"
        );
        for p in run.json()["problems"].as_array().unwrap() {
            let what = p["what"].as_str().unwrap();
            assert!(
                what.contains("left unsealed") || what.contains("could not record"),
                "unexpected problem on a full disk: {what}"
            );
        }
    }
    // Writing cannot work, and says why.
    says_disk_full(&t.ingest_run("c1", &src), &t.repo);

    // With room made, one prune removes no session and reclaims the failed ingest's packs.
    fs::remove_file(mnt.at.join("filler")).unwrap();
    let run = t.run("prune", &["--keep-last", "5", "--json"]);
    run.ok();
    assert_eq!(run.json()["removed"], 0);
    let after = used_by(&t.repo);
    assert!(
        after < before + (1 << 20),
        "prune left {} bytes of the failed ingest (before {before}, after {after})",
        after.saturating_sub(before)
    );
    eprintln!(
        "full disk: 24 MiB tmpfs; the failed ingest left {} bytes of packs and {} bytes free; \
         after the prune the repository holds {after} bytes ({before} before the ingest)",
        left - before,
        free_after_ingest
    );
    let run = t.check_run(true, true);
    assert_eq!(run.code, 0, "{run:?}");
    let again = t.path("again");
    t.restore(id, &again);
    assert_trees_equal(&src, &again);
    t.ingest("c1", &src);
}

/// A write-ahead log with commits and no `-shm` file (a writer killed, its shared memory
/// gone) on a full disk: the index is read through the log, so the last commit shows.
#[test]
fn full_disk_reads_the_write_ahead_log() {
    let mut t = TestRepo::new();
    let (mnt, id, _src) = small_disk(&mut t);
    let db = t.repo.join("index.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
    conn.execute("UPDATE sessions SET pinned = 1 WHERE id = ?1", [id])
        .unwrap();
    // Never closed, so the commit stays in the log only; then the shared memory goes.
    std::mem::forget(conn);
    let wal = t.repo.join("index.db-wal");
    assert!(
        fs::metadata(&wal).unwrap().len() > 0,
        "no commit in the log"
    );
    fs::remove_file(t.repo.join("index.db-shm")).unwrap();
    fill(&mnt.at.join("filler"));

    let run = t.run("sessions", &["--json"]);
    run.ok();
    assert_eq!(run.json()[0]["pinned"], true, "{}", run.stdout_str());
    says_disk_full(&t.run("pin", &["--session", &id.to_string()]), &t.repo);
}

/// A restore onto a file system that fills up stops there: it says the target is full, counts
/// only the files it wrote whole, leaves no truncated file behind (each file is equal to the
/// source or empty), exits 3; once there is room, a restore into the same target with
/// `--force` brings everything back.
#[test]
fn a_restore_onto_a_full_disk_stops_says_so_and_leaves_no_truncated_file() {
    let t = TestRepo::new();
    let src = t.path("src");
    for i in 0..8u8 {
        write_file(&src.join(format!("f{i}")), &pattern(i, 3 << 20));
    }
    let id = t.ingest("c1", &src);
    let mnt = Tmpfs::mount(&t.path("target-disk"), "32m");
    // 24 MiB of files onto 32 MiB less 18 MiB of filler.
    write_file(&mnt.at.join("filler"), &vec![1u8; 18 << 20]);
    let target = mnt.at.join("restored");
    let run = t.restore_run(id, &target, &[b"--json"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("the target's file system is full"),
        "{}",
        run.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout_str()).unwrap();
    assert!(json["disk_full"].is_string(), "{json:#}");
    let mut whole = 0;
    for i in 0..8u8 {
        let name = format!("f{i}");
        match std::fs::read(target.join(&name)) {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                assert_eq!(bytes, pattern(i, 3 << 20), "{name} is truncated");
                whole += 1;
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{name}: {e}"),
        }
    }
    assert!(whole < 8, "the disk never filled");
    assert_eq!(json["files"], whole, "{json:#}");
    assert_eq!(json["bytes"], whole * (3 << 20), "{json:#}");
    // Not one error line per remaining file: the restore stopped.
    assert!(
        json["errors"].as_array().unwrap().len() <= 8 - whole as usize,
        "{json:#}"
    );

    std::fs::remove_file(mnt.at.join("filler")).unwrap();
    t.restore_run(id, &target, &[b"--force"]).ok();
    // Into a non-empty target the root keeps its own metadata (docs/usage.md "restore").
    let diffs = compare_trees_with(
        &src,
        &target,
        &CompareOptions {
            root_meta: false,
            ..Default::default()
        },
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
