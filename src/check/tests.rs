//! Check tests: real repositories, damaged on purpose.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;

use super::*;
use crate::crypto::wrap::keygen;
use crate::error::ErrorKind;
use crate::restore::testutil::{SessionBuilder, TestRepo};
use crate::store::pack_path;

fn content(seed: u8, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new_keyed(&[seed; 32])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// A repository with one session holding `bad` (first chunk: the victim) and `good`.
fn setup() -> (TestRepo, SessionId, ChunkId, Vec<u8>) {
    let t = TestRepo::new();
    let bad = content(1, 100_000);
    let mut s = SessionBuilder::new(&t);
    s.dir(b"d")
        .file(b"d/bad", &bad)
        .file(b"good", &content(2, 50_000));
    let victim = s.chunk(&bad[..64 << 10]);
    let session = s.commit();
    (t, session, victim, bad)
}

fn opts(t: &TestRepo, read_data: bool, identity: bool) -> CheckOptions {
    CheckOptions {
        read_data,
        identities: identity.then(|| t.identities()),
    }
}

fn victim_location(t: &TestRepo, victim: &ChunkId) -> (std::path::PathBuf, u64) {
    let loc = t
        .repo
        .index()
        .unwrap()
        .lookup_chunk(victim)
        .unwrap()
        .unwrap();
    (pack_path(t.repo.root(), &loc.pack), loc.offset)
}

fn problem_for<'r>(report: &'r CheckReport, victim: &ChunkId) -> &'r Problem {
    report
        .problems
        .iter()
        .find(|p| p.chunk.as_deref() == Some(victim.to_hex().as_str()))
        .unwrap_or_else(|| panic!("no problem names {victim}: {:#?}", report.problems))
}

#[test]
fn a_sound_repository_has_no_problems_at_every_depth() {
    let (t, _, _, _) = setup();
    for (read_data, identity) in [(false, false), (true, false), (false, true), (true, true)] {
        let report = check(&t.repo, &opts(&t, read_data, identity)).unwrap();
        assert!(report.problems.is_empty(), "{:#?}", report.problems);
        assert!(report.packs >= 1 && report.chunks >= 4, "{report:?}");
        if read_data || identity {
            assert!(report.bytes_read > 150_000, "{report:?}");
        }
    }
}

#[test]
fn a_flipped_byte_is_found_by_reading_and_named_down_to_the_path() {
    let (t, session, victim, _) = setup();
    let (pack, offset) = victim_location(&t, &victim);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pack)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset + 100).unwrap();
    byte[0] ^= 0x01;
    file.write_all_at(&byte, offset + 100).unwrap();
    // The structure is intact: only reading the data sees it.
    let plain = check(&t.repo, &opts(&t, false, false)).unwrap();
    assert!(plain.problems.is_empty(), "{:#?}", plain.problems);
    let report = check(&t.repo, &opts(&t, true, false)).unwrap();
    let p = problem_for(&report, &victim);
    assert!(p.what.contains("stored hash"), "{}", p.what);
    assert_eq!(p.sessions, vec![session.0]);
    assert!(p.pack.is_some());
    let report = check(&t.repo, &opts(&t, false, true)).unwrap();
    let p = problem_for(&report, &victim);
    assert_eq!(p.paths, vec![format!("{}:d/bad", session.0)]);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[test]
fn a_truncated_pack_is_found_without_reading_data() {
    let (t, session, victim, _) = setup();
    let (pack, offset) = victim_location(&t, &victim);
    let file = OpenOptions::new().write(true).open(&pack).unwrap();
    file.set_len(offset + 10).unwrap();
    let report = check(&t.repo, &opts(&t, false, false)).unwrap();
    let p = problem_for(&report, &victim);
    assert!(p.what.contains("past the end"), "{}", p.what);
    assert_eq!(p.sessions, vec![session.0]);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.chunk.is_none() && p.what.contains("bytes but the index recorded"))
    );
}

#[test]
fn a_deleted_pack_names_every_chunk_and_session() {
    let (t, session, victim, _) = setup();
    let (pack, _) = victim_location(&t, &victim);
    fs::remove_file(&pack).unwrap();
    let report = check(&t.repo, &opts(&t, false, false)).unwrap();
    let p = problem_for(&report, &victim);
    assert!(p.what.contains("is missing"), "{}", p.what);
    assert_eq!(p.sessions, vec![session.0]);
    // With the identity: the manifest chunk (in the same pack) cannot be read either, and is
    // named as such (the rest of the manifest is still read).
    let report = check(&t.repo, &opts(&t, false, true)).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("manifest chunk 0 of 1 of session")
                && p.what.contains("the entries it describes are lost")
                && p.sessions == vec![session.0]),
        "{:#?}",
        report.problems
    );
}

#[test]
fn a_shifted_index_row_is_found_by_the_record_header() {
    let (t, session, victim, _) = setup();
    t.repo
        .index()
        .unwrap()
        .conn()
        .execute(
            "UPDATE chunks SET offset = offset + 1 WHERE id = ?1",
            [victim.0.to_vec()],
        )
        .unwrap();
    let report = check(&t.repo, &opts(&t, false, false)).unwrap();
    let p = problem_for(&report, &victim);
    assert!(p.what.contains("record"), "{}", p.what);
    assert_eq!(p.sessions, vec![session.0]);
}

#[test]
fn an_unknown_pack_file_and_a_missing_key_are_reported() {
    let (t, _, victim, _) = setup();
    let stray = t
        .repo
        .root()
        .join("packs/ab/ab000000000000000000000000000000.pack");
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"stray").unwrap();
    let index = t.repo.index().unwrap();
    index
        .conn()
        .execute_batch("PRAGMA foreign_keys = OFF")
        .unwrap();
    index
        .conn()
        .execute(
            "UPDATE chunks SET key_id = 999 WHERE id = ?1",
            [victim.0.to_vec()],
        )
        .unwrap();
    let report = check(&t.repo, &opts(&t, false, false)).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("ab000000000000000000000000000000")),
        "{:#?}",
        report.problems
    );
    let p = report
        .problems
        .iter()
        .find(|p| {
            p.chunk.as_deref() == Some(victim.to_hex().as_str()) && p.what.contains("data key 999")
        })
        .unwrap_or_else(|| panic!("{:#?}", report.problems));
    assert_eq!(p.sessions.len(), 1);
}

/// Chunk rows deleted behind the foreign keys' back leave references and roots naming chunk
/// numbers without a row; check names the number, the manifest chunk and the sessions.
#[test]
fn rows_deleted_without_foreign_keys_leave_numbers_that_check_reports() {
    let (t, session, victim, _) = setup();
    let index = t.repo.index().unwrap();
    let conn = index.conn();
    let num = |id: &ChunkId| crate::index::chunk_num(conn, id).unwrap().unwrap();
    let root = index.session_root(session).unwrap();
    let victim_num = num(&victim);
    let root_num = num(&root[0]);
    let delete = |id: &ChunkId| {
        conn.execute("DELETE FROM chunks WHERE id = ?1", [id.0.to_vec()])
            .unwrap_err();
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        conn.execute("DELETE FROM chunks WHERE id = ?1", [id.0.to_vec()])
            .unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    };

    delete(&victim);
    let report = check(&t.repo, &opts(&t, false, false)).unwrap();
    let p = report
        .problems
        .iter()
        .find(|p| p.what.contains(&format!("chunk number {victim_num},")))
        .unwrap_or_else(|| panic!("{:#?}", report.problems));
    assert!(p.what.contains(&root[0].to_hex()), "{}", p.what);
    assert_eq!(p.sessions, vec![session.0]);

    delete(&root[0]);
    let report = check(&t.repo, &opts(&t, false, false)).unwrap();
    let p = report
        .problems
        .iter()
        .find(|p| p.what.contains(&format!("(chunk number {root_num})")))
        .unwrap_or_else(|| panic!("{:#?}", report.problems));
    assert!(p.what.contains("cannot be read"), "{}", p.what);
    assert_eq!(p.sessions, vec![session.0]);
    assert!(
        report.problems.iter().any(|p| p
            .what
            .contains(&format!("from chunk number {root_num}, which is missing"))),
        "{:#?}",
        report.problems
    );
}

#[test]
fn a_wrong_identity_is_an_error_not_a_problem() {
    let (t, _, _, _) = setup();
    let (other, _) = keygen();
    let opts = CheckOptions {
        read_data: false,
        identities: Some(Identities::parse(&other, "other").unwrap()),
    };
    let err = check(&t.repo, &opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongIdentity);
}
