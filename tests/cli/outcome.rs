//! Issue 10, "sessions never lie": one outcome per run (subject, exit code, session state), a
//! session is complete only when the transfer was, skipped sources are not recorded from stale
//! staging, `complete` waits for a running upload, and mails carry Message-ID and Date. All
//! through the real sshd forced command, rsync and (for the headers) a real SMTP server.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::arg;
use crate::push_client::{Client, MailTo, Server, decode_mail, eml_messages};
use crate::smtp::Smtp;
use crate::sshd::free_port;

/// (count, state and reason of the newest) of web1's sessions.
fn sessions(server: &Server) -> (usize, String, String) {
    let run = server.repo.run("sessions", &["--client", "web1", "--json"]);
    run.ok();
    let list = run.json();
    let list = list.as_array().unwrap();
    let last = |k: &str| {
        list.last()
            .and_then(|s| s[k].as_str())
            .unwrap_or("")
            .to_owned()
    };
    (list.len(), last("state"), last("reason"))
}

/// The subject of the one job report in `mail` (a fresh directory per run).
#[track_caller]
fn job_subject(mail: &Path) -> String {
    let messages = eml_messages(mail);
    let subjects: Vec<String> = messages
        .iter()
        .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("Subject: ")))
        .filter(|s| s.contains(": backup "))
        .map(str::to_owned)
        .collect();
    assert_eq!(subjects.len(), 1, "one job report in {messages:#?}");
    subjects[0].clone()
}

struct Scenario {
    name: &'static str,
    /// Top-level client.toml lines (hooks).
    extra: String,
    /// The `sources = [...]` entries put before the usual source.
    sources: String,
    /// Extra `rsbackup run` arguments.
    args: Vec<&'static str>,
    /// The port to use instead of the server's (unreachable).
    port: Option<u16>,
    code: i32,
    /// What the subject says after "backup ".
    subject: &'static str,
    /// The new session's state, or `None`: no session recorded.
    state: Option<&'static str>,
    /// A word the recorded reason holds.
    reason: &'static str,
}

/// Every row of the outcome table: the subject, the exit code and the session state agree.
#[test]
fn every_outcome_has_its_subject_exit_code_and_session_state() {
    let client = Client::new();
    fs::write(client.src.join("f"), b"data").unwrap();
    let server = Server::start(&client, "windows = [\"daily 00:00-24:00\"]");
    let hook = |kind: &str, script: &str| {
        format!("{kind}-hooks = [{{ argv = [\"/bin/sh\", \"-c\", {script:?}] }}]\n")
    };
    let not_mounted = client.path("disk");
    fs::create_dir(&not_mounted).unwrap();
    fs::write(not_mounted.join("g"), b"on the root fs").unwrap();
    // rsync exit 23 for real: the wrapper adds a source that does not exist, so rsync reports
    // an I/O error and skips --delete, as it does for an unreadable file.
    let wrapper = client.path("rsync-23");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/rsync {:?} \"$@\"\n",
            client.path("vanished-file").display().to_string()
        ),
    )
    .unwrap();
    crate::common::set_mode(&wrapper, 0o755);
    let s = |name, extra: String, sources: String, code, subject, state, reason| Scenario {
        name,
        extra,
        sources,
        args: vec![],
        port: None,
        code,
        subject,
        state,
        reason,
    };
    let mut table = vec![
        s(
            "clean run",
            String::new(),
            String::new(),
            0,
            "ok (",
            Some("complete"),
            "",
        ),
        s(
            "cleanup hook fails",
            hook("cleanup", "exit 4"),
            String::new(),
            20,
            "ok, with warnings (",
            Some("complete"),
            "",
        ),
        s(
            "init hook fails (abort)",
            hook("init", "exit 5"),
            String::new(),
            14,
            "FAILED: no backup made (",
            None,
            "",
        ),
        s(
            "configuration error",
            "excludes = [\"/nowhere/x\"]\n".into(),
            String::new(),
            12,
            "FAILED: no backup made (",
            None,
            "",
        ),
        s(
            "vanished source",
            String::new(),
            format!("{:?}, ", client.path("missing").display().to_string()),
            3,
            "PARTIAL (",
            Some("partial"),
            "missing",
        ),
        s(
            "guard fails (not a mount point)",
            String::new(),
            format!(
                "{{ path = {:?}, must-be-mountpoint = true }}, ",
                not_mounted.display().to_string()
            ),
            3,
            "PARTIAL (",
            Some("partial"),
            "disk",
        ),
        s(
            "rsync exit 23",
            format!("rsync-path = {:?}\n", wrapper.display().to_string()),
            String::new(),
            3,
            "PARTIAL (",
            Some("partial"),
            "rsync exit 23",
        ),
        s(
            "unreachable server",
            String::new(),
            String::new(),
            15,
            "FAILED: no backup made (",
            None,
            "",
        ),
    ];
    let mut cont = s(
        "init hook fails, continue",
        hook("init", "exit 5"),
        String::new(),
        20,
        "ok, with warnings (",
        Some("complete"),
        "",
    );
    cont.args = vec!["--on-init-hook-failure", "continue"];
    table.insert(3, cont);
    table.last_mut().unwrap().port = Some(free_port());

    for (i, sc) in table.iter().enumerate() {
        let mail = client.path(&format!("mail-{i}"));
        fs::create_dir(&mail).unwrap();
        let port = sc.port.unwrap_or(server.sshd.port);
        let config = client.config(
            port,
            Some(&server.known_hosts),
            MailTo::Dir(&mail),
            &sc.extra,
        );
        let text = fs::read_to_string(&config)
            .unwrap()
            .replace("sources = [", &format!("sources = [{}", sc.sources));
        fs::write(&config, text).unwrap();
        let (before, ..) = sessions(&server);
        let mut args = sc.args.clone();
        args.push("--json");
        let run = client.run(&config, &args);
        assert_eq!(run.code, sc.code, "{}: exit code\n{}", sc.name, run.stderr);
        let subject = job_subject(&mail);
        assert!(
            subject.contains(&format!("web1: backup {}", sc.subject)),
            "{}: subject {subject:?}",
            sc.name
        );
        let json = run.json();
        let (after, state, reason) = sessions(&server);
        match sc.state {
            None => {
                assert_eq!(after, before, "{}: a session was recorded", sc.name);
                assert_eq!(json["outcome"], "failed", "{}: {json:#}", sc.name);
                // No backup: the error object every --json failure carries.
                assert_eq!(json["error"]["code"], sc.code, "{}: {json:#}", sc.name);
                assert!(
                    json["error"]["kind"]
                        .as_str()
                        .is_some_and(|k| !k.is_empty())
                );
                assert!(
                    json["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty())
                );
            }
            Some(want) => {
                assert_eq!(after, before + 1, "{}: no session recorded", sc.name);
                assert_eq!(state, want, "{}: session state", sc.name);
                assert_eq!(json["state"], want, "{}: {json:#}", sc.name);
                assert!(json.get("error").is_none(), "{}: {json:#}", sc.name);
                // What was stored and what travelled.
                assert!(
                    json["stored"]["files"].as_u64().is_some_and(|n| n >= 1),
                    "{}: {json:#}",
                    sc.name
                );
                assert!(
                    json["transfer"]["bytes_sent"]
                        .as_u64()
                        .is_some_and(|n| n > 0),
                    "{}: {json:#}",
                    sc.name
                );
                assert!(reason.contains(sc.reason), "{}: reason {reason:?}", sc.name);
            }
        }
        assert_eq!(json["exit_code"], sc.code, "{}: {json:#}", sc.name);
        // The mail's subject line may be folded; its first line starts the same subject.
        assert!(
            json["subject"]
                .as_str()
                .is_some_and(|j| j.starts_with(subject.trim_end())),
            "{}: {json:#}",
            sc.name
        );
    }

    // A refused request (outside the window, decided by the forced command) is no backup.
    let hour = (jiff::Timestamp::now().as_second() / 3600 + 12) % 24;
    let closed = Server::start(
        &client,
        &format!("windows = [\"daily {hour:02}:00-{hour:02}:30\"]"),
    );
    let mail = client.path("mail-refused");
    fs::create_dir(&mail).unwrap();
    let config = client.config(
        closed.sshd.port,
        Some(&closed.known_hosts),
        MailTo::Dir(&mail),
        "",
    );
    let run = client.run(&config, &[]);
    assert_eq!(run.code, 16, "refused: {}", run.stderr);
    assert!(job_subject(&mail).contains("web1: backup FAILED: no backup made ("));
    assert_eq!(closed.sessions(), 0);
}

/// A source whose guard fails is not recorded from what staging still holds of it, and a
/// source no longer configured leaves staging and the next session.
#[test]
fn skipped_source_stale_subtree_is_not_in_the_new_session() {
    let client = Client::new();
    fs::write(client.src.join("f"), b"always").unwrap();
    let data = client.path("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("old.txt"), b"last week's disk").unwrap();
    // keep: staging holds the last tree between runs, where a stale subtree can hide.
    let server = Server::start(
        &client,
        "windows = [\"daily 00:00-24:00\"]\nstaging-mode = \"keep\"",
    );
    let mail = client.path("mail");
    fs::create_dir(&mail).unwrap();
    let base = client.config(
        server.sshd.port,
        Some(&server.known_hosts),
        MailTo::Dir(&mail),
        "",
    );
    let with_data = fs::read_to_string(&base).unwrap().replace(
        "sources = [",
        &format!("sources = [{:?}, ", data.display().to_string()),
    );
    fs::write(&base, &with_data).unwrap();
    client.run(&base, &[]).code(0);
    let ls = |session: &str| {
        let run = server.repo.run_with_identity(
            "ls",
            &[arg("--session"), arg(session), arg("--client"), arg("web1")],
        );
        run.ok();
        run.stdout_str()
    };
    assert!(ls("latest").contains("data/old.txt"), "{}", ls("latest"));

    // The disk is gone: the guard (must-exist) fails; staging still has data/.
    fs::rename(&data, client.path("data-away")).unwrap();
    let run = client.run(&base, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(
        server
            .staging
            .join("web1")
            .join(data.strip_prefix("/").unwrap())
            .join("old.txt")
            .exists(),
        "kept for the next run"
    );
    let listing = ls("latest");
    assert!(
        !listing.contains("data"),
        "stale subtree recorded as current:\n{listing}"
    );
    assert!(listing.contains("src/f"), "{listing}");

    // data is dropped from client.toml: its copy leaves staging, the session is complete.
    let without = with_data.replace(&format!("{:?}, ", data.display().to_string()), "");
    fs::write(&base, without).unwrap();
    client.run(&base, &[]).code(0);
    assert!(
        !server
            .staging
            .join("web1")
            .join(data.strip_prefix("/").unwrap())
            .exists()
    );
    let listing = ls("latest");
    assert!(!listing.contains("data"), "{listing}");
}

/// A `complete` that arrives while an upload is still writing waits for it and ingests the
/// whole file, never rsync's temporary file.
#[test]
fn complete_waits_for_a_throttled_upload() {
    let s = crate::push_server::Server::start(&[("web1", Some(crate::push_server::ANY))], None);
    let src = s.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let big = crate::common::pattern(3, 1 << 20);
    fs::write(src.join("big.bin"), &big).unwrap();
    let prepared = s.json("web1", "prepare");
    assert_eq!(prepared["ok"], true, "{prepared}");
    let started = Instant::now();
    let (upload, done) = std::thread::scope(|scope| {
        // 1 MiB at 256 KiB/s: about four seconds on the wire.
        let upload = scope.spawn(|| s.rsync("web1", &src, &["--bwlimit=256"]));
        std::thread::sleep(Duration::from_millis(1500));
        let done = s.json("web1", "complete rsync-exit=0");
        (upload.join().unwrap(), done)
    });
    let waited = started.elapsed();
    assert!(
        upload.status.success(),
        "rsync: {}",
        String::from_utf8_lossy(&upload.stderr)
    );
    assert_eq!(done["state"], "complete", "{done:#}");
    assert!(
        waited >= Duration::from_secs(3),
        "complete did not wait: {waited:?}"
    );
    let session = done["session"].as_i64().unwrap();
    let target = s.dir.path().join("restored");
    s.repo.restore(session, &target);
    assert_eq!(fs::read(target.join("big.bin")).unwrap(), big);
    let names: Vec<String> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["big.bin"], "rsync's temporary file was ingested");
}

/// Every mail a run sends over real SMTP has a Message-ID and a Date header.
#[test]
fn mails_carry_message_id_and_date() {
    let client = Client::new();
    fs::write(client.src.join("f"), b"x").unwrap();
    let smtp = Smtp::start();
    // Nothing listens: an error report and a job report are sent.
    let config = client.config(free_port(), None, MailTo::Smtp(&smtp), "");
    client.run(&config, &[]).code(15);
    let messages = smtp.wait_for(2, Duration::from_secs(10));
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let mut ids = Vec::new();
    for raw in &messages {
        let m = decode_mail(raw);
        let id = m
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap_or_else(|| panic!("no Message-ID in {m}"));
        assert!(id.starts_with('<') && id.ends_with("@client.test>"), "{id}");
        ids.push(id.to_owned());
        let date = m
            .lines()
            .find_map(|l| l.strip_prefix("Date: "))
            .unwrap_or_else(|| panic!("no Date in {m}"));
        assert!(date.contains(" +0000") || date.contains("GMT"), "{date}");
    }
    assert_ne!(ids[0], ids[1]);
}
