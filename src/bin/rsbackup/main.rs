//! The `rsbackup` command: parses arguments, calls the library, prints, and picks the exit code.
//!
//! Every command lives in its own file. Errors are printed as one line on stderr,
//! `rsbackup: <what>`, and mapped to an exit code from the library's [`rsbackup::ErrorKind`].

// One exception, in heap.rs: the allocator's tuning, a single call before any thread starts.
#![deny(unsafe_code)]

mod accept_machine;
mod add_client;
mod authorized_keys;
mod cat;
mod check;
mod config_check;
mod diff;
mod entry_json;
mod exit;
mod find;
mod generate;
mod heap;
mod ingest;
mod init;
mod key;
mod keygen;
mod log;
mod ls;
mod mirror;
mod mount;
mod open;
mod output;
mod passphrase;
mod pin;
mod progress;
mod prune;
mod repair;
mod restore;
mod restore_client;
mod run;
mod run_dry;
mod serve;
mod serve_log;
mod sessions;
mod status;
mod watch;

use std::process::ExitCode;

use clap::{FromArgMatches, Parser, Subcommand};
use rsbackup::ErrorKind;

/// Push-only, encrypted, deduplicating backups.
#[derive(Parser)]
#[command(
    name = "rsbackup",
    version,
    about = "Push-only, encrypted, deduplicating backups",
    propagate_version = true
)]
struct Cli {
    /// For a passphrase-protected --identity file: a file whose first line is its passphrase
    /// (without it, the passphrase is asked on the terminal; never give it as an argument).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "RSBACKUP_IDENTITY_PASSPHRASE_FILE"
    )]
    identity_passphrase_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an age identity file (private key) and print its recipient (public key).
    Keygen(keygen::Args),
    /// Create a repository for one or more age recipients.
    Init(init::Args),
    /// Store a directory as a new session of a client.
    Ingest(ingest::Args),
    /// List sessions.
    Sessions(sessions::Args),
    /// List the paths of a session.
    Ls(ls::Args),
    /// Find which sessions hold paths matching glob patterns.
    Find(find::Args),
    /// Show what changed between two sessions.
    Diff(diff::Args),
    /// Restore a session, or some of its paths, into a target directory.
    Restore(restore::Args),
    /// Write one file of a session to standard output.
    Cat(cat::Args),
    /// Mount the sessions as a read-only filesystem (FUSE) until interrupted.
    Mount(mount::Args),
    /// Check the repository's index and packs (and with --read-data, every record).
    Check(check::Args),
    /// The ssh forced command on the backup server (reads SSH_ORIGINAL_COMMAND).
    Serve(serve::Args),
    /// Print the authorized_keys lines binding each client's keys to `serve`.
    AuthorizedKeys(authorized_keys::Args),
    /// Append a `[clients.NAME]` table to server.toml for a client's key, and say what next.
    AddClient(add_client::Args),
    /// Check a configuration file and the paths, owners and modes it needs.
    #[command(subcommand)]
    Config(config_check::What),
    /// Accept a client's new (rebuilt) machine, or forget its recorded machines.
    AcceptMachine(accept_machine::Args),
    /// Roll sessions off by the retention rules and collect what no kept session needs.
    Prune(prune::Args),
    /// Keep a session whatever the retention rules say.
    Pin(pin::Args),
    /// Hand a pinned session back to the retention rules.
    Unpin(pin::Args),
    /// The client's backup run (from cron): hooks, prepare, rsync, complete, reports.
    Run(run::Args),
    /// Copy the repository's new chunks and sessions to an offsite mirror (or a local path).
    Mirror(mirror::Args),
    /// Rebuild what can be rebuilt from the packs and the records beside them.
    #[command(subcommand)]
    Repair(repair::What),
    /// The repository's recipients after `init`: list, add, remove, rewrap the keys to them.
    #[command(subcommand)]
    Key(key::What),
    /// One line per client: last good session, overdue or not; mirror lag (exit 22 on alarm).
    Status(status::Args),
    /// From a timer: mail overdue and recovered clients, due refusal alerts, the daily digest.
    Watch(watch::Args),
    /// What the repository holds, per client and in total, and its growth.
    Stats(status::StatsArgs),
    /// The mirror's side of `mirror` (sshd's forced command on the offsite box).
    MirrorServe(mirror::ServeArgs),
    /// Write the man pages (for packaging).
    #[command(hide = true)]
    GenerateMan(generate::ManArgs),
    /// Write a shell's completion file (for packaging).
    #[command(hide = true)]
    GenerateCompletions(generate::CompletionArgs),
}

/// How a command that did not fail ended.
pub enum Outcome {
    /// Everything done.
    Ok,
    /// Done, but something was left out (reported already).
    Partial,
    /// Done, and what it found needs the administrator (`status`: a client is overdue).
    Alarm,
}

/// Raise the soft open-file limit to the hard one (at most 2^20), as most long-running tools
/// do: ingest keeps a directory descriptor open per entry in flight and sizes its pipeline by
/// this limit, and a cron job's soft limit of 1024 would hold it back. Failure changes nothing.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.unwrap_or(u64::MAX).min(1 << 20);
    if limit.current.is_some_and(|c| c < want) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: limit.maximum,
            },
        );
    }
}

fn main() -> ExitCode {
    heap::bound_arenas();
    let args = help_help(std::env::args_os().collect());
    // Before the parse: a bad command line of a `--json` command answers in JSON too.
    let json_args = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    let parsed = cli_command()
        .try_get_matches_from(args)
        .and_then(|m| Ok((Cli::from_arg_matches(&m)?, json_mode(&m))));
    let (cli, json) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return clap_error(err, json_args),
    };
    std::panic::set_hook(Box::new(|info| {
        // A panic is a bug; still one line, with where it happened, and no backtrace.
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what: Vec<&str> = what.split_whitespace().collect();
        eprintln!(
            "rsbackup: internal error (a bug, please report it): {}{at}",
            what.join(" ")
        );
    }));
    raise_open_file_limit();
    open::set_passphrase_file(cli.identity_passphrase_file);
    let result = std::panic::catch_unwind(|| run(cli.command));
    let result = match result {
        Ok(r) => r,
        Err(_) => return ExitCode::from(exit::FAILURE),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::from(exit::OK),
        Ok(Outcome::Partial) => ExitCode::from(exit::PARTIAL),
        Ok(Outcome::Alarm) => ExitCode::from(exit::ALARM),
        Err(err) => {
            if output::broken_pipe() || is_broken_pipe(&err) {
                // `rsbackup ls ... | head`: the reader has all it wanted.
                return ExitCode::from(exit::OK);
            }
            let err = open::explain_full_disk(err);
            let line = one_line(&err);
            eprintln!("rsbackup: {line}");
            let code = exit_code(&err);
            if json {
                output::print_json_error(code, &line);
            }
            ExitCode::from(code)
        }
    }
}

fn run(command: Command) -> anyhow::Result<Outcome> {
    // Maintenance commands leave a line in the system log (serve and watch log their own).
    let logged = match &command {
        Command::Prune(_) => Some("prune"),
        Command::Mirror(_) => Some("mirror"),
        Command::Check(_) => Some("check"),
        _ => None,
    };
    let result = run_command(command);
    if let Some(name) = logged {
        let mut log = log::Log::open(&rsbackup::config::watch::LogConfig::default(), false);
        let (level, text) = match &result {
            Ok(Outcome::Ok) => (log::Level::Info, "ok".to_owned()),
            Ok(_) => (log::Level::Warning, "partial".to_owned()),
            Err(e) => (log::Level::Error, format!("failed: {}", one_line(e))),
        };
        log.event(level, &format!("{name}: {text}"), &[("command", name)]);
    }
    result
}

fn run_command(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Keygen(a) => keygen::run(a),
        Command::AcceptMachine(a) => accept_machine::run(a),
        Command::Init(a) => init::run(a),
        Command::Ingest(a) => ingest::run(a),
        Command::Sessions(a) => sessions::run(a),
        Command::Ls(a) => ls::run(a),
        Command::Find(a) => find::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Cat(a) => cat::run(a),
        Command::Mount(a) => mount::run(a),
        Command::Check(a) => check::run(a),
        Command::Serve(a) => serve::run(a),
        Command::AuthorizedKeys(a) => authorized_keys::run(a),
        Command::AddClient(a) => add_client::run(a),
        Command::Config(w) => config_check::run(w),
        Command::Prune(a) => prune::run(a),
        Command::Pin(a) => pin::run(a, true),
        Command::Unpin(a) => pin::run(a, false),
        Command::Run(a) => run::run(a),
        Command::Mirror(a) => mirror::run(a),
        Command::MirrorServe(a) => mirror::serve(a),
        Command::Status(a) => status::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Stats(a) => status::stats(a),
        Command::Repair(w) => repair::run(w),
        Command::Key(w) => key::run(w),
        Command::GenerateMan(a) => generate::man(a),
        Command::GenerateCompletions(a) => generate::completions(a),
    }
}

/// The clap definition, with the exit codes each command can return at the end of its help
/// (and all of them at the end of the top-level help): `--help` and the man pages say the same.
pub fn cli_command() -> clap::Command {
    use clap::CommandFactory;
    let mut command = Cli::command().after_help(exit::help(None));
    for (name, _) in exit::COMMANDS {
        command = command.mut_subcommand(*name, |sub| with_exit_codes(sub, name));
    }
    command
}

/// `sub` and its own subcommands (`key list`) with `name`'s exit codes after their help.
fn with_exit_codes(sub: clap::Command, name: &str) -> clap::Command {
    let codes = exit::help(Some(name));
    let text = match sub.get_after_help() {
        Some(before) => format!("{before}\n\n{codes}"),
        None => codes,
    };
    let nested: Vec<String> = sub
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut sub = sub.after_help(text);
    for child in nested {
        sub = sub.mut_subcommand(child, |s| with_exit_codes(s, name));
    }
    sub
}

/// Whether the command given asked for `--json` (at whatever level of subcommands).
fn json_mode(matches: &clap::ArgMatches) -> bool {
    if let Ok(Some(true)) = matches.try_get_one::<bool>("json") {
        return true;
    }
    matches
        .subcommand()
        .is_some_and(|(_, inner)| json_mode(inner))
}

/// Print a clap error as one line (help and version as clap renders them); with `--json` on the
/// command line, also as a JSON error on standard output.
fn clap_error(err: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(err.kind(), K::DisplayHelp | K::DisplayVersion)
        || err.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = err.print();
        return ExitCode::from(if err.use_stderr() {
            exit::USAGE
        } else {
            exit::OK
        });
    }
    let rendered = err.render().to_string();
    let body = rendered.split("\n\nUsage:").next().unwrap_or(&rendered);
    let body = body.trim().strip_prefix("error: ").unwrap_or(body.trim());
    let body: Vec<&str> = body.split_whitespace().collect();
    let line = format!(
        "{} (see {} --help)",
        body.join(" "),
        usage_command(&rendered)
    );
    eprintln!("rsbackup: {line}");
    if json {
        output::print_json_error(exit::USAGE, &line);
    }
    ExitCode::from(exit::USAGE)
}

/// `rsbackup help --help` (and `-h`) means the top-level help, which clap would take for the
/// help of a subcommand named `--help`.
fn help_help(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.len() == 3 && args[1] == "help" && (args[2] == "--help" || args[2] == "-h") {
        args.remove(1);
    }
    args
}

/// The command whose usage clap printed (`rsbackup restore`), so that a usage error points at
/// that command's help rather than the top-level one.
fn usage_command(rendered: &str) -> String {
    let Some(usage) = rendered.split("Usage: ").nth(1) else {
        return "rsbackup".into();
    };
    let words: Vec<&str> = usage
        .split_whitespace()
        .take_while(|w| !w.starts_with(['[', '<', '-']) && *w != "|")
        .collect();
    if words.first() == Some(&"rsbackup") {
        words.join(" ")
    } else {
        "rsbackup".into()
    }
}

/// The error chain as one line, without repeating a source the message already contains.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code for an error: from the library's kind, else failure.
fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(usage) = err.downcast_ref::<UsageError>() {
        let _ = usage;
        return exit::USAGE;
    }
    let Some(kind) = err
        .chain()
        .find_map(|c| c.downcast_ref::<rsbackup::Error>())
        .map(|e| e.kind())
    else {
        return exit::FAILURE;
    };
    match kind {
        ErrorKind::NotARepository => exit::NOT_A_REPOSITORY,
        ErrorKind::UnsupportedVersion => exit::UNSUPPORTED_VERSION,
        ErrorKind::WrongIdentity => exit::WRONG_IDENTITY,
        ErrorKind::TargetNotEmpty => exit::TARGET_NOT_EMPTY,
        ErrorKind::TargetNotDirectory => exit::TARGET_NOT_DIRECTORY,
        ErrorKind::Locked => exit::LOCKED,
        // A peer that broke the mirror protocol: what it sent cannot be trusted, as with
        // damaged data (exit code unchanged from before the kind existed).
        ErrorKind::Corrupt | ErrorKind::Protocol => exit::CORRUPT,
        ErrorKind::NotFound => exit::NOT_FOUND,
        ErrorKind::Config => exit::CONFIG,
        ErrorKind::Refused => exit::REFUSED,
        _ => exit::FAILURE,
    }
}

/// A command-line mistake the parser cannot see (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
