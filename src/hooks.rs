//! Running one configured hook: the one runner behind the client's `init-hooks` and
//! `cleanup-hooks` ([`crate::client::hooks`]) and the server's `prepare-hooks` and
//! `complete-hooks` ([`crate::server::hooks`]).
//!
//! A hook is an argv list, never a shell string. It runs with a cleared environment (no `PATH`:
//! the configuration requires an absolute program path), from `/`, with standard input from
//! `/dev/null`, in its own process group, which is killed whole when the hook outlives its
//! `timeout`: a script waiting on `pg_dump` must not leave `pg_dump` behind. Each side keeps the
//! output as its reports need it (`capture`) and words the outcome its own way: the client as a
//! step of its job report, the server as an entry of its JSON answer.

use std::process::Command;
use std::time::Duration;

use crate::config::Hook;
use crate::process::{Capture, Captured, Ended, Limits, run_capturing};

/// Run `hook` to its end or its time limit. An empty argv (which the configuration never lets
/// through) is [`Ended::NotStarted`].
pub fn run_hook(hook: &Hook, capture: Capture) -> Captured {
    let Some(program) = hook.argv.first() else {
        return Captured {
            ended: Ended::NotStarted("empty argv".into()),
            status: None,
            output: String::new(),
            elapsed: Duration::ZERO,
        };
    };
    let mut command = Command::new(program);
    command.args(&hook.argv[1..]).env_clear().current_dir("/");
    run_capturing(
        command,
        Limits {
            timeout: Some(hook.timeout),
            own_group: true,
        },
        capture,
        None,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A hook of `argv` with a limit of `secs` seconds (the tests of both sides use it).
    pub(crate) fn hook(argv: &[&str], secs: u64) -> Hook {
        Hook {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(secs),
        }
    }

    #[test]
    fn runs_from_the_root_and_an_empty_argv_does_not_start() {
        for capture in [Capture::Interleaved, Capture::Separate { max_each: 100 }] {
            let pwd = run_hook(&hook(&["/bin/pwd"], 10), capture);
            assert_eq!(pwd.ended, Ended::Exited(0), "{capture:?}");
            assert_eq!(pwd.output, "/\n", "{capture:?}");
            let empty = run_hook(&hook(&[], 10), capture);
            assert_eq!(empty.ended, Ended::NotStarted("empty argv".into()));
            assert_eq!(empty.status, None);
        }
    }
}
