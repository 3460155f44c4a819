//! Log lines to the system journal / syslog: RFC 5424 datagrams on the socket `[log]
//! syslog-socket` names (`/dev/log`, where journald and syslog daemons listen), with the client
//! and the session as structured data (`[rsbackup@32473 client="web1" session="42"]`), through
//! the `syslog` crate. Without a socket, lines go to stderr, except for `serve`, whose stderr is
//! the client's ssh channel: there they are dropped (the audit table keeps every request).

use std::collections::BTreeMap;
use std::path::Path;

use syslog::{Facility, Formatter5424, Logger, LoggerBackend};

/// The structured-data id of our fields (32473 is the documentation enterprise number).
const SD_ID: &str = "rsbackup@32473";

/// How bad an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// A refusal, a partial result.
    Warning,
    /// Done.
    Info,
}

/// Where this process's log lines go.
pub struct Log {
    syslog: Option<Logger<LoggerBackend, Formatter5424>>,
    stderr: bool,
}

impl Log {
    /// Log to `socket`; when it cannot be reached, to stderr if `stderr_fallback`.
    pub fn open(socket: &Path, stderr_fallback: bool) -> Log {
        let formatter = Formatter5424 {
            facility: Facility::LOG_DAEMON,
            hostname: Some(crate::serve::host_name()),
            process: "rsbackup".into(),
            pid: std::process::id(),
        };
        Log {
            syslog: syslog::unix_custom(formatter, socket).ok(),
            stderr: stderr_fallback,
        }
    }

    /// Log `message` with `fields` (`client`, `session`, `command`, `outcome` ...) as
    /// structured data. Never fails: a log that cannot be written must not fail the request.
    pub fn event(&mut self, level: Level, message: &str, fields: &[(&str, &str)]) {
        // One line: a newline in a message would start a forged record in plain-text logs.
        let message: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if let Some(logger) = &mut self.syslog {
            let mut params = BTreeMap::new();
            for (k, v) in fields {
                params.insert((*k).to_owned(), (*v).to_owned());
            }
            let mut data = BTreeMap::new();
            if !params.is_empty() {
                data.insert(SD_ID.to_owned(), params);
            }
            let line = (0u32, data, message.as_str());
            let sent = match level {
                Level::Error => logger.err(line),
                Level::Warning => logger.warning(line),
                Level::Info => logger.info(line),
            };
            if sent.is_ok() {
                return;
            }
        }
        if self.stderr {
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!("rsbackup: log: {message} {}", fields.join(" "));
        }
    }
}
