//! Ingest against a real repository in a temporary directory, read back through the reader.

use std::ffi::OsStr;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::format::manifest::Extent;
use crate::restore::testutil::{TestRepo, noise};

pub(super) fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Put every mtime in the tree an hour back so the files cache may record the files.
pub(super) fn age_tree(root: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            }
            if ft.is_file() {
                let f = fs::File::options().write(true).open(e.path()).unwrap();
                f.set_modified(old).unwrap();
            }
        }
    }
}

pub(super) fn opts(client: &str, source: &Path) -> IngestOptions {
    IngestOptions {
        client: client.into(),
        source: source.to_path_buf(),
        threads: Some(3),
        files_cache: true,
        sources: None,
        restore_recipient: None,
    }
}

pub(super) fn entries(t: &TestRepo, session: SessionId) -> Vec<Entry> {
    let reader = t.reader();
    let mut out = Vec::new();
    reader
        .for_each_entry(session, &mut |e| {
            out.push(e);
            Ok(())
        })
        .unwrap();
    out
}

pub(super) fn find<'e>(entries: &'e [Entry], path: &[u8]) -> &'e Entry {
    entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{} not in manifest", String::from_utf8_lossy(path)))
}

/// The content an entry describes, read back from the store.
pub(super) fn content(t: &TestRepo, e: &Entry) -> Vec<u8> {
    let reader = t.reader();
    let Body::File { extents, size } = &e.body else {
        panic!("{:?} is not a file", e.body)
    };
    let mut out = Vec::new();
    for x in extents {
        match x {
            Extent::Chunk { id, len } => {
                let bytes = reader.read_chunk(id).unwrap();
                assert_eq!(bytes.len(), *len as usize);
                out.extend_from_slice(&bytes);
            }
            Extent::Hole { len } => out.resize(out.len() + *len as usize, 0),
            Extent::Inline { data } => out.extend_from_slice(data),
        }
    }
    assert_eq!(out.len() as u64, *size);
    out
}

pub(super) fn data_chunks(t: &TestRepo) -> i64 {
    let index = t.repo.index().unwrap();
    index
        .conn()
        .query_row("SELECT count(*) FROM chunks WHERE kind = 0", [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn every_kind_of_entry_round_trips() {
    let t = TestRepo::new();
    let src = t.path("src");
    let big = noise(1, 9 << 20);
    let small = b"hello, world\n".to_vec();
    write(&src.join("a/small.txt"), &small);
    write(&src.join("a/big.bin"), &big);
    write(&src.join("empty"), b"");
    write(&src.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name");
    symlink("../../etc/passwd", src.join("a/link")).unwrap();
    fs::hard_link(src.join("a/small.txt"), src.join("z-hard")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let chardev = rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .is_ok();
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    fs::set_permissions(src.join("a/small.txt"), fs::Permissions::from_mode(0o4751)).unwrap();
    let xattr = rustix::fs::lsetxattr(
        src.join("a/small.txt"),
        "user.note",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();

    let report = ingest(&t.repo, &opts("web1", &src)).unwrap();
    assert_eq!(report.state, SessionState::Complete, "{:?}", report.errors);
    assert!(report.errors.is_empty());
    assert_eq!(report.files, 4); // small, big, empty, café; the hard link is not a file
    assert_eq!(report.bytes, (small.len() + big.len() + 12) as u64);
    assert_eq!(report.files_read, 3);
    assert!(report.new_chunks >= 4, "{report:?}");

    let es = entries(&t, report.session_id());
    assert_eq!(es[0].path, b"");
    assert_eq!(es[0].body, Body::Dir);
    let paths: Vec<&[u8]> = es.iter().map(|e| e.path.as_slice()).collect();
    let mut want: Vec<&[u8]> = vec![
        b"",
        b"a",
        b"a/big.bin",
        b"a/link",
        b"a/small.txt",
        b"caf\xe9",
        b"empty",
        b"fifo",
    ];
    if chardev {
        want.push(b"null");
    }
    want.extend([b"sock".as_slice(), b"z-hard"]);
    assert_eq!(paths, want, "pre-order, siblings sorted by bytes");

    let small_e = find(&es, b"a/small.txt");
    assert_eq!(content(&t, small_e), small);
    assert_eq!(small_e.meta.mode, 0o4751);
    if xattr {
        assert_eq!(
            small_e.meta.xattrs,
            vec![(b"user.note".to_vec(), b"kept".to_vec())]
        );
    }
    let big_e = find(&es, b"a/big.bin");
    assert_eq!(content(&t, big_e), big);
    let Body::File { extents, .. } = &big_e.body else {
        unreachable!()
    };
    assert!(extents.len() >= 3, "9 MiB is several chunks");
    assert_eq!(
        find(&es, b"a/link").body,
        Body::Symlink {
            target: b"../../etc/passwd".to_vec()
        }
    );
    assert_eq!(
        find(&es, b"z-hard").body,
        Body::Hardlink {
            target: b"a/small.txt".to_vec()
        }
    );
    assert_eq!(find(&es, b"z-hard").meta, small_e.meta);
    assert_eq!(find(&es, b"fifo").body, Body::Fifo);
    assert_eq!(find(&es, b"fifo").meta.mode, 0o640);
    assert_eq!(find(&es, b"sock").body, Body::Socket);
    if chardev {
        assert_eq!(
            find(&es, b"null").body,
            Body::CharDev {
                rdev: rustix::fs::makedev(1, 3)
            }
        );
    }
    assert_eq!(
        find(&es, b"empty").body,
        Body::File {
            size: 0,
            extents: vec![]
        }
    );
    let info = t
        .repo
        .index()
        .unwrap()
        .session(report.session_id())
        .unwrap();
    assert_eq!(info.client, "web1");
    assert_eq!(info.stats.files, es.len() as u64);
}

#[test]
fn unchanged_tree_is_not_read_again_and_changes_are() {
    let t = TestRepo::new();
    let src = t.path("src");
    for i in 0..40u64 {
        write(
            &src.join(format!("d{}/f{i}", i % 4)),
            // Over the inline threshold, so that the files cache has a row for each.
            &noise(i, 1100 + i as usize * 100),
        );
    }
    write(&src.join("d0/big"), &noise(99, 3 << 20));
    age_tree(&src);
    let first = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(first.files_read, 41);

    let second = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(
        second.files_read, 0,
        "every file proven unchanged by the cache"
    );
    assert_eq!(second.bytes_read, 0);
    assert!(second.new_chunks <= 2, "{second:?}");
    assert_eq!(second.bytes, first.bytes);
    let a = entries(&t, first.session_id());
    let b = entries(&t, second.session_id());
    assert_eq!(a, b, "same tree, same manifest");

    // A rewrite with the same size and old mtime is still caught (ctime moved).
    let victim = src.join("d1/f5");
    let before = fs::metadata(&victim).unwrap().modified().unwrap();
    let mut f = fs::File::options().write(true).open(&victim).unwrap();
    f.write_all(b"CHANGED").unwrap();
    f.set_modified(before).unwrap();
    drop(f);
    let third = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(third.files_read, 1);
    let e = entries(&t, third.session_id());
    let got = content(&t, find(&e, b"d1/f5"));
    assert_eq!(&got[..7], b"CHANGED");
}

#[test]
fn renamed_directory_adds_no_data_chunks() {
    let t = TestRepo::new();
    let src = t.path("src");
    for i in 0..10u64 {
        write(&src.join(format!("old/f{i}")), &noise(i + 7, 50_000));
    }
    age_tree(&src);
    ingest(&t.repo, &opts("c", &src)).unwrap();
    let before = data_chunks(&t);
    fs::rename(src.join("old"), src.join("new")).unwrap();
    let r = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(r.files_read, 10, "new paths miss the cache");
    assert_eq!(data_chunks(&t), before, "but every chunk deduplicates");
    assert_eq!(
        content(&t, find(&entries(&t, r.session_id()), b"new/f3")),
        noise(10, 50_000)
    );
}

#[test]
fn file_vanishing_before_read_is_unreadable_and_session_partial() {
    let t = TestRepo::new();
    let src = t.path("src");
    write(&src.join("a"), b"stays");
    write(&src.join("gone"), b"vanishes between walk and read");
    write(&src.join("h1"), b"linked and vanishing");
    fs::hard_link(src.join("h1"), src.join("h2")).unwrap();
    let src2 = src.clone();
    let hooks = Hooks {
        before_open: Some(Box::new(move |path: &[u8]| {
            if path == b"gone" || path == b"h1" {
                fs::remove_file(src2.join(OsStr::from_bytes(path))).unwrap();
            }
        })),
        ..Hooks::default()
    };
    let r = ingest_with(&t.repo, &opts("c", &src), &hooks).unwrap();
    assert_eq!(r.state, SessionState::Partial);
    let mut bad: Vec<&str> = r.errors.iter().map(|e| e.path.as_str()).collect();
    bad.sort();
    assert_eq!(bad, ["gone", "h1", "h2"]);
    assert!(r.errors[0].message.contains("vanished"), "{:?}", r.errors);
    let es = entries(&t, r.session_id());
    assert!(matches!(find(&es, b"gone").body, Body::Unreadable { .. }));
    assert!(
        matches!(find(&es, b"h2").body, Body::Unreadable { .. }),
        "a link cannot point at an unreadable file"
    );
    assert_eq!(content(&t, find(&es, b"a")), b"stays");
    let info = t.repo.index().unwrap().session(r.session_id()).unwrap();
    assert_eq!(info.state, SessionState::Partial);
    assert_eq!(info.stats.errors, 3);
}

/// Regression: a directory swapped for another between the walker's `lstat` and its `open`
/// is not listed: the directory `lstat` saw is gone, and the new one's entries were never
/// looked at as part of it. It is recorded as not backed up, and the session is incomplete.
#[test]
fn directory_replaced_during_the_walk_is_unreadable() {
    let t = TestRepo::new();
    let src = t.path("src");
    write(&src.join("a"), b"stays");
    write(&src.join("d/f"), b"in the directory the walker saw");
    let src2 = src.clone();
    let hooks = Hooks {
        before_open_dir: Some(Box::new(move |path: &[u8]| {
            if path == b"d" {
                fs::rename(src2.join("d"), src2.join("d-moved")).unwrap();
                write(
                    &src2.join("d/planted"),
                    b"not in the directory the walker saw",
                );
            }
        })),
        ..Hooks::default()
    };
    let r = ingest_with(&t.repo, &opts("c", &src), &hooks).unwrap();
    assert_eq!(r.state, SessionState::Partial);
    let bad: Vec<&str> = r.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(bad, ["d"], "{:?}", r.errors);
    assert!(r.errors[0].message.contains("replaced"), "{:?}", r.errors);
    let es = entries(&t, r.session_id());
    assert!(matches!(find(&es, b"d").body, Body::Unreadable { .. }));
    assert!(
        !es.iter().any(|e| e.path.starts_with(b"d/")),
        "entries listed from the wrong directory"
    );
    assert_eq!(content(&t, find(&es, b"a")), b"stays");
}

#[test]
fn sparse_file_becomes_hole_extents() {
    let t = TestRepo::new();
    let src = t.path("src");
    fs::create_dir_all(&src).unwrap();
    let path = src.join("disk.img");
    let mut f = fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    f.seek(SeekFrom::Start(16 << 20)).unwrap();
    f.write_all(&noise(5, 100_000)).unwrap();
    drop(f);
    let r = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(r.bytes, 64 << 20);
    assert!(
        r.bytes_read < 2 << 20,
        "holes are not read: {}",
        r.bytes_read
    );
    let es = entries(&t, r.session_id());
    let e = find(&es, b"disk.img");
    let Body::File { extents, .. } = &e.body else {
        unreachable!()
    };
    assert!(
        matches!(extents.first(), Some(Extent::Hole { .. })),
        "{extents:?}"
    );
    assert!(
        matches!(extents.last(), Some(Extent::Hole { .. })),
        "{extents:?}"
    );
    let back = content(&t, e);
    assert_eq!(
        &back[16 << 20..(16 << 20) + 100_000],
        &noise(5, 100_000)[..]
    );
    assert!(back[..16 << 20].iter().all(|b| *b == 0));
}

#[test]
fn two_clients_at_once_both_succeed_and_share_chunks() {
    let t = TestRepo::new();
    let (a, b) = (t.path("a"), t.path("b"));
    for i in 0..20u64 {
        let data = noise(i, 30_000);
        write(&a.join(format!("x/{i}")), &data);
        write(&b.join(format!("y/{i}")), &data);
    }
    // Under the chunker's minimum (32 KiB), so one chunk whatever the repository's random
    // gear key (a file past the minimum is cut in two now and then).
    write(&a.join("only-a"), &noise(100, 20_000));
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| ingest(&t.repo, &opts("alpha", &a)));
        let hb = s.spawn(|| ingest(&t.repo, &opts("beta", &b)));
        (ha.join().unwrap().unwrap(), hb.join().unwrap().unwrap())
    });
    assert_eq!(ra.state, SessionState::Complete);
    assert_eq!(rb.state, SessionState::Complete);
    // 21 distinct contents, each one chunk; a racing duplicate is dropped at seal time.
    assert_eq!(data_chunks(&t), 21);
    let eb = entries(&t, rb.session_id());
    assert_eq!(content(&t, find(&eb, b"y/7")), noise(7, 30_000));
    assert_eq!(t.repo.index().unwrap().sessions(None).unwrap().len(), 2);
}

#[test]
fn bad_client_name_and_bad_source_are_refused_before_anything_is_written() {
    let t = TestRepo::new();
    let src = t.path("src");
    write(&src.join("f"), b"x");
    for bad in ["", "Web", "-x", "a/b", "a b", &"x".repeat(65)] {
        let e = ingest(&t.repo, &opts(bad, &src)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    let missing = t.path("nope");
    let e = ingest(&t.repo, &opts("c", &missing)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("nope"), "{e}");
    let e = ingest(&t.repo, &opts("c", &src.join("f"))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("not a directory"), "{e}");
    assert!(t.repo.index().unwrap().sessions(None).unwrap().is_empty());
}

#[test]
fn corrupt_files_cache_means_files_are_read() {
    let t = TestRepo::new();
    let src = t.path("src");
    write(&src.join("f"), &noise(3, 5000));
    age_tree(&src);
    ingest(&t.repo, &opts("c", &src)).unwrap();
    let cache = cache_path(t.repo.root(), "c");
    assert!(cache.exists());
    fs::write(&cache, b"garbage garbage garbage garbage garbage garbage").unwrap();
    let r = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(r.files_read, 1);
    assert_eq!(r.state, SessionState::Complete);
    // And the run wrote a good cache again.
    let r = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(r.files_read, 0);
}

#[test]
fn recently_modified_files_are_not_cached() {
    let t = TestRepo::new();
    let src = t.path("src");
    write(&src.join("fresh"), b"just written");
    ingest(&t.repo, &opts("c", &src)).unwrap();
    let r = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(r.files_read, 1, "mtime within 2 s of the start: read again");
}

#[test]
fn files_at_the_minimum_chunk_size_are_chunked_as_the_chunker_would() {
    // Files up to min-size are read whole (one chunk) without the chunker; one byte more goes
    // through it. Both must give the chunker's boundaries, or dedup breaks between the paths.
    let t = TestRepo::new();
    let params = t.repo.config().chunker;
    let min = params.min_size as usize;
    let gear = crate::chunking::GearTable::from_key(
        &t.repo
            .load_secret()
            .unwrap()
            .derive(crate::crypto::context::CHUNKER_GEAR),
    );
    let src = t.path("src");
    // The smallest file past the inline threshold is the smallest one chunked.
    let smallest = crate::format::manifest::INLINE_WRITE_MAX as usize + 1;
    let sizes = [smallest, min - 1, min, min + 1, 3 * min + 17];
    for (i, n) in sizes.iter().enumerate() {
        write(&src.join(format!("f{i}")), &noise(i as u64 + 40, *n));
    }
    let r = ingest(&t.repo, &opts("c", &src)).unwrap();
    let got = entries(&t, r.session_id());
    for (i, n) in sizes.iter().enumerate() {
        let data = noise(i as u64 + 40, *n);
        let e = find(&got, format!("f{i}").as_bytes());
        let Body::File { extents, .. } = &e.body else {
            panic!("f{i} is not a file")
        };
        let lens: Vec<usize> = extents
            .iter()
            .map(|x| match x {
                Extent::Chunk { len, .. } => *len as usize,
                Extent::Hole { len } => panic!("hole of {len} in a dense file"),
                Extent::Inline { data } => panic!("{} inline bytes in a chunked file", data.len()),
            })
            .collect();
        assert_eq!(
            lens,
            crate::chunking::chunk_lengths(&data, params, &gear),
            "f{i} ({n} bytes)"
        );
        assert_eq!(content(&t, e), data, "f{i} reads back");
    }
}

#[test]
fn extended_attributes_of_unchanged_files_are_kept_and_new_ones_seen() {
    // A files-cache hit whose row says "no xattrs" skips listing them: adding one must still
    // be seen (it moves the ctime, so the file is no longer a hit), and a file that has some
    // keeps them on every hit.
    let t = TestRepo::new();
    let src = t.path("src");
    write(&src.join("plain"), &noise(1, 5000));
    write(&src.join("tagged"), &noise(2, 5000));
    let set = |name: &str, key: &str, value: &[u8]| {
        rustix::fs::lsetxattr(src.join(name), key, value, rustix::fs::XattrFlags::empty())
    };
    set("tagged", "user.note", b"kept")
        .expect("the filesystem of TMPDIR takes no user xattrs, which this test needs");
    age_tree(&src);
    let xattrs_of = |r: &IngestReport, path: &[u8]| {
        find(&entries(&t, r.session_id()), path).meta.xattrs.clone()
    };
    let first = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(first.files_read, 2);
    let second = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(second.files_read, 0, "both are cache hits");
    assert_eq!(
        xattrs_of(&second, b"tagged"),
        vec![(b"user.note".to_vec(), b"kept".to_vec())]
    );
    assert!(xattrs_of(&second, b"plain").is_empty());

    set("plain", "user.new", b"seen").unwrap();
    let third = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(
        xattrs_of(&third, b"plain"),
        vec![(b"user.new".to_vec(), b"seen".to_vec())]
    );
    assert_eq!(
        xattrs_of(&third, b"tagged"),
        vec![(b"user.note".to_vec(), b"kept".to_vec())]
    );
}

#[test]
fn window_counts_places_and_releases_a_waiting_walker() {
    let w = super::Window::new(2);
    assert!(w.try_take());
    assert!(w.take());
    assert!(!w.try_take(), "full");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| w.take());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "waits while full");
        w.give_back(1);
        assert!(waiter.join().unwrap(), "a place came back");
    });
    assert!(!w.try_take());
    std::thread::scope(|s| {
        let waiter = s.spawn(|| w.take());
        std::thread::sleep(std::time::Duration::from_millis(50));
        w.close();
        assert!(!waiter.join().unwrap(), "the consumer is gone");
    });
    w.give_back(2);
    assert!(!w.try_take(), "closed for good");
}

#[test]
fn a_directory_larger_than_the_window_and_batches_ingests_whole() {
    // More entries than the reorder window (at least 256) and many result batches, with the
    // files cache proving them unchanged the second time: everything comes through, in order.
    let t = TestRepo::new();
    let src = t.path("src");
    for i in 0..1500 {
        write(
            &src.join(format!("d{}/f{i:04}", i % 3)),
            // Padded past the inline threshold: inline files have no files-cache row.
            format!("{i:>1100}").as_bytes(),
        );
    }
    age_tree(&src);
    let first = ingest(&t.repo, &opts("c", &src)).unwrap();
    let second = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(first.entries, 1504);
    assert_eq!(second.entries, 1504);
    assert_eq!(second.files_read, 0);
    let got = entries(&t, SessionId(second.session));
    let paths: Vec<&[u8]> = got.iter().map(|e| e.path.as_slice()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths.len(), 1504);
    assert_eq!(paths, sorted, "manifest order");
    assert_eq!(
        content(&t, find(&got, b"d2/f1499")),
        format!("{:>1100}", 1499).as_bytes()
    );
}

#[test]
fn a_staged_ingest_stops_past_its_new_bytes_limit_and_leaves_no_session() {
    let t = TestRepo::new();
    let src = t.path("src");
    write(&src.join("a"), &noise(1, 200_000));
    write(&src.join("b"), &noise(2, 200_000));
    let limited = |limit| staging::StagingDecode {
        new_bytes_limit: Some(limit),
        ..Default::default()
    };
    let e = ingest_staged(&t.repo, &opts("c", &src), &limited(300_000)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(e.to_string().contains("300000 bytes"), "{e}");
    // The next writer forgets the stopped one: no session, running or not.
    drop(t.repo.start_writer(crate::repo::Operation::Ingest).unwrap());
    assert!(t.repo.index().unwrap().sessions(None).unwrap().is_empty());
    // Under the limit (400,000 bytes of noise and a manifest), and with none, it goes through.
    let r = ingest_staged(&t.repo, &opts("c", &src), &limited(1_000_000)).unwrap();
    assert_eq!(r.state, SessionState::Complete);
    assert!(r.new_stored_bytes > 400_000 && r.new_stored_bytes <= 1_000_000);
    assert!(ingest(&t.repo, &opts("c", &src)).is_ok());
}

/// A repository made with the former default chunker parameters (256 KiB / 1 MiB / 4 MiB)
/// keeps cutting with them, and what it stores reads back.
#[test]
fn a_repository_with_the_former_chunker_parameters_keeps_them() {
    let t = with_chunker(ChunkerParams::AVG_1_MIB);
    assert_eq!(t.repo.config().chunker, ChunkerParams::AVG_1_MIB);
    let src = t.path("src");
    let big = noise(3, 12 << 20);
    write(&src.join("big"), &big);
    let r = ingest(&t.repo, &opts("c", &src)).unwrap();
    let e = entries(&t, r.session_id());
    let file = find(&e, b"big");
    let Body::File { extents, .. } = &file.body else {
        panic!("not a file")
    };
    // 12 MiB at a 1 MiB average: a few chunks, each at least the former minimum but the last.
    assert!(extents.len() < 24, "{} chunks", extents.len());
    for x in &extents[..extents.len() - 1] {
        assert!(
            matches!(x, Extent::Chunk { len, .. } if *len >= 256 << 10),
            "{x:?}"
        );
    }
    assert_eq!(content(&t, file), big);
}

/// A repository whose `repository.toml` says `chunker` instead of init's default.
pub(super) fn with_chunker(chunker: ChunkerParams) -> TestRepo {
    let mut t = TestRepo::new();
    let toml = t.repo.root().join("repository.toml");
    let text = fs::read_to_string(&toml).unwrap();
    let sizes = |p: ChunkerParams| {
        format!(
            "min-size = {}\navg-size = {}\nmax-size = {}\n",
            p.min_size, p.avg_size, p.max_size
        )
    };
    let changed = text.replacen(&sizes(ChunkerParams::DEFAULT), &sizes(chunker), 1);
    assert_ne!(
        changed, text,
        "repository.toml does not hold the default chunker"
    );
    fs::write(&toml, changed).unwrap();
    t.repo = Repo::open(t.repo.root()).unwrap();
    assert_eq!(t.repo.config().chunker, chunker);
    t
}
