//! Shared helpers for the integration tests: run the real `rsbackup` binary, make a keyed
//! repository in a temporary directory, build sample trees, and compare two trees entry by entry.
//!
//! Everything here panics with a message naming what failed: these are test helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Exit codes of the binary (docs/usage.md).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other failure.
    pub const FAILURE: i32 = 1;
    /// Bad command line (clap).
    pub const USAGE: i32 = 2;
    /// Partial: a partial session, restore with failed paths, check found problems.
    pub const PARTIAL: i32 = 3;
    /// Not a repository.
    pub const NOT_A_REPOSITORY: i32 = 4;
    /// Unsupported format version.
    pub const UNSUPPORTED_VERSION: i32 = 5;
    /// Wrong identity.
    pub const WRONG_IDENTITY: i32 = 6;
    /// Restore target not empty.
    pub const TARGET_NOT_EMPTY: i32 = 7;
    /// Restore target not a directory.
    pub const TARGET_NOT_DIRECTORY: i32 = 8;
    /// Repository locked.
    pub const LOCKED: i32 = 9;
    /// Corrupt data.
    pub const CORRUPT: i32 = 10;
    /// Session or path not found.
    pub const NOT_FOUND: i32 = 11;
    /// A configuration file does not load or is wrong.
    pub const CONFIG: i32 = 12;
    /// Refused: `serve` and `mirror-serve` refusing a request, `run` refused by the server.
    pub const REFUSED: i32 = 16;
}

/// The captured result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    /// The arguments, for messages.
    pub args: Vec<OsString>,
    /// Exit code; -1 if killed by a signal.
    pub code: i32,
    /// Standard output, raw.
    pub stdout: Vec<u8>,
    /// Standard error, lossy UTF-8.
    pub stderr: String,
}

impl Run {
    /// Standard output as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard output parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "rsbackup {:?}: stdout is not JSON ({e}):\n{}",
                self.args,
                self.stdout_str()
            )
        })
    }

    /// Panic unless the exit code is 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.code(exit::OK)
    }

    /// Panic unless the exit code is `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "rsbackup {:?}: expected exit code {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.code,
            self.stdout_str(),
            self.stderr
        );
        self
    }

    /// Panic unless this run failed with `code` and one line on stderr of the form
    /// `rsbackup: ...` containing every string of `needles`.
    #[track_caller]
    pub fn fails_with(&self, code: i32, needles: &[&str]) -> &Self {
        self.code(code);
        let err = self.stderr.trim_end_matches('\n');
        assert!(
            !err.contains('\n'),
            "rsbackup {:?}: expected one line on stderr, got:\n{}",
            self.args,
            self.stderr
        );
        assert!(
            err.starts_with("rsbackup: "),
            "rsbackup {:?}: stderr should start with \"rsbackup: \", got: {err}",
            self.args
        );
        for needle in needles {
            assert!(
                err.contains(needle),
                "rsbackup {:?}: stderr should mention {needle:?}, got: {err}",
                self.args
            );
        }
        for bad in [
            "panicked",
            "internal error",
            "RUST_BACKTRACE",
            "Error {",
            "kind:",
        ] {
            assert!(
                !err.contains(bad),
                "rsbackup {:?}: stderr looks like a panic or Debug output: {err}",
                self.args
            );
        }
        self
    }
}

/// The path of the binary under test.
/// (client, ip, command, decision, reason) of every audit row of the repository at `repo`,
/// oldest first.
pub fn audit_rows(repo: &Path) -> Vec<[String; 5]> {
    let db = rusqlite::Connection::open(repo.join("index.db")).unwrap();
    let mut st = db
        .prepare("SELECT client, ip, command, decision, reason FROM audit ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?])
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rsbackup"))
}

/// Run `rsbackup ARGS` with an empty stdin and capture everything.
pub fn rsbackup<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    rsbackup_env(args, &[])
}

/// Run `rsbackup ARGS` with extra environment variables.
pub fn rsbackup_env<I, S>(args: I, env: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new(bin());
    cmd.args(&args)
        .stdin(Stdio::null())
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin().display()));
    Run {
        args,
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A path as an `OsString` argument.
pub fn arg(p: impl AsRef<Path>) -> OsString {
    p.as_ref().as_os_str().to_owned()
}

/// A fresh temporary directory (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rsbackup-test-")
        .tempdir()
        .expect("cannot create a temporary directory")
}

/// A repository made with `rsbackup keygen` and `rsbackup init` in its own temporary directory.
pub struct TestRepo {
    /// Holds everything below; removed on drop.
    pub dir: tempfile::TempDir,
    /// The repository directory (`DIR/repo`).
    pub repo: PathBuf,
    /// The identity file (`DIR/identity.txt`).
    pub identity: PathBuf,
    /// The recipient printed by keygen.
    pub recipient: String,
}

impl TestRepo {
    /// keygen + init; panics if either fails.
    pub fn new() -> TestRepo {
        let dir = tempdir();
        let identity = dir.path().join("identity.txt");
        let run = rsbackup([arg("keygen"), arg("--output"), arg(&identity)]);
        run.ok();
        let recipient = recipient_from_keygen(&run.stdout_str());
        let repo = dir.path().join("repo");
        rsbackup([
            arg("init"),
            arg("--repo"),
            arg(&repo),
            arg("--recipient"),
            arg(&recipient),
        ])
        .ok();
        TestRepo {
            dir,
            repo,
            identity,
            recipient,
        }
    }

    /// A path inside the temporary directory (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run `rsbackup COMMAND --repo R ARGS`.
    pub fn run<S: AsRef<OsStr>>(&self, command: &str, args: &[S]) -> Run {
        let mut all = vec![arg(command), arg("--repo"), arg(&self.repo)];
        all.extend(args.iter().map(|a| a.as_ref().to_owned()));
        rsbackup(all)
    }

    /// Run `rsbackup COMMAND --repo R --identity I ARGS`.
    pub fn run_with_identity<S: AsRef<OsStr>>(&self, command: &str, args: &[S]) -> Run {
        let mut all = vec![
            arg(command),
            arg("--repo"),
            arg(&self.repo),
            arg("--identity"),
            arg(&self.identity),
        ];
        all.extend(args.iter().map(|a| a.as_ref().to_owned()));
        rsbackup(all)
    }

    /// `ingest --json --client CLIENT SOURCE`, without checking the exit code.
    pub fn ingest_run(&self, client: &str, source: &Path) -> Run {
        self.run(
            "ingest",
            &[arg("--client"), arg(client), arg("--json"), arg(source)],
        )
    }

    /// `ingest --json`; panics unless it exits 0. Returns the session id.
    pub fn ingest(&self, client: &str, source: &Path) -> i64 {
        let run = self.ingest_run(client, source);
        run.ok();
        run.json()["session"]
            .as_i64()
            .unwrap_or_else(|| panic!("ingest --json has no \"session\": {}", run.stdout_str()))
    }

    /// `restore --session ID --target TARGET [PATHS]`, without checking the exit code.
    pub fn restore_run(&self, session: i64, target: &Path, paths: &[&[u8]]) -> Run {
        let mut args = vec![
            arg("--session"),
            arg(session.to_string()),
            arg("--target"),
            arg(target),
        ];
        args.extend(paths.iter().map(|p| OsStr::from_bytes(p).to_owned()));
        self.run_with_identity("restore", &args)
    }

    /// `restore` of the whole session; panics unless it exits 0.
    pub fn restore(&self, session: i64, target: &Path) {
        self.restore_run(session, target, &[]).ok();
    }

    /// Make `session` partial with `reason`, as a client's rsync exit 23 does, its record
    /// rewritten from the row (by `pin` and `unpin`), so that `check` finds them agreeing.
    pub fn mark_partial(&self, session: i64, reason: &str) {
        let db = rusqlite::Connection::open(self.repo.join("index.db")).unwrap();
        db.execute(
            "UPDATE sessions SET state = 'partial', reason = ?2 WHERE id = ?1",
            rusqlite::params![session, reason],
        )
        .unwrap();
        drop(db);
        for command in ["pin", "unpin"] {
            self.run(command, &["--session", &session.to_string()]).ok();
        }
    }

    /// `check --json [--read-data] [--identity I]`, without checking the exit code.
    pub fn check_run(&self, read_data: bool, identity: bool) -> Run {
        let mut args = vec![arg("--json")];
        if read_data {
            args.push(arg("--read-data"));
        }
        if identity {
            args.push(arg("--identity"));
            args.push(arg(&self.identity));
        }
        self.run("check", &args)
    }
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// The `age1...` recipient in keygen's output.
pub fn recipient_from_keygen(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .unwrap_or_else(|| panic!("keygen printed no age1 recipient: {stdout:?}"))
        .to_owned()
}

/// `n` deterministic pseudo-random bytes from `seed` (BLAKE3 XOF of `[seed; 32]`-keyed empty input,
/// the test pattern of format-spec/vectors/README.md).
pub fn pattern(seed: u8, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new_keyed(&[seed; 32])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Text-like, compressible bytes.
pub fn text(seed: u8, n: usize) -> Vec<u8> {
    let words = [
        "backup ", "restore ", "chunk ", "pack ", "session ", "index ", "the ", "a ", "\n",
    ];
    let noise = pattern(seed, n.max(1));
    let mut out = Vec::with_capacity(n + 16);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(words[noise[i % noise.len()] as usize % words.len()].as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// Write `bytes` to `path`, creating parent directories.
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Set mode bits (not following symlinks is impossible for chmod; do not call on symlinks).
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

/// Set mtime (and atime) of `path` without following a symlink.
pub fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    let ts = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("cannot set mtime of {}: {e}", path.display()));
}

/// Set a `user.` extended attribute; returns false if the filesystem does not support them.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    match rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()) {
        Ok(()) => true,
        Err(rustix::io::Errno::NOTSUP) => false,
        Err(e) => panic!("cannot set xattr {name} on {}: {e}", path.display()),
    }
}

/// Make a FIFO.
pub fn make_fifo(path: &Path, mode: u32) {
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from_raw_mode(mode))
        .unwrap_or_else(|e| panic!("cannot make fifo {}: {e}", path.display()));
}

/// Whether the tests run as root (can restore ownership, make devices).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Fail, loudly, unless the tests run as root: a test that returned early here would be
/// counted as passed by every test runner. The suite is meant to run as root (tools/test.sh).
pub fn require_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root ({why}); run the suite as root, as tools/test.sh and CI do"
    );
}

/// What [`sample_tree`] built.
#[derive(Debug, Clone, Default)]
pub struct SampleTree {
    /// Regular files (hard links counted once).
    pub files: u64,
    /// Logical bytes of regular files (hard links counted once).
    pub bytes: u64,
    /// Whether xattrs were set (the filesystem supports them).
    pub xattrs: bool,
}

/// Build a small tree exercising every kind the tests care about at `root` (created):
/// nested directories, empty and multi-chunk files, text and random content, odd modes,
/// a non-UTF-8 name, names with spaces and newlines, relative and dangling symlinks, a hard-link
/// group, a sparse file, a FIFO, xattrs (where supported), and fixed nanosecond mtimes (set last,
/// directories after their children).
pub fn sample_tree(root: &Path) -> SampleTree {
    let mut info = SampleTree::default();
    fs::create_dir_all(root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    let mut add = |rel: &str, bytes: &[u8]| {
        write_file(&root.join(rel), bytes);
        info.files += 1;
        info.bytes += bytes.len() as u64;
    };
    add("empty", b"");
    add("hello.txt", b"hello, world\n");
    add("docs/readme.md", &text(1, 20_000));
    add("docs/deep/er/still/leaf.txt", &text(2, 3_000));
    add("data/random.bin", &pattern(3, 300_000));
    add("data/big.bin", &pattern(4, 5 << 20)); // several chunks at the default 256 KiB average
    add("data/text-big.log", &text(5, 3 << 20));
    add("data/dup-a.bin", &pattern(6, 700_000));
    add("data/dup-b.bin", &pattern(6, 700_000)); // same content, dedups
    add("odd names/with space", b"space\n");
    add("odd names/new\nline", b"newline\n");
    add("odd names/\u{e9}t\u{e9}.txt", b"utf-8\n");
    add("modes/exec.sh", b"#!/bin/sh\necho hi\n");
    add("modes/private", b"secret-ish\n");
    add("modes/setgid-file", b"g\n");
    for i in 0..50 {
        add(
            &format!("many/file-{i:03}"),
            &text(10 + (i % 7) as u8, i * 37),
        );
    }
    // A name that is not UTF-8.
    let raw = root.join(OsStr::from_bytes(b"odd names/latin1-\xe9\xff"));
    write_file(&raw, b"latin1\n");
    info.files += 1;
    info.bytes += 7;

    // Hard links: three names, one inode.
    write_file(&root.join("links/original"), &text(7, 5_000));
    info.files += 1;
    info.bytes += 5_000;
    fs::hard_link(root.join("links/original"), root.join("links/second")).unwrap();
    fs::create_dir_all(root.join("links/sub")).unwrap();
    fs::hard_link(root.join("links/original"), root.join("links/sub/third")).unwrap();
    symlink("original", root.join("links/rel-symlink")).unwrap();
    symlink("../nowhere/at/all", root.join("links/dangling")).unwrap();
    symlink("/etc/hostname", root.join("links/absolute")).unwrap();

    // Sparse: data, a 20 MiB hole, data, and a trailing hole.
    let sparse = root.join("data/sparse.img");
    {
        let mut f = fs::File::create(&sparse).unwrap();
        f.write_all(&pattern(8, 4096)).unwrap();
        let total = 40u64 << 20;
        f.set_len(total).unwrap();
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(20 << 20)).unwrap();
        f.write_all(&pattern(9, 8192)).unwrap();
        info.files += 1;
        info.bytes += total;
    }

    make_fifo(&root.join("special-fifo"), 0o640);
    fs::create_dir_all(root.join("empty-dir")).unwrap();

    info.xattrs = set_xattr(&root.join("hello.txt"), "user.comment", b"greeting")
        && set_xattr(&root.join("docs"), "user.dir", b"\x00binary\xff")
        && set_xattr(&root.join("data/sparse.img"), "user.a", b"");

    set_mode(&root.join("modes/exec.sh"), 0o755);
    set_mode(&root.join("modes/private"), 0o600);
    set_mode(&root.join("modes/setgid-file"), 0o2644);
    set_mode(&root.join("empty-dir"), 0o700);

    set_times_bottom_up(root, 1_700_000_000);
    info
}

/// Give every entry below and including `root` a distinct fixed mtime with nanoseconds,
/// children before their directory (so directory mtimes stick).
pub fn set_times_bottom_up(root: &Path, base: i64) {
    let mut paths = walk(root);
    paths.reverse(); // children before parents
    for (i, rel) in paths.iter().enumerate() {
        let p = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(rel))
        };
        set_mtime(
            &p,
            base + i as i64 * 61,
            (i as u32 * 7_919_111) % 1_000_000_000,
        );
    }
}

/// All paths below `root` (relative, as bytes, the root as an empty path first), in sorted
/// pre-order, without following symlinks.
pub fn walk(root: &Path) -> Vec<Vec<u8>> {
    fn rec(dir: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) {
        let mut names: Vec<Vec<u8>> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().into_vec())
            .collect();
        names.sort();
        for name in names {
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                [rel, b"/", &name].concat()
            };
            let child = dir.join(OsStr::from_bytes(&name));
            out.push(child_rel.clone());
            if fs::symlink_metadata(&child).unwrap().is_dir() {
                rec(&child, &child_rel, out);
            }
        }
    }
    let mut out = vec![Vec::new()];
    rec(root, b"", &mut out);
    out
}

/// What [`compare_trees_with`] looks at.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Compare uid and gid (only meaningful when the restore ran as root).
    pub owner: bool,
    /// Compare the mode and mtime of the two roots themselves.
    pub root_meta: bool,
    /// Compare mtimes of directories.
    pub dir_mtimes: bool,
    /// Compare xattrs.
    pub xattrs: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            owner: is_root(),
            root_meta: true,
            dir_mtimes: true,
            xattrs: true,
        }
    }
}

/// Compare two trees with the default options (ownership only as root). Returns one line per
/// difference; empty means equal.
pub fn compare_trees(a: &Path, b: &Path) -> Vec<String> {
    compare_trees_with(a, b, &CompareOptions::default())
}

/// Panic with the list of differences unless the trees are equal.
#[track_caller]
pub fn assert_trees_equal(a: &Path, b: &Path) {
    let diffs = compare_trees(a, b);
    assert!(
        diffs.is_empty(),
        "{} differs from {}:\n{}",
        b.display(),
        a.display(),
        diffs.join("\n")
    );
}

/// The file type of an lstat result, as a word.
fn kind(m: &fs::Metadata) -> &'static str {
    let ft = m.file_type();
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "unknown"
    }
}

/// Extended attributes of `path` (not following symlinks), sorted by name.
pub fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return out,
        Err(e) => panic!("cannot list xattrs of {}: {e}", path.display()),
    };
    if size == 0 {
        return out;
    }
    let mut buf = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut buf[..])
        .unwrap_or_else(|e| panic!("cannot list xattrs of {}: {e}", path.display()));
    for name in buf[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = OsStr::from_bytes(name);
        let len = rustix::fs::lgetxattr_query(path, cname).unwrap_or(0);
        let mut value = vec![0u8; len];
        let got = if len == 0 {
            0
        } else {
            rustix::fs::lgetxattr(path, cname, &mut value[..]).unwrap_or_else(|e| {
                panic!(
                    "cannot read xattr {} of {}: {e}",
                    String::from_utf8_lossy(name),
                    path.display()
                )
            })
        };
        value.truncate(got);
        out.insert(name.to_vec(), value);
    }
    out
}

/// Compare two trees entry by entry with lstat: type, mode, uid/gid, size, mtime (ns), symlink
/// target, content, xattrs and hard-link grouping. Returns one line per difference, naming the
/// path; empty means equal.
pub fn compare_trees_with(a: &Path, b: &Path, opts: &CompareOptions) -> Vec<String> {
    let mut diffs = Vec::new();
    let pa = walk(a);
    let pb = walk(b);
    let sa: std::collections::BTreeSet<_> = pa.iter().cloned().collect();
    let sb: std::collections::BTreeSet<_> = pb.iter().cloned().collect();
    for only in sa.difference(&sb) {
        diffs.push(format!("{}: only in {}", show(only), a.display()));
    }
    for only in sb.difference(&sa) {
        diffs.push(format!("{}: only in {}", show(only), b.display()));
    }
    // Hard-link groups: the first path (in walk order) seen for each inode.
    let mut first_a: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut first_b: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    for rel in pa.iter().filter(|p| sb.contains(*p)) {
        let fa = join(a, rel);
        let fb = join(b, rel);
        let ma = fs::symlink_metadata(&fa).unwrap();
        let mb = fs::symlink_metadata(&fb).unwrap();
        let name = show(rel);
        let d = &mut diffs;
        let (ka, kb) = (kind(&ma), kind(&mb));
        if ka != kb {
            d.push(format!("{name}: type {ka} vs {kb}"));
            continue;
        }
        let is_root = rel.is_empty();
        let is_dir = ma.is_dir();
        let is_link = ma.file_type().is_symlink();
        if (!is_root || opts.root_meta) && !is_link && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            d.push(format!(
                "{name}: mode {:o} vs {:o}",
                ma.mode() & 0o7777,
                mb.mode() & 0o7777
            ));
        }
        if opts.owner && (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
            d.push(format!(
                "{name}: owner {}:{} vs {}:{}",
                ma.uid(),
                ma.gid(),
                mb.uid(),
                mb.gid()
            ));
        }
        let check_mtime = if is_dir {
            opts.dir_mtimes && (!is_root || opts.root_meta)
        } else {
            true
        };
        if check_mtime && (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
            d.push(format!(
                "{name}: mtime {}.{:09} vs {}.{:09}",
                ma.mtime(),
                ma.mtime_nsec(),
                mb.mtime(),
                mb.mtime_nsec()
            ));
        }
        if opts.xattrs && (!is_root || opts.root_meta) {
            let (xa, xb) = (xattrs(&fa), xattrs(&fb));
            if xa != xb {
                d.push(format!("{name}: xattrs {:?} vs {:?}", xa, xb));
            }
        }
        if is_link {
            let (ta, tb) = (fs::read_link(&fa).unwrap(), fs::read_link(&fb).unwrap());
            if ta != tb {
                d.push(format!(
                    "{name}: symlink target {} vs {}",
                    ta.display(),
                    tb.display()
                ));
            }
        } else if ma.is_file() {
            if ma.len() != mb.len() {
                d.push(format!("{name}: size {} vs {}", ma.len(), mb.len()));
            } else if !same_content(&fa, &fb) {
                d.push(format!("{name}: content differs"));
            }
            let ga = first_a
                .entry((ma.dev(), ma.ino()))
                .or_insert_with(|| rel.clone())
                .clone();
            let gb = first_b
                .entry((mb.dev(), mb.ino()))
                .or_insert_with(|| rel.clone())
                .clone();
            if ga != gb {
                d.push(format!(
                    "{name}: hard-linked with {} vs {}",
                    show(&ga),
                    show(&gb)
                ));
            }
            if ma.nlink() != mb.nlink() {
                d.push(format!(
                    "{name}: link count {} vs {}",
                    ma.nlink(),
                    mb.nlink()
                ));
            }
        } else if ma.rdev() != mb.rdev() {
            d.push(format!("{name}: device {} vs {}", ma.rdev(), mb.rdev()));
        }
    }
    diffs
}

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// A relative path for messages ("." for the root), escaped.
pub fn show(rel: &[u8]) -> String {
    if rel.is_empty() {
        ".".into()
    } else {
        format!("{:?}", String::from_utf8_lossy(rel))
    }
}

fn same_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let mut fa = fs::File::open(a).unwrap_or_else(|e| panic!("cannot open {}: {e}", a.display()));
    let mut fb = fs::File::open(b).unwrap_or_else(|e| panic!("cannot open {}: {e}", b.display()));
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
    fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        n
    }
}

/// Run a program that must exist and succeed; its stdout.
pub fn must(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (tools/test.sh): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `getfacl -R` of `dir`, with paths relative to it.
pub fn acls_of(dir: &Path) -> String {
    let out = Command::new("getfacl")
        .args(["-R", "-p", "-n", "."])
        .current_dir(dir)
        .output()
        .expect("getfacl (package acl) must be installed");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copy a directory tree with `cp -a` (a repository, for one crash case each).
pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// Set the pack target size of a new (still empty) repository, so that small test data
/// spreads over many packs.
pub fn set_pack_target(repo: &Path, bytes: u64) {
    let toml = repo.join("repository.toml");
    let text = fs::read_to_string(&toml).unwrap();
    let changed = text.replace("target-size = 33554432", &format!("target-size = {bytes}"));
    assert_ne!(changed, text, "repository.toml has no default target-size");
    fs::write(&toml, changed).unwrap();
}

/// Run `rsbackup ARGS` and kill it with SIGKILL after `ms` milliseconds; returns whether it
/// was still running then (and so was killed).
pub fn kill_after<S: AsRef<OsStr>>(args: &[S], ms: u64) -> bool {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    killed
}

/// `restore` session `id` of `repo` with `t`'s identity into a scratch directory and panic
/// unless it equals `source`; the scratch directory is removed after.
#[track_caller]
pub fn assert_restores_equal(t: &TestRepo, repo: &Path, id: i64, source: &Path, tag: &str) {
    let target = t.path(&format!("restore-{tag}-{id}"));
    rsbackup([
        arg("restore"),
        arg("--repo"),
        arg(repo),
        arg("--identity"),
        arg(&t.identity),
        arg("--session"),
        arg(id.to_string()),
        arg("--target"),
        arg(&target),
    ])
    .ok();
    let diffs = compare_trees(source, &target);
    assert!(diffs.is_empty(), "{tag}: session {id}: {diffs:?}");
    fs::remove_dir_all(&target).unwrap();
}
