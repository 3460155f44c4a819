//! The exit codes: one table, every number with one meaning, whatever the command.
//!
//! `--help` prints it (the top level all of it, each command the codes it can return),
//! docs/usage.md "Exit codes" repeats it, a `--json` error names the code's `kind` from it, and
//! the tests compare all three with this file (which they include as it is: it needs nothing
//! from the rest of the binary).

/// Success.
pub const OK: u8 = 0;
/// Any other failure.
pub const FAILURE: u8 = 1;
/// Bad command line.
pub const USAGE: u8 = 2;
/// Done in part (a partial session recorded, paths not restored, problems found).
pub const PARTIAL: u8 = 3;
/// Not a repository.
pub const NOT_A_REPOSITORY: u8 = 4;
/// Unsupported format version.
pub const UNSUPPORTED_VERSION: u8 = 5;
/// The identity file is not an age identity, or cannot unlock the repository.
pub const WRONG_IDENTITY: u8 = 6;
/// Restore target not empty.
pub const TARGET_NOT_EMPTY: u8 = 7;
/// Restore target not a directory.
pub const TARGET_NOT_DIRECTORY: u8 = 8;
/// Repository locked.
pub const LOCKED: u8 = 9;
/// Stored data is corrupt.
pub const CORRUPT: u8 = 10;
/// Session, path or file not found.
pub const NOT_FOUND: u8 = 11;
/// A configuration file does not load or is wrong.
pub const CONFIG: u8 = 12;
/// `run`: another run of this configuration holds the client lock.
pub const RUN_LOCKED: u8 = 13;
/// `run`: an init hook failed; no backup was made.
pub const INIT_HOOK: u8 = 14;
/// The server cannot be reached.
pub const UNREACHABLE: u8 = 15;
/// Refused: by the server (`run`) or this request (`serve`, `mirror-serve`).
pub const REFUSED: u8 = rsbackup::server::REFUSED_EXIT;
/// A connection, the transfer or a server step timed out.
pub const TIMED_OUT: u8 = 17;
/// rsync failed.
pub const TRANSFER: u8 = 18;
/// The server's prepare or complete failed.
pub const SERVER: u8 = 19;
/// `run`: the backup was made, but a hook or a server step after the ingest failed.
pub const WARNINGS: u8 = 20;
/// `run`: every source failed its guard (or does not exist): nothing was sent.
pub const NOTHING_TO_SEND: u8 = 21;
/// `status`: a client is overdue or a mirror target lags.
pub const ALARM: u8 = 22;

/// One exit code: its number, its name (the `kind` of a `--json` error) and what it means.
pub struct Code {
    /// The number.
    pub code: u8,
    /// A short name, `kebab-case`.
    pub name: &'static str,
    /// What it means, in one line of `--help`.
    pub meaning: &'static str,
}

/// Every exit code, in order.
pub const TABLE: &[Code] = &[
    Code {
        code: OK,
        name: "ok",
        meaning: "success",
    },
    Code {
        code: FAILURE,
        name: "failure",
        meaning: "failure: anything not listed below",
    },
    Code {
        code: USAGE,
        name: "usage",
        meaning: "usage: a bad command line",
    },
    Code {
        code: PARTIAL,
        name: "partial",
        meaning: "partial: done in part (see the command's summary on stderr)",
    },
    Code {
        code: NOT_A_REPOSITORY,
        name: "not-a-repository",
        meaning: "not a repository",
    },
    Code {
        code: UNSUPPORTED_VERSION,
        name: "unsupported-version",
        meaning: "unsupported format version (written by a newer rsbackup)",
    },
    Code {
        code: WRONG_IDENTITY,
        name: "wrong-identity",
        meaning: "wrong identity: not an age identity, or it opens nothing here",
    },
    Code {
        code: TARGET_NOT_EMPTY,
        name: "target-not-empty",
        meaning: "the restore target or mountpoint is not empty (use --force to restore anyway)",
    },
    Code {
        code: TARGET_NOT_DIRECTORY,
        name: "target-not-directory",
        meaning: "the restore target or mountpoint is not a directory",
    },
    Code {
        code: LOCKED,
        name: "locked",
        meaning: "the repository is locked by another process",
    },
    Code {
        code: CORRUPT,
        name: "corrupt",
        meaning: "corrupt data, or a peer broke the protocol",
    },
    Code {
        code: NOT_FOUND,
        name: "not-found",
        meaning: "not found: session, client, path, ingest source or identity file",
    },
    Code {
        code: CONFIG,
        name: "config",
        meaning: "configuration: a configuration file does not load or is wrong",
    },
    Code {
        code: RUN_LOCKED,
        name: "run-locked",
        meaning: "another run of this configuration holds the lock",
    },
    Code {
        code: INIT_HOOK,
        name: "init-hook",
        meaning: "an init hook failed; no backup was made",
    },
    Code {
        code: UNREACHABLE,
        name: "unreachable",
        meaning: "the server cannot be reached",
    },
    Code {
        code: REFUSED,
        name: "refused",
        meaning: "refused: by sshd or the rsbackup server (the audit log says why)",
    },
    Code {
        code: TIMED_OUT,
        name: "timed-out",
        meaning: "timed out: the connection, the transfer or a server step",
    },
    Code {
        code: TRANSFER,
        name: "transfer",
        meaning: "rsync failed",
    },
    Code {
        code: SERVER,
        name: "server",
        meaning: "the server's prepare or complete failed",
    },
    Code {
        code: WARNINGS,
        name: "warnings",
        meaning: "backup made, but a hook or a server step after the ingest failed",
    },
    Code {
        code: NOTHING_TO_SEND,
        name: "nothing-to-send",
        meaning: "no source could be sent (every guard failed)",
    },
    Code {
        code: ALARM,
        name: "alarm",
        meaning: "a client is overdue or a mirror target lags",
    },
];

/// Codes every command can return.
const COMMON: &[u8] = &[OK, FAILURE, USAGE];
/// Codes of opening a repository (a `repository.toml` that does not load is 12).
const REPO: &[u8] = &[NOT_A_REPOSITORY, UNSUPPORTED_VERSION, CORRUPT, CONFIG];
/// Codes of reading a session with an identity.
const READ: &[u8] = &[WRONG_IDENTITY, NOT_FOUND];

/// The codes a command can return beyond 0, 1 and 2, by its name as typed (`key`, `config`
/// and `repair` for all their subcommands).
pub const COMMANDS: &[(&str, &[&[u8]])] = &[
    ("keygen", &[]),
    ("init", &[&[UNSUPPORTED_VERSION]]),
    ("ingest", &[REPO, &[PARTIAL, LOCKED, NOT_FOUND]]),
    ("sessions", &[REPO, &[NOT_FOUND]]),
    ("ls", &[REPO, READ, &[PARTIAL]]),
    ("find", &[REPO, READ, &[PARTIAL]]),
    ("diff", &[REPO, READ, &[PARTIAL]]),
    (
        "restore",
        &[
            REPO,
            READ,
            &[
                PARTIAL,
                TARGET_NOT_EMPTY,
                TARGET_NOT_DIRECTORY,
                CONFIG,
                REFUSED,
            ],
        ],
    ),
    ("cat", &[REPO, READ]),
    (
        "mount",
        &[REPO, READ, &[TARGET_NOT_EMPTY, TARGET_NOT_DIRECTORY]],
    ),
    ("check", &[REPO, READ, &[PARTIAL, LOCKED]]),
    ("serve", &[&[PARTIAL, REFUSED]]),
    ("authorized-keys", &[&[CONFIG]]),
    ("add-client", &[&[CONFIG]]),
    ("config", &[&[CONFIG]]),
    ("accept-machine", &[REPO, &[NOT_FOUND, CONFIG]]),
    ("prune", &[REPO, &[LOCKED, CONFIG]]),
    ("pin", &[REPO, &[NOT_FOUND]]),
    ("unpin", &[REPO, &[NOT_FOUND]]),
    (
        "run",
        &[&[
            PARTIAL,
            CONFIG,
            RUN_LOCKED,
            INIT_HOOK,
            UNREACHABLE,
            REFUSED,
            TIMED_OUT,
            TRANSFER,
            SERVER,
            WARNINGS,
            NOTHING_TO_SEND,
        ]],
    ),
    ("mirror", &[REPO, &[LOCKED, NOT_FOUND, CONFIG]]),
    (
        "repair",
        &[REPO, &[PARTIAL, WRONG_IDENTITY, LOCKED, CONFIG]],
    ),
    ("key", &[REPO, &[WRONG_IDENTITY, LOCKED]]),
    ("status", &[REPO, &[CONFIG, ALARM]]),
    ("watch", &[REPO, &[CONFIG]]),
    ("stats", &[REPO, &[CONFIG]]),
    ("mirror-serve", &[&[CORRUPT, CONFIG, REFUSED]]),
];

/// The codes `command` can return, sorted (every code for an unknown name).
pub fn codes_of(command: &str) -> Vec<u8> {
    let Some((_, groups)) = COMMANDS.iter().find(|(name, _)| *name == command) else {
        return TABLE.iter().map(|c| c.code).collect();
    };
    let mut codes: Vec<u8> = COMMON
        .iter()
        .chain(groups.iter().copied().flatten())
        .copied()
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

/// The table entry of `code`.
pub fn code(code: u8) -> Option<&'static Code> {
    TABLE.iter().find(|c| c.code == code)
}

/// The `Exit codes:` block of `--help`: `command`'s codes, or all of them for `None`.
pub fn help(command: Option<&str>) -> String {
    let codes = match command {
        Some(name) => codes_of(name),
        None => TABLE.iter().map(|c| c.code).collect(),
    };
    let mut text = String::from("Exit codes (docs/usage.md \"Exit codes\"):\n");
    for number in codes {
        if let Some(c) = code(number) {
            text.push_str(&format!("  {:>2}  {:<21} {}\n", c.code, c.name, c.meaning));
        }
    }
    text.pop();
    text
}
