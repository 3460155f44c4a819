//! What `serve` logs (see `log`): every request's outcome with the client, the request and the
//! session; and a `server.toml` that does not load, which is also mailed to the administrator
//! when its `[mail]` table can still be read alone (at most once an hour: every client request
//! meets the same broken file; the file `config-error-mailed` beside the alert state says when).

use std::path::Path;
use std::time::Duration;

use rsbackup::config::MailTransport;
use rsbackup::config::watch::{salvage_alert_state, salvage_log, salvage_mail};
use rsbackup::report::Mailer;
use rsbackup::server::serve::{ServeInput, ServeOutcome};

use crate::log::{Level, Log};

/// A broken configuration is mailed again after this long.
const CONFIG_MAIL_INTERVAL: Duration = Duration::from_secs(3600);

/// The request's name: the first word of the command that is not the client's identity prefix.
fn request_word(input: &ServeInput) -> String {
    input
        .ssh_original_command
        .as_deref()
        .unwrap_or("")
        .split_ascii_whitespace()
        .find(|w| !w.starts_with("rsbackup-"))
        .unwrap_or(if input.raw_command.is_some() {
            "(not UTF-8)"
        } else {
            "(none)"
        })
        .chars()
        .take(40)
        .collect()
}

/// Log how a request ended.
pub fn outcome(log: &mut Log, input: &ServeInput, outcome: &ServeOutcome) {
    let request = request_word(input);
    let (level, word, session, detail) = match outcome {
        ServeOutcome::Answer { stdout, exit } => {
            let session = serde_json::from_str::<serde_json::Value>(stdout)
                .ok()
                .and_then(|v| v.get("session").and_then(|s| s.as_i64()))
                .map(|s| s.to_string());
            let (level, word) = match exit {
                0 => (Level::Info, "ok"),
                3 => (Level::Warning, "partial"),
                _ => (Level::Error, "failed"),
            };
            (level, word, session, String::new())
        }
        ServeOutcome::Refused => (Level::Warning, "refused", None, String::new()),
        ServeOutcome::Failed(e) => (Level::Error, "failed", None, format!(": {e}")),
        // The transfer's end is logged by `rsync_end`.
        ServeOutcome::Rsync(_) | ServeOutcome::RestoreFetch => {
            (Level::Info, "started", None, String::new())
        }
    };
    let mut fields = vec![
        ("client", input.client.as_str()),
        ("request", request.as_str()),
        ("outcome", word),
    ];
    if let Some(s) = &session {
        fields.push(("session", s.as_str()));
    }
    let message = match &session {
        Some(s) => format!(
            "client {} {request}: {word}, session {s}{detail}",
            input.client
        ),
        None => format!("client {} {request}: {word}{detail}", input.client),
    };
    log.event(level, &message, &fields);
}

/// Log the end of a confined rsync.
pub fn rsync_end(log: &mut Log, input: &ServeInput, code: i32) {
    let code_text = code.to_string();
    let (level, word) = if code == 0 {
        (Level::Info, "ok")
    } else {
        (Level::Warning, "failed")
    };
    log.event(
        level,
        &format!("client {} rsync: {word}, exit {code}", input.client),
        &[
            ("client", input.client.as_str()),
            ("request", "rsync"),
            ("outcome", word),
            ("rsync_exit", code_text.as_str()),
        ],
    );
}

/// `server.toml` does not load: log it (to `[log]` if that table can be read alone), and mail
/// it to `[mail] admin` if that table can.
pub fn config_broken(path: &Path, client: &str, error: &rsbackup::Error) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let log_config = salvage_log(&text, path);
    let mut log = Log::open(&log_config, false);
    let message = format!(
        "the server cannot take requests: {} does not load: {error}",
        path.display()
    );
    log.event(
        Level::Error,
        &message,
        &[("client", client), ("outcome", "config-error")],
    );
    let Ok((mut mail, admin)) = salvage_mail(&text, path) else {
        return;
    };
    // Beside the alert state, which the user serve runs as can write.
    let marker = salvage_alert_state(&text).with_file_name("config-error-mailed");
    let recent = std::fs::metadata(&marker)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e < CONFIG_MAIL_INTERVAL));
    if recent {
        return;
    }
    if let MailTransport::Smtp { timeout, .. } = &mut mail.transport {
        *timeout = (*timeout).min(rsbackup::server::serve::ALERT_MAIL_TIMEOUT);
    }
    let host = crate::serve::host_name();
    let subject = format!("[rsbackup] {host}: server.toml does not load");
    let body = format!(
        "A request of client {client} met a server configuration that does not load, so every \
         request is refused until it is fixed:\n\n{message}\n\nCheck it with: rsbackup \
         authorized-keys --config {}\n",
        path.display()
    );
    let sent = Mailer::from_config(&mail).and_then(|m| m.send(&admin, &subject, &body));
    match sent {
        Ok(()) => {
            let _ = std::fs::write(&marker, b"");
        }
        Err(e) => log.event(
            Level::Error,
            &format!("the configuration error could not be mailed: {e}"),
            &[("client", client)],
        ),
    }
}
