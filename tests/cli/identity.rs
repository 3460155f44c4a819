//! Issue 10, parts 1 and 3, through the real sshd forced command: a backup lands under the
//! client that sent it or nowhere (the client identity prefix, the machine record and
//! `on-new-machine`, `accept-machine`), and a download from staging never hands out
//! placeholders.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{self, arg, rsbackup};
use crate::push_client::{self, Client, MailTo, code, eml_messages, message_with};
use crate::push_server::{ANY, Server, prefix};

/// Exit code of a refused `rsbackup serve`.
const SERVE_REFUSED: i32 = crate::common::exit::REFUSED;

/// Every entry under `root`: relative path, kind and size, mtime, and a regular file's bytes.
fn snapshot(root: &Path) -> Vec<(Vec<u8>, String, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    common::walk(root)
        .into_iter()
        .map(|rel| {
            let path = root.join(std::ffi::OsStr::from_bytes(&rel));
            let meta = fs::symlink_metadata(&path).unwrap();
            let bytes = if meta.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            let shape = format!("{:o} {} {}", meta.mode(), meta.len(), meta.mtime());
            (rel, shape, bytes)
        })
        .collect()
}

/// `client`'s client.toml naming itself `name`, with the ssh key of `key_of` on `server`,
/// reports into a new directory: (mail directory, config path).
fn config_as(client: &Client, server: &Server, name: &str, key_of: &str) -> (PathBuf, PathBuf) {
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let known = push_client::known_hosts(&server.sshd, client.dir.path());
    let config = client.config(server.sshd.port, Some(&known), MailTo::Dir(&mail), "");
    let own_key = format!("{:?}", client.key.private.display().to_string());
    let other_key = format!("{:?}", server.key(key_of).private.display().to_string());
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("name = \"web1\"") && text.contains(&own_key));
    let text = text
        .replace("name = \"web1\"", &format!("name = {name:?}"))
        .replace(&own_key, &other_key);
    fs::write(&config, text).unwrap();
    (mail, config)
}

/// A cloned machine: its client.toml says c1, its key is c2's. Nothing of it may land under
/// c2; the server refuses, audits and mails; the client's own report says the run failed.
#[test]
fn a_client_using_another_clients_key_is_refused_and_its_report_says_so() {
    let keep = format!("{ANY}\nstaging-mode = \"keep\"");
    let s = Server::start(&[("c1", Some(ANY)), ("c2", Some(&keep))], None);
    let c2_src = s.dir.path().join("c2-src");
    common::sample_tree(&c2_src);
    let done = s.push("c2", &c2_src, &[]);
    assert_eq!(done["state"], "complete", "{done:#}");
    let c2_staging = s.staging.join("c2");
    let before = snapshot(&c2_staging);
    assert!(!before.is_empty());
    let audited = s.audit().len();

    let client = Client::new();
    fs::write(client.src.join("c1-only"), b"the clone's own data").unwrap();
    let (mail, config) = config_as(&client, &s, "c1", "c2");
    let run = client.run(&config, &[]);
    run.code(push_client::code::REFUSED);

    // The server: one refusal, audited under the key's client with both names, mailed.
    let audit = s.audit();
    assert_eq!(
        audit.len(),
        audited + 1,
        "only prepare was tried: {audit:?}"
    );
    let row = audit.last().unwrap();
    assert_eq!(
        (row[0].as_str(), row[3].as_str()),
        ("c2", "refuse"),
        "{row:?}"
    );
    assert!(
        row[4].contains("the request states client c1, but came with client c2's ssh key"),
        "{row:?}"
    );
    let alerts = s.smtp.wait_for(1, Duration::from_secs(15));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = alerts[0].replace("=\n", "").replace("=3D", "=");
    assert!(alert.contains("states client c1"), "{alert}");
    // Nothing written: c2's staging as it was, no new session, no staging for c1.
    assert_eq!(snapshot(&c2_staging), before, "c2's staging was touched");
    assert_eq!(s.sessions(), 1);
    assert!(!s.staging.join("c1").exists());

    // The client: its job report says FAILED, never ok; the error report says refused.
    let messages = eml_messages(&mail);
    let job = message_with(&messages, "c1: backup");
    assert!(job.contains("backup FAILED"), "{job}");
    assert!(!job.contains("backup ok"), "{job}");
    let error = message_with(&messages, "ERROR");
    assert!(error.contains("refused the request"), "{error}");
}

/// The machine id `line` in a machine-id file gives.
fn machine_of(line: &str) -> String {
    rsbackup::client::identity::machine_id_from(line, Path::new("machine-id"))
        .unwrap()
        .to_string()
}

/// The .eml files the server wrote for its administrator.
fn admin_mail(server: &push_client::Server) -> Vec<String> {
    eml_messages(&server.repo.path("server-mail"))
}

/// One client name, two machines (two machine-id files): the first machine is recorded on
/// first use; the second is refused, allowed with one alert, or allowed, as `on-new-machine`
/// says; `accept-machine` then lets a refused one in.
#[test]
fn a_second_machine_is_refused_alerted_or_accepted_as_configured() {
    for policy in ["refuse", "alert", "accept"] {
        let client = Client::new();
        fs::write(client.src.join("f"), policy.as_bytes()).unwrap();
        let server = push_client::Server::start(
            &client,
            &format!("windows = [\"daily 00:00-24:00\"]\non-new-machine = {policy:?}"),
        );
        let mail = client.path("mail");
        fs::create_dir(&mail).unwrap();
        let config = client.config(
            server.sshd.port,
            Some(&server.known_hosts),
            MailTo::Dir(&mail),
            "",
        );
        let machine_file = client.path("machine-id");
        let first = machine_of(&fs::read_to_string(&machine_file).unwrap());
        let second = machine_of("a-second-machine");
        let use_machine = |line: &str| fs::write(&machine_file, format!("{line}\n")).unwrap();

        // First use: recorded, allowed, nothing mailed to the administrator.
        client.run(&config, &[]).code(code::OK);
        assert_eq!(server.sessions(), 1);
        let record = server.staging.join(".machines/web1.json");
        let text = fs::read_to_string(&record).unwrap();
        assert!(
            text.contains(&first) && text.contains("first-use"),
            "{text}"
        );
        assert!(admin_mail(&server).is_empty(), "{policy}");

        use_machine("a-second-machine");
        let before = common::audit_rows(&server.repo.repo).len();
        let run = client.run(&config, &[]);
        // The second machine's first request (its prepare) is where it is decided.
        let audit = common::audit_rows(&server.repo.repo);
        let last = &audit[before];
        match policy {
            "refuse" => {
                run.code(code::REFUSED);
                assert_eq!(server.sessions(), 1);
                assert_eq!(last[3], "refuse", "{last:?}");
                assert!(
                    last[4].contains(&format!(
                        "machine {second} is not a machine recorded for this client ({first}"
                    )),
                    "{last:?}"
                );
                assert!(last[4].contains("rsbackup accept-machine"), "{last:?}");
                let alerts = admin_mail(&server);
                assert_eq!(alerts.len(), 1, "{alerts:#?}");
                assert!(alerts[0].contains("refused"), "{}", alerts[0]);
                assert!(alerts[0].contains(&second), "{}", alerts[0]);
                let text = fs::read_to_string(&record).unwrap();
                assert!(!text.contains(&second), "a refused machine is not recorded");

                // The administrator accepts the rebuilt machine: it replaces the old one.
                rsbackup([
                    arg("accept-machine"),
                    arg("--config"),
                    arg(&server.config),
                    arg("--client"),
                    arg("web1"),
                    arg("--machine"),
                    arg(&second),
                ])
                .ok();
                client.run(&config, &[]).code(code::OK);
                assert_eq!(server.sessions(), 2);
                use_machine("test-machine-web1");
                client.run(&config, &[]).code(code::REFUSED);
                // Without --machine: forgotten, the next machine is a first use.
                rsbackup([
                    arg("accept-machine"),
                    arg("--config"),
                    arg(&server.config),
                    arg("--client"),
                    arg("web1"),
                ])
                .ok();
                assert!(!record.exists());
                client.run(&config, &[]).code(code::OK);
                assert_eq!(server.sessions(), 3);
                // A bad id is a usage error that names the argument.
                rsbackup([
                    arg("accept-machine"),
                    arg("--config"),
                    arg(&server.config),
                    arg("--client"),
                    arg("web1"),
                    arg("--machine"),
                    arg("XYZ"),
                ])
                .fails_with(common::exit::USAGE, &["--machine"]);
            }
            "alert" => {
                run.code(code::OK);
                assert_eq!(server.sessions(), 2);
                assert_eq!(last[3], "allow", "{last:?}");
                assert!(last[4].contains("NEW MACHINE"), "{last:?}");
                let alerts = admin_mail(&server);
                assert_eq!(alerts.len(), 1, "{alerts:#?}");
                let alert = message_with(&alerts, "used from a new machine");
                assert!(alert.contains(&second), "{alert}");
                // Recorded: its next run, and the first machine's, mail nothing more.
                client.run(&config, &[]).code(code::OK);
                use_machine("test-machine-web1");
                client.run(&config, &[]).code(code::OK);
                assert_eq!(admin_mail(&server).len(), 1, "one mail per new machine");
                assert_eq!(server.sessions(), 4);
            }
            _ => {
                run.code(code::OK);
                assert_eq!(server.sessions(), 2);
                assert_eq!(last[3], "allow", "{last:?}");
                assert!(last[4].contains("new machine"), "{last:?}");
                assert!(admin_mail(&server).is_empty());
                let text = fs::read_to_string(&record).unwrap();
                assert!(
                    text.contains(&second) && text.contains("\"accept\""),
                    "{text}"
                );
            }
        }
    }
}

/// An older client (no identity prefix) is refused, for a command and for an upload alike.
#[test]
fn a_command_without_the_identity_prefix_is_refused() {
    let s = Server::start(&[("web1", Some(ANY))], None);
    let out = s.ssh_raw("web1", "prepare");
    assert_eq!(out.status.code(), Some(SERVE_REFUSED), "{out:?}");
    let src = s.dir.path().join("src");
    common::sample_tree(&src);
    // The upload without --rsync-path: rsync's own words arrive without the prefix.
    let upload = Command::new("rsync")
        .args(["-a", "-e"])
        .arg(s.sshd.rsh(s.key("web1"), None))
        .arg(format!("{}/", src.display()))
        .arg(s.sshd.destination())
        .output()
        .unwrap();
    assert!(!upload.status.success());
    let audit = s.audit();
    assert_eq!(audit.len(), 2, "{audit:?}");
    for row in &audit {
        assert_eq!(row[3], "refuse", "{row:?}");
        assert!(
            row[4].contains("the client did not state its name"),
            "{row:?}"
        );
    }
    assert!(audit[1][2].starts_with("rsync --server"), "{:?}", audit[1]);
    let mails = s.smtp.wait_for(2, Duration::from_secs(15));
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(
        mails
            .iter()
            .all(|m| push_client::decode_mail(m).contains("did not state its name")),
        "{mails:#?}"
    );
    assert_eq!(
        fs::read_dir(&s.staging).unwrap().count(),
        0,
        "nothing written"
    );
}

/// `rsync --sender` from the client's staging, with the identity prefix.
fn download(s: &Server, client: &str, target: &Path) -> Output {
    Command::new("rsync")
        .args(["-a", "-e"])
        .arg(s.sshd.rsh(s.key(client), None))
        .arg(format!("--rsync-path={} rsync", prefix(client)))
        .arg(s.sshd.destination())
        .arg(format!("{}/", target.display()))
        .output()
        .unwrap()
}

/// Self-service restore never hands out placeholders: a download from `hollow` or `purge`
/// staging is refused with a reason that says how to restore; from `keep` it is the last
/// pushed tree.
#[test]
fn downloads_from_hollow_and_purge_staging_are_refused_keep_is_allowed() {
    let with = |mode: &str| format!("{ANY}\nrestore = true\nstaging-mode = {mode:?}");
    let (hollow, purge, keep) = (with("hollow"), with("purge"), with("keep"));
    let s = Server::start(
        &[
            ("h1", Some(&hollow)),
            ("p1", Some(&purge)),
            ("k1", Some(&keep)),
        ],
        None,
    );
    // The configuration loads; the command the administrator runs after editing it warns.
    let keys = rsbackup([arg("authorized-keys"), arg("--config"), arg(&s.config)]);
    keys.ok();
    for (client, warned) in [("h1", true), ("p1", true), ("k1", false)] {
        let line = format!("client {client}: restore = true has no effect with staging-mode");
        assert_eq!(
            keys.stderr.contains(&line),
            warned,
            "{client}: {}",
            keys.stderr
        );
    }
    let src = s.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("data"), common::pattern(3, 100_000)).unwrap();
    for client in ["h1", "p1", "k1"] {
        let done = s.push(client, &src, &[]);
        assert_eq!(done["state"], "complete", "{client}: {done:#}");
    }
    // Hollow staging holds a placeholder of the right size: what a download used to hand out.
    assert_eq!(
        fs::metadata(s.staging.join("h1/data")).unwrap().len(),
        100_000
    );

    for (client, refused_because) in [
        ("h1", Some("holds placeholders")),
        ("p1", Some("is emptied after every backup")),
        ("k1", None),
    ] {
        let target = s.dir.path().join(format!("back-{client}"));
        fs::create_dir(&target).unwrap();
        let out = download(&s, client, &target);
        let row = s.audit().last().unwrap().clone();
        match refused_because {
            Some(why) => {
                assert!(!out.status.success(), "{client}: {out:?}");
                assert_eq!(row[3], "refuse", "{row:?}");
                assert!(row[4].contains(why), "{row:?}");
                assert!(row[4].contains("rsbackup restore --repo"), "{row:?}");
                assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "{client}");
            }
            None => {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(row[3], "allow", "{row:?}");
                assert_eq!(
                    fs::read(target.join("data")).unwrap(),
                    common::pattern(3, 100_000)
                );
            }
        }
    }
    let mails = s.smtp.wait_for(2, Duration::from_secs(15));
    assert!(
        mails
            .iter()
            .any(|m| push_client::decode_mail(m).contains("holds placeholders")),
        "{mails:#?}"
    );
}

/// The job report names the client and session the server recorded; a server that answers
/// `complete` for another client than client.toml's `name` makes the run a failure, never
/// "ok". (Today's server cannot do that any more: a stand-in ssh plays an older or
/// misconfigured server, and runs the real rsync receiver locally.)
#[test]
fn an_answer_for_another_client_fails_the_run() {
    use std::os::unix::fs::PermissionsExt;
    let client = Client::new();
    fs::write(client.src.join("f"), b"data").unwrap();
    let staging = client.path("staging");
    fs::create_dir(&staging).unwrap();
    let fake_ssh = client.path("fake-ssh");
    fs::write(
        &fake_ssh,
        format!(
            "#!/bin/bash\ncmd=''\nfor a in \"$@\"; do\n  if [ -n \"$cmd\" ]; then cmd=\"$cmd $a\"; \
             continue; fi\n  case \"$a\" in rsbackup-client=*) cmd=\"$a\";; esac\ndone\n\
             set -- $cmd\ncase \"$1 $3\" in\n\
             'rsbackup-client=web1 prepare') echo '{{\"client\":\"web1\",\"ok\":true,\"token\":\"t\",\"prepared\":1}}';;\n\
             'rsbackup-client=web1 complete') echo '{{\"client\":\"db1\",\"session\":7,\"state\":\"complete\",\"token\":\"t\"}}';;\n\
             'rsbackup-client=web1 rsync') shift 2; cd {:?} && exec \"$@\";;\n\
             *) echo \"unexpected: $cmd\" >&2; exit 1;;\nesac\n",
            staging.display().to_string()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake_ssh, fs::Permissions::from_mode(0o755)).unwrap();
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let config = client.config(
        1,
        None,
        MailTo::Dir(&mail),
        &format!("ssh-path = {:?}", fake_ssh.display().to_string()),
    );
    let run = client.run(&config, &[]);
    run.code(19);
    assert_eq!(
        fs::read(staging.join(client.staged()).join("f")).unwrap(),
        b"data",
        "rsync ran"
    );
    let messages = eml_messages(&mail);
    let job = message_with(&messages, "web1: backup");
    assert!(job.contains("backup FAILED"), "{job}");
    assert_eq!(
        push_client::figure(job, "recorded as"),
        "client db1, session 7"
    );
    let error = message_with(&messages, "ERROR");
    assert!(
        error.contains(
            "the server recorded this backup under client \"db1\" (session 7), not \
                        under this client's name web1"
        ),
        "{error}"
    );
}
