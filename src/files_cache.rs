//! The per-client files cache (format-spec/files-cache.md): proves a file unchanged by size,
//! mtime, ctime, inode and device, so an unchanged tree ingests at the cost of a walk.
