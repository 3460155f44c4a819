//! Issue 11 part 4: the copy-back procedure of docs/usage.md ("The bad day") runs as written.
//!
//! The commands are taken from docs/usage.md itself: the fenced block after each
//! `<!-- bad-day-... -->` marker. Only the values of the variables the procedure names at its
//! start are changed (the table in each test); every other line runs as it is, under
//! `bash -eu`. The client is a second sshd on loopback without a forced command, reached as
//! root: `RSYNC_RSH` carries its port and key, as an administrator's ssh configuration would.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, CompareOptions};
use crate::sshd::{SshKey, Sshd};

/// The fenced block after `<!-- MARKER -->` in docs/usage.md, its indentation removed.
fn block(marker: &str) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/usage.md"))
        .expect("docs/usage.md");
    let tag = format!("<!-- {marker} -->");
    let at = doc
        .find(&tag)
        .unwrap_or_else(|| panic!("docs/usage.md has no {tag}"));
    let mut lines = doc[at + tag.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty());
    let fence = lines.next().unwrap_or_default();
    assert_eq!(
        fence.trim(),
        "```sh",
        "{tag} must be followed by a ```sh block"
    );
    let indent = fence.len() - fence.trim_start().len();
    let mut out = String::new();
    for line in lines {
        if line.trim() == "```" {
            return out;
        }
        out.push_str(line.get(indent..).unwrap_or(line.trim_start()));
        out.push('\n');
    }
    panic!("{tag}: the block never ends");
}

/// Give each `NAME=VALUE` line of `script` the value `table` has for NAME; a variable the
/// table does not name fails the test (the documentation grew a placeholder the test does not
/// know). Returns the script and the names it set.
fn substitute(script: &str, table: &[(&str, String)]) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut set = Vec::new();
    for line in script.lines() {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() && line[name.len()..].starts_with('=') {
            let value = table
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| {
                    panic!("docs/usage.md sets {name}, which the test has no value for")
                })
                .1
                .clone();
            assert!(!value.contains('\''), "{value}");
            out.push_str(&format!("{name}='{value}'\n"));
            set.push(name);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, set)
}

/// Run the procedure's blocks `markers` as one script; panics with its output unless it
/// succeeds.
pub(crate) fn run_procedure(markers: &[&str], table: &[(&str, String)], rsh: &str, cwd: &Path) {
    let mut script = String::new();
    let mut set = Vec::new();
    for marker in markers {
        let (text, names) = substitute(&block(marker), table);
        script.push_str(&text);
        set.extend(names);
    }
    for (name, _) in table {
        assert!(
            set.iter().any(|s| s == name),
            "the procedure no longer sets {name}: update the test's table\n{script}"
        );
    }
    let bin_dir = common::bin().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-eu", "-o", "pipefail", "-c", &script])
        .env("PATH", path)
        .env("RSYNC_RSH", rsh)
        .current_dir(cwd)
        .output()
        .expect("bash must be installed");
    assert!(
        out.status.success(),
        "the procedure failed:\n{script}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client machine: an sshd that lets root in with a plain key (no forced command).
fn client_machine(dir: &Path) -> (Sshd, String, String) {
    let key = SshKey::generate(dir, "admin_key");
    let sshd = Sshd::start(&format!("{}\n", key.public));
    let rsh = sshd.rsh(&key, None);
    let host = format!("{}@127.0.0.1", sshd.user());
    (sshd, rsh, host)
}

/// A tree with everything a copy-back must keep: the sample tree (hard links, sparse file,
/// odd names, xattrs, modes), a file capability, access and default ACLs, and a root owned by
/// 1234:5678, mode 0750, with an ACL and an xattr.
fn rich_tree(src: &Path) {
    common::sample_tree(src);
    let cap = src.join("modes/captrue");
    std::fs::copy("/usr/bin/true", &cap).unwrap();
    common::must("setcap", &["cap_net_raw+ep", cap.to_str().unwrap()]);
    let shared = src.join("docs");
    common::must("setfacl", &["-m", "u:65534:rx", shared.to_str().unwrap()]);
    common::must(
        "setfacl",
        &["-d", "-m", "u:65534:rwx", shared.to_str().unwrap()],
    );
    common::must("setfacl", &["-m", "u:65534:rx", src.to_str().unwrap()]);
    assert!(common::set_xattr(src, "user.root", b"of the client"));
    std::os::unix::fs::chown(src, Some(1234), Some(5678)).unwrap();
    common::set_mode(src, 0o750);
    common::set_times_bottom_up(src, 1_650_000_000);
}

/// `a` and `b` are equal: entry by entry (owners, modes, times, xattrs and so ACLs and
/// capabilities, hard links, the roots' own metadata), by `rsync -naHAXc` (nothing to change,
/// the root included), and by `getfacl -R`.
fn assert_copied_back(a: &Path, b: &Path) {
    let diffs = common::compare_trees_with(a, b, &CompareOptions::default());
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let changes = common::must(
        "rsync",
        &[
            "-naHAXc",
            "--numeric-ids",
            "--out-format=%i %n",
            &format!("{}/", a.display()),
            &format!("{}/", b.display()),
        ],
    );
    assert_eq!(changes.trim(), "", "rsync would still change these");
    assert_eq!(common::acls_of(a), common::acls_of(b));
}

/// `sources = ["/"]`: the source's root is the session root. A real push (the client's rsync
/// command through the server's sshd forced command), then the procedure: restore as root,
/// copy the whole tree back with the `bad-day-copy-back-whole` command into the client's
/// (empty) root, which then equals the source, its own owner, mode, ACL and xattr included.
#[test]
fn the_bad_day_procedure_restores_a_whole_tree() {
    common::require_root("it restores owners and capabilities");
    use crate::push_server::{ANY, Server};
    let keep = format!("{ANY}\nstaging-mode = \"keep\"");
    let s = Server::start(&[("web1", Some(&keep))], None);
    let src = s.dir.path().join("src");
    rich_tree(&src);
    let done = s.push("web1", &src, &[]);
    assert_eq!(done["state"], "complete", "{done:#}");
    let (_client, rsh, host) = client_machine(s.dir.path());
    let client_root = s.dir.path().join("client-root");
    std::fs::create_dir(&client_root).unwrap();
    let table = [
        ("repo", s.repo.repo.display().to_string()),
        ("client", "web1".to_owned()),
        ("identity", s.repo.identity.display().to_string()),
        (
            "target",
            s.dir.path().join("restore/web1").display().to_string(),
        ),
        ("host", host),
        ("root", client_root.display().to_string()),
        ("session", done["session"].to_string()),
    ];
    run_procedure(
        &["bad-day-procedure", "bad-day-copy-back-whole"],
        &table,
        &rsh,
        s.dir.path(),
    );
    assert_copied_back(&src, &client_root);
}

/// Named sources, two of them ending in the same name (`/…/var/www`, `/…/srv/www`), pushed by
/// the real client (`rsbackup run`): the procedure restores the session and copies each source
/// back to its own path under the client's root with the `bad-day-copy-back-sources` commands.
#[test]
fn the_bad_day_procedure_restores_named_sources() {
    common::require_root("it restores owners and capabilities");
    use crate::push_client::{Client, Server, code};
    let client = Client::new();
    let var = client.path("var/www");
    let srv = client.path("srv/www");
    rich_tree(&var);
    rich_tree(&srv);
    std::fs::write(srv.join("only-in-srv"), b"srv").unwrap();
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"keep\"",
    );
    let (config, _mail) = crate::push_full_paths::config_with(&client, &server, &[&var, &srv]);
    client.run(&config, &[]).code(code::OK);
    let listed = server
        .repo
        .run("sessions", &["--client", "web1", "--json"])
        .json();
    let session = listed[0]["id"].to_string();
    let (_machine, rsh, host) = client_machine(client.dir.path());
    let client_root = client.path("client-root");
    std::fs::create_dir(&client_root).unwrap();
    let table = [
        ("repo", server.repo.repo.display().to_string()),
        ("client", "web1".to_owned()),
        ("identity", server.repo.identity.display().to_string()),
        ("target", client.path("restore/web1").display().to_string()),
        ("host", host),
        ("root", client_root.display().to_string()),
        ("session", session),
        ("sources", format!("{} {}", var.display(), srv.display())),
    ];
    run_procedure(
        &["bad-day-procedure", "bad-day-copy-back-sources"],
        &table,
        &rsh,
        client.dir.path(),
    );
    for source in [&var, &srv] {
        let back: PathBuf = client_root.join(source.strip_prefix("/").unwrap());
        assert_copied_back(source, &back);
    }
}
