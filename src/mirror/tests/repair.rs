//! Repair on the mirror: damage found by `check --read-data` there, good copies from the primary.

use super::*;

#[test]
fn damage_found_by_check_is_repaired_from_the_primary() {
    let t = TestRepo::new();
    session(&t, 3, 300_000);
    let dest = t.path("mirror");
    mirror_ok(&t, &dest);
    let mirror = Repo::open(&dest).unwrap();
    let index = mirror.index().unwrap();
    let pack = index.packs().unwrap().into_iter().next().unwrap();
    let loc = index.chunks_in_pack(pack.row).unwrap().remove(1);
    let path = crate::store::pack_path(&dest, &pack.name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(loc.offset + 60) as usize] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let found = check(
        &mirror,
        &CheckOptions {
            read_data: true,
            identities: None,
        },
    )
    .unwrap();
    assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
    let report = mirror_ok(&t, &dest);
    assert_eq!(report.repaired, 1);
    assert_eq!(report.chunks_sent, 0);
    let clean = check(
        &mirror,
        &CheckOptions {
            read_data: true,
            identities: Some(t.identities()),
        },
    )
    .unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    let left: i64 = index
        .conn()
        .query_row("SELECT count(*) FROM damaged_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn a_lost_pack_file_is_repaired_and_its_row_dropped() {
    let t = TestRepo::new();
    session(&t, 3, 300_000);
    session(&t, 4, 300_000);
    let dest = t.path("mirror");
    mirror_ok(&t, &dest);
    let mirror = Repo::open(&dest).unwrap();
    let index = mirror.index().unwrap();
    let packs = index.packs().unwrap();
    let lost = packs.first().unwrap();
    let lost_chunks = index.chunks_in_pack(lost.row).unwrap().len() as u64;
    assert!(lost_chunks > 0);
    std::fs::remove_file(crate::store::pack_path(&dest, &lost.name)).unwrap();
    let plain = CheckOptions {
        read_data: true,
        identities: None,
    };
    assert!(!check(&mirror, &plain).unwrap().problems.is_empty());
    let report = mirror_ok(&t, &dest);
    assert_eq!(report.repaired, lost_chunks, "{report:?}");
    let after = check(&mirror, &plain).unwrap();
    assert!(after.problems.is_empty(), "{:?}", after.problems);
    assert!(index.packs().unwrap().iter().all(|p| p.row != lost.row));
    // Nothing left to repair: the next run sends nothing.
    let again = mirror_ok(&t, &dest);
    assert_eq!((again.repaired, again.chunks_sent), (0, 0));
}
