//! Sessions keep each source at its full path, through the real parts (`rsbackup run`, sshd with
//! the forced command, rsync): two sources with the same last component, `restore
//! --to-original-paths` (into a directory and onto `/`), and the first push of a client whose
//! staging was laid out the old way (each source under its last component).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, arg};
use crate::push_client::{Client, Server, code, eml_messages, message_with, sent_and_total};

/// `/…/var/www` and `/…/srv/www` under the client's directory, each with its own files (and
/// one file name in both, with different contents).
fn two_www(client: &Client) -> (PathBuf, PathBuf) {
    let var = client.path("var/www");
    let srv = client.path("srv/www");
    for (dir, seed) in [(&var, 1u8), (&srv, 2u8)] {
        fs::create_dir_all(dir.join("site")).unwrap();
        common::write_file(&dir.join("index.html"), &common::text(seed, 3000));
        common::write_file(&dir.join("site/big.bin"), &common::pattern(seed, 2 << 20));
        common::set_times_bottom_up(dir, 1_700_000_000 + i64::from(seed));
    }
    (var, srv)
}

/// client.toml for `server` with `sources` instead of the client's `src`.
pub(crate) fn config_with(
    client: &Client,
    server: &Server,
    sources: &[&Path],
) -> (PathBuf, PathBuf) {
    let (config, mail) = client.config_for(server);
    let list: Vec<String> = sources
        .iter()
        .map(|s| format!("{:?}", s.display().to_string()))
        .collect();
    let text = fs::read_to_string(&config).unwrap().replace(
        &format!("sources = [{:?}]", client.src.display().to_string()),
        &format!("sources = [{}]", list.join(", ")),
    );
    fs::write(&config, text).unwrap();
    (config, mail)
}

fn rel(p: &Path) -> &Path {
    p.strip_prefix("/").unwrap()
}

/// The newest session of web1 (id, and its `sessions --json` object).
fn latest(server: &Server) -> (String, serde_json::Value) {
    let list = server
        .repo
        .run("sessions", &["--client", "web1", "--json"])
        .json();
    let last = list.as_array().unwrap().last().unwrap().clone();
    (last["id"].to_string(), last)
}

fn restore(server: &Server, session: &str, target: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec![arg("--session"), arg(session), arg("--target"), arg(target)];
    args.extend(extra.iter().map(arg));
    server.repo.run_with_identity("restore", &args)
}

/// Two sources ending in the same name (`/…/var/www`, `/…/srv/www`) no longer clash: both land
/// in staging and in the session at their full paths, `sessions` names them, and `restore
/// --to-original-paths` puts each back at its own path under the target. Dropping one from
/// client.toml removes its copy from staging and from the next session; `--target /` without
/// `--to-original-paths` is refused.
#[test]
fn two_sources_with_the_same_name_keep_their_full_paths() {
    let client = Client::new();
    let (var, srv) = two_www(&client);
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"hollow\"",
    );
    let (config, mail) = config_with(&client, &server, &[&var, &srv]);
    client.run(&config, &[]).code(code::OK);
    let report = message_with(&eml_messages(&mail), "Subject: ").to_owned();
    assert!(report.contains("prepare"), "{report}");
    assert!(
        report.contains("\"renames\": null"),
        "a first run has nothing to move: {report}"
    );

    let (session, listed) = latest(&server);
    assert_eq!(
        listed["sources"],
        serde_json::json!([var.display().to_string(), srv.display().to_string()]),
        "{listed:#}"
    );
    let table = server
        .repo
        .run("sessions", &["--client", "web1"])
        .stdout_str();
    assert!(
        table.contains(&format!(
            "session {session} sources: {} {}",
            var.display(),
            srv.display()
        )),
        "{table}"
    );
    let ls = server
        .repo
        .run_with_identity("ls", &[arg("--session"), arg(&session)]);
    ls.ok();
    for source in [&var, &srv] {
        let line = format!("{}/index.html\n", rel(source).display());
        assert!(
            ls.stdout_str().contains(&line),
            "{line}: {}",
            ls.stdout_str()
        );
    }

    let target = client.path("restored");
    let run = restore(&server, &session, &target, &["--to-original-paths"]);
    run.ok();
    for source in [&var, &srv] {
        common::assert_trees_equal(source, &target.join(rel(source)));
        assert!(
            run.stdout_str().contains(&format!(
                "{} -> {}",
                source.display(),
                target.join(rel(source)).display()
            )),
            "{}",
            run.stdout_str()
        );
    }
    restore(&server, &session, Path::new("/"), &["--force"]).fails_with(2, &["--target /"]);

    // An offsite mirror carries the sources record: the mirror restores to the original paths.
    let mirror = client.path("mirror");
    server.repo.run("mirror", &[arg("--to"), arg(&mirror)]).ok();
    let target = client.path("restored-from-mirror");
    common::rsbackup([
        arg("restore"),
        arg("--repo"),
        arg(&mirror),
        arg("--identity"),
        arg(&server.repo.identity),
        arg("--session"),
        arg(&session),
        arg("--target"),
        arg(&target),
        arg("--to-original-paths"),
    ])
    .ok();
    for source in [&var, &srv] {
        common::assert_trees_equal(source, &target.join(rel(source)));
    }

    // A change in one source travels alone and the next session restores both right.
    common::write_file(&srv.join("index.html"), &common::text(9, 3000));
    client.run(&config, &[]).code(code::OK);
    let (session, _) = latest(&server);
    let target = client.path("restored-2");
    restore(&server, &session, &target, &["--to-original-paths"]).ok();
    for source in [&var, &srv] {
        common::assert_trees_equal(source, &target.join(rel(source)));
    }

    // /…/srv/www leaves client.toml: its copy leaves staging and the next session.
    let (config, _mail) = config_with(&client, &server, &[&var]);
    client.run(&config, &[]).code(code::OK);
    let staged = server.staging.join("web1");
    assert!(staged.join(rel(&var)).join("index.html").exists());
    assert!(!staged.join(rel(&srv)).exists(), "stale source kept");
    assert!(
        !staged.join(rel(&client.path("srv"))).exists(),
        "a directory above a stale source that holds no other source goes too"
    );
    let (session, listed) = latest(&server);
    assert_eq!(
        listed["sources"],
        serde_json::json!([var.display().to_string()])
    );
    let target = client.path("restored-3");
    restore(&server, &session, &target, &[]).ok();
    common::assert_trees_equal(&var, &target.join(rel(&var)));
    assert!(!target.join(rel(&srv)).exists());
}

/// `restore --to-original-paths --target / --force` puts the sources back where they were on
/// the client (the sources are deleted first), and a session recorded before full paths (no
/// sources record: the push of an older client) is refused with a reason.
#[test]
fn restore_to_original_paths_onto_root() {
    common::require_root("it restores onto /");
    let client = Client::new();
    let (var, srv) = two_www(&client);
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"keep\"",
    );
    let (config, _mail) = config_with(&client, &server, &[&var, &srv]);
    client.run(&config, &[]).code(code::OK);
    let (session, _) = latest(&server);
    let copy = client.path("copy");
    for source in [&var, &srv] {
        let to = copy.join(rel(source));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        common::copy_dir(source, &to);
        fs::remove_dir_all(source).unwrap();
    }
    let run = restore(
        &server,
        &session,
        Path::new("/"),
        &[
            "--to-original-paths",
            "--force",
            &rel(&var).display().to_string(),
        ],
    );
    run.ok();
    common::assert_trees_equal(&copy.join(rel(&var)), &var);
    assert!(!srv.exists(), "only the path asked for");
    restore(
        &server,
        &session,
        Path::new("/"),
        &["--to-original-paths", "--force"],
    )
    .ok();
    for source in [&var, &srv] {
        common::assert_trees_equal(&copy.join(rel(source)), source);
    }

    // A damaged sources record: sessions still lists every session and names the damage;
    // restore --to-original-paths refuses it as damaged.
    let record = server.repo.repo.join(format!(
        "sessions/{:020}.sources",
        session.parse::<i64>().unwrap()
    ));
    let mut bytes = fs::read(&record).unwrap();
    bytes[20] ^= 1;
    fs::write(&record, &bytes).unwrap();
    let listed = server.repo.run("sessions", &["--client", "web1", "--json"]);
    listed.ok();
    assert!(
        listed.stderr.contains("sources not shown"),
        "{}",
        listed.stderr
    );
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    restore(
        &server,
        &session,
        &client.path("damaged"),
        &["--to-original-paths"],
    )
    .fails_with(10, &["checksum"]);

    // A session without a sources record, as an older client's push recorded it.
    fs::remove_file(&record).unwrap();
    restore(
        &server,
        &session,
        &client.path("old"),
        &["--to-original-paths"],
    )
    .fails_with(2, &["recorded before sessions kept full paths"]);
    assert_eq!(
        latest(&server).1["sources"],
        serde_json::Value::Null,
        "an old session has no sources"
    );
}

/// The identity prefix this client states (as `rsbackup run` does).
fn prefix_of(config: &Path) -> String {
    let cfg = rsbackup::config::ClientConfig::load(config).unwrap();
    rsbackup::client::identity::stated_identity(&cfg)
        .unwrap()
        .prefix()
}

/// A push as a client before full paths made it: `prepare`, rsync without `--relative` (the
/// source lands under its last component), `complete sources=NAME`; and that client's
/// `client-web1.seen` (version 1: paths under the last component).
fn old_client_push(client: &Client, server: &Server, config: &Path, source: &Path) {
    let prefix = prefix_of(config);
    let ssh = |command: &str| {
        let out = server
            .sshd
            .run(&client.key, None, &format!("{prefix} {command}"));
        assert!(
            out.status.success(),
            "{command}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.sshd.log()
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let prepared = ssh("prepare");
    assert_eq!(prepared["ok"], true, "{prepared:#}");
    let out = Command::new("rsync")
        .args([
            "-a",
            "-H",
            "-A",
            "-X",
            "--filter=-x user.rsync.**",
            "--numeric-ids",
            "--delete",
            "--delete-delay",
            "--delay-updates",
            "--partial",
            "--stats",
            "--modify-window=-1",
            "--whole-file",
        ])
        .arg(format!("--rsync-path={prefix} rsync"))
        .arg("-e")
        .arg(server.sshd.rsh(&client.key, None))
        .arg(source)
        .arg(server.sshd.destination())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = source.file_name().unwrap().to_str().unwrap();
    let done = ssh(&format!("complete rsync-exit=0 sources={name}"));
    assert_eq!(done["state"], "complete", "{done:#}");
    assert!(server.staging.join("web1").join(name).is_dir());

    // The old record: "RSBSEEN" 01, then (dev, ino, btime ns, path length, path) per directory
    // and per file of at least 1 MiB, the path under the source's last component.
    let mut seen = b"RSBSEEN\x01".to_vec();
    for rel in common::walk(source) {
        let path = if rel.is_empty() {
            source.to_owned()
        } else {
            source.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&rel))
        };
        let meta = fs::symlink_metadata(&path).unwrap();
        if !(meta.is_dir() || (meta.is_file() && meta.len() >= 1 << 20)) {
            continue;
        }
        let btime = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        let mut staged = name.as_bytes().to_vec();
        if !rel.is_empty() {
            staged.push(b'/');
            staged.extend_from_slice(&rel);
        }
        seen.extend_from_slice(&meta.dev().to_le_bytes());
        seen.extend_from_slice(&meta.ino().to_le_bytes());
        seen.extend_from_slice(&btime.to_le_bytes());
        seen.extend_from_slice(&(staged.len() as u16).to_le_bytes());
        seen.extend_from_slice(&staged);
    }
    let state = client.path("state");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("client-web1.seen"), seen).unwrap();
    // The lock file every earlier run leaves.
    fs::write(state.join("client-web1.lock"), b"1\n").unwrap();
}

/// The first push after the upgrade, over a hollow staging laid out the old way (`www/`): the
/// client's old record turns into the move `www` -> `…/var/www`, which the server makes
/// (placeholders and their rows with it) before rsync compares, so the tree is not sent again;
/// the session is right, the old top-level name is gone from staging, and the record is now
/// version 2.
/// A client pushed by [`old_client_push`] into `mode` staging, then its first run with full
/// paths (`keep_seen`: with the old client's record of followed directories): the old copy was
/// moved (one move applied), not sent again. Returns the client, server, its source and
/// client.toml.
fn upgraded(mode: &str, keep_seen: bool) -> (Client, Server, PathBuf, PathBuf) {
    let client = Client::new();
    let (var, _srv) = two_www(&client);
    let server = Server::start(
        &client,
        &format!("windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"{mode}\""),
    );
    let (config, mail) = config_with(&client, &server, &[&var]);
    old_client_push(&client, &server, &config, &var);
    if !keep_seen {
        fs::remove_file(client.path("state/client-web1.seen")).unwrap();
    }
    client.run(&config, &[]).code(code::OK);
    let report = message_with(&eml_messages(&mail), "Subject: ").to_owned();
    assert!(report.contains("\"applied\": 1"), "one move made: {report}");
    let (sent, total) = sent_and_total(&report);
    eprintln!("{mode} upgrade push: rsync sent {sent} of {total} bytes");
    assert!(total > 2 << 20, "{report}");
    assert!(
        sent < total / 20,
        "the old staging was sent again: {sent} of {total} bytes\n{report}"
    );
    assert!(client.path("state/client-web1.full-paths").exists());
    (client, server, var, config)
}

#[test]
fn the_first_push_after_the_upgrade_moves_old_staging_instead_of_sending_it_again() {
    let (client, server, var, _config) = upgraded("hollow", true);
    let staged = server.staging.join("web1");
    assert!(!staged.join("www").exists(), "the old layout stays");
    assert!(staged.join(rel(&var)).join("site/big.bin").exists());
    let (session, listed) = latest(&server);
    assert_eq!(listed["state"], "complete", "{listed:#}");
    let target = client.path("restored");
    restore(&server, &session, &target, &["--to-original-paths"]).ok();
    common::assert_trees_equal(&var, &target.join(rel(&var)));
    assert!(!target.join("www").exists());
    let seen = fs::read(client.path("state/client-web1.seen")).unwrap();
    assert_eq!(&seen[..8], b"RSBSEEN\x02");
}

/// The same upgrade over a `keep` staging, where the client keeps no record of followed
/// directories: until a session with full paths is recorded, the client moves each source from
/// its last component anyway, so the old copy is the basis and is not sent again. A copy laid
/// out the old way that turns up later (the marker says the move was made) is left out of the
/// session and removed, never recorded.
#[test]
fn a_keep_staging_laid_out_the_old_way_is_moved_and_a_stray_old_copy_never_recorded() {
    let (client, server, var, config) = upgraded("keep", false);
    let staged = server.staging.join("web1");
    assert!(!staged.join("www").exists());

    // A stray old-layout copy: not recorded, removed.
    common::copy_dir(&var, &staged.join("www"));
    client.run(&config, &[]).code(code::OK);
    assert!(!staged.join("www").exists(), "the stray copy stays");
    let (session, _) = latest(&server);
    let target = client.path("restored");
    restore(&server, &session, &target, &[]).ok();
    assert!(!target.join("www").exists(), "the old copy was recorded");
    common::assert_trees_equal(&var, &target.join(rel(&var)));
}
