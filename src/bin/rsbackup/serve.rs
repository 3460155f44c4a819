//! `rsbackup serve --client NAME [--config FILE]`: the ssh forced command. Reads
//! `SSH_ORIGINAL_COMMAND` and `SSH_CONNECTION` (never a shell), hands them to
//! `rsbackup::server::serve`, prints the answer, or runs the confined rsync between the ssh
//! channel and its daemon (exiting with rsync's code, 20 when it had to be stopped).
//!
//! Exit codes (crate::exit): 0 done; 3 done in part (a partial session, a failed complete
//! hook); 1 the request was allowed but failed; 16 the request was refused (only the generic
//! refusal message is printed; the administrator gets the reason by mail and the audit table has
//! it); an upload ends with the confined rsync's own exit code, which the client's rsync reads.

use std::path::PathBuf;

use anyhow::Result;
use rsbackup::config::ServerConfig;
use rsbackup::config::server::MAX_LEASE_HOURS;
use rsbackup::server::authz::REFUSAL_MESSAGE;
use rsbackup::server::serve::{
    ServeInput, ServeOutcome, finish_rsync, serve_restore_fetch, serve_with_body,
};

use crate::Outcome;

/// Exit code of a refused request (the client's `run` exits with the same code).
pub const REFUSED: i32 = crate::exit::REFUSED as i32;

/// Arguments of `serve`.
#[derive(clap::Args)]
#[command(
    after_help = "An upload (the rsync request) ends with the confined rsync's own exit \
code instead, which the client's rsync reads (rsync(1), EXIT VALUES)."
)]
pub struct Args {
    /// The client this ssh key belongs to (set by the forced command).
    #[arg(long, value_name = "NAME")]
    client: String,
    /// The server configuration (a forced command: only from its authorized_keys line, never
    /// from the environment, which an ssh client may be allowed to set).
    #[arg(long, value_name = "FILE", default_value = crate::open::SERVER_CONFIG)]
    config: PathBuf,
    /// A run's lease (taken by prepare) expires after this many hours without complete;
    /// overrides `lease-hours` of the configuration (default 12).
    #[arg(long, value_name = "HOURS", value_parser = clap::value_parser!(u64).range(1..=MAX_LEASE_HOURS))]
    lease_hours: Option<u64>,
}

/// This box's host name, for alert mails.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "backup server".to_owned())
}

/// `SSH_ORIGINAL_COMMAND` as text, or as its bytes when they are not UTF-8 (sshd passes the
/// client's bytes as they came).
pub fn original_command() -> (Option<String>, Option<Vec<u8>>) {
    match std::env::var_os("SSH_ORIGINAL_COMMAND") {
        None => (None, None),
        Some(os) => match os.into_string() {
            Ok(text) => (Some(text), None),
            Err(os) => (None, Some(std::os::unix::ffi::OsStringExt::into_vec(os))),
        },
    }
}

/// Run `serve`: never returns normally except on success.
pub fn run(args: Args) -> Result<Outcome> {
    let config = match ServerConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            // The client must not learn about the server's files; the administrator finds the
            // problem in the log and in a mail, and with `rsbackup authorized-keys --config ...`.
            crate::serve_log::config_broken(&args.config, &args.client, &e);
            eprintln!("rsbackup: the server cannot take requests (configuration error)");
            std::process::exit(1);
        }
    };
    let mut log = crate::log::Log::open(&config.log, false);
    let host = host_name();
    let (command, raw_command) = original_command();
    let connection = std::env::var("SSH_CONNECTION").ok();
    let mut input = ServeInput::new(
        &args.client,
        connection.as_deref(),
        command.as_deref(),
        jiff::Timestamp::now(),
        &host,
    );
    input.lease_timeout = args
        .lease_hours
        .map(|hours| std::time::Duration::from_secs(hours * 3600));
    input.exe = std::env::current_exe().ok();
    input.raw_command = raw_command;
    // Standard input is read here only by `prepare renames`, and then only its bounded list; an
    // upload's rsync stream is left untouched for the bridge below.
    let outcome = serve_with_body(&config, &input, &mut std::io::stdin());
    crate::serve_log::outcome(&mut log, &input, &outcome);
    match outcome {
        ServeOutcome::Answer { stdout, exit } => {
            print!("{stdout}");
            match exit {
                0 => Ok(Outcome::Ok),
                3 => Ok(Outcome::Partial),
                other => std::process::exit(i32::from(other)),
            }
        }
        ServeOutcome::Refused => {
            eprintln!("{REFUSAL_MESSAGE}");
            std::process::exit(REFUSED);
        }
        ServeOutcome::Failed(e) => Err(e.into()),
        ServeOutcome::RestoreFetch => {
            let stdin = std::io::stdin().lock();
            let stdout = std::io::BufWriter::new(std::io::stdout().lock());
            match serve_restore_fetch(&config, &input, stdin, stdout) {
                Ok(_) => Ok(Outcome::Ok),
                Err(e) if e.kind() == rsbackup::ErrorKind::Refused => {
                    eprintln!("{REFUSAL_MESSAGE}");
                    std::process::exit(REFUSED);
                }
                Err(e) => Err(e.into()),
            }
        }
        ServeOutcome::Rsync(run) => {
            use std::os::fd::AsFd;
            let started = std::time::SystemTime::now();
            let staging = run.staging().to_owned();
            // The ssh channel, unbuffered: the bridge copies bytes both ways.
            let client_in = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
            let client_out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
            let end = run.run(client_in, client_out)?;
            crate::serve_log::rsync_end(&mut log, &input, end.exit_code());
            finish_rsync(&config, &input, &end, &staging, started)?;
            std::process::exit(end.exit_code());
        }
    }
}
