//! Log lines to the system journal or syslog, with the client and the session as fields.
//!
//! First choice, the systemd journal's native socket (`[log] journal-socket`): one datagram of
//! `KEY=value` lines, so that `RSBACKUP_CLIENT`, `RSBACKUP_SESSION` ... are journal fields
//! (`journalctl RSBACKUP_CLIENT=web1`). Otherwise syslog (`[log] syslog-socket`, `/dev/log`)
//! through the `syslog` crate: RFC 5424 lines whose structured data carries the same fields
//! (`[rsbackup@32473 client="web1" session="42"]`). Without either, lines go to stderr, except
//! for `serve`, whose stderr is the client's ssh channel: there they are dropped (the audit table
//! keeps every request).

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;

use rsbackup::config::watch::LogConfig;
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

impl Level {
    /// The syslog severity number the journal's `PRIORITY` takes.
    fn priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 6,
        }
    }
}

enum Sink {
    Journal(UnixDatagram),
    Syslog(Box<Logger<LoggerBackend, Formatter5424>>),
    None,
}

/// Where this process's log lines go.
pub struct Log {
    sink: Sink,
    stderr: bool,
}

impl Log {
    /// Log where `config` says; when neither socket can be reached, to stderr if
    /// `stderr_fallback`.
    pub fn open(config: &LogConfig, stderr_fallback: bool) -> Log {
        let journal =
            UnixDatagram::unbound().and_then(|s| s.connect(&config.journal_socket).map(|()| s));
        let sink = match journal {
            Ok(s) => Sink::Journal(s),
            Err(_) => {
                let formatter = Formatter5424 {
                    facility: Facility::LOG_DAEMON,
                    hostname: Some(crate::serve::host_name()),
                    process: "rsbackup".into(),
                    pid: std::process::id(),
                };
                match syslog::unix_custom(formatter, &config.syslog_socket) {
                    Ok(l) => Sink::Syslog(Box::new(l)),
                    Err(_) => Sink::None,
                }
            }
        };
        Log {
            sink,
            stderr: stderr_fallback,
        }
    }

    /// Log `message` with `fields` (`client`, `session`, `request`, `outcome` ...). Never
    /// fails: a log that cannot be written must not fail the request.
    pub fn event(&mut self, level: Level, message: &str, fields: &[(&str, &str)]) {
        // One line each: a newline would start a forged record or field.
        let clean = |t: &str| -> String {
            t.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        };
        let message = clean(message);
        let sent = match &mut self.sink {
            Sink::Journal(sock) => {
                let mut datagram = format!(
                    "MESSAGE={message}\nPRIORITY={}\nSYSLOG_IDENTIFIER=rsbackup\nSYSLOG_FACILITY=3\n",
                    level.priority()
                );
                for (k, v) in fields {
                    datagram.push_str(&format!(
                        "RSBACKUP_{}={}\n",
                        k.to_ascii_uppercase(),
                        clean(v)
                    ));
                }
                sock.send(datagram.as_bytes()).is_ok()
            }
            Sink::Syslog(logger) => {
                let mut params = BTreeMap::new();
                for (k, v) in fields {
                    params.insert((*k).to_owned(), (*v).to_owned());
                }
                let mut data = BTreeMap::new();
                if !params.is_empty() {
                    data.insert(SD_ID.to_owned(), params);
                }
                let line = (0u32, data, message.as_str());
                match level {
                    Level::Error => logger.err(line),
                    Level::Warning => logger.warning(line),
                    Level::Info => logger.info(line),
                }
                .is_ok()
            }
            Sink::None => false,
        };
        if !sent && self.stderr {
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!("rsbackup: log: {message} {}", fields.join(" "));
        }
    }
}
