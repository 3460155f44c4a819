//! Integration tests: restore_fidelity. A tree with every kind of entry goes through the real
//! binary (ingest, restore) and comes back identical under lstat: content, sparseness, modes
//! (setuid, setgid, sticky), ownership, nanosecond mtimes, xattrs, symlinks, hard links, fifos,
//! devices and non-UTF-8 names; subsets; and the targets restore must refuse.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::*;

/// The sample tree plus what it lacks: setuid, a sticky directory, ownership and a device (as
/// root), an absolute symlink to a directory, and deeper non-UTF-8 names. Mtimes are set last.
/// (Also the mount tests' tree.)
pub fn full_tree(root: &Path) -> SampleTree {
    let info = sample_tree(root);
    write_file(&root.join("modes/setuid"), b"#!/bin/true\n");
    set_mode(&root.join("modes/setuid"), 0o4755);
    fs::create_dir_all(root.join("modes/sticky")).unwrap();
    set_mode(&root.join("modes/sticky"), 0o1777);
    let raw_dir = root.join(OsStr::from_bytes(b"raw-\x80\xfe"));
    fs::create_dir_all(&raw_dir).unwrap();
    write_file(&raw_dir.join(OsStr::from_bytes(b"inner-\xc3")), b"bytes\n");
    std::os::unix::fs::symlink("/tmp", root.join("links/abs-dir")).unwrap();
    if is_root() {
        let owned = root.join("modes/owned");
        write_file(&owned, b"owned by someone else\n");
        rustix::fs::chown(
            &owned,
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
        )
        .unwrap();
        // chown clears setuid: set the mode after it, as restore must.
        set_mode(&owned, 0o4750);
        rustix::fs::chown(
            root.join("modes/sticky").as_path(),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
        )
        .unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            root.join("links/dangling").as_path(),
            Some(rustix::fs::Uid::from_raw(4321)),
            Some(rustix::fs::Gid::from_raw(8765)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("null-device").as_path(),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
    }
    set_times_bottom_up(root, 1_600_000_000);
    info
}

#[test]
fn every_kind_of_entry_comes_back_identical() {
    let t = TestRepo::new();
    let src = t.path("src");
    full_tree(&src);
    let session = t.ingest("host1", &src);
    let target = t.path("restored");
    let run = t.restore_run(session, &target, &[]);
    run.ok();
    assert_trees_equal(&src, &target);

    // Sparse stays sparse: no more blocks than the source (a little slack for block rounding).
    let (a, b) = (
        fs::metadata(src.join("data/sparse.img")).unwrap(),
        fs::metadata(target.join("data/sparse.img")).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    assert!(
        b.blocks() <= a.blocks() + 16,
        "restored sparse file has {} blocks, the source {}",
        b.blocks(),
        a.blocks()
    );
    if is_root() {
        let owned = fs::metadata(target.join("modes/owned")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
        assert_eq!(owned.mode() & 0o7777, 0o4750);
        let dangling = fs::symlink_metadata(target.join("links/dangling")).unwrap();
        assert_eq!((dangling.uid(), dangling.gid()), (4321, 8765));
        let dev = fs::symlink_metadata(target.join("null-device")).unwrap();
        assert_eq!(dev.rdev(), rustix::fs::makedev(1, 3));
    }
    // The absolute symlink to a directory was restored as a link, not followed.
    assert_eq!(
        fs::read_link(target.join("links/abs-dir")).unwrap(),
        Path::new("/tmp")
    );

    // cat gives the same bytes as the restored file, non-UTF-8 name included.
    let raw = b"raw-\x80\xfe/inner-\xc3";
    let cat = t.run_with_identity(
        "cat",
        &[
            arg("--session"),
            arg(session.to_string()),
            OsStr::from_bytes(raw).to_owned(),
        ],
    );
    cat.ok();
    assert_eq!(cat.stdout, b"bytes\n");
}

#[test]
fn a_subset_restores_only_what_was_asked_with_its_parents() {
    let t = TestRepo::new();
    let src = t.path("src");
    full_tree(&src);
    let session = t.ingest("host1", &src);
    let target = t.path("subset");
    // links/second is a hard link whose group starts at links/original, which is not selected.
    t.restore_run(
        session,
        &target,
        &[b"docs/deep", b"links/second", b"links/sub/third"],
    )
    .ok();
    let got: Vec<String> = walk(&target).iter().map(|p| show(p)).collect();
    let want = [
        ".",
        "\"docs\"",
        "\"docs/deep\"",
        "\"docs/deep/er\"",
        "\"docs/deep/er/still\"",
        "\"docs/deep/er/still/leaf.txt\"",
        "\"links\"",
        "\"links/second\"",
        "\"links/sub\"",
        "\"links/sub/third\"",
    ];
    assert_eq!(got, want);
    assert_eq!(
        fs::read(target.join("docs/deep/er/still/leaf.txt")).unwrap(),
        fs::read(src.join("docs/deep/er/still/leaf.txt")).unwrap()
    );
    let second = fs::metadata(target.join("links/second")).unwrap();
    let third = fs::metadata(target.join("links/sub/third")).unwrap();
    assert_eq!(
        second.ino(),
        third.ino(),
        "the two selected links share an inode"
    );
    assert_eq!(
        fs::read(target.join("links/second")).unwrap(),
        fs::read(src.join("links/original")).unwrap()
    );
    // Parents carry their session metadata.
    let (a, b) = (
        fs::metadata(src.join("docs/deep")).unwrap(),
        fs::metadata(target.join("docs/deep")).unwrap(),
    );
    assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
    assert_eq!(a.mode(), b.mode());

    // A path the session does not have: not found, naming it, nothing created.
    let none = t.path("none");
    t.restore_run(session, &none, &[b"docs/missing"])
        .fails_with(exit::NOT_FOUND, &["docs/missing"]);
    assert!(!none.exists());
}

#[test]
fn targets_that_are_files_or_not_empty_are_refused() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("f"), b"content");
    let session = t.ingest("host1", &src);

    let file = t.path("a-file");
    fs::write(&file, b"precious").unwrap();
    t.restore_run(session, &file, &[])
        .fails_with(exit::TARGET_NOT_DIRECTORY, &["a-file"]);
    assert_eq!(fs::read(&file).unwrap(), b"precious");

    let full = t.path("full");
    write_file(&full.join("precious"), b"keep me");
    t.restore_run(session, &full, &[])
        .fails_with(exit::TARGET_NOT_EMPTY, &["full"]);
    assert!(!full.join("f").exists());
    assert_eq!(fs::read(full.join("precious")).unwrap(), b"keep me");

    // An empty existing directory is fine.
    let empty = t.path("empty");
    fs::create_dir(&empty).unwrap();
    t.restore_run(session, &empty, &[]).ok();
    assert_eq!(fs::read(empty.join("f")).unwrap(), b"content");
}

#[test]
fn a_wrong_identity_or_session_restores_nothing() {
    let t = TestRepo::new();
    let src = t.path("src");
    write_file(&src.join("f"), b"content");
    let session = t.ingest("host1", &src);
    let other = t.path("other-identity.txt");
    rsbackup([arg("keygen"), arg("--output"), arg(&other)]).ok();
    let target = t.path("out");
    rsbackup([
        arg("restore"),
        arg("--repo"),
        arg(&t.repo),
        arg("--session"),
        arg(session.to_string()),
        arg("--identity"),
        arg(&other),
        arg("--target"),
        arg(&target),
    ])
    .fails_with(exit::WRONG_IDENTITY, &[]);
    assert!(!target.join("f").exists());
    t.restore_run(session + 50, &target, &[])
        .fails_with(exit::NOT_FOUND, &[&(session + 50).to_string()]);
    assert!(!target.join("f").exists());
}
