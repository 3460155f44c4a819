//! Restore tests with real temporary repositories.

use super::*;

#[test]
fn normalize_accepts_admin_spellings_and_refuses_escapes() {
    assert_eq!(normalize(b"/etc/ssh/").unwrap(), b"etc/ssh");
    assert_eq!(normalize(b"./a/b").unwrap(), b"a/b");
    assert_eq!(normalize(b".").unwrap(), b"");
    assert_eq!(normalize(b"").unwrap(), b"");
    for bad in [&b"a/../b"[..], b"a//b", b"..", b"a/./b", b"a\0b"] {
        let err = normalize(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
}

#[test]
fn selection_selects_below_and_knows_ancestors() {
    let sel = Selection::new(&[b"etc/ssh".to_vec(), b"var/log/".to_vec()]).unwrap();
    assert!(sel.selects(b"etc/ssh"));
    assert!(sel.selects(b"etc/ssh/sshd_config"));
    assert!(!sel.selects(b"etc/sshd"));
    assert!(!sel.selects(b"etc"));
    assert!(sel.is_ancestor(b"etc"));
    assert!(sel.is_ancestor(b""));
    assert!(!sel.is_ancestor(b"var/log"));
    assert!(sel.is_ancestor(b"var"));
    assert!(!sel.is_ancestor(b"et"));
    let all = Selection::new(&[b"x".to_vec(), b"/".to_vec()]).unwrap();
    assert!(all.is_all());
    assert!(all.selects(b"anything/at/all"));
}

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::format::manifest::Entry;
use crate::restore::testutil::{Piece, SessionBuilder, TestRepo, meta};

fn opts(target: &std::path::Path) -> RestoreOptions {
    RestoreOptions {
        target: target.to_path_buf(),
        paths: Vec::new(),
        allow_non_empty: false,
        restore_owner: rustix::process::geteuid().is_root(),
    }
}

fn content(seed: u8, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new_keyed(&[seed; 32])
        .finalize_xof()
        .fill(&mut out);
    out
}

#[test]
fn every_kind_comes_back_with_its_metadata() {
    let t = TestRepo::new();
    let root = rustix::process::geteuid().is_root();
    let mut s = SessionBuilder::new(&t);
    let big = content(1, 300_000);
    let mut owned = meta(0o4755, 1_650_000_001);
    owned.uid = 1234;
    owned.gid = 5678;
    owned.xattrs = vec![(b"user.note".to_vec(), b"kept".to_vec())];
    s.dir(b"a")
        .file(b"a/big", &big)
        .file(b"a/empty", b"")
        .entry(b"a/empty-dir", meta(0o1777, 1_500_000_000), Body::Dir)
        .entry(b"a/fifo", meta(0o640, 1_400_000_001), Body::Fifo)
        .entry(
            b"a/link",
            meta(0o644, 1_650_000_000),
            Body::Hardlink {
                target: b"a/big".to_vec(),
            },
        )
        .file_pieces(b"a/owned", owned.clone(), vec![Piece::Data(b"x".to_vec())])
        .entry(
            b"a/sym",
            meta(0o777, 1_400_000_000),
            Body::Symlink {
                target: b"/nonexistent/abs".to_vec(),
            },
        )
        .entry(b"b\xff", meta(0o700, 1_400_000_002), Body::Dir)
        .entry(
            b"b\xff/gone",
            meta(0, 0),
            Body::Unreadable {
                message: "Permission denied".into(),
            },
        );
    if root {
        s.entry(
            b"b\xff/null",
            meta(0o666, 1_400_000_003),
            Body::CharDev {
                rdev: rustix::fs::makedev(1, 3),
            },
        );
    }
    let session = s.commit();
    let target = t.path("out");
    let report = restore(&t.reader(), session, &opts(&target)).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].path.starts_with("b"));
    assert!(
        report.errors[0]
            .message
            .contains("was not backed up: Permission denied")
    );
    assert_eq!(fs::read(target.join("a/big")).unwrap(), big);
    assert_eq!(fs::read(target.join("a/empty")).unwrap(), b"");
    let big_meta = fs::metadata(target.join("a/big")).unwrap();
    let link_meta = fs::metadata(target.join("a/link")).unwrap();
    assert_eq!(big_meta.ino(), link_meta.ino());
    assert_eq!(big_meta.nlink(), 2);
    assert_eq!(
        (big_meta.mtime(), big_meta.mtime_nsec()),
        (1_650_000_000, 123_456_789)
    );
    let empty_dir = fs::symlink_metadata(target.join("a/empty-dir")).unwrap();
    assert!(empty_dir.is_dir());
    assert_eq!(empty_dir.mode() & 0o7777, 0o1777);
    assert_eq!(empty_dir.mtime(), 1_500_000_000);
    let o = fs::metadata(target.join("a/owned")).unwrap();
    assert_eq!(o.mode() & 0o7777, 0o4755);
    if root {
        assert_eq!((o.uid(), o.gid()), (1234, 5678));
        let null =
            fs::symlink_metadata(target.join(std::ffi::OsStr::from_bytes(b"b\xff/null"))).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    }
    let sym = fs::symlink_metadata(target.join("a/sym")).unwrap();
    assert!(sym.file_type().is_symlink());
    assert_eq!(
        fs::read_link(target.join("a/sym"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"/nonexistent/abs"
    );
    assert_eq!(sym.mtime(), 1_400_000_000);
    let fifo = fs::symlink_metadata(target.join("a/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o640);
    let b = fs::symlink_metadata(target.join(std::ffi::OsStr::from_bytes(b"b\xff"))).unwrap();
    assert_eq!((b.mode() & 0o7777, b.mtime()), (0o700, 1_400_000_002));
    // The root's metadata goes to a target the restore created.
    let r = fs::metadata(&target).unwrap();
    assert_eq!((r.mode() & 0o7777, r.mtime()), (0o755, 1_700_000_000));
    // xattrs (user.* may be unsupported by the filesystem under the temp dir).
    let mut buf = [0u8; 16];
    if let Ok(n) = rustix::fs::getxattr(target.join("a/owned").as_path(), "user.note", &mut buf[..])
    {
        assert_eq!(&buf[..n], b"kept");
    }
}

#[test]
fn sparse_files_stay_sparse() {
    let t = TestRepo::new();
    let mut s = SessionBuilder::new(&t);
    let mut zeros_and_data = vec![0u8; 64 << 10];
    zeros_and_data[40_000] = 7;
    s.file_pieces(
        b"sparse",
        meta(0o600, 1_650_000_000),
        vec![
            Piece::Data(b"head".to_vec()),
            Piece::Hole(64 << 20),
            Piece::Data(zeros_and_data.clone()),
            Piece::Hole(1 << 20),
        ],
    );
    let session = s.commit();
    let target = t.path("out");
    let report = restore(&t.reader(), session, &opts(&target)).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let path = target.join("sparse");
    let m = fs::metadata(&path).unwrap();
    let size = 4 + (64 << 20) + (64 << 10) + (1 << 20);
    assert_eq!(m.len(), size);
    assert!(
        m.blocks() * 512 < 256 << 10,
        "{} blocks allocated",
        m.blocks()
    );
    let back = fs::read(&path).unwrap();
    assert_eq!(&back[..4], b"head");
    let at = 4 + (64 << 20);
    assert_eq!(&back[at..at + (64 << 10)], &zeros_and_data[..]);
    assert!(back[4..at].iter().all(|&b| b == 0));
}

#[test]
fn bad_targets_are_refused_before_anything_is_written() {
    let t = TestRepo::new();
    let session = SessionBuilder::new(&t).file(b"f", b"data").commit();
    let reader = t.reader();
    let file = t.path("a-file");
    fs::write(&file, b"x").unwrap();
    let err = restore(&reader, session, &opts(&file)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TargetNotDirectory);
    assert!(err.message().contains("a-file"), "{err}");
    let full = t.path("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("keep"), b"mine").unwrap();
    let err = restore(&reader, session, &opts(&full)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TargetNotEmpty);
    assert!(!full.join("f").exists());
    // Allowed explicitly: restored beside what is there.
    let mut o = opts(&full);
    o.allow_non_empty = true;
    let report = restore(&reader, session, &o).unwrap();
    assert!(report.errors.is_empty());
    assert_eq!(fs::read(full.join("f")).unwrap(), b"data");
    assert_eq!(fs::read(full.join("keep")).unwrap(), b"mine");
    // Unknown session and a path the session lacks: NotFound, target untouched.
    let fresh = t.path("fresh");
    let err = restore(&reader, crate::ids::SessionId(999), &opts(&fresh)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let mut o = opts(&fresh);
    o.paths = vec![b"no/such".to_vec()];
    let err = restore(&reader, session, &o).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("no/such"), "{err}");
    assert!(!fresh.exists());
}

#[test]
fn a_symlink_in_the_session_is_never_followed() {
    // The manifest builder and reader refuse such a manifest (a's entry is not a directory),
    // so feed the entries to the walker directly: it must not go through the symlink either.
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = dir.path().join("out");
    fs::create_dir(&target).unwrap();
    let entries = vec![
        Entry {
            path: b"a".to_vec(),
            meta: meta(0o777, 1),
            body: Body::Symlink {
                target: outside.as_os_str().as_bytes().to_vec(),
            },
        },
        Entry {
            path: b"a/x".to_vec(),
            meta: meta(0o644, 1),
            body: Body::File {
                size: 0,
                extents: Vec::new(),
            },
        },
        Entry {
            path: b"a/d".to_vec(),
            meta: meta(0o755, 1),
            body: Body::Dir,
        },
        Entry {
            path: b"a/d/y".to_vec(),
            meta: meta(0o644, 1),
            body: Body::Fifo,
        },
        Entry {
            path: b"../escape".to_vec(),
            meta: meta(0o644, 1),
            body: Body::Fifo,
        },
    ];
    let report = tree::walk_entries_for_test(&target, entries);
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside the target"
    );
    assert!(
        !dir.path().join("escape").exists(),
        "wrote beside the target"
    );
    assert!(
        fs::symlink_metadata(target.join("a"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let failed: Vec<&str> = report.errors.iter().map(|e| e.path.as_str()).collect();
    assert!(
        failed.contains(&"a/x") && failed.contains(&"a/d"),
        "{failed:?}"
    );
    assert!(failed.contains(&"../escape"), "{failed:?}");
}

#[test]
fn a_symlink_already_in_the_target_is_replaced_not_followed() {
    let t = TestRepo::new();
    let outside = t.path("outside");
    fs::create_dir(&outside).unwrap();
    let mut s = SessionBuilder::new(&t);
    s.dir(b"d").file(b"d/f", b"inside").file(b"g", b"plain");
    let session = s.commit();
    let target = t.path("out");
    fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("d")).unwrap();
    std::os::unix::fs::symlink(outside.join("g"), target.join("g")).unwrap();
    let mut o = opts(&target);
    o.allow_non_empty = true;
    let report = restore(&t.reader(), session, &o).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside the target"
    );
    assert!(fs::symlink_metadata(target.join("d")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("d/f")).unwrap(), b"inside");
    assert!(fs::symlink_metadata(target.join("g")).unwrap().is_file());
}

#[test]
fn subset_restores_parents_and_hard_link_content() {
    let t = TestRepo::new();
    let mut s = SessionBuilder::new(&t);
    let mut parent_meta = meta(0o750, 1_234_567_890);
    parent_meta.mtime_nsec = 5;
    s.entry(b"etc", parent_meta, Body::Dir)
        .file(b"etc/passwd", b"root:x:0:0")
        .dir(b"etc/ssh")
        .file(b"etc/ssh/sshd_config", b"Port 22")
        .dir(b"var")
        .file(b"var/orig", b"linked content")
        .entry(
            b"var/zz-link1",
            meta(0o644, 1),
            Body::Hardlink {
                target: b"var/orig".to_vec(),
            },
        )
        .entry(
            b"var/zz-link2",
            meta(0o644, 1),
            Body::Hardlink {
                target: b"var/orig".to_vec(),
            },
        );
    let session = s.commit();
    let target = t.path("out");
    let mut o = opts(&target);
    o.paths = vec![
        b"/etc/ssh/".to_vec(),
        b"var/zz-link1".to_vec(),
        b"var/zz-link2".to_vec(),
    ];
    let report = restore(&t.reader(), session, &o).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        fs::read(target.join("etc/ssh/sshd_config")).unwrap(),
        b"Port 22"
    );
    assert!(!target.join("etc/passwd").exists());
    assert!(!target.join("var/orig").exists());
    let etc = fs::metadata(target.join("etc")).unwrap();
    assert_eq!(
        (etc.mode() & 0o7777, etc.mtime(), etc.mtime_nsec()),
        (0o750, 1_234_567_890, 5)
    );
    let l1 = fs::metadata(target.join("var/zz-link1")).unwrap();
    let l2 = fs::metadata(target.join("var/zz-link2")).unwrap();
    assert_eq!(
        fs::read(target.join("var/zz-link1")).unwrap(),
        b"linked content"
    );
    assert_eq!(l1.ino(), l2.ino());
}

#[test]
fn a_damaged_chunk_fails_its_file_and_the_rest_is_restored() {
    let t = TestRepo::new();
    let good = content(2, 100_000);
    let bad = content(3, 100_000);
    let mut s = SessionBuilder::new(&t);
    s.file(b"bad", &bad).file(b"good", &good);
    let victim = s.chunk(&bad[..64 << 10]);
    let session = s.commit();
    // Point the chunk at another chunk's record: the header check names the mix-up.
    let index = t.repo.index().unwrap();
    index
        .conn()
        .execute(
            "UPDATE chunks SET offset = offset + 1 WHERE id = ?1",
            [victim.0.to_vec()],
        )
        .unwrap();
    let target = t.path("out");
    let report = restore(&t.reader(), session, &opts(&target)).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].path, "bad");
    assert!(
        report.errors[0].message.contains(&victim.to_hex()),
        "{}",
        report.errors[0].message
    );
    assert_eq!(fs::read(target.join("good")).unwrap(), good);
    // The undamaged tail of the file is there.
    let back = fs::read(target.join("bad")).unwrap();
    assert_eq!(back.len(), bad.len());
    assert_eq!(&back[64 << 10..], &bad[64 << 10..]);
}

#[test]
fn cat_writes_content_and_refuses_what_is_not_a_file() {
    let t = TestRepo::new();
    let data = content(4, 200_000);
    let mut s = SessionBuilder::new(&t);
    s.dir(b"d")
        .file_pieces(
            b"d/f",
            meta(0o644, 1),
            vec![Piece::Data(data.clone()), Piece::Hole(10)],
        )
        .entry(
            b"d/l",
            meta(0o644, 1),
            Body::Hardlink {
                target: b"d/f".to_vec(),
            },
        )
        .entry(
            b"d/s",
            meta(0o777, 1),
            Body::Symlink {
                target: b"f".to_vec(),
            },
        );
    let session = s.commit();
    let reader = t.reader();
    let mut expected = data.clone();
    expected.extend_from_slice(&[0u8; 10]);
    for path in [&b"d/f"[..], b"/d/l"] {
        let mut out = Vec::new();
        cat(&reader, session, path, &mut out).unwrap();
        assert_eq!(out, expected);
    }
    let mut out = Vec::new();
    assert_eq!(
        cat(&reader, session, b"d", &mut out).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        cat(&reader, session, b"d/s", &mut out).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let err = cat(&reader, session, b"d/none", &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("d/none"));
    assert!(out.is_empty());
}
