//! The server side: the ssh forced command `rsbackup serve`: authorization, rsync argv
//! validation, prepare/complete, audit.
//!
//! The order of one request, as [`serve::serve`] runs it: [`authz::authorize`] decides
//! from the configuration, the forced command's client name, `SSH_CONNECTION`,
//! `SSH_ORIGINAL_COMMAND` and the time; an audit row is written to the repository's index
//! whatever the decision ([`audit::AuditRecord`]); a refusal prints only
//! [`authz::REFUSAL_MESSAGE`] and goes to the administrator through [`alerts`]; an allowed upload
//! or download runs rsync confined to the client's staging as a single-module daemon
//! ([`rsync_daemon`], with the options [`rsync_argv`] validated), watched by [`supervise`]
//! (limits, hangup, quota), after [`rsync_version`] has vouched for the installed rsync (once
//! per binary: [`rsync_check`]); `prepare` takes the run's lease ([`lock`]) and runs the
//! [`hooks`]; `complete` ingests staging and leaves it as its [`staging`] mode says. Every
//! allowed request first checks the staging root, and the server keeps its modes
//! ([`staging_root`]).
//!
//! On an offsite mirror box, [`mirror_serve`] is the forced command of the primary's key: its
//! own decision ([`mirror_serve::authorize_mirror`]), then the same audit row and refusal alert
//! ([`audit::record_decision`]), then the mirror protocol.

/// Exit code of `rsbackup serve` and `mirror-serve` for a refused request: what a client's ssh
/// returns when the server refused it (docs/usage.md "Exit codes").
pub const REFUSED_EXIT: u8 = 16;

pub mod alerts;
pub mod answer;
pub mod audit;
pub mod authorized_keys;
pub mod authz;
mod complete;
pub mod hooks;
pub mod lock;
pub mod machines;
pub mod mirror_serve;
pub mod renames;
pub mod rsync_argv;
pub mod rsync_check;
pub mod rsync_daemon;
pub mod rsync_version;
pub mod serve;
pub mod staging;
pub mod staging_clean;
pub mod staging_root;
pub mod staging_state;
pub mod supervise;
