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

/// One entry of `sources` as written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSource {
    /// `"/etc"`.
    Path(PathBuf),
    /// `{ path = "/srv", must-be-mountpoint = true }`.
    Table(RawSourceTable),
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
    let mut paths = Vec::new();
    let mut guards = Vec::new();
    for entry in raw.into_inner() {
        let span = entry.span();
        let parsed = RawSource::deserialize(entry.into_inner()).map_err(|e| {
            src.error_at(
                &span,
                format!(
                    "sources: each entry is a path or a table {{ path = \"/srv\", must-exist, \
                     must-be-mountpoint, must-not-be-empty, one-file-system }}: {e}"
                ),
            )
        })?;
        let (path, guard) = match parsed {
            RawSource::Path(p) => (p, SourceGuard::default()),
            RawSource::Table(t) => {
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
        paths.push(path);
        guards.push(guard);
    }
    if paths.is_empty() {
        return Err(src.error_at(&list_span, "sources is empty: nothing to back up"));
    }
    Ok((paths, guards))
}
