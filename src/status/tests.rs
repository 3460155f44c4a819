use super::*;

fn brief(id: i64, finished: i64, bytes: u64) -> SessionBrief {
    SessionBrief {
        id,
        state: SessionState::Complete,
        started: finished - 60,
        finished,
        duration_seconds: 60,
        bytes,
        new_bytes: bytes / 10,
        files: 3,
        errors: 0,
    }
}

fn sample_fleet() -> FleetStatus {
    let now = 1_800_000_000;
    let s = brief(7, now - 3600, 1 << 30);
    FleetStatus {
        now,
        clients: vec![ClientStatus {
            client: "web<1>".into(),
            expect_every_seconds: 93_600,
            expect_state: ExpectState::Complete,
            last_good: Some(s.clone()),
            last_good_age_seconds: Some(3600),
            latest: Some(s.clone()),
            refusals_7d: 2,
            lease_held: false,
            overdue: false,
            health: Health::Amber,
            history: vec![brief(5, now - 86_400, 1 << 29), s],
        }],
        mirrors: Vec::new(),
        store: StoreTotals::default(),
        logical_bytes: 3 << 29,
        growth: vec![0; 30],
    }
}

#[test]
fn metrics_have_help_type_and_labels() {
    let text = prometheus::render(&sample_fleet());
    assert!(
        text.contains("# HELP rsbackup_last_success_timestamp_seconds End of the newest session")
    );
    assert!(
        text.contains("# TYPE rsbackup_overdue gauge\nrsbackup_overdue{client=\"web<1>\"} 0\n")
    );
    assert!(text.contains("rsbackup_last_session_bytes{client=\"web<1>\"} 1073741824\n"));
    assert!(text.contains("rsbackup_refusals_7d{client=\"web<1>\"} 2\n"));
    assert!(text.contains("rsbackup_repository_logical_bytes 1610612736\n"));
    // Every sample's family has HELP and TYPE before it.
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.iter().any(|t| t == name), "{line}");
        }
    }
}

#[test]
fn page_escapes_names_and_carries_no_script() {
    let page = html::render(&sample_fleet(), "host&co", &jiff::tz::TimeZone::UTC);
    assert!(page.contains("web&lt;1&gt;") && !page.contains("web<1>"));
    assert!(page.contains("host&amp;co"));
    assert!(page.contains("class=\"dot amber\""));
    assert!(page.contains("<polyline"), "a chart of two sessions");
    assert!(!page.contains("<script") && !page.contains("http"));
    assert_eq!(html::escape("'\"<>&"), "&#39;&quot;&lt;&gt;&amp;");
}

#[test]
fn table_marks_overdue() {
    let mut f = sample_fleet();
    f.clients[0].overdue = true;
    let text = text::render(&f, &jiff::tz::TimeZone::UTC);
    assert!(text.lines().nth(1).unwrap().contains("OVERDUE"), "{text}");
    assert!(f.alarm());
}

#[test]
fn mirror_lag_counts_sessions_that_ended_since_the_last_good_run() {
    use crate::restore::testutil::{SessionBuilder, TestRepo};
    let t = TestRepo::new();
    let session = |seed: u8| {
        SessionBuilder::new(&t)
            .file(
                b"f",
                &crate::restore::testutil::noise(u64::from(seed), 5000),
            )
            .commit()
    };
    session(1);
    let text = format!(
        "{}\n[mirrors.offsite]\nhost = \"m\"\nuser = \"u\"\nssh-key = \"/k\"\nexpect-every = \"1h\"\n",
        crate::config::server::tests::example()
    );
    let config = ServerConfig::parse(&text, std::path::Path::new("/s.toml")).unwrap();
    let index = t.repo.index().unwrap();
    let finished = index.sessions(None).unwrap()[0].finished.unwrap();
    let at = |secs: i64| fleet_status(&config, &index, Timestamp::from_second(secs).unwrap());
    // Never mirrored: behind by one session; lagging once that is older than an hour.
    let m = &at(finished + 60).unwrap().mirrors[0];
    assert_eq!(
        (m.unmirrored_sessions, m.lagging, m.updated),
        (1, false, None)
    );
    let f = at(finished + 7200).unwrap();
    assert!(f.mirrors[0].lagging && f.alarm());
    let id = index.sessions(None).unwrap()[0].id;
    let mark = |synced: i64, unsent: Vec<i64>| {
        index
            .set_mirror_mark(&crate::index::MirrorMark {
                name: "offsite".into(),
                synced,
                unsent,
            })
            .unwrap()
    };
    // A run that read its list in the second the session ended: up to date.
    mark(finished, vec![]);
    let m = &at(finished + 7200).unwrap().mirrors[0];
    assert_eq!((m.unmirrored_sessions, m.lagging), (0, false));
    assert_eq!(m.updated, Some(finished));
    // The session was still running when that run read its list: not on the mirror.
    mark(finished + 5, vec![id]);
    assert_eq!(at(finished + 10).unwrap().mirrors[0].unmirrored_sessions, 1);
    // A run that read its list before the session ended: not on the mirror.
    mark(finished - 1, vec![]);
    assert_eq!(at(finished + 10).unwrap().mirrors[0].unmirrored_sessions, 1);
}
