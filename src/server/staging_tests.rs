//! Tests of `server::staging`.

use super::*;

#[test]
fn extents_round_trip_and_garbage() {
    let e = vec![
        Extent::Chunk {
            len: 7,
            id: ChunkId([9; 32]),
        },
        Extent::Hole { len: 1 << 40 },
    ];
    assert_eq!(decode_extents(&encode_extents(&e)), Some(e));
    assert_eq!(decode_extents(&[0, 1, 2]), None);
    assert_eq!(decode_extents(&[2]), None);
}

#[test]
fn purge_removes_everything_but_the_directory_and_follows_no_link() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep"), b"x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/f"), b"data").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let (apparent, _) = staging_usage(dir.path()).unwrap();
    assert_eq!(apparent, 4);
    assert_eq!(purge(dir.path()).unwrap(), 2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(outside.path().join("keep").exists());
    assert!(free_space(dir.path()).unwrap() > 0);
}

/// The identity `hollow` checks for an untouched placeholder, read from disk now.
fn placeholder_row(path: &Path) -> PlaceholderRow {
    let stx = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )
    .unwrap();
    assert!(
        StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::BTIME),
        "the filesystem of {} has no birth times: the hollow mode's proof cannot be tested \
         here (set TMPDIR to an ext4, xfs or btrfs directory)",
        path.display()
    );
    PlaceholderRow {
        dev: rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        ino: stx.stx_ino,
        btime_ns: ns(&stx.stx_btime),
        size: stx.stx_size,
        mtime_ns: ns(&stx.stx_mtime),
        extents: Vec::new(),
    }
}

/// What the ingest reports of the file at `file` (staged as `path`) when it read it as it is.
fn read_by_the_ingest(path: &[u8], file: &Path) -> IngestedFile {
    let row = placeholder_row(file);
    IngestedFile {
        path: path.to_vec(),
        dev: row.dev,
        ino: row.ino,
        size: row.size,
        mtime_ns: row.mtime_ns,
        extents: Vec::new(),
    }
}

/// A staging directory with one 64 KiB file `p` the ingest read, hollowed once: `(staging, p,
/// the table's directory, the table, what hollowing did)`.
fn hollowed_once() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    tempfile::TempDir,
    std::path::PathBuf,
    HollowReport,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p");
    std::fs::write(&file, vec![7u8; 64 * 1024]).unwrap();
    let ingested = vec![read_by_the_ingest(b"p", &file)];
    let elsewhere = tempfile::tempdir().unwrap();
    let table = elsewhere.path().join("table.db");
    let r = hollow(
        dir.path(),
        &Placeholders::default(),
        ingested,
        &[],
        &table,
        1,
    )
    .unwrap();
    (dir, file, elsewhere, table, r)
}

/// Regression: a placeholder that gained data blocks (written in place, its size and
/// mtime put back) is not the untouched placeholder its row describes, even though its
/// dev, inode, birth time, size and mtime all match. Kept, it would leave plaintext in a
/// hollow staging area and stand for content it no longer has.
#[test]
fn a_placeholder_with_data_blocks_is_not_kept() {
    let (dir, file, _elsewhere, table, r) = hollowed_once();
    assert_eq!((r.hollowed, r.kept, r.removed), (1, 0, 0), "{r:?}");
    let mut old = Placeholders::default();
    old.rows.insert(b"p".to_vec(), placeholder_row(&file));

    // Untouched, it stays a placeholder.
    let r = hollow(dir.path(), &old, Vec::new(), &[], &table, 1).unwrap();
    assert_eq!((r.hollowed, r.kept, r.removed), (0, 1, 0), "{r:?}");

    // Written in place with the same size, mtime put back: same identity, data blocks.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    std::io::Write::write_all(&mut &f, &[1u8; 4096]).unwrap();
    f.sync_all().unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let now = placeholder_row(&file);
    let was = &old.rows[b"p".as_slice()];
    assert_eq!(
        (now.dev, now.ino, now.btime_ns, now.size, now.mtime_ns),
        (was.dev, was.ino, was.btime_ns, was.size, was.mtime_ns),
        "the test needs a file whose identity is unchanged"
    );
    let r = hollow(dir.path(), &old, Vec::new(), &[], &table, 1).unwrap();
    assert_eq!((r.hollowed, r.kept, r.removed), (0, 0, 1), "{r:?}");
    assert!(
        !file.exists(),
        "content that is not known to be stored stays removed"
    );
}

/// An unchanged tree leaves the placeholder table file as it is (no rewrite of every row, no
/// fsync); a table that is not known to be current, or a changed tree, is written again.
#[test]
fn an_unchanged_tree_does_not_rewrite_the_table() {
    use std::os::unix::fs::MetadataExt;
    let (dir, file, _elsewhere, table, _) = hollowed_once();
    let written = std::fs::metadata(&table).unwrap().ino();
    let mut old = Placeholders::default();
    old.rows.insert(b"p".to_vec(), placeholder_row(&file));

    hollow(dir.path(), &old, Vec::new(), &[], &table, 1).unwrap();
    assert_ne!(
        std::fs::metadata(&table).unwrap().ino(),
        written,
        "not current: rewritten"
    );
    let written = std::fs::metadata(&table).unwrap().ino();
    old.current = true;
    let r = hollow(dir.path(), &old, Vec::new(), &[], &table, 1).unwrap();
    assert_eq!((r.hollowed, r.kept, r.removed), (0, 1, 0), "{r:?}");
    assert_eq!(
        std::fs::metadata(&table).unwrap().ino(),
        written,
        "unchanged: left alone"
    );

    std::fs::write(dir.path().join("new"), b"new file").unwrap();
    let r = hollow(dir.path(), &old, Vec::new(), &[], &table, 1).unwrap();
    assert_eq!(r.removed, 1, "{r:?}");
    assert_ne!(
        std::fs::metadata(&table).unwrap().ino(),
        written,
        "changed: rewritten"
    );
}

/// Regression: an empty file was neither read content nor a placeholder, so hollowing removed
/// it and rsync sent it again on every run. It stays, without a row.
#[test]
fn an_empty_file_stays_as_it_is() {
    let (dir, _, _elsewhere, table, _) = hollowed_once();
    std::fs::write(dir.path().join(".lock"), b"").unwrap();
    let r = hollow(
        dir.path(),
        &Placeholders::default(),
        Vec::new(),
        &[],
        &table,
        1,
    )
    .unwrap();
    assert_eq!(r.removed, 1, "only the unknown placeholder p goes: {r:?}");
    assert!(dir.path().join(".lock").exists());
}

/// An untouched placeholder is kept by its path alone (its row is the old table's): when
/// something else changes and the table is written again, its row is written with the rest.
#[test]
fn a_rewritten_table_keeps_the_rows_of_untouched_placeholders() {
    let (dir, file, _elsewhere, table, _) = hollowed_once();
    let mut old = Placeholders::default();
    old.rows.insert(b"p".to_vec(), placeholder_row(&file));
    old.current = true;
    let new = dir.path().join("q");
    std::fs::write(&new, vec![9u8; 8192]).unwrap();
    let ingested = vec![read_by_the_ingest(b"q", &new)];
    let r = hollow(dir.path(), &old, ingested, &[], &table, 1).unwrap();
    assert_eq!((r.hollowed, r.kept, r.removed), (1, 1, 0), "{r:?}");
    let db = rusqlite::Connection::open(&table).unwrap();
    let mut paths: Vec<Vec<u8>> = db
        .prepare("SELECT path FROM placeholders")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|p| p.unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, [b"p".to_vec(), b"q".to_vec()]);
}

/// The walk that hollows also measures staging as it is left (what `complete` records for the
/// next run: server::staging_state) and takes the privileged `user.rsync.*` names off, as the
/// upload's strip walk would: a file read by the ingest (hollowed), one without a row (removed),
/// a hard-linked pair, a directory.
#[test]
fn hollowing_measures_what_it_leaves_and_strips_privileged_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    std::fs::create_dir_all(s.join("d")).unwrap();
    std::fs::write(s.join("d/read"), vec![1u8; 40_000]).unwrap();
    std::fs::write(s.join("d/unknown"), vec![2u8; 9_000]).unwrap();
    std::fs::write(s.join("pair"), vec![3u8; 20_000]).unwrap();
    std::fs::hard_link(s.join("pair"), s.join("d/pair")).unwrap();
    let set = |p: &Path, name: &str| {
        rustix::fs::lsetxattr(p, name, b"v", rustix::fs::XattrFlags::empty())
    };
    set(&s.join("d"), "user.rsync.security.capability")
        .expect("user xattrs on TMPDIR's filesystem (the strip cannot be tested without them)");
    set(&s.join("d/read"), "user.rsync.trusted.x").unwrap();
    set(&s.join("d/read"), "user.rsync.%stat").unwrap();
    set(s, "user.rsync.security.y").unwrap();
    let ingested = vec![
        read_by_the_ingest(b"d/read", &s.join("d/read")),
        read_by_the_ingest(b"pair", &s.join("pair")),
    ];
    let elsewhere = tempfile::tempdir().unwrap();
    let table = elsewhere.path().join("table.db");
    let r = hollow(s, &Placeholders::default(), ingested, &[], &table, 1).unwrap();
    assert_eq!((r.hollowed, r.removed), (2, 1), "{r:?}");
    assert!(!s.join("d/unknown").exists());
    assert_eq!(r.usage, Some(staging_usage(s).unwrap()), "{r:?}");
    assert_eq!(r.usage.unwrap().0, 40_000 + 2 * 20_000);
    let names = |p: &Path| {
        let mut buf = vec![0u8; 1024];
        let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap();
        buf[..n]
            .split(|b| *b == 0)
            .filter(|n| n.starts_with(b"user.rsync."))
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>()
    };
    assert!(names(&s.join("d")).is_empty());
    assert!(names(s).is_empty());
    assert_eq!(names(&s.join("d/read")), ["user.rsync.%stat"]);
}
