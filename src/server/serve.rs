//! `rsbackup serve --client NAME`: one forced-command request, from decision to answer.
//!
//! The binary reads `SSH_ORIGINAL_COMMAND` and `SSH_CONNECTION` and passes them in; this module
//! never reads the environment, prints or exits. It returns a [`ServeOutcome`]: an answer to
//! print, a refusal, a failure, or the rsync process for the binary to `exec`.
//!
//! Every request, before anything else: [`authorize`], then [`record_decision`]: an audit row in
//! the repository's index (the file `audit-log` only when the index cannot be written), then the refusal alert
//! (coalesced; a mail that cannot be sent within a few seconds is queued again and the failure
//! recorded in the alert state, never failing the request). A refused request does nothing else.
//! An allowed one then checks the staging root ([`secure_staging_root`]) before anything else.

use std::ffi::OsString;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use crate::config::{ClientPolicy, ServerConfig, StagingMode};
use crate::error::{Error, ErrorKind, Result};
use crate::format::rename_list;
use crate::repo::Repo;
use crate::server::audit::{
    AUDIT_COMMAND_BYTES, AuditRecord, Recorded, escape_bytes_for_log, record_decision,
};
use crate::server::authz::{Request, authorize_bytes};
use crate::server::hooks::run_hooks;
use crate::server::lock::LeaseFile;
use crate::server::rsync_argv::{RsyncRequest, checked_staging_dir};
use crate::server::rsync_check::{self, check_installed_rsync};
use crate::server::rsync_daemon::{Module, daemon_config};
use crate::server::staging_root::{own_client_staging, secure_staging_root, server_dir};
use crate::server::supervise::{Limits, RsyncRun, RunEnd};
use crate::server::{staging, staging_state};

pub use crate::server::alerts::ALERT_MAIL_TIMEOUT;

/// The request as sshd handed it over.
#[derive(Debug, Clone)]
pub struct ServeInput {
    /// `--client` from the forced command.
    pub client: String,
    /// `SSH_CONNECTION`.
    pub ssh_connection: Option<String>,
    /// `SSH_ORIGINAL_COMMAND`.
    pub ssh_original_command: Option<String>,
    /// `SSH_ORIGINAL_COMMAND`'s bytes when they are not UTF-8 (`ssh_original_command` is then
    /// `None`): refused, and audited escaped byte for byte.
    pub raw_command: Option<Vec<u8>>,
    /// Now.
    pub now: Timestamp,
    /// This server's host name, for alert mails.
    pub host: String,
    /// How long a run's lease lives without `complete`, when it overrides the client's
    /// `lease-hours` (`serve --lease-hours`); `None`: as the configuration says.
    pub lease_timeout: Option<Duration>,
    /// This program, for the detached mirror runs `complete` starts (`[mirrors.NAME]
    /// after-complete = true`); `None` starts none.
    pub exe: Option<std::path::PathBuf>,
}

impl ServeInput {
    /// A request whose lease timeout is the configuration's.
    pub fn new(
        client: &str,
        ssh_connection: Option<&str>,
        ssh_original_command: Option<&str>,
        now: Timestamp,
        host: &str,
    ) -> ServeInput {
        ServeInput {
            client: client.to_owned(),
            ssh_connection: ssh_connection.map(str::to_owned),
            ssh_original_command: ssh_original_command.map(str::to_owned),
            raw_command: None,
            now,
            host: host.to_owned(),
            lease_timeout: None,
            exe: None,
        }
    }
}

/// How a request ends.
#[derive(Debug)]
pub enum ServeOutcome {
    /// Print `stdout` (JSON) and exit with `exit` (0 ok, 3 partial, 1 failed).
    Answer {
        /// The JSON answer.
        stdout: String,
        /// Exit code.
        exit: u8,
    },
    /// Refused: print only [`crate::server::authz::REFUSAL_MESSAGE`], exit non-zero.
    Refused,
    /// Allowed, but it failed: print the error, exit non-zero.
    Failed(Error),
    /// The upload or download: run this confined rsync between the client's channel and the
    /// daemon ([`RsyncRun::run`]), then [`finish_rsync`] with how it ended.
    Rsync(Box<RsyncRun>),
    /// `restore-fetch`: run [`serve_restore_fetch`] on the client's channel.
    RestoreFetch,
}

/// Handle one request whose standard input carries nothing for us.
pub fn serve(config: &ServerConfig, input: &ServeInput) -> ServeOutcome {
    serve_with_body(config, input, &mut std::io::empty())
}

/// Handle one request; `body` is the request's standard input, read only by a request that
/// carries a body (`prepare renames`), and at most its bounded size.
pub fn serve_with_body(
    config: &ServerConfig,
    input: &ServeInput,
    body: &mut dyn std::io::Read,
) -> ServeOutcome {
    let command = input
        .raw_command
        .as_deref()
        .or(input.ssh_original_command.as_deref().map(str::as_bytes));
    let decision = authorize_bytes(
        config,
        &input.client,
        input.ssh_connection.as_deref(),
        command,
        input.now,
    );
    let (decision, machine) = crate::server::machines::gate(config, decision);
    let mut record = AuditRecord::new(
        input.now,
        &input.client,
        input.ssh_connection.as_deref(),
        input.ssh_original_command.as_deref(),
        &decision,
    );
    if let Some(raw) = &input.raw_command {
        record.command = escape_bytes_for_log(raw, AUDIT_COMMAND_BYTES);
    }
    match record_decision(config, &input.host, &record) {
        Recorded::Allowed => {}
        Recorded::Refused => return ServeOutcome::Refused,
        Recorded::Unaudited(e) => return ServeOutcome::Failed(e),
    }
    // Nothing below the staging root may be reachable by another local user, even while an
    // upload writes the client's modes there (see server::staging_root).
    if let Err(e) = secure_staging_root(&config.staging_root) {
        return ServeOutcome::Failed(e);
    }
    if let Some(pending) = machine
        && let Err(e) = pending.commit(config, &input.host, &record)
    {
        return ServeOutcome::Failed(e.context("recording the client's machine"));
    }
    let (Some(policy), Some(request)) = (config.client(&input.client), decision.request) else {
        return ServeOutcome::Failed(Error::new(ErrorKind::Internal, "allowed without a request"));
    };
    let lease_timeout = input.lease_timeout.unwrap_or(policy.lease_timeout);
    let lease = LeaseFile::new(&config.staging_root, &policy.name, lease_timeout);
    let now = input.now.as_second();
    let result = match request {
        Request::Prepare => prepare(config, policy, &lease, now, None),
        Request::PrepareWithRenames => {
            let list = read_rename_list(body);
            let done = prepare(config, policy, &lease, now, Some(list));
            // The count goes into the audit beside the request's own row: moves made in
            // staging are the administrator's to see, like the request that asked for them.
            if let Ok((answer, _)) = &done {
                audit_renames(config, input, &answer["renames"]);
            }
            done
        }
        Request::Complete(args) => {
            let done = crate::server::complete::complete(
                config,
                policy,
                &lease,
                input.now,
                input.exe.as_deref(),
                &args,
            );
            // The ingest the quota stopped (see complete::over_quota).
            if let Err(e) = &done
                && e.kind() == ErrorKind::Refused
            {
                audit_refusal(config, input, e.to_string());
            }
            done
        }
        Request::Sessions => sessions(config, policy),
        Request::Upload(req) => {
            // The upload lock first (see server::lock): `complete` waits for it. The run holds
            // it until rsync and everything it started are gone.
            let upload = match lease.begin_upload(now) {
                Ok((_, upload)) => upload,
                Err(e) => return ServeOutcome::Failed(e),
            };
            return match rsync_run(config, policy, &req, Some((&lease, now))) {
                Ok(mut run) => {
                    run.upload_lock = Some(upload);
                    ServeOutcome::Rsync(Box::new(run))
                }
                Err(e) => ServeOutcome::Failed(e),
            };
        }
        Request::RestoreFetch => return ServeOutcome::RestoreFetch,
        Request::Download(req) => {
            return match rsync_run(config, policy, &req, None) {
                Ok(run) => ServeOutcome::Rsync(Box::new(run)),
                Err(e) => ServeOutcome::Failed(e),
            };
        }
    };
    match result {
        Ok((mut value, exit)) => {
            crate::server::answer::fit(&mut value);
            ServeOutcome::Answer {
                stdout: format!("{value:#}\n"),
                exit,
            }
        }
        Err(e) => ServeOutcome::Failed(e),
    }
}

/// The staging directory, created (0700) on first use, then checked and set back to 0700 (the
/// client's root mode kept in `user.rsync.%stat`: see server::staging_root).
pub(crate) fn staging_dir(
    config: &ServerConfig,
    policy: &ClientPolicy,
) -> Result<std::path::PathBuf> {
    let dir = config.staging_dir(&policy.name);
    if std::fs::symlink_metadata(&dir).is_err() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("creating staging {}", dir.display()), e))?;
    }
    let dir = checked_staging_dir(&config.staging_root, &policy.name)?;
    own_client_staging(&dir)?;
    Ok(dir)
}

/// The rename list on standard input, bounded; the reason when it is unusable (the run then
/// goes on without it: renames only save bandwidth).
fn read_rename_list(
    body: &mut dyn std::io::Read,
) -> std::result::Result<Vec<rename_list::Rename>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    body.take(rename_list::MAX_RENAME_LIST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the rename list: {e}"))?;
    rename_list::decode(&bytes)
}

fn prepare(
    config: &ServerConfig,
    policy: &ClientPolicy,
    lease: &LeaseFile,
    now: i64,
    renames: Option<std::result::Result<Vec<rename_list::Rename>, String>>,
) -> Result<(serde_json::Value, u8)> {
    let dir = staging_dir(config, policy)?;
    if policy.staging_mode == StagingMode::Hollow {
        staging::check_btime(&dir)?;
    }
    let (taken, replaced) = lease.acquire(now)?;
    let release = |e: Error| {
        let _ = lease.release(&taken.token);
        e
    };
    // Under the lease, before anything measures staging: the client's moves, made in staging
    // (and in the placeholder table) so that rsync finds the moved files in place.
    let renamed = match renames {
        None => serde_json::Value::Null,
        Some(Err(why)) => json!({"error": why}),
        Some(Ok(list)) => {
            let table = staging::placeholders_path(&config.repository, policy.name.as_str());
            match crate::server::renames::apply(&dir, &list, &table) {
                Ok(report) => json!(report),
                Err(e) => json!({"error": e.to_string()}),
            }
        }
    };
    // Without a quota the figures only size the free-space check: staging as the last complete
    // left it, when nothing changed it since (server::staging_state), else a walk.
    let remembered = staging_state::read(&staging_state::state_path(
        &config.staging_root,
        policy.name.as_str(),
    ));
    let (apparent, allocated) = match (remembered, policy.quota) {
        (Some(state), None) => (state.apparent, state.allocated),
        _ => staging::staging_usage(&dir).map_err(release)?,
    };
    let free = staging::free_space(&dir).map_err(release)?;
    if let Some(q) = policy.quota
        && allocated > q
    {
        return Err(release(Error::new(
            ErrorKind::Io,
            format!(
                "client {}: staging {} holds {allocated} bytes, over its quota of {q}",
                policy.name,
                dir.display()
            ),
        )));
    }
    // rsync writes each changed file beside the old one before --delete and the rename free
    // anything: in the worst case the staging size again, or up to the quota.
    let needed = policy.quota.unwrap_or(apparent);
    if free < needed {
        return Err(release(Error::new(
            ErrorKind::Io,
            format!(
                "client {}: {free} bytes free on the filesystem of {}, {needed} needed (the staging \
                 size or the quota: rsync may hold old and new copies at once)",
                policy.name,
                dir.display()
            ),
        )));
    }
    let hooks = run_hooks(&policy.prepare_hooks);
    let hooks_ok = hooks.iter().all(|h| h.ok);
    if !hooks_ok {
        let _ = lease.release(&taken.token);
    }
    let value = json!({
        "client": policy.name.as_str(),
        "ok": hooks_ok,
        "token": taken.token,
        "prepared": taken.prepared,
        "replaced_expired_run": replaced.map(|l| l.token),
        "renames": renamed,
        "staging_mode": mode_name(policy.staging_mode),
        // What the client's rsync should know about the receiver's basis files: outside
        // keep_basis none is worth a delta (a placeholder or nothing), so it sends whole files
        // (--whole-file) instead of searching a placeholder for matches that cannot exist.
        "whole_file": policy.staging_mode != StagingMode::Keep,
        "keep_basis": if policy.staging_mode == StagingMode::Hollow {
            policy.keep_basis.iter().map(|p| p.as_str()).collect::<Vec<_>>()
        } else {
            Vec::new()
        },
        "staging_bytes": apparent,
        "staging_allocated_bytes": allocated,
        "free_bytes": free,
        "quota": policy.quota,
        "hooks": hooks,
    });
    Ok((value, if hooks_ok { 0 } else { 1 }))
}

pub(crate) fn mode_name(mode: StagingMode) -> &'static str {
    match mode {
        StagingMode::Keep => "keep",
        StagingMode::Hollow => "hollow",
        StagingMode::Purge => "purge",
    }
}

fn sessions(config: &ServerConfig, policy: &ClientPolicy) -> Result<(serde_json::Value, u8)> {
    let index = Repo::open(&config.repository)?.index()?;
    let list = index.sessions(Some(policy.name.as_str()))?;
    Ok((json!(list), 0))
}

/// The confined rsync for an upload or a download: a daemon-mode rsync whose single module is
/// the client's staging ([`crate::server::rsync_daemon`]), run and watched by
/// [`RsyncRun::run`]. An upload needs the run's lease, and is stopped past the client's quota.
fn rsync_run(
    config: &ServerConfig,
    policy: &ClientPolicy,
    req: &RsyncRequest,
    upload: Option<(&LeaseFile, i64)>,
) -> Result<RsyncRun> {
    if let Some((lease, now)) = upload {
        lease.check_prepared(now)?;
    }
    // Beside the leases, never inside staging: the client cannot read or replace it.
    let runs = config.staging_root.join(".leases");
    server_dir(&runs)?;
    check_installed_rsync(
        &config.rsync_path,
        &rsync_check::record_path(&config.staging_root),
    )?;
    let dir = staging_dir(config, policy)?;
    let mut req = req.clone();
    if policy.staging_mode == StagingMode::Hollow {
        // The receiver would punch holes for zero runs (-S), and a file without blocks is what
        // a placeholder looks like; without -S every sent file arrives allocated.
        req.short.retain(|c| c != 'S');
    }
    let (module, allocated_before) = if req.sender {
        (Module::Download, 0)
    } else {
        // Every user.rsync.* name left after the upload must be this upload's receiver's. The
        // same walk measures staging for the quota watch. Staging as the last complete left it
        // has been stripped by complete's own walk, and without a quota nothing needs the
        // measure (see server::staging_state); the state is forgotten before rsync starts.
        let path = staging_state::state_path(&config.staging_root, policy.name.as_str());
        match (staging_state::take(&path), policy.quota) {
            (Some(_), None) => (Module::Upload, 0),
            _ => {
                let scan = crate::server::staging_clean::strip_transport_xattrs(&dir)?;
                (Module::Upload, scan.allocated)
            }
        }
    };
    let limits = Limits::from_config(&config.rsync_limits);
    let text = daemon_config(
        module,
        &dir,
        rustix::process::geteuid().is_root().then(|| {
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            )
        }),
        limits.idle,
    )?;
    let config_file = runs.join(format!(
        "{}.rsyncd.{}.conf",
        policy.name,
        std::process::id()
    ));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&config_file)
            .map_err(|e| Error::io(format!("writing {}", config_file.display()), e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", config_file.display()), e))?;
    }
    let mut config_arg = OsString::from("--config=");
    config_arg.push(&config_file);
    let mut command = std::process::Command::new(&config.rsync_path);
    command
        .args([
            OsString::from("--server"),
            OsString::from("--daemon"),
            config_arg,
            ".".into(),
        ])
        .env_clear()
        .current_dir(&dir);
    Ok(RsyncRun {
        command,
        config_file,
        module,
        args: req.daemon_args(module.name()),
        staging: dir,
        quota: if req.sender { None } else { policy.quota },
        allocated_before,
        limits,
        upload_lock: None,
    })
}

/// After a watched rsync ([`ServeOutcome::Rsync`]): an upload the watcher stopped over the
/// client's quota records no session (its lease is released, so `complete` refuses), leaves
/// staging as rsync's delayed updates allow (`.~tmp~` directories and rsync's temporary files
/// of this run removed; emptied in `purge` mode), and is audited and mailed to the
/// administrator as a refusal. `started` is when the run began. Other ends need nothing.
pub fn finish_rsync(
    config: &ServerConfig,
    input: &ServeInput,
    end: &RunEnd,
    staging: &std::path::Path,
    started: std::time::SystemTime,
) -> Result<()> {
    let RunEnd::OverQuota { allocated, quota } = end else {
        return Ok(());
    };
    let Some(policy) = config.client(&input.client) else {
        return Ok(());
    };
    let lease = LeaseFile::new(&config.staging_root, &policy.name, policy.lease_timeout);
    if let Ok(taken) = lease.check_prepared(jiff::Timestamp::now().as_second()) {
        lease.release(&taken.token)?;
    }
    let cleaned = if policy.staging_mode == StagingMode::Purge {
        staging::purge(staging).map(drop)
    } else {
        crate::server::staging_clean::remove_unfinished_updates(staging, started)
    };
    let reason = format!(
        "client {}: upload stopped: staging {} reached {allocated} bytes, over its quota of \
         {quota}; no session was recorded, the run's lease was released{}",
        policy.name,
        staging.display(),
        match &cleaned {
            Ok(()) => String::new(),
            Err(e) => format!("; cleaning staging failed: {e}"),
        }
    );
    audit_refusal(config, input, reason);
    cleaned
}

/// After [`ServeOutcome::RestoreFetch`]: answer the client's `restore-fetch` requests on its
/// channel (`crate::restore_fetch::serve`) until it closes it. A request for what is not its
/// own is audited and mailed as a refusal, and ends the connection.
pub fn serve_restore_fetch(
    config: &ServerConfig,
    input: &ServeInput,
    reader: impl std::io::Read,
    writer: impl std::io::Write,
) -> Result<crate::restore_fetch::serve::FetchStats> {
    let repo = Repo::open(&config.repository)?;
    crate::restore_fetch::serve::serve_fetch(&repo, &input.client, reader, writer, &mut |why| {
        audit_refusal(config, input, why)
    })
}

/// An `allow` row saying what `prepare renames` did in staging (sent, applied, skipped), or
/// why the list was not used.
fn audit_renames(config: &ServerConfig, input: &ServeInput, renames: &serde_json::Value) {
    let reason = match renames.get("error") {
        Some(why) => format!(
            "prepare renames: list not used: {}",
            why.as_str().unwrap_or("?")
        ),
        None => format!(
            "prepare renames: {} sent, {} applied, {} skipped, {} placeholder rows moved",
            renames["sent"], renames["applied"], renames["skipped_count"], renames["rows_moved"]
        ),
    };
    let decision = crate::server::authz::Decision {
        allowed: true,
        reason,
        request: None,
        client_ip: None,
        identity: None,
    };
    // Best effort: the renames are made; a lost note must not fail the run.
    let _ = crate::server::audit::write_audit(config, &audit_record(input, &decision));
}

/// An allowed request the server stopped over the client's quota: audited, and mailed to the
/// administrator, as a refusal with `reason`.
fn audit_refusal(config: &ServerConfig, input: &ServeInput, reason: String) {
    let decision = crate::server::authz::Decision::refuse(reason, None, None);
    let _ = record_decision(config, &input.host, &audit_record(input, &decision));
}

/// The audit row of a second decision about the request `input` made, now.
fn audit_record(input: &ServeInput, decision: &crate::server::authz::Decision) -> AuditRecord {
    AuditRecord::new(
        jiff::Timestamp::now(),
        &input.client,
        input.ssh_connection.as_deref(),
        input.ssh_original_command.as_deref(),
        decision,
    )
}
