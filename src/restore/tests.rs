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
    assert!(sel.is_ancestor(b"var/log") == false);
    assert!(sel.is_ancestor(b"var"));
    assert!(!sel.is_ancestor(b"et"));
    let all = Selection::new(&[b"x".to_vec(), b"/".to_vec()]).unwrap();
    assert!(all.is_all());
    assert!(all.selects(b"anything/at/all"));
}
