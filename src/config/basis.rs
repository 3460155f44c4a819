//! `keep-basis` patterns: the staged files a `hollow` client keeps whole in staging, so that
//! rsync can send them as deltas (see docs/configuration.md "Staging modes").
//!
//! The patterns are matched by the server (which files it leaves unhollowed) and handed to the
//! client in `prepare`'s answer, whose rsync uses them as filter rules. Both must pick the same
//! files, so the syntax is the part of rsync's filter patterns both sides agree on: `*` (any
//! run of characters but `/`), `**` (any run, `/` included), `?` (one character but `/`), and
//! literal characters. A pattern that starts with `/` is matched from the staging root; one
//! that contains `/` or `**` elsewhere is matched against the path's trailing components; any
//! other against the file's name. Character classes (`[...]`), backslashes and a trailing `/`
//! (directories) are refused.

/// At most this many patterns per client: each one is an rsync filter rule on the command line.
pub const MAX_BASIS_PATTERNS: usize = 64;

/// At most this many bytes per pattern.
pub const MAX_BASIS_PATTERN_BYTES: usize = 200;

/// One checked `keep-basis` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasisPattern {
    text: String,
}

impl BasisPattern {
    /// Check one pattern; the reason for a refusal is returned.
    pub fn parse(text: &str) -> Result<BasisPattern, String> {
        let bad = |why: &str| Err(format!("keep-basis pattern {text:?} {why}"));
        if text.is_empty() || text == "/" {
            return bad("is empty");
        }
        if text.len() > MAX_BASIS_PATTERN_BYTES {
            return bad(&format!("is longer than {MAX_BASIS_PATTERN_BYTES} bytes"));
        }
        if text.chars().any(char::is_control) {
            return bad("contains a control character");
        }
        if text.contains(['[', ']', '\\']) {
            return bad("uses [ ] or \\, which keep-basis does not support (use * ** ?)");
        }
        if text.ends_with('/') {
            return bad("ends with '/': keep-basis names files, not directories (write DIR/**)");
        }
        if text.split('/').any(|c| c == "..") {
            return bad("contains a '..' component");
        }
        Ok(BasisPattern {
            text: text.to_owned(),
        })
    }

    /// The pattern as written (and as rsync gets it).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does the staged file at `path` (relative to the staging root, `/`-separated) match?
    pub fn matches(&self, path: &[u8]) -> bool {
        let pat = self.text.as_bytes();
        if let Some(anchored) = pat.strip_prefix(b"/") {
            return glob(anchored, path);
        }
        if !self.text.contains('/') && !self.text.contains("**") {
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
            return glob(pat, name);
        }
        // Matched against the path's trailing components.
        let mut start = 0;
        loop {
            if glob(pat, &path[start..]) {
                return true;
            }
            match path[start..].iter().position(|&b| b == b'/') {
                Some(i) => start += i + 1,
                None => return false,
            }
        }
    }
}

/// Does the whole of `text` match `pat` (`*`, `**`, `?`, literals)?
fn glob(pat: &[u8], text: &[u8]) -> bool {
    match pat {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        [b'*', rest @ ..] => {
            let run = text.iter().position(|&b| b == b'/').unwrap_or(text.len());
            (0..=run).any(|i| glob(rest, &text[i..]))
        }
        [b'?', rest @ ..] => matches!(text, [c, tail @ ..] if *c != b'/' && glob(rest, tail)),
        [p, rest @ ..] => matches!(text, [c, tail @ ..] if c == p && glob(rest, tail)),
    }
}

/// Does any of `patterns` match `path`?
pub fn any_matches(patterns: &[BasisPattern], path: &[u8]) -> bool {
    patterns.iter().any(|p| p.matches(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        BasisPattern::parse(p).unwrap().matches(path.as_bytes())
    }

    #[test]
    fn names_paths_and_anchors_match_as_rsync_filters_do() {
        assert!(m("*.sql", "db/dump.sql"));
        assert!(m("*.sql", "dump.sql"));
        assert!(!m("*.sql", "db.sql/x"));
        assert!(m("vm/*.img", "host/vm/a.img"));
        assert!(m("vm/*.img", "vm/a.img"));
        assert!(!m("vm/*.img", "vm/sub/a.img"));
        assert!(!m("vm/*.img", "xvm/a.img"));
        assert!(m("vm/**", "vm/sub/a.img"));
        assert!(m("/www/big?.bin", "www/big1.bin"));
        assert!(!m("/www/big?.bin", "x/www/big1.bin"));
        assert!(!m("/www/big?.bin", "www/big12.bin"));
        assert!(m("**.qcow2", "a/b/c.qcow2"));
    }

    #[test]
    fn patterns_both_sides_could_read_differently_are_refused() {
        for bad in ["", "/", "a[0-9]", "a\\*", "dir/", "../x", "a/../b", "x\ny"] {
            let e = BasisPattern::parse(bad).unwrap_err();
            assert!(e.contains("keep-basis pattern"), "{bad:?}: {e}");
        }
        assert!(BasisPattern::parse(&"a".repeat(MAX_BASIS_PATTERN_BYTES + 1)).is_err());
    }
}
