//! The server side: the ssh forced command `rsbackup serve`: authorization, rsync argv
//! validation, prepare/complete, audit.

pub mod audit;
pub mod rsync_argv;
pub mod rsync_version;
