//! Small files kept inline in the manifest (format-spec/manifest.md "Inline content"): which
//! files are, that they store no chunk and no files-cache row, and that restore and
//! `check --read-data` handle sessions made of them.

use std::fs;

use super::tests::{age_tree, content, data_chunks, entries, find, opts, write};
use super::*;
use crate::format::manifest::{Extent, INLINE_WRITE_MAX};
use crate::restore::testutil::{TestRepo, noise};

fn extents_of(e: &Entry) -> &[Extent] {
    match &e.body {
        Body::File { extents, .. } => extents,
        other => panic!("{:?} is not a file", other),
    }
}

#[test]
fn files_up_to_the_threshold_are_inline_and_store_no_chunk() {
    let t = TestRepo::new();
    let src = t.path("src");
    let max = INLINE_WRITE_MAX as usize;
    let files: Vec<(String, Vec<u8>)> = [1, 10, 300, max, max + 1, 5000]
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("d/f{i}"), noise(i as u64 + 70, *n)))
        .collect();
    for (name, data) in &files {
        write(&src.join(name), data);
    }
    write(&src.join("d/empty"), b"");
    age_tree(&src);
    let first = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(first.state, SessionState::Complete, "{:?}", first.errors);
    let got = entries(&t, first.session_id());
    for (name, data) in &files {
        let e = find(&got, name.as_bytes());
        let inline = extents_of(e).iter().all(Extent::is_inline);
        assert_eq!(inline, data.len() <= max, "{name} of {} bytes", data.len());
        assert_eq!(&content(&t, e), data, "{name}");
    }
    assert!(extents_of(find(&got, b"d/empty")).is_empty());
    // Only the two files over the threshold are data chunks.
    assert_eq!(data_chunks(&t), 2);

    // The files cache holds no row for an inline file: it is read again, the others are not.
    let again = ingest(&t.repo, &opts("c", &src)).unwrap();
    assert_eq!(again.files_read, 4, "{again:?}");
    let cache = fs::read(crate::files_cache::cache_path(t.repo.root(), "c")).unwrap();
    for (name, data) in files.iter().filter(|(_, d)| (10..=max).contains(&d.len())) {
        assert!(
            !cache.windows(data.len()).any(|w| w == data.as_slice()),
            "{name}'s content is in the files cache"
        );
    }
    assert_eq!(entries(&t, again.session_id()), got);

    // Restore gives the bytes back; check --read-data finds nothing wrong.
    let target = t.path("restored");
    let report = t.restore_all(again.session_id(), &target);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for (name, data) in &files {
        assert_eq!(&fs::read(target.join(name)).unwrap(), data, "{name}");
    }
    let checked = crate::check::check(
        &t.repo,
        &crate::check::CheckOptions {
            read_data: true,
            identities: Some(t.identities()),
        },
    )
    .unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
}
