//! Targets for what a client controls on the server: the ssh command line, the machines file
//! its statements fill, and the staging area its rsync writes (placeholder rows, fake-super
//! metadata).

use std::path::Path;
use std::sync::OnceLock;

use super::split2;
use crate::config::{ClientName, ServerConfig};
use crate::format::client_identity::{MachineId, StatedIdentity};
use crate::format::complete_args::CompleteArgs;
use crate::format::manifest::Extent;
use crate::ids::ChunkId;
use crate::ingest::meta::FileStat;
use crate::ingest::staging::{StagingDecode, decode_meta, parse_fake_super_stat};
use crate::server::authz::{Request, authorize_bytes, parse_command, parse_ssh_connection};
use crate::server::staging::{
    decode_extents as decode_placeholder_extents, encode_extents as encode_placeholder_extents,
};

/// A server that lets client `web1` do everything from anywhere at any time, so that every
/// command reaches the parser and the permission checks.
const SERVER_TOML: &str = r#"repository = "/srv/rsbackup/repo"
staging-root = "/srv/rsbackup/staging"

[mail]
from = "rsbackup@backup.example.org"
admin = ["root@example.org"]
transport = "directory"
directory = "/var/spool/rsbackup-mail"

[clients.web1]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE111111111111111111111111111111111111111111 web1@host"]
addresses = ["0.0.0.0/0", "::/0"]
windows = ["daily 00:00-24:00"]
timezone = "UTC"
staging-mode = "keep"
restore = true
commands = ["prepare", "upload", "complete", "sessions"]
"#;

/// The example server's configuration (also a seed of the server config target).
pub(super) fn server_config_text() -> &'static str {
    SERVER_TOML
}

fn server_config() -> &'static ServerConfig {
    static CONFIG: OnceLock<ServerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        ServerConfig::parse(SERVER_TOML, Path::new("fuzz/server.toml"))
            .expect("the fuzz server.toml parses")
    })
}

/// `SSH_ORIGINAL_COMMAND` as sshd hands it over (any bytes), through the whole authorization
/// of client `web1`; the part after a `0xff` byte is `SSH_CONNECTION`. An accepted command's
/// identity prefix and `complete` arguments print and parse back equal.
pub fn command(data: &[u8]) {
    let (command, connection) = split2(data);
    let connection = if connection.is_empty() {
        "192.0.2.10 50000 192.0.2.1 22".to_owned()
    } else {
        String::from_utf8_lossy(connection).into_owned()
    };
    let _ = parse_ssh_connection(Some(&connection));
    let now = jiff::Timestamp::from_second(1_795_675_200).expect("a valid time");
    let decision = authorize_bytes(
        server_config(),
        "web1",
        Some(&connection),
        Some(command),
        now,
    );
    if decision.allowed {
        assert!(decision.request.is_some() && decision.identity.is_some());
        assert!(command.is_ascii(), "an allowed command is printable ASCII");
    }
    let Ok(text) = std::str::from_utf8(command) else {
        return;
    };
    let Ok((identity, request)) = parse_command(Some(text)) else {
        return;
    };
    let prefix = identity.prefix();
    let words: Vec<&str> = prefix.split(' ').chain(["prepare"]).collect();
    let (again, rest) = StatedIdentity::split(&words).expect("a printed prefix splits");
    assert_eq!(again, identity);
    assert_eq!(rest, ["prepare"]);
    if let Request::Complete(args) = request {
        let words = args.to_words();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(
            CompleteArgs::parse(&words).expect("printed complete arguments parse"),
            args
        );
    }
}

/// Seeds for [`command`]: each request a client sends.
pub fn command_seeds() -> Vec<Vec<u8>> {
    let prefix = StatedIdentity {
        client: "web1".into(),
        machine: MachineId::from_bytes([0xab; 16]),
    }
    .prefix();
    let args = CompleteArgs {
        rsync_exit: Some(23),
        full_paths: true,
        sources: Some(vec![b"etc".to_vec(), b"srv/caf\xc3\xa9 ,%".to_vec()]),
        skipped: vec![b"mnt".to_vec()],
    };
    [
        "prepare".to_owned(),
        "sessions".to_owned(),
        format!("complete {}", args.to_words().join(" ")),
        "rsync --server -logDtprRe.iLsfxCIvu --numeric-ids --delete . /".to_owned(),
        "rsync --server --sender -logDtprRe.iLsfxCIvu . /etc".to_owned(),
    ]
    .into_iter()
    .map(|c| format!("{prefix} {c}").into_bytes())
    .chain([b"rsync --server -e.LsfxC . /\xff2001:db8::1%eth0 1 2 3".to_vec()])
    .collect()
}

/// A machines file read for client `web1`; every accepted id prints as it was written.
pub fn machines(data: &[u8]) {
    let client = ClientName::parse("web1").expect("a client name");
    if let Ok(machines) = crate::server::machines::parse_file(data, &client) {
        for m in machines {
            let id = MachineId::parse(&m.id).expect("an accepted id parses");
            assert_eq!(id.to_string(), m.id);
        }
    }
}

/// Seeds for [`machines`].
pub fn machines_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"version":1,"client":"web1","machines":[{"id":"0123456789abcdef0123456789abcdef","recorded":1795675200,"how":"first-use"},{"id":"abababababababababababababababab","recorded":1795675300,"how":"accept-machine"}]}"#
            .to_vec(),
        br#"{"version":1,"client":"web1","machines":[]}"#.to_vec(),
    ]
}

/// A placeholder row's `extents` blob; an accepted one encodes back to the same bytes.
pub fn placeholders(data: &[u8]) {
    if let Some(extents) = decode_placeholder_extents(data) {
        assert_eq!(encode_placeholder_extents(&extents), data);
    }
}

/// Seeds for [`placeholders`].
pub fn placeholders_seeds() -> Vec<Vec<u8>> {
    vec![encode_placeholder_extents(&[
        Extent::Chunk {
            len: 65536,
            id: ChunkId([1; 32]),
        },
        Extent::Hole { len: 1 << 20 },
        Extent::Chunk {
            len: 17,
            id: ChunkId([2; 32]),
        },
    ])]
}

/// Staged metadata as rsync's `--fake-super` receiver leaves it: the first bytes are the
/// file's mode, uid and gid on the staging disk, the rest its xattrs, name and value each
/// after a one-byte length. The decoded xattrs hold none of rsync's bookkeeping and no privileged name
/// but those the receiver makes, sorted and without duplicates.
pub fn staging_meta(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(12));
    let mut word = [0u8; 12];
    word[..head.len()].copy_from_slice(head);
    let u32_at = |i: usize| u32::from_le_bytes(word[i..i + 4].try_into().expect("4 bytes"));
    let st = FileStat {
        mode: u32_at(0),
        uid: u32_at(4),
        gid: u32_at(8),
        size: 0,
        blocks: 0,
        mtime_sec: 0,
        mtime_nsec: 0,
        ctime_ns: 0,
        ino: 1,
        dev: 1,
        rdev: 0,
        nlink: 1,
    };
    let mut xattrs = Vec::new();
    let mut rest = rest;
    while let Some((name, after)) = take_counted(rest)
        && let Some((value, after)) = take_counted(after)
    {
        xattrs.push((name.to_vec(), value.to_vec()));
        rest = after;
    }
    for (name, value) in &xattrs {
        if name == crate::ingest::staging::FAKE_SUPER_STAT
            && let Some((mode, major, minor, uid, gid)) = parse_fake_super_stat(value)
        {
            let printed = format!("{mode:o} {major},{minor} {uid}:{gid}");
            assert_eq!(
                parse_fake_super_stat(printed.as_bytes()),
                Some((mode, major, minor, uid, gid))
            );
        }
    }
    let decode = StagingDecode {
        fake_super: true,
        ..StagingDecode::default()
    };
    let (_, out) = decode_meta(&decode, st, xattrs.clone());
    assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
    for (name, value) in &out {
        assert!(!name.starts_with(b"user.rsync.%"), "bookkeeping kept");
        assert!(
            !name.starts_with(b"user.rsync.system."),
            "forged system name kept"
        );
        if name == b"system.posix_acl_access" || name == b"system.posix_acl_default" {
            assert!(
                value.len() >= 4 && (value.len() - 4) % 8 == 0 && value[..4] == [2, 0, 0, 0],
                "malformed ACL xattr {value:?}"
            );
            continue;
        }
        // Anything else is an input name as it was, or the receiver's `user.rsync.` prefix
        // taken off a security or trusted name: nothing else gains a privileged namespace.
        if xattrs.iter().any(|(n, _)| n == name) {
            continue;
        }
        let as_staged = [&b"user.rsync."[..], name].concat();
        assert!(
            xattrs.iter().any(|(n, _)| n == &as_staged),
            "{:?} from nowhere",
            String::from_utf8_lossy(name)
        );
        assert!(
            name.starts_with(b"security.") || name.starts_with(b"trusted."),
            "{:?} made privileged",
            String::from_utf8_lossy(name)
        );
    }
    let plain = StagingDecode::default();
    let (_, same) = decode_meta(&plain, st, xattrs.clone());
    assert_eq!(same, xattrs, "a plain directory is read as it is");
}

/// Seeds for [`staging_meta`]: a setuid root file with an access ACL, a capability and the
/// names a client's unprivileged user could set.
pub fn staging_meta_seeds() -> Vec<Vec<u8>> {
    let mut acl = Vec::new();
    for v in [6u32, 4, 0x80, 4, 1000, 0x8000_0006, 100, 5] {
        acl.extend_from_slice(&v.to_le_bytes());
    }
    let pairs: Vec<(&[u8], &[u8])> = vec![
        (b"user.rsync.%stat", b"104755 0,0 0:0"),
        (b"user.rsync.%aacl", &acl),
        (b"user.rsync.%dacl", &acl),
        (b"user.rsync.security.capability", b"\x01\x00\x00\x02"),
        (b"user.rsync.trusted.overlay", b"y"),
        (b"user.rsync.system.posix_acl_access", b"\x02\x00\x00\x00"),
        (b"user.note", b"hello"),
    ];
    let mut seed = Vec::new();
    for v in [0o100644u32, 1000, 1000] {
        seed.extend_from_slice(&v.to_le_bytes());
    }
    for (name, value) in pairs {
        for part in [name, value] {
            seed.push(part.len() as u8);
            seed.extend_from_slice(part);
        }
    }
    vec![seed]
}

/// A byte string with a one-byte length before it, and what follows it.
fn take_counted(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = bytes.split_first()?;
    let n = usize::from(n);
    (rest.len() >= n).then(|| rest.split_at(n))
}
