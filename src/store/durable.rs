//! Small durability helpers (format-spec/repository.md "Durability assumptions"): `fsync` of
//! directories after creating entries in them, and atomic replacement of small files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// `fsync` a directory, so that entries created or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format_args!("syncing directory {}", dir.display()), e))
}

/// Create a directory (not its parents) and make its entry durable. An existing directory is
/// fine: another writer may have created it a moment ago, and it is synced again regardless.
pub fn create_dir_synced(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => {
            return Err(Error::io(
                format_args!("creating directory {}", dir.display()),
                e,
            ));
        }
    }
    sync_dir(dir.parent().unwrap_or(Path::new(".")))
}

/// Write a new file that must not exist yet, with `mode`, and make it durable (file and entry).
pub fn write_new_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(format_args!("writing {}", path.display()), e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replace `path` atomically: write a temporary file beside it, `fsync` it, `rename` it over
/// `path`, then `fsync` the directory. A crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} has no file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        hex::encode(crate::crypto::random_array::<8>())
    ));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format_args!("writing {}", path.display()), e));
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}
