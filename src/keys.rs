//! Recipients after `init` (format-spec/keys.md "Changing recipients"): list, add and remove
//! recipients in `repository.toml`, and rewrap every data key and `keys/secret.age` to them.
//!
//! A rewrap is two phases around a durable commit marker, so that a crash at any moment
//! leaves a repository that restores and a rewrap that a rerun finishes:
//!
//! 1. stage: each wrapped key is unwrapped with the administrator's identity and wrapped to
//!    the recipients, into `keys/rewrap/<id>.age` (and `keys/rewrap/secret.age`); nothing in
//!    use changes, so a rerun with the same identity resumes where it stopped;
//! 2. once `keys/rewrap/commit` exists: the index rows are replaced in one transaction, then
//!    the `keys/data/` files and `keys/secret.age`; this phase needs no identity and is
//!    repeated whole by a rerun. The staged files go first and the marker last.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use crate::crypto::wrap::{
    Identities, Recipients, unwrap_data_key_scoped, wrap_data_key, wrap_scoped_data_key,
    wrap_secret,
};
use crate::error::{Error, ErrorKind, Result};
use crate::gc::Failpoint;
use crate::ids::KeyId;
use crate::repo::Repo;
use crate::store::durable::{create_dir_synced, sync_dir, write_atomic};
use crate::store::records::write_data_key;

/// Directory of a rewrap in progress.
pub const REWRAP_DIR: &str = "keys/rewrap";
/// In [`REWRAP_DIR`]: the recipients being wrapped to, one a line.
const RECIPIENTS_FILE: &str = "recipients";
/// In [`REWRAP_DIR`]: present once every key is staged (phase 2 may begin).
const COMMIT_FILE: &str = "commit";
/// In [`REWRAP_DIR`]: the staged `keys/secret.age`.
const SECRET_FILE: &str = "secret.age";

/// The named points where a failpoint can abort `key rewrap`, in the order they are reached.
pub const REWRAP_FAILPOINTS: &[&str] = &[
    "rewrap-after-stage",
    "rewrap-after-secret-stage",
    "rewrap-after-commit",
    "rewrap-after-index",
    "rewrap-after-key-file",
    "rewrap-after-secret",
    "rewrap-after-unstage",
];

/// What a rewrap did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RewrapReport {
    /// Data keys wrapped anew by this run.
    pub staged: u64,
    /// Data keys an interrupted run had already staged.
    pub resumed: u64,
    /// Data keys whose index row and file now hold the new wrapping.
    pub replaced: u64,
    /// The recipients every key is now wrapped to.
    pub recipients: Vec<String>,
    /// The clients whose own scope's keys are also wrapped to their restore recipient.
    pub client_recipients: BTreeMap<String, String>,
}

/// The recipients a key of `client`'s own scope is wrapped to: the repository's, then the
/// client's `restore-recipient`.
pub fn client_recipients(repo: &Repo, restore_recipient: &str) -> Result<Recipients> {
    let mut list = repo.config().recipients.clone();
    list.push(restore_recipient.trim().to_owned());
    Recipients::parse(&list)
        .map_err(|e| e.context("the repository's recipients and the client's restore-recipient"))
}

/// Record the restore recipient of each client in `clients` (`None`: it has none any more),
/// as server.toml says, so that the next [`rewrap`] wraps each client's scoped keys to it.
pub fn set_restore_recipients(repo: &Repo, clients: &[(String, Option<String>)]) -> Result<()> {
    let index = repo.index()?;
    for (client, recipient) in clients {
        match recipient {
            Some(r) => {
                Recipients::parse(std::slice::from_ref(r))
                    .map_err(|e| e.context(format!("restore-recipient of client {client}")))?;
                index.set_restore_recipient(client, r.trim())?
            }
            None => index.remove_restore_recipient(client)?,
        }
    }
    Ok(())
}

/// What a rewrap wraps to: the repository's recipients, one a line, then `client NAME
/// RECIPIENT` for each client scope with a restore recipient (keys.md "Changing recipients").
fn wanted_lines(repo: &Repo, clients: &BTreeMap<String, String>) -> Vec<String> {
    let mut want = repo.config().recipients.clone();
    want.extend(clients.iter().map(|(c, r)| format!("client {c} {r}")));
    want
}

/// Wrap `key` anew: a key of a client's scope to the repository's recipients and the client's
/// restore recipient (if it still has one), any other to the repository's recipients.
fn rewrap_one(
    repo: &Repo,
    recipients: &Recipients,
    clients: &BTreeMap<String, String>,
    key: &crate::crypto::wrap::UnwrappedKey,
) -> Result<Vec<u8>> {
    match &key.scope {
        None => wrap_data_key(&key.key, recipients),
        Some(scope) => match clients.get(&scope.client) {
            Some(r) => wrap_scoped_data_key(&key.key, scope, &client_recipients(repo, r)?),
            None => wrap_scoped_data_key(&key.key, scope, recipients),
        },
    }
}

/// Whether an interrupted rewrap is waiting for a rerun.
pub fn rewrap_pending(repo: &Repo) -> bool {
    repo.root().join(REWRAP_DIR).exists()
}

/// Add a recipient to `repository.toml`. Existing keys follow after [`rewrap`].
pub fn add_recipient(repo: &mut Repo, recipient: &str) -> Result<()> {
    let _lock = repo.lock_exclusive(false)?;
    let recipient = recipient.trim();
    let mut list = repo.config().recipients.clone();
    if list.iter().any(|r| r == recipient) {
        return Err(Error::invalid(format!(
            "{recipient} is already a recipient of {}",
            repo.root().display()
        )));
    }
    list.push(recipient.to_string());
    repo.set_recipients(&list)
}

/// Remove a recipient from `repository.toml`; refuses the last one. Keys stay readable by
/// its identity until [`rewrap`].
pub fn remove_recipient(repo: &mut Repo, recipient: &str) -> Result<()> {
    let _lock = repo.lock_exclusive(false)?;
    let recipient = recipient.trim();
    let list = repo.config().recipients.clone();
    if !list.iter().any(|r| r == recipient) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{recipient} is not a recipient of {} (see `rsbackup key list`)",
                repo.root().display()
            ),
        ));
    }
    let rest: Vec<String> = list.into_iter().filter(|r| r != recipient).collect();
    if rest.is_empty() {
        return Err(Error::invalid(format!(
            "refusing to remove {recipient}: it is the last recipient of {}, and without one \
             nothing could ever be restored (add the new recipient first)",
            repo.root().display()
        )));
    }
    repo.set_recipients(&rest)
}

fn staged_path(dir: &Path, id: KeyId) -> PathBuf {
    dir.join(format!("{:020}.age", id.0))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format_args!("reading {}", path.display()), e))
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format_args!("removing {}", path.display()), e)),
    }
}

/// The recipients a staged rewrap wraps to, or `None` when there is no (started) rewrap.
fn staged_recipients(dir: &Path) -> Result<Option<Vec<String>>> {
    match std::fs::read_to_string(dir.join(RECIPIENTS_FILE)) {
        Ok(text) => Ok(Some(text.lines().map(str::to_string).collect())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(
            format_args!("reading {}", dir.join(RECIPIENTS_FILE).display()),
            e,
        )),
    }
}

/// Remove the staging directory: staged keys first, the commit marker and recipients last.
fn unstage(dir: &Path, fail: &Failpoint) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format_args!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format_args!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        if name != COMMIT_FILE && name != RECIPIENTS_FILE {
            remove(&entry.path())?;
        }
    }
    sync_dir(dir)?;
    fail.hit("rewrap-after-unstage");
    remove(&dir.join(COMMIT_FILE))?;
    sync_dir(dir)?;
    remove(&dir.join(RECIPIENTS_FILE))?;
    std::fs::remove_dir(dir)
        .map_err(|e| Error::io(format_args!("removing {}", dir.display()), e))?;
    sync_dir(dir.parent().unwrap_or(dir))
}

/// Phase 1: stage every data key and the secret wrapped to `want`.
fn stage(
    repo: &Repo,
    dir: &Path,
    identities: &Identities,
    want: &[String],
    clients: &BTreeMap<String, String>,
    report: &mut RewrapReport,
    fail: &Failpoint,
) -> Result<()> {
    if staged_recipients(dir)?.is_some_and(|had| had != want) {
        // Staged for another list (recipients changed since): start over.
        unstage(dir, &Failpoint::default())?;
    }
    let secret_path = dir.join(SECRET_FILE);
    let recipients = repo.recipients()?;
    // The secret first: an identity that opens nothing is refused before anything is written.
    let secret = match secret_path.exists() {
        true => None,
        false => Some(wrap_secret(&repo.unlock_secret(identities)?, &recipients)?),
    };
    if !dir.exists() {
        create_dir_synced(dir)?;
    }
    write_atomic(
        &dir.join(RECIPIENTS_FILE),
        format!("{}\n", want.join("\n")).as_bytes(),
        0o600,
    )?;
    let index = repo.index()?;
    for id in index.data_key_ids()? {
        let path = staged_path(dir, id);
        if path.exists() {
            report.resumed += 1;
            continue;
        }
        let key = unwrap_data_key_scoped(&index.data_key(id)?, identities).map_err(|e| match e
            .kind()
        {
            ErrorKind::WrongIdentity => e.context(format_args!(
                "data key {} (give every identity the keys are wrapped to now: a key \
                     stored before an earlier change of recipients may need another one)",
                id.0
            )),
            _ => e.context(format_args!("data key {}", id.0)),
        })?;
        write_atomic(&path, &rewrap_one(repo, &recipients, clients, &key)?, 0o600)?;
        report.staged += 1;
        fail.hit("rewrap-after-stage");
    }
    if let Some(wrapped) = secret {
        write_atomic(&secret_path, &wrapped, 0o600)?;
    }
    fail.hit("rewrap-after-secret-stage");
    write_atomic(&dir.join(COMMIT_FILE), b"", 0o600)?;
    fail.hit("rewrap-after-commit");
    Ok(())
}

/// Phase 2: put the staged keys in place (index rows in one transaction, then the files).
fn swap(repo: &Repo, dir: &Path, report: &mut RewrapReport, fail: &Failpoint) -> Result<()> {
    let index = repo.index()?;
    let mut staged = Vec::new();
    for id in index.data_key_ids()? {
        let path = staged_path(dir, id);
        if path.exists() {
            staged.push((id, read(&path)?));
        }
    }
    let replaced = index.replace_data_keys(&staged)?;
    fail.hit("rewrap-after-index");
    for (id, wrapped) in staged.iter().filter(|(id, _)| replaced.contains(id)) {
        write_data_key(repo.root(), *id, wrapped)?;
        fail.hit("rewrap-after-key-file");
    }
    report.replaced = replaced.len() as u64;
    let secret_path = dir.join(SECRET_FILE);
    if secret_path.exists() {
        repo.write_secret_age(&read(&secret_path)?)?;
    }
    fail.hit("rewrap-after-secret");
    unstage(dir, fail)
}

/// Rewrap every data key (index rows and `keys/data/` files) and `keys/secret.age` to the
/// recipients in `repository.toml` (a key of a client's own scope also to the restore
/// recipient the index records for that client: see [`set_restore_recipients`]); resumes or
/// finishes an interrupted rewrap. `identities` must open the keys as they are wrapped now.
pub fn rewrap(repo: &Repo, identities: &Identities, fail: &Failpoint) -> Result<RewrapReport> {
    let _lock = repo.lock_exclusive(false)?;
    let dir = repo.root().join(REWRAP_DIR);
    let clients = repo.index()?.restore_recipients()?;
    let want = wanted_lines(repo, &clients);
    let mut report = RewrapReport {
        recipients: repo.config().recipients.clone(),
        client_recipients: clients.clone(),
        ..RewrapReport::default()
    };
    if dir.join(COMMIT_FILE).exists() {
        // An interrupted run got past the commit: finish it, whatever it wrapped to.
        let had = staged_recipients(&dir)?;
        swap(repo, &dir, &mut report, fail)?;
        if had.as_deref() == Some(&want[..]) {
            return Ok(report);
        }
    }
    stage(repo, &dir, identities, &want, &clients, &mut report, fail)?;
    swap(repo, &dir, &mut report, fail)?;
    Ok(report)
}
