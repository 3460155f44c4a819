//! Glob patterns over session paths: `*` and `?` stay within one path component, `**` crosses
//! any number of them, `[...]` is a character class and `{a,b}` an alternation. A pattern
//! without `/` matches the last component of a path (`*.pdf` finds PDF files at any depth); a
//! pattern with `/` matches the whole path from the session root (a leading `/` is ignored).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, ErrorKind, Result};

/// A set of patterns; a path matches when any pattern does.
#[derive(Debug)]
pub struct Patterns {
    /// Patterns with a `/`, against the whole path.
    whole: GlobSet,
    /// Patterns without one, against the last component.
    last: GlobSet,
}

impl Patterns {
    /// Compile `patterns`; `InvalidInput` naming the pattern that is not a valid glob.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Patterns> {
        let mut whole = GlobSetBuilder::new();
        let mut last = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let bad = |why: String| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("pattern {pattern:?} is not a valid glob: {why}"),
                )
            };
            let trimmed = pattern.trim_start_matches('/');
            if trimmed.is_empty() {
                return Err(bad("it names no path".into()));
            }
            let glob = GlobBuilder::new(trimmed.trim_end_matches('/'))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| bad(e.kind().to_string()))?;
            if trimmed.contains('/') {
                whole.add(glob);
            } else {
                last.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("cannot compile the patterns: {e}"),
                )
            })
        };
        Ok(Patterns {
            whole: build(whole)?,
            last: build(last)?,
        })
    }

    /// Whether the session path `path` matches (the root, the empty path, never does).
    pub fn matches(&self, path: &[u8]) -> bool {
        if path.is_empty() {
            return false;
        }
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        self.last
            .is_match_candidate(&Candidate::new(OsStr::from_bytes(name)))
            || self
                .whole
                .is_match_candidate(&Candidate::new(OsStr::from_bytes(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Patterns {
        Patterns::new(list).unwrap()
    }

    #[test]
    fn a_pattern_without_a_slash_matches_the_last_component() {
        let pats = p(&["*.pdf"]);
        assert!(pats.matches(b"report.pdf"));
        assert!(pats.matches(b"home/ann/docs/report.pdf"));
        assert!(!pats.matches(b"report.pdf/notes.txt"));
        assert!(!pats.matches(b""));
    }

    #[test]
    fn star_stays_in_a_component_and_double_star_crosses() {
        let one = p(&["home/*/report.pdf"]);
        assert!(one.matches(b"home/ann/report.pdf"));
        assert!(!one.matches(b"home/ann/docs/report.pdf"));
        let any = p(&["/home/**/report.pdf"]);
        assert!(any.matches(b"home/ann/report.pdf"));
        assert!(any.matches(b"home/ann/docs/2026/report.pdf"));
        assert!(!any.matches(b"var/ann/report.pdf"));
    }

    #[test]
    fn non_utf8_paths_and_several_patterns() {
        let pats = p(&["*.log", "etc/passwd"]);
        assert!(pats.matches(b"var/\xff\xfe.log"));
        assert!(pats.matches(b"etc/passwd"));
        assert!(!pats.matches(b"x/etc/passwd"));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Patterns::new(&["a[b"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("\"a[b\""), "{err}");
        assert!(Patterns::new(&["/"]).is_err());
    }
}
