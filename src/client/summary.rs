//! The figures of a run in words: what was backed up and how well (rsync's statistics, the
//! server's answer), put into the report types of [`crate::report`].

use jiff::Timestamp;

use super::job::RunResult;
use super::remote::ServerAnswer;
use super::stats::RsyncStats;
use crate::config::ClientConfig;
use crate::error::Error;
use crate::report::{ErrorReport, Failure, JobReport, Mailer, RunOutcome, StepReport};

/// Labels of the job report's figures (tests and readers look for them).
pub mod label {
    /// Entries on the client (files, directories, links), and regular files among them.
    pub const FILES: &str = "files on the client";
    /// Bytes of all files on the client.
    pub const BYTES: &str = "bytes on the client";
    /// Regular files rsync sent (new or changed).
    pub const CHANGED: &str = "files changed (sent)";
    /// Entries rsync created and deleted in staging.
    pub const CREATED_DELETED: &str = "created / deleted";
    /// Bytes rsync sent over the wire, against the total.
    pub const SENT: &str = "bytes sent by rsync";
    /// File data sent as is, and found on the server already.
    pub const LITERAL_MATCHED: &str = "literal / matched data";
    /// Bytes that came back.
    pub const RECEIVED: &str = "bytes received";
    /// The client and session the server recorded the backup as (from its answer).
    pub const RECORDED_AS: &str = "recorded as";
    /// The session's state on the server.
    pub const STATE: &str = "session state";
    /// Bytes the store kept after deduplication and compression.
    pub const NEW_STORED: &str = "new bytes stored";
    /// New chunks.
    pub const NEW_CHUNKS: &str = "new chunks";
}

/// `3,000,012` (thousands grouped with commas).
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `3,000,012 bytes (2.9 MiB)`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = None;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        None => format!("{} bytes", grouped(n)),
        Some(u) => format!("{} bytes ({value:.1} {u})", grouped(n)),
    }
}

/// The figures of the job report, in order.
pub fn figures(stats: Option<&RsyncStats>, answer: Option<&ServerAnswer>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| out.push((k.to_owned(), v));
    if let Some(s) = stats {
        if let Some(files) = s.files {
            let regular = s
                .regular_files
                .map(|r| format!(" ({} regular files)", grouped(r)))
                .unwrap_or_default();
            put(label::FILES, format!("{}{regular}", grouped(files)));
        }
        if let Some(total) = s.total_file_size {
            put(label::BYTES, bytes(total));
        }
        if let Some(changed) = s.files_transferred {
            let size = s
                .transferred_file_size
                .map(|b| format!(", {}", bytes(b)))
                .unwrap_or_default();
            put(label::CHANGED, format!("{}{size}", grouped(changed)));
        }
        if s.created_files.is_some() || s.deleted_files.is_some() {
            let n = |v: Option<u64>| v.map(grouped).unwrap_or_else(|| "?".into());
            put(
                label::CREATED_DELETED,
                format!("{} / {}", n(s.created_files), n(s.deleted_files)),
            );
        }
        if let Some(sent) = s.bytes_sent {
            let of = match (s.total_file_size, s.sent_percent()) {
                (Some(total), Some(pct)) => format!(" of {} total ({pct:.2}%)", grouped(total)),
                _ => String::new(),
            };
            put(label::SENT, format!("{}{of}", bytes(sent)));
        }
        if let (Some(lit), Some(matched)) = (s.literal_data, s.matched_data) {
            put(
                label::LITERAL_MATCHED,
                format!("{} / {}", grouped(lit), grouped(matched)),
            );
        }
        if let Some(received) = s.bytes_received {
            put(label::RECEIVED, bytes(received));
        }
    }
    if let Some(a) = answer {
        if let Some(client) = a.text(&["client"]) {
            let session = a
                .text(&["session"])
                .map(|s| format!(", session {s}"))
                .unwrap_or_default();
            put(label::RECORDED_AS, format!("client {client}{session}"));
        }
        if let Some(state) = a.text(&["state"]) {
            put(label::STATE, state);
        }
        if let Some(n) = a.number(&["new_stored_bytes", "new_bytes", "stored_bytes"]) {
            let plain = a
                .number(&["new_plain_bytes"])
                .map(|p| format!(" (from {} new before compression)", grouped(p)))
                .unwrap_or_default();
            put(
                label::NEW_STORED,
                format!("{}{plain}, after deduplication and compression", bytes(n)),
            );
        }
        if let Some(n) = a.number(&["new_chunks"]) {
            put(label::NEW_CHUNKS, grouped(n));
        }
    }
    out
}

/// The job report of a run.
pub fn job_report(
    config: &ClientConfig,
    host: &str,
    started: Timestamp,
    steps: Vec<StepReport>,
    stats: Option<&RsyncStats>,
    answer: Option<&ServerAnswer>,
    outcome: RunOutcome,
) -> JobReport {
    let mut figures = vec![(
        "sources".to_owned(),
        config
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    )];
    figures.extend(self::figures(stats, answer));
    JobReport {
        client: config.name.to_string(),
        host: host.to_owned(),
        started,
        finished: Timestamp::now(),
        steps,
        session: answer.and_then(|a| a.text(&["session", "session_id", "id"])),
        outcome,
        reason: answer.and_then(|a| a.text(&["reason"])),
        figures,
    }
}

/// The error report of a run.
pub fn error_report(
    config: &ClientConfig,
    host: &str,
    started: Timestamp,
    outcome: RunOutcome,
    failures: Vec<Failure>,
) -> ErrorReport {
    ErrorReport {
        client: config.name.to_string(),
        host: host.to_owned(),
        started,
        outcome,
        failures,
    }
}

/// Mail the error report (if any) to `errors-to`, then the job report to `reports-to`. Returns
/// what could not be sent; the run's result stands either way.
pub fn send_reports(config: &ClientConfig, result: &RunResult) -> Vec<Error> {
    let mailer = match Mailer::from_config(&config.mail) {
        Ok(m) => m,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    if let Some(error) = &result.error
        && let Err(e) = mailer.send(&config.errors_to, &error.subject(), &error.render_text())
    {
        problems.push(e);
    }
    if let Some(job) = &result.job
        && let Err(e) = mailer.send(&config.reports_to, &job.subject(), &job.render_text())
    {
        problems.push(e);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_words() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(3_000_012), "3,000,012");
        assert_eq!(bytes(12), "12 bytes");
        assert_eq!(bytes(3_000_012), "3,000,012 bytes (2.9 MiB)");
        assert_eq!(bytes(u64::MAX).split(" (").nth(1), Some("16384.0 PiB)"));
    }

    #[test]
    fn figures_from_real_stats_and_an_answer() {
        let stats = RsyncStats::parse(include_str!("testdata/rsync-3.2.7-second.txt"));
        let answer = ServerAnswer::parse(
            "{\"client\":\"web1\",\"session\":7,\"state\":\"complete\",\"new_stored_bytes\":2048,\
             \"new_chunks\":1}",
        )
        .unwrap();
        let f = figures(Some(&stats), Some(&answer));
        let get = |k: &str| {
            f.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {k} in {f:?}"))
        };
        assert_eq!(get(label::FILES), "6 (3 regular files)");
        assert_eq!(get(label::CHANGED), "1, 3,000,005 bytes (2.9 MiB)");
        assert_eq!(get(label::CREATED_DELETED), "0 / 1");
        assert_eq!(
            get(label::SENT),
            "7,314 bytes (7.1 KiB) of 3,000,012 total (0.24%)"
        );
        assert_eq!(get(label::LITERAL_MATCHED), "197 / 2,999,808");
        assert_eq!(get(label::STATE), "complete");
        assert_eq!(get(label::RECORDED_AS), "client web1, session 7");
        assert!(get(label::NEW_STORED).starts_with("2,048 bytes (2.0 KiB)"));
        assert_eq!(get(label::NEW_CHUNKS), "1");
        assert!(figures(None, None).is_empty());
    }

    #[test]
    fn reports_render() {
        let cfg = crate::config::ClientConfig::parse(
            "name = \"web1\"\nsources = [\"/etc\"]\n[server]\nhost = \"b\"\nssh-key = \"/k\"\n\
             [mail]\nfrom = \"a@b.c\"\nerrors-to = [\"a@b.c\"]\nreports-to = [\"a@b.c\"]\n\
             transport = \"directory\"\ndirectory = \"/tmp\"\n",
            std::path::Path::new("/c.toml"),
        )
        .unwrap();
        let stats = RsyncStats::parse(include_str!("testdata/rsync-3.2.7-first.txt"));
        let answer = ServerAnswer::parse("{\"session\":\"12\",\"state\":\"complete\"}").unwrap();
        let job = job_report(
            &cfg,
            "web1.example.org",
            Timestamp::now(),
            vec![],
            Some(&stats),
            Some(&answer),
            RunOutcome::Ok,
        );
        let text = job.render_text();
        assert!(text.contains("session:  12"), "{text}");
        assert!(text.contains("sources"), "{text}");
        assert!(text.contains("3,001,022 bytes"), "{text}");
        assert!(job.subject().contains("web1: backup ok"));
        let err = error_report(
            &cfg,
            "web1.example.org",
            Timestamp::now(),
            RunOutcome::Failed,
            vec![Failure {
                step: "prepare".into(),
                what: "ssh prepare: exit code 255: Connection refused".into(),
                location: "rsbackup@b:22".into(),
                action: "check the host".into(),
            }],
        );
        let text = err.render_text();
        assert!(text.contains("1. prepare failed"), "{text}");
        assert!(text.contains("to do: check the host"), "{text}");
        assert!(err.subject().contains("ERROR: 1 failure"));
    }
}
