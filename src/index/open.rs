//! Opening `index.db`: read-write with the version check and migration; read-only on a
//! read-only filesystem (`immutable`); read-only on a full disk (format-spec/repository.md
//! "Full disks").

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{BUSY_TIMEOUT, INDEX_VERSION, Index, schema};
use crate::error::{Error, ErrorKind, Result};
use crate::store::space as store_space;

impl Index {
    /// Open an existing index, checking application id and version.
    pub fn open(path: &Path) -> Result<Index> {
        if !path.is_file() {
            return Err(Error::corrupt(format!(
                "index {} is missing: the repository is damaged",
                path.display()
            )));
        }
        if on_read_only_filesystem(path) {
            return Index::open_read_only(path);
        }
        let root = repository_dir(path);
        match Index::open_writable(path) {
            Ok(index) => Ok(index),
            // SQLite cannot create or grow the `-shm` file on a full disk even to read; the
            // read-only modes need no new bytes, and every write through them fails (and is
            // then explained as the full disk it is).
            Err(e) if store_space::is_full(root) => Index::open_on_full_disk(path, e),
            Err(e) => Err(e),
        }
    }

    /// Open the index read-write, migrating an old schema.
    fn open_writable(path: &Path) -> Result<Index> {
        // Without SQLITE_OPEN_CREATE a vanished file is an error, not a fresh empty database.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| Error::from(e).context(format!("opening index {}", path.display())))?;
        let mut index = Index {
            conn,
            path: path.to_path_buf(),
            version: INDEX_VERSION,
            on_full_disk: false,
        };
        let version = schema::check_version(&index.conn, path)?;
        if version == 1 {
            // Foreign keys are still off on this fresh connection (configure turns them on).
            index
                .conn
                .busy_timeout(BUSY_TIMEOUT)
                .map_err(|e| Error::from(e).context(format!("opening index {}", path.display())))?;
            schema::migrate_v1(&index.conn, path)?;
        }
        if version <= 2 {
            index
                .conn
                .busy_timeout(BUSY_TIMEOUT)
                .map_err(|e| Error::from(e).context(format!("opening index {}", path.display())))?;
            schema::migrate_v2(&index.conn, path)?;
        }
        index.version = INDEX_VERSION;
        index.configure()?;
        Ok(index)
    }

    /// Open an index that cannot be written, such as a repository copy on a read-only disk
    /// restored from on the bad day: SQLite's `immutable` mode, which needs no `-shm` file. A
    /// non-empty write-ahead log would hold commits that mode cannot see, so it is refused with
    /// advice rather than read wrongly. Every write through this connection fails.
    pub fn open_read_only(path: &Path) -> Result<Index> {
        let wal = sibling(path, "-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "index {} is on a read-only filesystem and its write-ahead log {} holds \
                     commits not yet merged: copy the repository to writable storage and run the \
                     command there",
                    path.display(),
                    wal.display()
                ),
            ));
        }
        Index::open_uri(path, "immutable=1")
    }

    /// Open the index on a disk with no room left. Without a write-ahead log (or an empty
    /// one) SQLite's `immutable` mode reads the database file alone. A log with commits is
    /// read with `mode=ro&readonly_shm=1`: SQLite then opens the `-shm` file read-only and, when
    /// its content cannot be trusted, rebuilds the log's index in its own memory (this needs
    /// the `-shm` file to exist; creating an empty file needs no data block).
    fn open_on_full_disk(path: &Path, err: Error) -> Result<Index> {
        let root = repository_dir(path);
        let wal = sibling(path, "-wal");
        let result = if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            let shm = sibling(path, "-shm");
            if !shm.exists() {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&shm);
            }
            Index::open_uri(path, "mode=ro&readonly_shm=1")
        } else {
            Index::open_uri(path, "immutable=1")
        };
        let result = result.map(|mut index| {
            index.on_full_disk = true;
            index
        });
        result.map_err(|e| {
            store_space::disk_full(
                root,
                format_args!(
                    "index {} cannot be opened even read-only ({e}; opening it read-write: {err})",
                    path.display()
                ),
            )
        })
    }

    /// Open read-only with the URI parameters `query`, and check the version.
    fn open_uri(path: &Path, query: &str) -> Result<Index> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let uri = format!("file:{}?{query}", uri_escape(&path.to_string_lossy()));
        let conn = Connection::open_with_flags(&uri, flags).map_err(|e| {
            Error::from(e).context(format!("opening index {} read-only", path.display()))
        })?;
        let mut index = Index {
            conn,
            path: path.to_path_buf(),
            version: INDEX_VERSION,
            on_full_disk: false,
        };
        index.version = schema::check_version(&index.conn, path)?;
        index
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| Error::from(e).context(format!("configuring index {}", path.display())))?;
        Ok(index)
    }
}

/// The directory that holds the index (the repository's root).
pub(super) fn repository_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `index.db` + `suffix` (`-wal`, `-shm`) beside the index.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    path.with_file_name(format!(
        "{}{suffix}",
        path.file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy())
    ))
}

/// True when the filesystem holding `path` is mounted read-only.
fn on_read_only_filesystem(path: &Path) -> bool {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    rustix::fs::statvfs(dir)
        .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Percent-escape the characters that are special in an SQLite URI path.
fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}
