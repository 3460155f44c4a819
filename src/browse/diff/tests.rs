use super::*;
use crate::restore::testutil::{SessionBuilder, TestRepo};

fn run(t: &TestRepo, a: SessionId, b: SessionId, prefix: &[u8]) -> (Vec<Change>, Diff) {
    let reader = t.reader();
    let mut changes = Vec::new();
    let d = diff(&reader, a, b, prefix, &mut |c| {
        changes.push(c);
        Ok(())
    })
    .unwrap();
    (changes, d)
}

fn brief(changes: &[Change]) -> Vec<(ChangeKind, String, Vec<Aspect>)> {
    changes
        .iter()
        .map(|c| {
            let path = String::from_utf8_lossy(c.path()).into_owned();
            (c.kind, path, c.aspects.clone())
        })
        .collect()
}

#[test]
fn merge_walk_finds_each_kind_of_change_in_order() {
    let t = TestRepo::new();
    let a = SessionBuilder::new(&t)
        .dir(b"d")
        .file(b"d/gone", b"old file")
        .file(b"d/same", b"same")
        .file(b"d/text", b"version one")
        .file(b"z", b"zz")
        .commit();
    let mut moded = crate::restore::testutil::meta(0o600, 1_650_000_000);
    moded.xattrs = vec![(b"user.tag".to_vec(), b"x".to_vec())];
    let b = SessionBuilder::new(&t)
        .dir(b"d")
        .file(b"d/new", b"brand new")
        .file(b"d/same", b"same")
        .file(b"d/text", b"version two!")
        .file(b"d/zz", b"1")
        .file_pieces(
            b"z",
            moded,
            vec![crate::restore::testutil::Piece::Data(b"zz".to_vec())],
        )
        .commit();
    let (changes, d) = run(&t, a, b, b"");
    assert_eq!(
        brief(&changes),
        vec![
            (ChangeKind::Removed, "d/gone".into(), vec![]),
            (ChangeKind::Added, "d/new".into(), vec![]),
            (ChangeKind::Changed, "d/text".into(), vec![Aspect::Content]),
            (ChangeKind::Added, "d/zz".into(), vec![]),
            (
                ChangeKind::Changed,
                "z".into(),
                vec![Aspect::Mode, Aspect::Xattrs]
            ),
        ]
    );
    let s = &d.summary;
    assert_eq!(
        (s.added, s.removed, s.changed, s.content_changed),
        (2, 1, 2, 1)
    );
    assert_eq!(s.unchanged, 3, "root, d, d/same");
    assert_eq!((s.added_bytes, s.removed_bytes), (10, 8));
    assert_eq!(s.size_delta, 10 - 8 + 1);
    assert!(d.lost.is_empty());
    // The same session against itself: nothing.
    let (none, same) = run(&t, a, a, b"");
    assert!(none.is_empty());
    assert_eq!(same.summary.unchanged, 6);
    // Below a prefix only.
    let (below, _) = run(&t, a, b, b"z");
    assert_eq!(below.len(), 1);
    assert_eq!(below[0].path(), b"z");
}

#[test]
fn type_acl_and_target_changes_are_told_apart() {
    let t = TestRepo::new();
    let m = crate::restore::testutil::meta(0o777, 1);
    let mut acl = m.clone();
    acl.xattrs = vec![(b"system.posix_acl_access".to_vec(), b"\x02".to_vec())];
    let a = SessionBuilder::new(&t)
        .entry(
            b"l",
            m.clone(),
            Body::Symlink {
                target: b"x".to_vec(),
            },
        )
        .entry(b"p", m.clone(), Body::Fifo)
        .entry(b"q", m.clone(), Body::Dir)
        .commit();
    let b = SessionBuilder::new(&t)
        .entry(
            b"l",
            m.clone(),
            Body::Symlink {
                target: b"y".to_vec(),
            },
        )
        .entry(b"p", m.clone(), Body::Socket)
        .entry(b"q", acl, Body::Dir)
        .commit();
    let (changes, _) = run(&t, a, b, b"");
    let got: Vec<_> = changes.iter().map(|c| c.aspects.clone()).collect();
    assert_eq!(
        got,
        vec![vec![Aspect::Target], vec![Aspect::Type], vec![Aspect::Acls]]
    );
}

#[test]
fn a_missing_session_is_not_found() {
    let t = TestRepo::new();
    let a = SessionBuilder::new(&t).file(b"f", b"x").commit();
    let reader = t.reader();
    let err = diff(&reader, a, SessionId(a.0 + 50), b"", &mut |_| Ok(())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// A small file kept in a chunk in one session and inline in the next (a session from before
/// inline content, or from hollow staging) is unchanged when its bytes are equal, and changed
/// when they are not.
#[test]
fn inline_and_chunked_forms_of_the_same_bytes_are_unchanged() {
    use crate::restore::testutil::{Piece, meta};
    let t = TestRepo::new();
    let m = || meta(0o644, 1_650_000_000);
    let a = SessionBuilder::new(&t)
        .file_pieces(b"same", m(), vec![Piece::Data(b"small text".to_vec())])
        .file_pieces(b"text", m(), vec![Piece::Data(b"version one".to_vec())])
        .commit();
    let b = SessionBuilder::new(&t)
        .file_pieces(b"same", m(), vec![Piece::Inline(b"small text".to_vec())])
        .file_pieces(b"text", m(), vec![Piece::Inline(b"version two".to_vec())])
        .commit();
    let (changes, d) = run(&t, a, b, b"");
    assert_eq!(
        brief(&changes),
        vec![(ChangeKind::Changed, "text".into(), vec![Aspect::Content])]
    );
    assert_eq!((d.summary.unchanged, d.summary.content_changed), (2, 1));
}
