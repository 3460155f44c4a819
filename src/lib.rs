//! # rsbackup
//!
//! A push-only, encrypted, deduplicating backup system. Clients behind firewalls push their files
//! with rsync over ssh into a staging area on the server; the server's `complete` step ingests
//! that staging area into a content-addressed, encrypted store, and `restore` brings any session
//! back byte for byte.
//!
//! The modules read like the architecture, lowest layer first; a module only uses the ones above
//! it in this list:
//!
//! * [`error`], [`ids`], [`progress`]: the error type, identifiers, and the callback through
//!   which long operations report how far they are.
//! * [`format`]: bytes only: one file per document in `format-spec/`.
//! * [`crypto`], [`chunking`]: key derivation, age wrapping, the chunk envelope; keyed FastCDC.
//! * [`index`], [`store`], [`repo`]: the SQLite index, pack files, and the repository that ties
//!   them together (init, open, locks, cleanup of dead writers).
//! * [`files_cache`], [`ingest`], [`reader`], [`restore`], [`check`]: the operations.
//! * [`browse`], [`mount`]: looking into sessions without restoring them (find, diff; a
//!   read-only FUSE view).
//! * [`retention`], [`gc`]: which sessions to keep, and roll-off: forget, collect, repack.
//! * [`mirror`]: the chunk-level offsite mirror and its wire protocol (both sides).
//!
//! * [`config`], [`report`], [`process`], [`hooks`], [`server`]: the push path (configuration,
//!   mailed reports, child processes with a time limit and bounded output, the hooks both sides
//!   run, the server's forced command).
//! * [`status`], [`watch`]: the fleet as the server sees it (status table, status page,
//!   metrics, repository statistics), and the timer run that mails overdue clients and digests.
//! * [`client`]: the client's cron run (`rsbackup run`): hooks, ssh, rsync, reports.
//! * [`fuzz`]: one fuzz target per decoder of outside bytes, shared by both fuzz runners.
//!
//! The library never prints, exits, or reads the environment: the binary does.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod browse;
pub mod check;
pub mod chunking;
pub mod client;
pub mod config;
pub mod crypto;
pub mod error;
pub mod files_cache;
pub mod format;
pub mod fuzz;
pub mod gc;
pub mod hooks;
pub mod ids;
pub mod index;
pub mod ingest;
pub mod keys;
pub mod mirror;
pub mod mount;
pub mod process;
pub mod progress;
pub mod reader;
pub mod repair;
pub mod repo;
pub mod report;
pub mod restore;
pub mod restore_fetch;
pub mod retention;
pub mod server;
pub mod status;
pub mod store;
pub mod watch;

pub use error::{Error, ErrorKind, Result};
