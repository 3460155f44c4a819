//! How the upload runs, from what `prepare` said about the server's staging: whether rsync
//! should send whole files (`--whole-file`: outside `keep-basis` a hollow staging area holds
//! only placeholders, a basis in which rsync's delta search can find nothing), and which files
//! the server keeps whole as the basis of a delta (`keep-basis`). With keep-basis patterns the
//! upload is two rsync passes: everything else whole, then those files alone as deltas.

use std::process::Command;

use crate::client::remote::ServerAnswer;
use crate::client::stats::RsyncStats;
use crate::config::basis::{BasisPattern, MAX_BASIS_PATTERNS};

/// What the upload does, as `prepare`'s answer says (the default: one plain pass).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadPlan {
    /// `whole_file`: the server has no useful basis outside `keep_basis`.
    pub whole_file: bool,
    /// `keep_basis`: files the server keeps whole, sent as deltas in a pass of their own.
    pub keep_basis: Vec<BasisPattern>,
    /// `quota` is `null`: no upload of this run is stopped over a quota, so rsync puts each
    /// new file in place as it arrives (no `--delay-updates`, which costs the receiver a look
    /// into a `.~tmp~` directory for every file, changed or not). With a quota, or without an
    /// answer, updates wait for the end of the transfer, so that a stopped upload leaves staging
    /// as it was.
    pub no_quota: bool,
}

/// One rsync pass: its step name and command.
pub struct Pass {
    /// `rsync`, or `rsync (keep-basis)`.
    pub name: &'static str,
    /// The command.
    pub command: Command,
}

impl UploadPlan {
    /// Read the plan out of `prepare`'s answer. Fields an older server does not send leave the
    /// plain pass; patterns this client would read differently are left out (those files then
    /// travel whole, which costs bandwidth, never correctness).
    pub fn from_answer(answer: &ServerAnswer) -> UploadPlan {
        let whole_file = answer.json.get("whole_file").and_then(|v| v.as_bool()) == Some(true);
        let keep_basis = answer
            .json
            .get("keep_basis")
            .and_then(|v| v.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|p| p.as_str())
                    .filter_map(|p| BasisPattern::parse(p).ok())
                    .take(MAX_BASIS_PATTERNS)
                    .collect()
            })
            .unwrap_or_default();
        let no_quota = answer.json.get("quota") == Some(&serde_json::Value::Null);
        UploadPlan {
            whole_file,
            keep_basis,
            no_quota,
        }
    }

    /// The rsync passes for `rsync` (the configured upload command). Filter rules are added
    /// after the configured excludes, which therefore still win.
    pub fn passes(&self, rsync: &Command) -> Vec<Pass> {
        let with_args = |extra: &[String]| {
            let drop: &[&str] = if self.no_quota {
                &["--delay-updates"]
            } else {
                &[]
            };
            with_args(rsync, extra, drop)
        };
        if !self.whole_file {
            return vec![Pass {
                name: "rsync",
                command: with_args(&[]),
            }];
        }
        if self.keep_basis.is_empty() {
            return vec![Pass {
                name: "rsync",
                command: with_args(&["--whole-file".to_owned()]),
            }];
        }
        // Directories are always included: a pattern names files, and an excluded directory
        // would hide (and protect from --delete) everything below it.
        let mut first = vec!["--whole-file".to_owned(), "--include=*/".to_owned()];
        first.extend(
            self.keep_basis
                .iter()
                .map(|p| format!("--exclude={}", p.as_str())),
        );
        let mut second = vec!["--include=*/".to_owned()];
        second.extend(
            self.keep_basis
                .iter()
                .map(|p| format!("--include={}", p.as_str())),
        );
        second.push("--exclude=*".to_owned());
        vec![
            Pass {
                name: "rsync",
                command: with_args(&first),
            },
            Pass {
                name: "rsync (keep-basis)",
                command: with_args(&second),
            },
        ]
    }
}

/// A copy of `command` (program, arguments, environment, directory) without the arguments
/// `drop`, with `extra` appended.
fn with_args(command: &Command, extra: &[String], drop: &[&str]) -> Command {
    let mut out = Command::new(command.get_program());
    out.args(command.get_args().filter(|a| !drop.iter().any(|d| a == d)))
        .args(extra);
    // The upload command's environment is cleared and then set (remote::clean_env).
    out.env_clear();
    for (k, v) in command.get_envs() {
        if let Some(v) = v {
            out.env(k, v);
        }
    }
    if let Some(dir) = command.get_current_dir() {
        out.current_dir(dir);
    }
    out
}

/// The sum of two passes' statistics (`files` counts directories once per pass).
pub fn add_stats(a: Option<RsyncStats>, b: Option<RsyncStats>) -> Option<RsyncStats> {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (a, b) => return a.or(b),
    };
    let sum = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
    };
    Some(RsyncStats {
        files: sum(a.files, b.files),
        regular_files: sum(a.regular_files, b.regular_files),
        created_files: sum(a.created_files, b.created_files),
        deleted_files: sum(a.deleted_files, b.deleted_files),
        files_transferred: sum(a.files_transferred, b.files_transferred),
        total_file_size: sum(a.total_file_size, b.total_file_size),
        transferred_file_size: sum(a.transferred_file_size, b.transferred_file_size),
        literal_data: sum(a.literal_data, b.literal_data),
        matched_data: sum(a.matched_data, b.matched_data),
        bytes_sent: sum(a.bytes_sent, b.bytes_sent),
        bytes_received: sum(a.bytes_received, b.bytes_received),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(c: &Command) -> Vec<String> {
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_plan_follows_prepares_answer() {
        let mut rsync = Command::new("rsync");
        rsync.args(["-a", "--exclude=/www/cache/", "/var/www", "u@h:"]);
        rsync.env_clear().env("LC_ALL", "C");
        let answer = |j: serde_json::Value| UploadPlan::from_answer(&ServerAnswer { json: j });

        let old_server = answer(serde_json::json!({"ok": true}));
        let passes = old_server.passes(&rsync);
        assert_eq!(passes.len(), 1);
        assert_eq!(args(&passes[0].command), args(&rsync));
        assert!(
            !old_server.no_quota,
            "no answer about the quota: updates are delayed"
        );
        assert_eq!(
            passes[0].command.get_envs().collect::<Vec<_>>(),
            rsync.get_envs().collect::<Vec<_>>()
        );

        let hollow = answer(serde_json::json!({"whole_file": true, "keep_basis": []}));
        let passes = hollow.passes(&rsync);
        assert_eq!(passes.len(), 1);
        assert_eq!(args(&passes[0].command).last().unwrap(), "--whole-file");

        let basis = answer(serde_json::json!({
            "whole_file": true, "keep_basis": ["*.sql", "bad[", "vm/*.img"]
        }));
        assert_eq!(
            basis.keep_basis.len(),
            2,
            "the unreadable pattern is left out"
        );
        let passes = basis.passes(&rsync);
        assert_eq!(passes.len(), 2);
        let first = args(&passes[0].command);
        assert_eq!(
            &first[4..],
            [
                "--whole-file",
                "--include=*/",
                "--exclude=*.sql",
                "--exclude=vm/*.img"
            ]
        );
        let second = args(&passes[1].command);
        assert!(!second.contains(&"--whole-file".to_owned()));
        assert_eq!(
            &second[4..],
            [
                "--include=*/",
                "--include=*.sql",
                "--include=vm/*.img",
                "--exclude=*"
            ]
        );
        assert_eq!(passes[1].name, "rsync (keep-basis)");
    }

    /// Updates wait for the end of the transfer unless prepare said there is no quota.
    #[test]
    fn delayed_updates_only_under_a_quota() {
        let mut rsync = Command::new("rsync");
        rsync.args([
            "-a",
            "--delete-delay",
            "--delay-updates",
            "/var/www",
            "u@h:",
        ]);
        let answer = |j: serde_json::Value| UploadPlan::from_answer(&ServerAnswer { json: j });
        let has = |plan: &UploadPlan| {
            plan.passes(&rsync)
                .iter()
                .map(|p| args(&p.command).contains(&"--delay-updates".to_owned()))
                .collect::<Vec<_>>()
        };
        let quota = answer(serde_json::json!({"whole_file": true, "quota": 1_000_000}));
        assert_eq!(has(&quota), [true]);
        let free = answer(serde_json::json!({"whole_file": true, "quota": null}));
        assert_eq!(has(&free), [false]);
        let passes = free.passes(&rsync);
        assert_eq!(
            args(&passes[0].command),
            ["-a", "--delete-delay", "/var/www", "u@h:", "--whole-file"]
        );
        let basis = answer(serde_json::json!({
            "whole_file": true, "keep_basis": ["*.img"], "quota": null
        }));
        assert_eq!(has(&basis), [false, false]);
        assert_eq!(has(&UploadPlan::default()), [true]);
    }

    #[test]
    fn two_passes_statistics_add_up() {
        let a = RsyncStats {
            bytes_sent: Some(10),
            literal_data: Some(4),
            ..Default::default()
        };
        let b = RsyncStats {
            bytes_sent: Some(5),
            matched_data: Some(7),
            ..Default::default()
        };
        let s = add_stats(Some(a.clone()), Some(b)).unwrap();
        assert_eq!(
            (s.bytes_sent, s.literal_data, s.matched_data, s.files),
            (Some(15), Some(4), Some(7), None)
        );
        assert_eq!(add_stats(Some(a.clone()), None), Some(a));
    }
}
