//! The client's cron run, `rsbackup run`: hooks, `prepare`, rsync over ssh, `complete`, and the
//! job and error reports.
//!
//! [`job::run`] is the whole run: it takes the client lock ([`lock`]), runs the init hooks
//! ([`hooks`]), asks the server to `prepare` and uploads with rsync ([`remote`] builds both
//! commands; [`crate::process`] runs every child with a time limit and bounded output), asks it to
//! `complete`, runs the cleanup hooks whatever happened, and returns a [`job::RunResult`]: a
//! status the binary turns into an exit code, the job report, and an error report when anything
//! failed. [`stats`] reads rsync's `--stats`; [`diagnosis`] turns exit codes and ssh's messages
//! into words and advice; [`summary`] fills the reports. [`summary::send_reports`] mails them; a mail
//! that cannot be sent is returned to the caller, not hidden.
//!
//! Nothing here prints, exits or reads the environment: the host name, the lock path and the
//! timeouts come in through [`job::RunOptions`].

pub mod diagnosis;
pub mod dry_run;
pub mod guards;
pub mod hooks;
pub mod identity;
pub mod job;
pub mod lock;
pub mod remote;
pub mod renames;
pub mod resume;
pub mod stats;
pub mod summary;
pub mod upload_plan;

pub use job::{RunOptions, RunResult, RunStatus, run};
pub use summary::send_reports;
