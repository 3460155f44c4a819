//! Looking into sessions without restoring them: which sessions hold paths matching a glob
//! ([`find`]) and what changed between two sessions ([`diff`]). Both stream manifests, one
//! manifest chunk at a time, so memory stays bounded whatever the sessions' sizes.

pub mod diff;
pub mod find;

/// Whether `path` is `prefix` or below it (the empty prefix is the root: everything).
pub fn under(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.len() > prefix.len() && path.starts_with(prefix) && path[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_whole_components_only() {
        assert!(under(b"a/b", b""));
        assert!(under(b"a/b", b"a"));
        assert!(under(b"a", b"a"));
        assert!(!under(b"ab", b"a"));
        assert!(!under(b"a", b"a/b"));
    }
}
