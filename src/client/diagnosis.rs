//! What went wrong, in words: rsync's exit codes, and the messages of ssh and of the server that
//! tell "cannot reach the server" from "the server refused" from "it timed out".

/// The kind of a failed step, which decides the run's exit code and the advice in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// Some files were not transferred (rsync 23/24), the rest was.
    Partial,
    /// The server could not be reached: no route, nothing listening, name not found, host key.
    Unreachable,
    /// The server (sshd or rsbackup's forced command) refused the request.
    Refused,
    /// A connection, a transfer or a step ran out of time.
    TimedOut,
    /// The server answered but its step failed (prepare, ingest on complete).
    ServerFailed,
    /// rsync failed on the client side or in the protocol.
    TransferFailed,
}

use crate::report::StepStatus;

/// What the rsbackup server prints to a refused client (`server::authz::REFUSAL_MESSAGE`).
pub const SERVER_REFUSAL: &str = "request refused; the administrator has been notified";

/// rsync's exit code in words: what it means and what to do. Covers every code rsync documents;
/// 255 is ssh's own failure.
pub fn rsync_exit_words(code: i32) -> (&'static str, &'static str) {
    match code {
        0 => ("success", "nothing"),
        1 => (
            "syntax or usage error",
            "rsync refused its command line: check excludes and sources in client.toml, and the rsync version",
        ),
        2 => (
            "protocol incompatibility",
            "the client's and the server's rsync cannot talk to each other: upgrade the older one",
        ),
        3 => (
            "errors selecting input/output files, dirs",
            "a source is missing or unreadable, or the server's staging directory is: check sources and the server's staging-root",
        ),
        4 => (
            "requested action not supported",
            "an option is not supported by one side (ACLs, xattrs, 64-bit files): compare the rsync builds",
        ),
        5 => (
            "error starting client-server protocol",
            "the server side did not start rsync: it may have refused the request (see the server's audit log)",
        ),
        6 => (
            "daemon unable to append to log-file",
            "an rsync daemon cannot write its log: check the server",
        ),
        10 => (
            "error in socket I/O",
            "the connection broke: check the network and the server, then rerun",
        ),
        11 => (
            "error in file I/O",
            "a file could not be read or written: often a full disk or quota on the server, or a failing disk",
        ),
        12 => (
            "error in rsync protocol data stream",
            "the connection or the server-side rsync died mid-transfer (a refusal, a full disk, a killed process): see the output and the server's audit log",
        ),
        13 => (
            "errors with program diagnostics",
            "rsync could not write its messages: check the client",
        ),
        14 => (
            "error in IPC code",
            "rsync could not start a helper process (out of processes or memory?): check the client",
        ),
        20 => (
            "received SIGUSR1 or SIGINT",
            "rsync was interrupted (by a person, a shutdown, or a timeout): rerun",
        ),
        21 => (
            "some error returned by waitpid()",
            "an rsync helper process failed: rerun, and check the client's logs",
        ),
        22 => (
            "error allocating core memory buffers",
            "the client ran out of memory: check its memory and limits",
        ),
        23 => (
            "partial transfer due to error",
            "some files were not transferred (unreadable, permission denied): see rsync's messages in the job report",
        ),
        24 => (
            "partial transfer due to vanished source files",
            "files disappeared while they were sent (normal for busy directories): exclude them if it repeats",
        ),
        25 => (
            "the --max-delete limit stopped deletions",
            "rsync stopped deleting on the server: check the sources",
        ),
        30 => (
            "timeout in data send/receive",
            "no data moved for the I/O timeout: check the network and the server's load, then rerun",
        ),
        35 => (
            "timeout waiting for daemon connection",
            "the server did not answer in time: check the network",
        ),
        255 => (
            "the ssh connection failed",
            "ssh could not connect or log in: see its message in the job report",
        ),
        _ => (
            "an exit code rsync does not document",
            "see rsync's output in the job report",
        ),
    }
}

/// Classify a failed rsync run from its exit code and output.
pub fn classify_rsync(code: i32, output: &str) -> FailureKind {
    if let Some(kind) = classify_ssh(output) {
        return kind;
    }
    match code {
        23 | 24 => FailureKind::Partial,
        30 | 35 => FailureKind::TimedOut,
        _ => FailureKind::TransferFailed,
    }
}

/// Recognise ssh's and the server's messages in `stderr`. `None`: nothing known (the server
/// answered, and its own step failed).
pub fn classify_ssh(stderr: &str) -> Option<FailureKind> {
    let text = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if text.contains(SERVER_REFUSAL) || has(&["permission denied (", "too many authentication"]) {
        return Some(FailureKind::Refused);
    }
    if has(&[
        "connection timed out",
        "operation timed out",
        "timeout, server",
        "timed out during banner exchange",
    ]) {
        return Some(FailureKind::TimedOut);
    }
    if has(&[
        "connection refused",
        "no route to host",
        "network is unreachable",
        "could not resolve hostname",
        "name or service not known",
        "temporary failure in name resolution",
        "host key verification failed",
        "connection closed by remote host",
        "kex_exchange_identification",
        "connection reset by peer",
    ]) {
        return Some(FailureKind::Unreachable);
    }
    None
}

/// Advice for an ssh-level failure, with the server named.
pub fn ssh_advice(kind: FailureKind, stderr: &str, server: &str) -> String {
    let text = stderr.to_ascii_lowercase();
    match kind {
        FailureKind::Refused if text.contains(SERVER_REFUSAL) => format!(
            "the rsbackup server on {server} refused the request (wrong source address, outside the \
             client's time window, or a command it may not run); the server's administrator has \
             the reason in the audit log and an alert mail"
        ),
        FailureKind::Refused => format!(
            "sshd on {server} did not accept the key: check that the client's public key is in the \
             server's client table and that authorized_keys was regenerated with `rsbackup \
             authorized-keys`"
        ),
        FailureKind::Unreachable if text.contains("host key verification failed") => format!(
            "the host key of {server} is unknown or has changed: if the change is expected, update \
             known-hosts in client.toml; otherwise someone may be in the middle"
        ),
        FailureKind::Unreachable => format!(
            "{server} cannot be reached: check the host name and port in client.toml, the network, \
             the firewall, and that sshd runs there"
        ),
        FailureKind::TimedOut => format!(
            "{server} did not answer in time: check the network and the server's load, then rerun"
        ),
        _ => "see the step's output in the job report".to_owned(),
    }
}

/// `exit code 4` etc. for a failed step.
pub fn step_status_words(status: &StepStatus) -> String {
    match status {
        StepStatus::Failed(why) => why.clone(),
        StepStatus::TimedOut(limit) => format!(
            "timed out after {}, killed",
            crate::report::human_duration(*limit)
        ),
        StepStatus::Ok => "ok".into(),
        StepStatus::Skipped(why) => format!("skipped: {why}"),
    }
}

/// `; the server said: ...` with the server's own `rsbackup: ...` lines, or nothing.
pub fn server_lines(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("rsbackup: "))
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; the server said: {}", lines.join(" / "))
    }
}

/// `: <last non-empty line>` of some output, cut to 200 characters, or nothing.
pub fn last_line(output: &str) -> String {
    match output.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => format!(": {}", line.chars().take(200).collect::<String>()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_rsync_code_has_words() {
        let documented = [
            0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 25, 30, 35, 255,
        ];
        let unknown = rsync_exit_words(99);
        let mut seen = std::collections::BTreeSet::new();
        for code in documented {
            let (what, todo) = rsync_exit_words(code);
            assert_ne!((what, todo), unknown, "code {code}");
            assert!(!todo.is_empty());
            assert!(seen.insert(what), "code {code} shares its words");
        }
        assert_eq!(rsync_exit_words(23).0, "partial transfer due to error");
        assert_eq!(rsync_exit_words(30).0, "timeout in data send/receive");
        assert_eq!(rsync_exit_words(-1), unknown);
    }

    #[test]
    fn rsync_codes_classify() {
        assert_eq!(classify_rsync(23, "rsync error"), FailureKind::Partial);
        assert_eq!(classify_rsync(24, ""), FailureKind::Partial);
        assert_eq!(classify_rsync(30, ""), FailureKind::TimedOut);
        assert_eq!(classify_rsync(11, ""), FailureKind::TransferFailed);
        let refused = "rsbackup: request refused; the administrator has been notified\n\
                       rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n";
        assert_eq!(classify_rsync(12, refused), FailureKind::Refused);
        let down = "ssh: connect to host 127.0.0.1 port 9: Connection refused\n";
        assert_eq!(classify_rsync(255, down), FailureKind::Unreachable);
    }

    #[test]
    fn ssh_messages_classify() {
        let cases = [
            (
                "root@127.0.0.1: Permission denied (publickey).",
                Some(FailureKind::Refused),
            ),
            (
                "ssh: connect to host 10.255.255.1 port 22: Connection timed out",
                Some(FailureKind::TimedOut),
            ),
            (
                "ssh: Could not resolve hostname nowhere.invalid: Name or service not known",
                Some(FailureKind::Unreachable),
            ),
            (
                "Host key verification failed.",
                Some(FailureKind::Unreachable),
            ),
            ("ingest failed: disk full", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(classify_ssh(text), want, "{text}");
        }
        let advice = ssh_advice(FailureKind::Refused, SERVER_REFUSAL, "backup:22");
        assert!(advice.contains("audit log"), "{advice}");
        let advice = ssh_advice(
            FailureKind::Unreachable,
            "Host key verification failed.",
            "b",
        );
        assert!(advice.contains("known-hosts"), "{advice}");
    }

    #[test]
    fn refusal_text_matches_the_server() {
        assert!(crate::server::authz::REFUSAL_MESSAGE.ends_with(SERVER_REFUSAL));
    }
}
