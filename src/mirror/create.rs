//! Creating a mirror repository on first contact: the primary's `repository.toml` and
//! `keys/secret.age` verbatim, an empty index with the same repository id, and no `keys/secret`.
//!
//! Everything is built in a sibling directory `.NAME.mirror-creating` and renamed into place
//! last, so an interrupted first contact leaves no half repository at the configured path (the
//! leftover sibling is removed by the next attempt).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::repository::RepoConfig;
use crate::index::Index;
use crate::store::durable::{create_dir_synced, sync_dir, write_atomic, write_new_synced};

/// The content of `keys/mirror`.
pub(super) const MIRROR_MARKER_TEXT: &[u8] =
    b"rsbackup mirror: this repository holds no keys/secret and never ingests\n";

/// Mark an existing mirror made before the marker (no `keys/secret`, no `keys/mirror`).
pub(super) fn mark_mirror(root: &Path) -> Result<()> {
    let marker = root.join("keys").join(crate::repo::MIRROR_MARKER);
    if marker.exists() || root.join("keys/secret").exists() {
        return Ok(());
    }
    write_new_synced(&marker, MIRROR_MARKER_TEXT, 0o644)
}

fn creating_path(root: &Path) -> Result<PathBuf> {
    let name = root.file_name().ok_or_else(|| {
        Error::invalid(format!(
            "mirror repository path {} has no final component",
            root.display()
        ))
    })?;
    Ok(root.with_file_name(format!(".{}.mirror-creating", name.to_string_lossy())))
}

/// Whether `root` is missing or an empty directory (a mirror may be created there).
pub(super) fn is_vacant(root: &Path) -> Result<bool> {
    match std::fs::read_dir(root) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(format_args!("reading {}", root.display()), e)),
    }
}

/// Create the mirror repository at `root` (missing or empty) from the primary's files.
pub(super) fn create_mirror(root: &Path, repository_toml: &str, secret_age: &[u8]) -> Result<()> {
    let config = RepoConfig::parse(repository_toml, "the primary's repository.toml")?;
    let tmp = creating_path(root)?;
    match std::fs::remove_dir_all(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format_args!("removing {}", tmp.display()), e)),
    }
    let parent = root
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::invalid(format!(
            "cannot create mirror repository {}: {} is not a directory",
            root.display(),
            parent.display()
        )));
    }
    create_dir_synced(&tmp)?;
    for dir in ["keys", "locks", "packs", "cache", "tmp"] {
        create_dir_synced(&tmp.join(dir))?;
    }
    let keys = tmp.join("keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format_args!("restricting {}", keys.display()), e))?;
    write_new_synced(&tmp.join("lock"), b"", 0o644)?;
    write_new_synced(&keys.join("secret.age"), secret_age, 0o600)?;
    // Says why there is no keys/secret, so that `check` flags a primary that lost its own.
    write_new_synced(
        &keys.join(crate::repo::MIRROR_MARKER),
        MIRROR_MARKER_TEXT,
        0o644,
    )?;
    drop(Index::create(&tmp.join("index.db"), &config.id)?);
    write_atomic(
        &tmp.join("repository.toml"),
        repository_toml.as_bytes(),
        0o644,
    )?;
    // rename(2) replaces an empty directory atomically.
    std::fs::rename(&tmp, root).map_err(|e| {
        Error::io(
            format_args!("moving {} to {}", tmp.display(), root.display()),
            e,
        )
    })?;
    sync_dir(parent)
}
