//! `rsbackup config check`: after a file loads, what the account that uses it needs on disk.
//!
//! Loading ([`ServerConfig::load`], [`ClientConfig::load`]) checks the text; this checks the
//! machine: the paths the file names exist, are of the right kind, and can be read or written
//! by the user running the check (run it as the account that runs the service: on the server,
//! `runuser -u rsbackup -- rsbackup config check --server ...`). Each finding names the line of
//! the key it is about, so the binary prints `file:line: what`, as `sshd -t` does.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::Access;

use super::{ClientConfig, Hook, MailTransport, ServerConfig};

/// One problem: the 1-based line of the key it is about (when the key is written in the file)
/// and what is wrong, in words an administrator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The line of the key in the file, if the key is written there (else a default applies).
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub what: String,
}

/// What the file's user may need to do with a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Read a file.
    ReadFile,
    /// Run a program.
    Execute,
    /// Create and remove entries in a directory.
    WriteDir,
}

/// Collects findings, with the file's text to find the lines of keys.
struct Checker<'a> {
    doc: Option<toml_edit::Document<&'a str>>,
    text: &'a str,
    /// Checking the server's file as root: every access check passes, so ownership is checked
    /// instead (the server's account is not root; the client runs as root).
    root: bool,
    findings: Vec<Finding>,
}

impl<'a> Checker<'a> {
    fn new(text: &'a str, server: bool) -> Self {
        Checker {
            doc: toml_edit::Document::parse(text).ok(),
            text,
            root: server && rustix::process::geteuid().is_root(),
            findings: Vec::new(),
        }
    }

    /// The line of `key` inside the table `table` (a dotted path: `server`, `clients.web1`).
    fn line(&self, table: &str, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item = doc.as_item();
        for part in table.split('.').filter(|p| !p.is_empty()) {
            item = item.get(part)?;
        }
        let span = item.get(key)?.span()?;
        Some(
            self.text[..span.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1,
        )
    }

    fn report(&mut self, table: &str, key: &str, what: String) {
        let line = self.line(table, key);
        self.findings.push(Finding { line, what });
    }

    /// Check `path` (the value of `key` in `table`) for `need`.
    fn path(&mut self, table: &str, key: &str, path: &Path, need: Need) {
        if let Some(problem) = path_problem(path, need, self.root) {
            self.report(
                table,
                key,
                format!("{key} = {:?}: {problem}", path.display()),
            );
        }
    }

    /// The directory a file is created in (alert state, audit log) must be writable.
    fn parent(&mut self, table: &str, key: &str, path: &Path) {
        let parent = path.parent().unwrap_or(Path::new("/"));
        if let Some(problem) = path_problem(parent, Need::WriteDir, self.root) {
            self.report(
                table,
                key,
                format!(
                    "{key} = {:?}: its directory {}: {problem}",
                    path.display(),
                    parent.display()
                ),
            );
        }
    }

    fn hooks(&mut self, table: &str, key: &str, hooks: &[Hook]) {
        for hook in hooks {
            if let Some(program) = hook.argv.first() {
                self.path(table, key, Path::new(program), Need::Execute);
            }
        }
    }

    fn mail(&mut self, transport: &MailTransport) {
        match transport {
            MailTransport::Smtp { login, .. } => {
                if let Some((_, file)) = login {
                    self.path("mail", "password-file", file, Need::ReadFile);
                }
            }
            MailTransport::Sendmail { command } => {
                self.path("mail", "sendmail", command, Need::Execute)
            }
            MailTransport::Directory { path } => {
                self.path("mail", "directory", path, Need::WriteDir)
            }
        }
    }
}

/// What stops the running user from using `path` as `need`, if anything.
fn path_problem(path: &Path, need: Need, root: bool) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some("does not exist".into());
        }
        Err(e) => return Some(format!("cannot be inspected: {e}")),
    };
    let (kind_ok, kind, access) = match need {
        Need::ReadFile => (meta.is_file(), "a file", Access::READ_OK),
        Need::Execute => (meta.is_file(), "a program", Access::EXEC_OK),
        Need::WriteDir => (
            meta.is_dir(),
            "a directory",
            Access::WRITE_OK | Access::EXEC_OK,
        ),
    };
    if !kind_ok {
        return Some(format!("is not {kind}"));
    }
    if need == Need::Execute && meta.permissions().mode() & 0o111 == 0 {
        return Some("is not executable".into());
    }
    if rustix::fs::access(path, access).is_err() {
        let what = match need {
            Need::ReadFile => "cannot be read",
            Need::Execute => "cannot be run",
            Need::WriteDir => "cannot be written",
        };
        return Some(format!(
            "{what} by this user (owner uid {}, group gid {}, mode {:o})",
            meta.uid(),
            meta.gid(),
            meta.permissions().mode() & 0o7777
        ));
    }
    if root && need == Need::WriteDir && meta.uid() == 0 {
        // Root may write anywhere, so the access check proves nothing; a directory the server
        // writes that root owns is the mistake of an `init` or `mkdir` run as root.
        return Some(
            "is owned by root: the backup account cannot write it (chown -R it to the account, \
             and run this check as the account: runuser -u rsbackup -- rsbackup config check ...)"
                .into(),
        );
    }
    None
}

/// What the server's account needs: `config` loaded from `text`.
pub fn check_server(config: &ServerConfig, text: &str) -> Vec<Finding> {
    let mut c = Checker::new(text, true);
    let repo = &config.repository;
    c.path("", "repository", repo, Need::WriteDir);
    if repo.is_dir() && !repo.join("repository.toml").is_file() {
        c.report(
            "",
            "repository",
            format!(
                "repository = {:?} is not a repository yet: create it as the backup account \
                 (runuser -u rsbackup -- rsbackup init --repo {} --recipient age1...)",
                repo.display(),
                repo.display()
            ),
        );
    }
    let index = repo.join("index.db");
    if index.exists() && rustix::fs::access(&index, Access::WRITE_OK).is_err() {
        c.report(
            "",
            "repository",
            format!("{}: cannot be written by this user", index.display()),
        );
    }
    c.path("", "staging-root", &config.staging_root, Need::WriteDir);
    c.parent("", "alert-state", &config.alert_state);
    c.parent("", "audit-log", &config.audit_log);
    c.path("", "rsync-path", &config.rsync_path, Need::Execute);
    c.mail(&config.mail.transport);
    for (name, client) in &config.clients {
        let table = format!("clients.{name}");
        c.hooks(&table, "prepare-hooks", &client.prepare_hooks);
        c.hooks(&table, "complete-hooks", &client.complete_hooks);
    }
    for (name, target) in &config.mirrors.targets {
        c.path(
            &format!("mirrors.{name}"),
            "ssh-key",
            &target.ssh_key,
            Need::ReadFile,
        );
    }
    for (name, mirror) in &config.mirrors.mirror_of {
        // Created on the primary's first contact: its parent must be writable then.
        let table = format!("mirror-of.{name}");
        if mirror.repository.exists() {
            c.path(&table, "repository", &mirror.repository, Need::WriteDir);
        } else {
            c.parent(&table, "repository", &mirror.repository);
        }
    }
    c.findings
}

/// What the client's run needs: `config` loaded from `text`.
pub fn check_client(config: &ClientConfig, text: &str) -> Vec<Finding> {
    let mut c = Checker::new(text, false);
    let key = &config.server.ssh_key;
    c.path("server", "ssh-key", key, Need::ReadFile);
    if let Ok(meta) = std::fs::metadata(key)
        && meta.permissions().mode() & 0o077 != 0
    {
        c.report(
            "server",
            "ssh-key",
            format!(
                "ssh-key = {:?}: mode {:o} lets others read it, and ssh refuses such a key \
                 (chmod 600 it)",
                key.display(),
                meta.permissions().mode() & 0o777
            ),
        );
    }
    if let Some(known) = &config.server.known_hosts {
        c.path("server", "known-hosts", known, Need::ReadFile);
    }
    c.path("", "rsync-path", &config.rsync_path, Need::Execute);
    c.path("", "ssh-path", &config.ssh_path, Need::Execute);
    c.path("", "state-dir", &config.state_dir, Need::WriteDir);
    c.path(
        "",
        "machine-id-file",
        &config.machine_id_file,
        Need::ReadFile,
    );
    for (source, guard) in config.sources.iter().zip(&config.source_guards) {
        if guard.must_exist && !source.exists() {
            c.report(
                "",
                "sources",
                format!(
                    "sources: {:?} does not exist (a run would be partial; write \
                     {{ path = ..., must-exist = false }} if it may be missing)",
                    source.display()
                ),
            );
        }
    }
    c.hooks("", "init-hooks", &config.init_hooks);
    c.hooks("", "cleanup-hooks", &config.cleanup_hooks);
    c.mail(&config.mail.transport);
    c.findings
}

#[cfg(test)]
#[path = "preflight_tests.rs"]
mod tests;
