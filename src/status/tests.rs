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
