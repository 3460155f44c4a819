//! `complete`: ingest the client's staging area (decoding what the rsync receiver wrote), leave
//! staging as its mode says, run the complete hooks, roll off old sessions, and answer with the
//! session's statistics. The run's lease is released whatever happens.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use serde_json::json;

use crate::config::{ClientPolicy, ServerConfig, StagingMode};
use crate::error::{Error, ErrorKind, Result};
use crate::format::complete_args::CompleteArgs;
use crate::index::SessionState;
use crate::ingest::staging::{IngestedFile, Placeholders, StagingDecode};
use crate::ingest::{IngestOptions, ingest_staged};
use crate::repo::Repo;
use crate::server::hooks::run_hooks;
use crate::server::lock::{LeaseFile, UPLOAD_WAIT};
use crate::server::serve::{mode_name, staging_dir};
use crate::server::{staging, staging_state};

/// Run `complete` for `policy`'s client. Returns the JSON answer and the exit code (0 all
/// done; 3 the session was recorded but something was left out or failed afterwards).
pub(crate) fn complete(
    config: &ServerConfig,
    policy: &ClientPolicy,
    lease: &LeaseFile,
    now: Timestamp,
    exe: Option<&std::path::Path>,
    args: &CompleteArgs,
) -> Result<(serde_json::Value, u8)> {
    let (run, running) = lease.begin_complete(now.as_second())?;
    // No new upload starts once the lease is `completing`; wait for those still writing.
    match lease.wait_for_uploads(UPLOAD_WAIT) {
        Ok(true) => {}
        Ok(false) => {
            let _ = lease.release(&run.token);
            drop(running);
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "client {}: an upload was still writing to staging after {} s; nothing was \
                     ingested and the run is ended: the next run sends again, and its complete \
                     waits for that upload too",
                    policy.name,
                    UPLOAD_WAIT.as_secs()
                ),
            ));
        }
        Err(e) => {
            let _ = lease.release(&run.token);
            return Err(e);
        }
    }
    let result = complete_run(config, policy, now, &run.token, exe, args);
    let released = lease.release(&run.token);
    drop(running);
    let answer = result?;
    released?;
    Ok(answer)
}

fn complete_run(
    config: &ServerConfig,
    policy: &ClientPolicy,
    now: Timestamp,
    token: &str,
    exe: Option<&std::path::Path>,
    args: &CompleteArgs,
) -> Result<(serde_json::Value, u8)> {
    let clock = Instant::now();
    let client = policy.name.as_str();
    let dir = staging_dir(config, policy)?;
    // Staging changes below: the state the last complete left no longer holds (recorded again
    // at the end of the staging step).
    let state_path = staging_state::state_path(&config.staging_root, client);
    staging_state::forget(&state_path)?;
    let hollow = policy.staging_mode == StagingMode::Hollow;
    if hollow {
        staging::check_btime(&dir)?;
    }
    let repo = Repo::open(&config.repository)?;
    let mut notes: Vec<String> = Vec::new();
    // Where complete's time goes, step by step (the answer's `step_seconds`).
    let mut steps = serde_json::Map::new();
    let mut lap = Instant::now();
    let mut step = |name: &str| {
        steps.insert(name.to_owned(), json!(lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    let table_path = staging::placeholders_path(repo.root(), client);
    // Placeholders left by an earlier hollow run stay placeholders whatever the mode is now:
    // as long as the table exists it is used, so that they are never read as content.
    let use_table = hollow || table_path.exists();
    let old = if use_table {
        let index = repo.index()?;
        staging::load_placeholders(&table_path, &index).unwrap_or_else(|e| {
            // Without the table every placeholder is sent again: slower, never wrong.
            notes.push(format!("placeholder table ignored: {e}"));
            Placeholders::default()
        })
    } else {
        Placeholders::default()
    };
    let old = Arc::new(old);
    step("placeholders");
    let (tx, rx) = crossbeam_channel::unbounded::<IngestedFile>();
    let collector = std::thread::spawn(move || rx.into_iter().collect::<Vec<_>>());
    let (left_out, stale) = left_out_of_session(&dir, args)?;
    let decode = StagingDecode {
        munged_links: true,
        fake_super: true,
        placeholders: use_table.then(|| Arc::clone(&old)),
        ingested: hollow.then_some(tx),
        left_out,
        transfer_problem: args.transfer_problem(),
        new_bytes_limit: policy.quota,
    };
    let opts = IngestOptions {
        client: client.to_owned(),
        source: dir.clone(),
        threads: None,
        files_cache: true,
        // A client that sent full paths: the session records its sources as absolute paths
        // (none named for the whole tree, or when the list did not fit on the command line).
        sources: args.full_paths.then(|| {
            args.sources
                .iter()
                .flatten()
                .map(|s| [&b"/"[..], s].concat())
                .collect()
        }),
        restore_recipient: policy.restore_recipient.clone(),
    };
    let ingested = ingest_staged(&repo, &opts, &decode);
    drop(decode);
    let files = collector.join().unwrap_or_default();
    let report = match ingested {
        Err(e) if e.kind() == ErrorKind::Refused => {
            return Err(over_quota(&repo, policy, &dir, e));
        }
        other => other?,
    };
    step("ingest");

    // What the client no longer has a source for is no part of its staging any more.
    let mut stale_removed = Vec::new();
    for name in stale {
        let path = dir.join(std::ffi::OsStr::from_bytes(&name));
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => stale_removed.push(String::from_utf8_lossy(&name).into_owned()),
            Err(e) => notes.push(format!(
                "stale staging entry {} (not among the client's sources) could not be removed: {e}",
                path.display()
            )),
        }
    }

    // Staging as this complete leaves it, when the walk that measured it also stripped it.
    let mut usage = None;
    let staging_result = match policy.staging_mode {
        // Not stripped here: staging is the latest tree, which a download (`restore = true`)
        // hands back whole, privileged attributes included; the upload strips it.
        StagingMode::Keep => json!({"mode": "keep"}),
        StagingMode::Purge => match staging::purge(&dir) {
            Ok(n) => {
                usage = crate::server::staging_clean::strip_transport_xattrs(&dir)
                    .ok()
                    .map(|scan| (scan.apparent, scan.allocated));
                // Nothing left for the table to describe.
                let _ = std::fs::remove_file(&table_path);
                json!({"mode": "purge", "removed": n})
            }
            Err(e) => {
                notes.push(e.to_string());
                json!({"mode": "purge", "error": e.to_string()})
            }
        },
        StagingMode::Hollow => {
            let gc_generation = repo.index()?.gc_generation()?;
            match staging::hollow(
                &dir,
                &old,
                files,
                &policy.keep_basis,
                &table_path,
                gc_generation,
            ) {
                Ok(h) => {
                    notes.extend(h.errors.iter().cloned());
                    usage = h.usage.filter(|_| h.errors.is_empty());
                    json!({"mode": "hollow", "hollowed": h.hollowed, "kept": h.kept,
                           "kept_whole": h.kept_whole, "removed": h.removed,
                           "errors": h.errors})
                }
                Err(e) => {
                    // Staging keeps plaintext until the next complete; the session is safe.
                    notes.push(e.to_string());
                    json!({"mode": "hollow", "error": e.to_string()})
                }
            }
        }
    };
    // Nothing else in complete writes to staging: the next run may believe this. Without the
    // record the next run walks staging again, nothing more.
    if let Some((apparent, allocated)) = usage {
        let _ = staging_state::record(&state_path, apparent, allocated);
    }
    step("staging");
    let hooks = run_hooks(&policy.complete_hooks);
    let hooks_ok = hooks.iter().all(|h| h.ok);
    step("hooks");

    let retention = config.retention.for_client(client);
    let rolloff = if retention.auto {
        match crate::gc::after_ingest(
            &repo,
            client,
            &retention.rules,
            config.retention.repack_threshold,
            now,
        ) {
            Ok(r) => json!({"removed": r.removed, "gc_pending": r.gc_pending}),
            Err(e) => {
                notes.push(format!("roll-off: {e}"));
                json!({"error": e.to_string()})
            }
        }
    } else {
        serde_json::Value::Null
    };
    // The offsite mirrors see the committed session and the finished roll-off. Each run is a
    // detached process: the client's connection closes as soon as this answer is sent, and a
    // mirror failure is mailed by that process, not reported to the client.
    let mut started = Vec::new();
    if let Some(exe) = exe {
        for target in config.mirrors.targets.values().filter(|t| t.after_complete) {
            match crate::mirror::spawn_after_complete(
                exe,
                &config.path,
                &config.repository,
                target.name.as_str(),
            ) {
                Ok(pid) => started.push(json!({"target": target.name.as_str(), "pid": pid})),
                Err(e) => notes.push(format!("mirror {}: {e}", target.name)),
            }
        }
    }
    let mirror = json!(started);
    step("rolloff_and_mirror");

    let perfect = report.state == SessionState::Complete && hooks_ok && notes.is_empty();
    let value = json!({
        "client": client,
        "token": token,
        "session": report.session,
        "state": report.state,
        "reason": report.reason,
        "stale_removed": stale_removed,
        "staging_mode": mode_name(policy.staging_mode),
        "entries": report.entries,
        "files": report.files,
        "bytes": report.bytes,
        "files_read": report.files_read,
        "bytes_read": report.bytes_read,
        "new_chunks": report.new_chunks,
        "new_plain_bytes": report.new_plain_bytes,
        "new_stored_bytes": report.new_stored_bytes,
        "ingest_seconds": report.seconds,
        "seconds": clock.elapsed().as_secs_f64(),
        "step_seconds": steps,
        "errors": report.errors,
        "notes": notes,
        "staging": staging_result,
        "hooks": hooks,
        "rolloff": rolloff,
        "mirror": mirror,
    });
    Ok((value, if perfect { 0 } else { 3 }))
}

/// The paths in staging that this session leaves out: the sources the client skipped (their
/// guard failed: kept in staging for the next run, not recorded as current), and when the
/// client named what it sent, everything else (`stale`: a source no longer configured, staging
/// laid out the old way, or rsync's leftovers; removed from staging after the ingest, as
/// `--delete` would have done had it covered it). With `paths=full` the sources are full paths
/// (`var/www`): the directories above them (`var`) are kept, and what else they hold is stale;
/// without it they are names directly under the staging root.
/// Paths relative to the staging root.
type Names = Vec<Vec<u8>>;

fn left_out_of_session(dir: &Path, args: &CompleteArgs) -> Result<(Names, Names)> {
    let mut left_out = args.skipped.clone();
    let mut stale = Vec::new();
    let Some(sources) = &args.sources else {
        return Ok((left_out, stale));
    };
    // `below(a, b)`: `b` is `a` or inside it.
    let below = |a: &[u8], b: &[u8]| b.starts_with(a) && (b.len() == a.len() || b[a.len()] == b'/');
    let mut todo: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(parent) = todo.pop() {
        let here = dir.join(std::ffi::OsStr::from_bytes(&parent));
        let entries = match std::fs::read_dir(&here) {
            Ok(entries) => entries,
            // A directory above a source that is not there (rsync sent nothing of it).
            Err(e) if !parent.is_empty() && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::io(format!("reading staging {}", here.display()), e));
            }
        };
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("reading staging {}", here.display()), e))?;
            let mut path = parent.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(entry.file_name().as_bytes());
            if sources.contains(&path) || args.skipped.contains(&path) {
                continue;
            }
            let above_sent = args.full_paths && sources.iter().any(|s| below(&path, s));
            let above_skipped = args.full_paths && args.skipped.iter().any(|s| below(&path, s));
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if above_sent && is_dir {
                todo.push(path);
            } else if above_skipped && is_dir {
                // Holds only what the client skipped: kept for the next run, left out now.
                left_out.push(path);
            } else {
                left_out.push(path.clone());
                stale.push(path);
            }
        }
    }
    Ok((left_out, stale))
}

/// An ingest the client's quota stopped: its running session and unsealed packs are forgotten
/// now (a writer started and dropped cleans up after the dead one, and owes a collect that
/// reclaims the packs it sealed), staging is emptied in `purge` mode and otherwise left as it
/// is, and the error says so. Its kind stays [`ErrorKind::Refused`]: `serve` audits and mails
/// it as a refusal.
fn over_quota(repo: &Repo, policy: &ClientPolicy, dir: &Path, e: Error) -> Error {
    let cleaned = repo.start_writer(crate::repo::Operation::Ingest).map(drop);
    let purged = if policy.staging_mode == StagingMode::Purge {
        staging::purge(dir).map(drop)
    } else {
        Ok(())
    };
    let mut message = format!(
        "client {}: ingest stopped over its quota: {e}; no session was recorded (the quota \
         caps both staging and the bytes one session adds to the repository: raise it, or send \
         less per run)",
        policy.name
    );
    for (what, result) in [("cleaning up", cleaned), ("emptying staging", purged)] {
        if let Err(e) = result {
            message.push_str(&format!("; {what} failed: {e}"));
        }
    }
    Error::new(ErrorKind::Refused, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Names) -> Vec<String> {
        v.sort();
        v.into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect()
    }

    /// With full paths, the directories above the sources are walked: what else they hold is
    /// stale (an old-layout `www/`, a source taken out), a path above skipped sources only is
    /// left out but kept, and the sources themselves go in.
    #[test]
    fn full_paths_leave_out_what_is_beside_or_above_the_sources() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        for d in [
            "tmp/x/var/www/a",
            "tmp/x/var/old",
            "tmp/x/srv/www",
            "tmp/y",
            "www/a",
        ] {
            std::fs::create_dir_all(s.join(d)).unwrap();
        }
        std::fs::write(s.join("tmp/x/file"), b"f").unwrap();
        let args = CompleteArgs::parse(&[
            "rsync-exit=0",
            "paths=full",
            "sources=tmp/x/var/www",
            "skipped=tmp/x/srv/www",
        ])
        .unwrap();
        let (left_out, stale) = left_out_of_session(s, &args).unwrap();
        assert_eq!(
            sorted(stale.clone()),
            ["tmp/x/file", "tmp/x/var/old", "tmp/y", "www"]
        );
        let mut want = stale;
        want.push(b"tmp/x/srv".to_vec());
        want.push(b"tmp/x/srv/www".to_vec());
        assert_eq!(sorted(left_out), sorted(want));

        // Without paths=full the names are top-level names, as before.
        let old = CompleteArgs::parse(&["rsync-exit=0", "sources=www"]).unwrap();
        let (left_out, stale) = left_out_of_session(s, &old).unwrap();
        assert_eq!(sorted(stale), ["tmp"]);
        assert_eq!(sorted(left_out), ["tmp"]);
    }
}
