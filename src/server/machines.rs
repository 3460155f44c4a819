//! The machines each client has been seen on: an ssh key identifies a key, not a machine, so the
//! server records the machine identity a client states (format-spec/wire.md, the identity
//! prefix) the first time it sees one, and handles any other machine using the same key as the
//! client's `on-new-machine` says: refuse it, allow it and tell the administrator once, or
//! allow it. Two machines can then not alternate in one client's staging unnoticed.
//!
//! The record is a small JSON file per client, `staging-root/.machines/NAME.json`
//! (format-spec/machines.md), beside the run leases (`.leases/`), not a table in the index: it
//! is authorization state like the leases, read on every request before anything touches the
//! repository, and a file keeps the index schema (and its readers, the mirrors) unchanged. Each
//! read-modify-write holds `flock` on `NAME.lock` for its whole decision, so two new machines
//! arriving at once cannot both be "first"; the file is replaced by rename after an fsync.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::server::OnNewMachine;
use crate::config::{ClientName, ServerConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::format::client_identity::MachineId;
use crate::server::audit::AuditRecord;
use crate::server::authz::Decision;

/// The version of the machines file this build writes and reads.
pub const MACHINES_VERSION: u32 = 1;

/// How a machine came to be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recorded {
    /// The first machine this client was seen on.
    FirstUse,
    /// A new machine, allowed with an alert (`on-new-machine = "alert"`).
    Alert,
    /// A new machine, allowed (`on-new-machine = "accept"`).
    Accept,
    /// Recorded by the administrator (`rsbackup accept-machine`).
    AcceptMachine,
}

/// One recorded machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineEntry {
    /// The machine id, 32 lowercase hex digits.
    pub id: String,
    /// When it was recorded (Unix seconds, server time).
    pub recorded: i64,
    /// How.
    pub how: Recorded,
}

/// The file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachinesFile {
    version: u32,
    client: String,
    machines: Vec<MachineEntry>,
}

/// What a request's machine is, for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineVerdict {
    /// A recorded machine of this client.
    Known,
    /// No machine is recorded yet: this one becomes the client's machine.
    FirstUse,
    /// Another machine than the recorded ones.
    New {
        /// What the client's `on-new-machine` says.
        policy: OnNewMachine,
        /// The machines recorded so far.
        known: Vec<MachineEntry>,
    },
}

/// One client's machine record, locked while this value lives.
#[derive(Debug)]
pub struct MachineBook {
    path: PathBuf,
    client: ClientName,
    machines: Vec<MachineEntry>,
    _lock: std::fs::File,
}

/// `staging-root/.machines/NAME.json`.
pub fn machines_path(staging_root: &Path, client: &ClientName) -> PathBuf {
    staging_root
        .join(".machines")
        .join(format!("{}.json", client.as_str()))
}

impl MachineBook {
    /// Lock and read `client`'s record (none yet: empty). The directory is created on first
    /// use. A file that does not parse, is of another version or names another client is an
    /// error (refuse rather than start afresh: a fresh start would let any machine in).
    pub fn open(staging_root: &Path, client: &ClientName) -> Result<MachineBook> {
        let path = machines_path(staging_root, client);
        let dir = path.parent().unwrap_or(staging_root);
        crate::server::staging_root::server_dir(dir)?;
        let lock_path = path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e.into()))?;
        let machines = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            Ok(bytes) => parse_file(&bytes, client).map_err(|why| {
                Error::corrupt(format!(
                    "{}: {why}; remove it (rsbackup accept-machine --client {client} without \
                     --machine) to record the client's next machine afresh",
                    path.display()
                ))
            })?,
        };
        Ok(MachineBook {
            path,
            client: client.clone(),
            machines,
            _lock: lock,
        })
    }

    /// The recorded machines, oldest first.
    pub fn machines(&self) -> &[MachineEntry] {
        &self.machines
    }

    /// What `machine` is for this client.
    pub fn check(&self, machine: &MachineId, policy: OnNewMachine) -> MachineVerdict {
        let id = machine.to_string();
        if self.machines.is_empty() {
            MachineVerdict::FirstUse
        } else if self.machines.iter().any(|m| m.id == id) {
            MachineVerdict::Known
        } else {
            MachineVerdict::New {
                policy,
                known: self.machines.clone(),
            }
        }
    }

    /// Add `machine` (if it is not recorded yet) and write the file.
    pub fn record(&mut self, machine: &MachineId, now: i64, how: Recorded) -> Result<()> {
        let id = machine.to_string();
        if self.machines.iter().any(|m| m.id == id) {
            return Ok(());
        }
        self.machines.push(MachineEntry {
            id,
            recorded: now,
            how,
        });
        self.write()
    }

    /// Make `machine` the client's only machine (a rebuilt machine replaces the old one).
    /// Returns the machines it replaced.
    pub fn replace(&mut self, machine: &MachineId, now: i64) -> Result<Vec<MachineEntry>> {
        let old = std::mem::take(&mut self.machines);
        self.machines.push(MachineEntry {
            id: machine.to_string(),
            recorded: now,
            how: Recorded::AcceptMachine,
        });
        self.write()?;
        Ok(old)
    }

    /// Forget every machine: the client's next request is a first use. Returns what it forgot.
    pub fn forget(&mut self) -> Result<Vec<MachineEntry>> {
        let old = std::mem::take(&mut self.machines);
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", self.path.display()), e)),
        }
        sync_dir(&self.path)?;
        Ok(old)
    }

    fn write(&self) -> Result<()> {
        let file = MachinesFile {
            version: MACHINES_VERSION,
            client: self.client.to_string(),
            machines: self.machines.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| {
            Error::new(ErrorKind::Internal, "encoding the machines file").with_source(e)
        })?;
        json.push(b'\n');
        let tmp = self.path.with_extension("json.tmp");
        let what = |doing: &str| format!("{doing} {}", tmp.display());
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(what("creating"), e))?;
        out.write_all(&json)
            .and_then(|()| out.sync_all())
            .map_err(|e| Error::io(what("writing"), e))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))?;
        sync_dir(&self.path)
    }
}

/// A machine to record once the request is on record ([`MachinePending::commit`]).
#[derive(Debug)]
pub struct MachinePending {
    book: MachineBook,
    machine: MachineId,
    how: Recorded,
}

/// Check the machine an allowed request states against its client's record: a known machine
/// passes unchanged; a first or new machine the policy lets in passes with the reason saying so
/// and a [`MachinePending`] to record it; a new machine under `refuse` (or a record that cannot
/// be read) turns the decision into a refusal. A refused decision passes unchanged.
pub fn gate(config: &ServerConfig, decision: Decision) -> (Decision, Option<MachinePending>) {
    if !decision.allowed {
        return (decision, None);
    }
    let Some(identity) = decision.identity.clone() else {
        return (decision, None);
    };
    let Some(policy) = config.client(&identity.client) else {
        return (decision, None);
    };
    let client = &policy.name;
    let refuse = |decision: Decision, why: String| Decision {
        allowed: false,
        reason: format!("client {client}: {why}"),
        ..decision
    };
    let book = match MachineBook::open(&config.staging_root, client) {
        Ok(book) => book,
        Err(e) => {
            return (
                refuse(decision, format!("machine record unusable: {e}")),
                None,
            );
        }
    };
    let machine = identity.machine;
    let (how, note) = match book.check(&machine, policy.on_new_machine) {
        MachineVerdict::Known => return (decision, None),
        MachineVerdict::FirstUse => (
            Recorded::FirstUse,
            format!("first request from this client: machine {machine} recorded as its machine"),
        ),
        MachineVerdict::New {
            policy: mode,
            known,
        } => {
            let known: Vec<String> = known
                .iter()
                .map(|m| {
                    let when = jiff::Timestamp::from_second(m.recorded)
                        .map(|t| t.strftime("%Y-%m-%d").to_string())
                        .unwrap_or_default();
                    format!("{} since {when}", m.id)
                })
                .collect();
            let what = format!(
                "machine {machine} is not a machine recorded for this client ({})",
                known.join(", ")
            );
            match mode {
                OnNewMachine::Refuse => {
                    let why = format!(
                        "{what}; on-new-machine = refuse: a cloned machine, or a copied key and \
                         client.toml? If the client's machine was rebuilt: rsbackup \
                         accept-machine --config {} --client {client} --machine {machine}",
                        config.path.display()
                    );
                    return (refuse(decision, why), None);
                }
                OnNewMachine::Alert => (
                    Recorded::Alert,
                    format!("NEW MACHINE: {what}; allowed and recorded (on-new-machine = alert)"),
                ),
                OnNewMachine::Accept => (
                    Recorded::Accept,
                    format!("new machine: {what}; allowed and recorded (on-new-machine = accept)"),
                ),
            }
        }
    };
    let decision = Decision {
        reason: format!("{}; {note}", decision.reason),
        ..decision
    };
    (decision, Some(MachinePending { book, machine, how }))
}

impl MachinePending {
    /// Record the machine, after the request's audit row is written. Under `alert` the
    /// administrator is mailed first (within [`crate::server::alerts::ALERT_MAIL_TIMEOUT`]), and
    /// the machine is recorded only once the mail went out: a mail that fails is tried again by
    /// the machine's next request. The request goes ahead either way (the audit row says it).
    pub fn commit(mut self, config: &ServerConfig, host: &str, record: &AuditRecord) -> Result<()> {
        if self.how == Recorded::Alert
            && crate::server::alerts::send_notice(config, host, &record.client, &record.to_line())
                .is_err()
        {
            return Ok(());
        }
        self.book
            .record(&self.machine, record.time.as_second(), self.how)
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

pub(crate) fn parse_file(
    bytes: &[u8],
    client: &ClientName,
) -> std::result::Result<Vec<MachineEntry>, String> {
    let file: MachinesFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not a machines file: {e}"))?;
    if file.version != MACHINES_VERSION {
        return Err(format!(
            "version {}; this build reads version {MACHINES_VERSION}",
            file.version
        ));
    }
    if file.client != client.as_str() {
        return Err(format!("it names client {:?}", file.client));
    }
    for m in &file.machines {
        MachineId::parse(&m.id)?;
    }
    Ok(file.machines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MachineId {
        MachineId::from_bytes([n; 16])
    }

    #[test]
    fn first_use_then_known_then_new() {
        let dir = tempfile::tempdir().unwrap();
        let web1 = ClientName::parse("web1").unwrap();
        let mut book = MachineBook::open(dir.path(), &web1).unwrap();
        assert_eq!(
            book.check(&id(1), OnNewMachine::Refuse),
            MachineVerdict::FirstUse
        );
        book.record(&id(1), 100, Recorded::FirstUse).unwrap();
        drop(book);

        let mut book = MachineBook::open(dir.path(), &web1).unwrap();
        assert_eq!(
            book.check(&id(1), OnNewMachine::Refuse),
            MachineVerdict::Known
        );
        let MachineVerdict::New { policy, known } = book.check(&id(2), OnNewMachine::Alert) else {
            panic!("a second machine is new");
        };
        assert_eq!(policy, OnNewMachine::Alert);
        assert_eq!(known[0].id, id(1).to_string());
        book.record(&id(2), 200, Recorded::Alert).unwrap();
        book.record(&id(2), 300, Recorded::Alert).unwrap();
        assert_eq!(book.machines().len(), 2, "recorded once");
        drop(book);

        // Another client's record is its own.
        let db1 = ClientName::parse("db1").unwrap();
        let book = MachineBook::open(dir.path(), &db1).unwrap();
        assert_eq!(
            book.check(&id(1), OnNewMachine::Refuse),
            MachineVerdict::FirstUse
        );
        drop(book);

        let text = std::fs::read_to_string(machines_path(dir.path(), &web1)).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(text.contains("\"how\": \"first-use\""), "{text}");

        let mut book = MachineBook::open(dir.path(), &web1).unwrap();
        let old = book.replace(&id(3), 400).unwrap();
        assert_eq!(old.len(), 2);
        assert_eq!(
            book.check(&id(1), OnNewMachine::Refuse),
            MachineVerdict::New {
                policy: OnNewMachine::Refuse,
                known: book.machines().to_vec()
            }
        );
        assert_eq!(
            book.check(&id(3), OnNewMachine::Refuse),
            MachineVerdict::Known
        );
        assert_eq!(book.forget().unwrap().len(), 1);
        assert_eq!(
            book.check(&id(1), OnNewMachine::Refuse),
            MachineVerdict::FirstUse
        );
        drop(book);
        let book = MachineBook::open(dir.path(), &web1).unwrap();
        assert!(book.machines().is_empty());
    }

    fn config(staging: &Path, policy: &str) -> ServerConfig {
        let text = format!(
            "repository = \"/srv/repo\"\nstaging-root = {:?}\n[mail]\nfrom = \"a@b.c\"\n\
             admin = [\"a@b.c\"]\ntransport = \"directory\"\ndirectory = \"/nonexistent\"\n\
             [clients.web1]\nkeys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111\"]\n\
             addresses = [\"0.0.0.0/0\"]\nwindows = [\"daily 00:00-24:00\"]\n\
             on-new-machine = {policy:?}\n",
            staging.display().to_string()
        );
        ServerConfig::parse(&text, Path::new("/etc/rsbackup/server.toml")).unwrap()
    }

    fn allowed(machine: MachineId) -> Decision {
        Decision {
            allowed: true,
            reason: "client web1: prepare allowed".into(),
            request: Some(crate::server::authz::Request::Prepare),
            client_ip: None,
            identity: Some(crate::format::client_identity::StatedIdentity {
                client: "web1".into(),
                machine,
            }),
        }
    }

    #[test]
    fn gate_decides_by_the_record_and_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let web1 = ClientName::parse("web1").unwrap();
        for policy in ["refuse", "alert", "accept"] {
            let staging = dir.path().join(policy);
            std::fs::create_dir(&staging).unwrap();
            let cfg = config(&staging, policy);
            // First use: allowed, with a machine to record; nothing written yet.
            let (d, pending) = gate(&cfg, allowed(id(1)));
            assert!(
                d.allowed && d.reason.contains("first request"),
                "{}",
                d.reason
            );
            assert!(!machines_path(&staging, &web1).exists());
            let mut pending = pending.unwrap();
            assert_eq!(pending.how, Recorded::FirstUse);
            pending
                .book
                .record(&pending.machine, 1, pending.how)
                .unwrap();
            drop(pending);
            // Known: allowed as it was, nothing to record.
            let (d, pending) = gate(&cfg, allowed(id(1)));
            assert_eq!(d, allowed(id(1)));
            assert!(pending.is_none());
            // A second machine.
            let (d, pending) = gate(&cfg, allowed(id(2)));
            let two = id(2).to_string();
            match policy {
                "refuse" => {
                    assert!(!d.allowed);
                    assert!(pending.is_none());
                    assert!(
                        d.reason.contains(&format!(
                            "accept-machine --config /etc/rsbackup/server.toml --client web1 \
                             --machine {two}"
                        )),
                        "{}",
                        d.reason
                    );
                }
                "alert" => {
                    assert!(
                        d.allowed && d.reason.contains("NEW MACHINE"),
                        "{}",
                        d.reason
                    );
                    assert_eq!(pending.unwrap().how, Recorded::Alert);
                }
                _ => {
                    assert!(
                        d.allowed && d.reason.contains("new machine"),
                        "{}",
                        d.reason
                    );
                    assert_eq!(pending.unwrap().how, Recorded::Accept);
                }
            }
            // A refused decision passes unchanged, whatever the record.
            let refused = Decision {
                allowed: false,
                ..allowed(id(3))
            };
            let (d, pending) = gate(&cfg, refused.clone());
            assert_eq!(d, refused);
            assert!(pending.is_none());
        }
        // A record that cannot be read refuses (never "first use" again).
        let staging = dir.path().join("refuse");
        std::fs::write(machines_path(&staging, &web1), b"{").unwrap();
        let (d, pending) = gate(&config(&staging, "accept"), allowed(id(1)));
        assert!(
            !d.allowed && d.reason.contains("machine record unusable"),
            "{}",
            d.reason
        );
        assert!(pending.is_none());
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let web1 = ClientName::parse("web1").unwrap();
        let path = machines_path(dir.path(), &web1);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for (text, needle) in [
            ("{not json", "not a machines file"),
            (
                r#"{"version":2,"client":"web1","machines":[]}"#,
                "version 2",
            ),
            (
                r#"{"version":1,"client":"db1","machines":[]}"#,
                "names client \"db1\"",
            ),
            (
                r#"{"version":1,"client":"web1","machines":[{"id":"xyz","recorded":1,"how":"first-use"}]}"#,
                "machine id",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = MachineBook::open(dir.path(), &web1).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt);
            assert!(err.message().contains(needle), "{err} lacks {needle:?}");
            assert!(err.message().contains("accept-machine"), "{err}");
        }
    }
}
