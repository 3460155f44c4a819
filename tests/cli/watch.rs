//! The server watching its fleet, through the real parts: pushes over sshd, `status`,
//! `watch` mailing through a real SMTP server, syslog lines received on a real datagram socket,
//! the status page rendered by headless Chromium. Time moves with `RSBACKUP_NOW` (the clock
//! `status` and `watch` take) and, for sessions already stored, by moving their times back in
//! the index as the passing days would.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{self, arg, rsbackup_env};
use crate::push_server::{ANY, Server};

const HOUR: i64 = 3600;
/// `status`: a client is overdue or a mirror lags.
const ALARM: i32 = 22;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `rsbackup COMMAND --config CONFIG ARGS` at `at` (Unix seconds).
fn at(s: &Server, at: i64, command: &str, args: &[&str]) -> common::Run {
    let mut all = vec![arg(command), arg("--config"), arg(&s.config)];
    all.extend(args.iter().map(arg));
    rsbackup_env(all, &[("RSBACKUP_NOW", &at.to_string())])
}

/// Move `client`'s stored sessions `hours` back in time, as if they had been made that long
/// before they were.
fn age_sessions(s: &Server, client: &str, hours: i64) {
    let out = Command::new("sqlite3")
        .arg(s.repo.repo.join("index.db"))
        .arg(format!(
            "UPDATE sessions SET started = started - {d}, finished = finished - {d} \
             WHERE client = '{client}'",
            d = hours * HOUR
        ))
        .output()
        .expect("cannot run sqlite3 (Debian package sqlite3)");
    assert!(out.status.success(), "sqlite3: {out:?}");
}

/// Subjects of every mail so far, headers unfolded.
fn subjects(s: &Server) -> Vec<String> {
    s.smtp()
        .messages()
        .iter()
        .filter_map(|m| {
            let unfolded = m.replace("\r\n ", " ").replace("\n ", " ");
            unfolded
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect()
}

fn count(subjects: &[String], needle: &str) -> usize {
    subjects.iter().filter(|s| s.contains(needle)).count()
}

fn append_config(s: &Server, text: &str) {
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(text);
    std::fs::write(&s.config, config).unwrap();
}

fn source(s: &Server, name: &str, seed: u8) -> PathBuf {
    let src = s.dir.path().join(name);
    common::write_file(&src.join("a.bin"), &common::pattern(seed, 300_000));
    common::write_file(&src.join("b.txt"), &common::text(seed, 20_000));
    src
}

#[test]
fn a_client_that_stops_pushing_gets_one_overdue_and_one_recovery_mail() {
    let s = Server::start(&[("web1", Some(ANY))], None);
    let src = source(&s, "src", 1);
    s.push("web1", &src, &[]);
    // The push was 20 hours ago: within the 26 hours a daily window gives.
    age_sessions(&s, "web1", 20);
    for _ in 0..3 {
        at(&s, now(), "watch", &[]).ok();
    }
    let status = at(&s, now(), "status", &["--json"]);
    status.ok();
    assert_eq!(status.json()["clients"][0]["overdue"], false);
    assert_eq!(
        status.json()["clients"][0]["expect_every_seconds"],
        26 * HOUR
    );
    // Seven hours pass: 27 hours since the push. Many timer runs, one mail.
    age_sessions(&s, "web1", 7);
    for minutes in [0, 5, 10, 15, 60, 120] {
        at(&s, now() + minutes * 60, "watch", &[]).ok();
    }
    let got = s.smtp().wait_for(1, Duration::from_secs(10));
    let subj = subjects(&s);
    assert_eq!(count(&subj, "client web1 is overdue"), 1, "{subj:?}");
    assert_eq!(got.len(), 1, "{subj:?}");
    assert!(got[0].contains("expect-every of 26.0 h"), "{}", got[0]);
    let status = at(&s, now(), "status", &[]);
    status.code(ALARM);
    assert!(
        status.stdout_str().contains("OVERDUE"),
        "{}",
        status.stdout_str()
    );
    // The client pushes again: one recovery mail over many runs.
    s.push("web1", &src, &[]);
    for minutes in [1, 5, 10, 60] {
        at(&s, now() + minutes * 60, "watch", &[]).ok();
    }
    s.smtp().wait_for(2, Duration::from_secs(10));
    let subj = subjects(&s);
    assert_eq!(count(&subj, "client web1 is overdue"), 1, "{subj:?}");
    assert_eq!(count(&subj, "client web1 has recovered"), 1, "{subj:?}");
    assert_eq!(subj.len(), 2, "{subj:?}");
    at(&s, now(), "status", &[]).ok();

    // A second run while one holds the lock does nothing, and says so.
    let state = s.dir.path().join("watch-state.json");
    assert!(state.is_file(), "the state lives beside the alert state");
    let lock = PathBuf::from(format!("{}.lock", state.display()));
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .expect("cannot run flock (util-linux)");
    std::thread::sleep(Duration::from_millis(300));
    age_sessions(&s, "web1", 30);
    let busy = at(&s, now(), "watch", &[]);
    let _ = holder.kill();
    let _ = holder.wait();
    busy.ok();
    assert!(
        busy.stdout_str()
            .contains("another watch run holds the lock"),
        "{}",
        busy.stdout_str()
    );
    assert_eq!(subjects(&s).len(), 2, "the locked-out run mailed nothing");
}

#[test]
fn watch_flushes_coalesced_refusals_and_mails_one_digest_a_day() {
    let s = Server::start(&[("web1", Some(ANY))], None);
    let config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("alert-coalesce-minutes = 0", "alert-coalesce-minutes = 15");
    std::fs::write(&s.config, config).unwrap();
    let page = s.dir.path().join("www/index.html");
    let metrics = s.dir.path().join("rsbackup.prom");
    std::fs::create_dir(page.parent().unwrap()).unwrap();
    append_config(
        &s,
        &format!("\n[watch]\ndigest = \"08:00\"\nhtml = {page:?}\nprometheus = {metrics:?}\n"),
    );
    let src = source(&s, "src", 2);
    let done = s.push("web1", &src, &[]);
    // Two refusals: the first is mailed at once, the second waits for the window.
    for _ in 0..2 {
        let out = s.ssh("web1", Some("127.0.0.2"), "prepare");
        assert_eq!(out.status.code(), Some(common::exit::REFUSED), "{out:?}");
    }
    s.smtp().wait_for(1, Duration::from_secs(10));
    assert_eq!(subjects(&s).len(), 1, "{:?}", subjects(&s));
    // Tomorrow 07:59 UTC: no digest yet; the refusal window has passed, so the waiting refusal
    // goes out.
    let morning = now() - now().rem_euclid(86_400) + 24 * HOUR;
    at(&s, morning + 8 * HOUR - 60, "watch", &[]).ok();
    let got = s.smtp().wait_for(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "{:?}", subjects(&s));
    assert!(got[1].contains("127.0.0.2"), "{}", got[1]);
    assert_eq!(count(&subjects(&s), "daily digest"), 0);
    // Every run rewrites the status page and the metrics.
    assert!(
        std::fs::read_to_string(&page)
            .unwrap()
            .contains(">web1</td>")
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("rsbackup_overdue{client=\"web1\"} 0"),
        "{text}"
    );
    for minute in [1, 2, 30, 90] {
        at(&s, morning + 8 * HOUR + minute * 60, "watch", &[]).ok();
    }
    let got = s.smtp().wait_for(3, Duration::from_secs(10));
    let subj = subjects(&s);
    assert_eq!(count(&subj, "daily digest"), 1, "{subj:?}");
    let digest = got.iter().find(|m| m.contains("daily digest")).unwrap();
    for needle in [
        "Sessions of the last 24 hours",
        "Refused requests",
        "Repository growth",
    ] {
        assert!(digest.contains(needle), "{needle}: {digest}");
    }
    // The next day's digest.
    at(&s, morning + 32 * HOUR + 60, "watch", &[]).ok();
    s.smtp().wait_for(4, Duration::from_secs(10));
    assert_eq!(count(&subjects(&s), "daily digest"), 2);
    let _ = done;
}

/// Bind a datagram socket `name` for log lines.
fn log_socket(dir: &Path, name: &str) -> (UnixDatagram, PathBuf) {
    let path = dir.join(name);
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (sock, path)
}

fn received(sock: &UnixDatagram) -> Vec<String> {
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = sock.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    lines
}

#[test]
fn serve_logs_each_outcome_and_a_broken_config_is_logged_and_mailed() {
    let s = Server::start(&[("web1", Some(ANY))], None);
    let (journal, journal_path) = log_socket(s.dir.path(), "journal.sock");
    let (sock, path) = log_socket(s.dir.path(), "log.sock");
    append_config(
        &s,
        &format!("\n[log]\njournal-socket = {journal_path:?}\nsyslog-socket = {path:?}\n"),
    );
    let src = source(&s, "src", 3);
    // The journal's native protocol first: the fields are journal fields.
    let done = s.push("web1", &src, &[]);
    let session = done["session"].as_i64().unwrap();
    let entries = received(&journal);
    let complete = entries
        .iter()
        .find(|e| e.contains("RSBACKUP_REQUEST=complete\n"))
        .unwrap_or_else(|| panic!("{entries:#?}"));
    for field in [
        "PRIORITY=6\n".to_owned(),
        "SYSLOG_IDENTIFIER=rsbackup\n".to_owned(),
        "RSBACKUP_CLIENT=web1\n".to_owned(),
        "RSBACKUP_OUTCOME=ok\n".to_owned(),
        format!("RSBACKUP_SESSION={session}\n"),
        format!("MESSAGE=client web1 complete: ok, session {session}\n"),
    ] {
        assert!(complete.contains(&field), "{field}: {complete}");
    }
    assert!(
        received(&sock).is_empty(),
        "syslog only without the journal"
    );
    // Without the journal: syslog, RFC 5424 with structured data.
    drop(journal);
    std::fs::remove_file(&journal_path).unwrap();
    let done = s.push("web1", &src, &[]);
    let session = done["session"].as_i64().unwrap();
    let lines = received(&sock);
    let find = |needle: &str| lines.iter().find(|l| l.contains(needle)).cloned();
    let prepare = find("request=\"prepare\"").unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(prepare.contains("client=\"web1\""), "{prepare}");
    assert!(
        prepare.starts_with("<30>1 "),
        "daemon.info, RFC 5424: {prepare}"
    );
    let complete = find("request=\"complete\"").unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        complete.contains(&format!("session=\"{session}\"")),
        "{complete}"
    );
    assert!(find("request=\"rsync\"").is_some(), "{lines:#?}");
    let out = s.ssh("web1", Some("127.0.0.2"), "prepare");
    assert_eq!(out.status.code(), Some(common::exit::REFUSED));
    let refused = received(&sock);
    assert!(
        refused.iter().any(|l| l.contains("outcome=\"refused\"")),
        "{refused:#?}"
    );
    let before = s.smtp().wait_for(1, Duration::from_secs(10)).len();

    // A server.toml that does not parse: the client learns nothing, the log and the
    // administrator learn what and where.
    append_config(&s, "\nthis is = = not toml\n");
    let out = s.ssh("web1", None, "prepare");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("server.toml"), "{stderr}");
    let lines = received(&sock);
    let broken = lines
        .iter()
        .find(|l| l.contains("does not load"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(broken.starts_with("<27>1 "), "daemon.err: {broken}");
    assert!(broken.contains("server.toml:"), "file and line: {broken}");
    assert!(broken.contains("client=\"web1\""), "{broken}");
    let got = s.smtp().wait_for(before + 1, Duration::from_secs(10));
    let mail = got
        .iter()
        .find(|m| m.contains("server.toml does not load"))
        .unwrap_or_else(|| panic!("{:?}", subjects(&s)));
    assert!(mail.contains("client web1"), "{mail}");
    // Every request meets the same broken file; the mail is not repeated each time.
    s.ssh("web1", None, "prepare");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&subjects(&s), "does not load"), 1);
}

/// Parse a node_exporter textfile: `name{labels} value` samples, with HELP and TYPE checked.
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut typed = std::collections::BTreeSet::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            assert!(name.starts_with("rsbackup_"), "{line}");
            assert!(
                typed.contains(name) && helped.contains(name),
                "no HELP/TYPE: {line}"
            );
            samples.push((name.to_owned(), labels.to_owned(), value.parse().unwrap()));
        }
    }
    samples
}

fn chromium() -> Option<PathBuf> {
    let find = || {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Some(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let _ = Command::new("bash")
        .current_dir(root)
        .args(["-c", ". tools/apt-ensure.sh && apt_ensure chromium"])
        .status();
    find()
}

#[test]
fn status_json_prometheus_and_the_page_agree_with_sessions() {
    let s = Server::start(&[("web1", Some(ANY)), ("db2", Some(ANY))], None);
    let src1 = source(&s, "src1", 4);
    let src2 = source(&s, "src2", 5);
    s.push("web1", &src1, &[]);
    s.push("db2", &src2, &[]);
    s.push("web1", &src1, &[]);
    let prom = s.dir.path().join("metrics/rsbackup.prom");
    std::fs::create_dir(prom.parent().unwrap()).unwrap();
    let page = s.dir.path().join("index.html");
    let status = at(
        &s,
        now(),
        "status",
        &[
            "--json",
            "--prometheus",
            prom.to_str().unwrap(),
            "--html",
            page.to_str().unwrap(),
        ],
    );
    status.ok();
    let status = status.json();
    let sessions = s.repo.run("sessions", &["--json"]);
    sessions.ok();
    let sessions = sessions.json();
    let sessions = sessions.as_array().unwrap();
    let samples = parse_prometheus(&std::fs::read_to_string(&prom).unwrap());
    let sample = |name: &str, client: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == &format!("client=\"{client}\""))
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("{name} {client}"))
    };
    for client in ["web1", "db2"] {
        let newest = sessions
            .iter()
            .filter(|x| x["client"] == client)
            .max_by_key(|x| x["id"].as_i64())
            .unwrap();
        let c = status["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client"] == client)
            .unwrap();
        assert_eq!(c["latest"]["id"], newest["id"], "{client}");
        assert_eq!(c["last_good"]["id"], newest["id"], "{client}");
        assert_eq!(c["latest"]["bytes"], newest["bytes"], "{client}");
        assert_eq!(c["latest"]["new_bytes"], newest["new_bytes"], "{client}");
        assert_eq!(c["latest"]["finished"], newest["finished"], "{client}");
        assert_eq!(c["overdue"], false);
        assert_eq!(c["lease_held"], false);
        assert_eq!(
            sample("rsbackup_last_success_timestamp_seconds", client),
            newest["finished"].as_f64().unwrap()
        );
        assert_eq!(
            sample("rsbackup_last_session_bytes", client),
            newest["bytes"].as_f64().unwrap()
        );
        assert_eq!(
            sample("rsbackup_last_session_id", client),
            newest["id"].as_f64().unwrap()
        );
        assert_eq!(sample("rsbackup_overdue", client), 0.0);
    }
    let logical: u64 = sessions.iter().map(|x| x["bytes"].as_u64().unwrap()).sum();
    assert_eq!(status["logical_bytes"], logical);
    assert!(
        samples
            .iter()
            .any(|(n, _, v)| n == "rsbackup_repository_logical_bytes" && *v == logical as f64)
    );
    // No temporary file left beside the metrics.
    let left: Vec<_> = std::fs::read_dir(prom.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1);

    // stats agrees on the totals.
    let stats = s.repo.run("stats", &["--json"]);
    stats.ok();
    let stats = stats.json();
    assert_eq!(stats["logical_bytes"], logical);
    assert_eq!(stats["sessions"], sessions.len());
    assert_eq!(stats["clients"].as_array().unwrap().len(), 2);
    assert!(stats["chunk_bytes"].as_u64().unwrap() > 0);
    assert!(
        stats["reduction"].as_f64().unwrap() > 1.0,
        "web1 pushed twice: {stats}"
    );

    // The page: self-contained, names, times and sizes only.
    let html = std::fs::read_to_string(&page).unwrap();
    for forbidden in [
        "<script",
        "http://",
        "https://",
        "src=",
        "ssh-ed25519",
        s.staging.to_str().unwrap(),
        s.repo.repo.to_str().unwrap(),
    ] {
        assert!(!html.contains(forbidden), "{forbidden} in the page");
    }
    assert!(html.contains("<svg"), "sparklines");
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED the Chromium half of this test: chromium is not installed and could not be \
             installed (apt-get install chromium)"
        );
        return;
    };
    let url = format!("file://{}", page.display());
    let dom = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=2000",
            "--dump-dom",
        ])
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for needle in ["web1", "db2", "Clients", "Repository"] {
        assert!(dom.contains(needle), "{needle} not rendered: {dom}");
    }
    let shot = s.dir.path().join("page.png");
    let out = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=412,900",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {out:?}"));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn a_mirror_that_falls_behind_lags_until_a_run_ends_well() {
    common::require_root("sshd must switch to the logging-in user");
    let m = crate::mirror::Setup::new(false);
    let state = m.primary.path("watch-state.json");
    let mut config = std::fs::read_to_string(&m.primary_config).unwrap();
    config.push_str(&format!("[watch]\nstate = {state:?}\n"));
    std::fs::write(&m.primary_config, config).unwrap();
    let src = m.primary.path("src");
    common::write_file(&src.join("f"), &common::pattern(9, 200_000));
    m.primary.ingest("web", &src);
    let mails = m.primary.path("mail");
    let mail_count = || std::fs::read_dir(&mails).map_or(0, |d| d.count());
    let run = |at: i64, command: &str| {
        rsbackup_env(
            [
                arg(command),
                arg("--config"),
                arg(&m.primary_config),
                arg("--json"),
            ]
            .into_iter()
            .take(if command == "status" { 4 } else { 3 }),
            &[("RSBACKUP_NOW", &at.to_string())],
        )
    };
    // Not on the mirror yet, but younger than the default 26 hours: behind, not lagging.
    let status = run(now(), "status");
    status.ok();
    assert_eq!(status.json()["mirrors"][0]["unmirrored_sessions"], 1);
    assert_eq!(status.json()["mirrors"][0]["lagging"], false);
    // 27 hours later: lagging, one mail over several watch runs.
    let later = now() + 27 * HOUR;
    run(later, "status").code(ALARM);
    for minutes in [0, 5, 10] {
        run(later + minutes * 60, "watch").ok();
    }
    assert_eq!(mail_count(), 1, "one lagging mail");
    // A run that ends well: the mirror holds the session; one caught-up mail.
    m.mirror();
    let status = run(later, "status");
    status.ok();
    assert_eq!(status.json()["mirrors"][0]["unmirrored_sessions"], 0);
    for minutes in [20, 25] {
        run(later + minutes * 60, "watch").ok();
    }
    assert_eq!(mail_count(), 2, "one caught-up mail");
    let all: String = std::fs::read_dir(&mails)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(all.contains("mirror offsite lags") && all.contains("mirror offsite caught up"));
}
