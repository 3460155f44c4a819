//! Integration tests: cli_basic. The whole path through the binary (init, ingest, sessions, ls,
//! cat, restore, compare), and every bad input with its exit code and one-line message.

use crate::common::*;

#[test]
fn helpers_build_and_compare_a_sample_tree() {
    let dir = tempdir();
    let a = dir.path().join("a");
    let info = sample_tree(&a);
    assert!(info.files > 60, "sample tree too small: {info:?}");
    assert!(compare_trees(&a, &a).is_empty());
    // A copy made by hand differs in ways the comparison must see.
    let b = dir.path().join("b");
    std::fs::create_dir(&b).unwrap();
    write_file(&b.join("hello.txt"), b"hello, world?\n");
    let diffs = compare_trees(&a, &b);
    assert!(diffs.iter().any(|d| d.contains("only in")), "{diffs:?}");
    assert!(diffs.iter().any(|d| d.contains("hello.txt")), "{diffs:?}");
}
