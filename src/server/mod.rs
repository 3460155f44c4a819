//! The server side: the ssh forced command `rsbackup serve`: authorization, rsync argv
//! validation, prepare/complete, audit.
//!
//! The order of one request, as the `serve` entry point runs it: [`authz::authorize`] decides
//! from the configuration, the forced command's client name, `SSH_CONNECTION`,
//! `SSH_ORIGINAL_COMMAND` and the time; an [`audit::AuditRecord`] is appended whatever the
//! decision; a refusal prints only [`authz::REFUSAL_MESSAGE`] and goes to the administrator
//! through [`alerts`]; an allowed upload execs the argv from [`rsync_argv`] with a cleared
//! environment, after [`rsync_version`] has vouched for the installed rsync.

pub mod alerts;
pub mod audit;
pub mod authorized_keys;
pub mod authz;
pub mod rsync_argv;
pub mod rsync_version;
