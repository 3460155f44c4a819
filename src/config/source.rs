//! `sources` of client.toml: each a path (`"/etc"`), or a table with the path and its guards
//! (`{ path = "/srv", must-be-mountpoint = true }`), checked by the client before any transfer
//! (see [`crate::client::guards`]).

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::SourceFile;
use crate::error::Result;

/// What must hold of a source before it is sent; a source that fails its guard is not sent,
/// and the session is `partial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceGuard {
    /// The path must exist (`must-exist`, default true). When false, a missing source is
    /// simply not sent (nothing to back up), and its old copy leaves staging.
    pub must_exist: bool,
    /// The path must be a mount point (`must-be-mountpoint`): an unmounted disk is not backed
    /// up as the empty directory beneath it.
    pub must_be_mountpoint: bool,
    /// The path must not be an empty directory (`must-not-be-empty`).
    pub must_not_be_empty: bool,
    /// Do not descend into other file systems mounted below the path (`one-file-system`):
    /// each mount point below it is excluded.
    pub one_file_system: bool,
}

impl Default for SourceGuard {
    fn default() -> Self {
        SourceGuard {
            must_exist: true,
            must_be_mountpoint: false,
            must_not_be_empty: false,
            one_file_system: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSourceTable {
    path: PathBuf,
    must_exist: Option<bool>,
    must_be_mountpoint: Option<bool>,
    must_not_be_empty: Option<bool>,
    one_file_system: Option<bool>,
}

/// Validate `sources`: absolute paths, at least one; returns the paths and their guards, in
/// order.
pub(super) fn sources(
    src: &SourceFile<'_>,
    raw: Spanned<Vec<Spanned<toml::Value>>>,
) -> Result<(Vec<PathBuf>, Vec<SourceGuard>)> {
    let list_span: Range<usize> = raw.span();
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut guards = Vec::new();
    let mut spans: Vec<Range<usize>> = Vec::new();
    for entry in raw.into_inner() {
        let span = entry.span();
        let bad = |why: String| {
            src.error_at(
                &span,
                format!(
                    "sources: each entry is a path or a table {{ path = \"/srv\", must-exist, \
                     must-be-mountpoint, must-not-be-empty, one-file-system }}: {why}"
                ),
            )
        };
        let (path, guard) = match entry.into_inner() {
            toml::Value::String(p) => (PathBuf::from(p), SourceGuard::default()),
            table @ toml::Value::Table(_) => {
                let t = RawSourceTable::deserialize(table).map_err(|e| bad(e.to_string()))?;
                let d = SourceGuard::default();
                (
                    t.path,
                    SourceGuard {
                        must_exist: t.must_exist.unwrap_or(d.must_exist),
                        must_be_mountpoint: t.must_be_mountpoint.unwrap_or(d.must_be_mountpoint),
                        must_not_be_empty: t.must_not_be_empty.unwrap_or(d.must_not_be_empty),
                        one_file_system: t.one_file_system.unwrap_or(d.one_file_system),
                    },
                )
            }
            other => return Err(bad(format!("found a {}", other.type_str()))),
        };
        if !path.is_absolute() {
            return Err(src.error_at(
                &span,
                format!("sources: {:?} is not an absolute path", path.display()),
            ));
        }
        if !guard.must_exist && (guard.must_be_mountpoint || guard.must_not_be_empty) {
            return Err(src.error_at(
                &span,
                format!(
                    "sources: {}: must-exist = false contradicts must-be-mountpoint and \
                     must-not-be-empty",
                    path.display()
                ),
            ));
        }
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(src.error_at(
                &span,
                format!("sources: {:?} contains \"..\"", path.display()),
            ));
        }
        // Sessions hold every source at its full path: a source inside another would be sent
        // (and stored) twice, and a guard on either could not say what it covers.
        let normal: PathBuf = path.components().collect();
        for (other, other_span) in paths.iter().zip(&spans) {
            let other: PathBuf = other.components().collect();
            if normal.starts_with(&other) || other.starts_with(&normal) {
                let line = src.line_of(other_span);
                return Err(src.error_at(
                    &span,
                    format!(
                        "sources: {} and {} (line {line}) overlap: one is inside the other, so \
                         it would be sent twice; keep the outer one (with excludes for what it \
                         should leave out)",
                        path.display(),
                        other.display()
                    ),
                ));
            }
        }
        paths.push(path);
        guards.push(guard);
        spans.push(span);
    }
    if paths.is_empty() {
        return Err(src.error_at(&list_span, "sources is empty: nothing to back up"));
    }
    Ok((paths, guards))
}

#[cfg(test)]
mod tests {
    use crate::config::ClientConfig;

    fn parse(sources: &str) -> crate::error::Result<ClientConfig> {
        ClientConfig::parse(
            &format!(
                "name = \"web1\"\nsources = [\n{sources}\n]\n[server]\nhost = \"b\"\n\
                 ssh-key = \"/k\"\n[mail]\nfrom = \"a@b.c\"\nerrors-to = [\"a@b.c\"]\n\
                 reports-to = [\"a@b.c\"]\ntransport = \"directory\"\ndirectory = \"/tmp\"\n"
            ),
            std::path::Path::new("/etc/rsbackup/client.toml"),
        )
    }

    #[test]
    fn sources_are_paths_or_tables_with_guards() {
        let cfg = parse(
            "\"/etc\",\n{ path = \"/srv\", must-be-mountpoint = true, one-file-system = true },\n\
             { path = \"/media/usb\", must-exist = false }",
        )
        .unwrap();
        assert_eq!(cfg.sources.len(), 3);
        assert_eq!(cfg.source_guards[0], super::SourceGuard::default());
        assert!(cfg.source_guards[1].must_be_mountpoint && cfg.source_guards[1].one_file_system);
        assert!(cfg.source_guards[1].must_exist);
        assert!(!cfg.source_guards[2].must_exist);
        for (bad, line, words) in [
            (
                "\"/etc\",\n{ path = \"/srv\", must-be-mounted = true }",
                4,
                "must-be-mounted",
            ),
            ("\"/etc\",\n\"srv\"", 4, "not an absolute path"),
            ("\"/etc\",\n42", 4, "each entry is a path or a table"),
            (
                "{ path = \"/srv\", must-exist = false, must-not-be-empty = true }",
                3,
                "contradicts",
            ),
            ("\"/var\",\n\"/etc\",\n\"/var/www/\"", 5, "(line 3) overlap"),
            ("\"/srv/a\",\n\"/\"", 4, "overlap"),
            ("\"/srv/a\",\n\"/srv/a/../b\"", 4, "contains \"..\""),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("client.toml:{line}")) && err.contains(words),
                "{bad}: {err}"
            );
        }
        let err = parse("").unwrap_err().to_string();
        assert!(err.contains("sources is empty"), "{err}");
        // The same last component is no clash: sessions keep full paths.
        assert_eq!(
            parse("\"/var/www\",\n\"/srv/www\"").unwrap().sources.len(),
            2
        );
        assert_eq!(
            parse("\"/var/www\",\n\"/var/wwwx\"").unwrap().sources.len(),
            2
        );
    }
}
