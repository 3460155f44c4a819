use super::*;
use crate::config::watch::ExpectState;
use crate::index::StoreTotals;
use crate::status::{ClientStatus, Health, MirrorStatus};

fn client(name: &str, overdue: bool) -> ClientStatus {
    ClientStatus {
        client: name.into(),
        expect_every_seconds: 26 * 3600,
        expect_state: ExpectState::Complete,
        last_good: None,
        last_good_age_seconds: None,
        latest: None,
        refusals_7d: 0,
        lease_held: false,
        overdue,
        health: if overdue { Health::Red } else { Health::Green },
        history: Vec::new(),
    }
}

fn fleet(now: i64, clients: Vec<ClientStatus>, lagging: Option<bool>) -> FleetStatus {
    FleetStatus {
        now,
        clients,
        mirrors: lagging
            .map(|l| MirrorStatus {
                mirror: "off".into(),
                updated: None,
                unmirrored_sessions: 1,
                oldest_unmirrored_age_seconds: Some(1),
                expect_every_seconds: 1,
                lagging: l,
            })
            .into_iter()
            .collect(),
        store: StoreTotals::default(),
        logical_bytes: 0,
        growth: Vec::new(),
    }
}

/// Run `due` and apply everything, as a run whose mails all went out.
fn step(state: &mut WatchState, f: &FleetStatus, digest: Option<u16>) -> Vec<Notice> {
    let notices = due(state, f, digest, &TimeZone::UTC);
    for n in &notices {
        state.apply(n, f.now);
    }
    notices
}

#[test]
fn one_notice_per_transition_over_many_runs() {
    let mut s = WatchState::default();
    let t = 1_800_000_000;
    assert!(
        step(
            &mut s,
            &fleet(t, vec![client("a", false)], Some(false)),
            None
        )
        .is_empty()
    );
    let mut all = Vec::new();
    for i in 0..10 {
        all.extend(step(
            &mut s,
            &fleet(t + i, vec![client("a", true)], Some(true)),
            None,
        ));
    }
    assert_eq!(
        all,
        [
            Notice::Overdue("a".into()),
            Notice::MirrorLagging("off".into())
        ]
    );
    all.clear();
    for i in 0..10 {
        all.extend(step(
            &mut s,
            &fleet(t + 20 + i, vec![client("a", false)], Some(false)),
            None,
        ));
    }
    assert_eq!(
        all,
        [
            Notice::Recovered("a".into()),
            Notice::MirrorRecovered("off".into())
        ]
    );
}

#[test]
fn a_failed_mail_is_due_again_and_removed_clients_are_forgotten() {
    let mut s = WatchState::default();
    let f = fleet(1_800_000_000, vec![client("a", true)], None);
    // Not applied: the mail did not go out.
    assert_eq!(due(&s, &f, None, &TimeZone::UTC).len(), 1);
    assert_eq!(due(&s, &f, None, &TimeZone::UTC).len(), 1);
    step(&mut s, &f, None);
    assert!(s.overdue.contains_key("a"));
    s.forget_unconfigured(&fleet(1_800_000_100, Vec::new(), None));
    assert!(s.overdue.is_empty());
}

#[test]
fn digest_once_a_day_after_its_time() {
    // 1_800_000_000 is 2027-01-15 08:00:00 UTC.
    let eight = 1_800_000_000;
    let mut s = WatchState::default();
    let at = 8 * 60;
    assert!(step(&mut s, &fleet(eight - 60, vec![], None), Some(at)).is_empty());
    assert_eq!(
        step(&mut s, &fleet(eight, vec![], None), Some(at)),
        [Notice::Digest("2027-01-15".into())]
    );
    for h in 1..16 {
        assert!(step(&mut s, &fleet(eight + h * 3600, vec![], None), Some(at)).is_empty());
    }
    // After midnight, before 08:00: not yet; then the next day's.
    assert!(step(&mut s, &fleet(eight + 23 * 3600, vec![], None), Some(at)).is_empty());
    assert_eq!(
        step(
            &mut s,
            &fleet(eight + 24 * 3600 + 5, vec![], None),
            Some(at)
        ),
        [Notice::Digest("2027-01-16".into())]
    );
}

#[test]
fn state_file_round_trip_and_damage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watch-state.json");
    let mut s = load_state(&path).unwrap();
    assert_eq!(s.version, WATCH_STATE_VERSION);
    s.apply(&Notice::Overdue("a".into()), 5);
    save_state(&path, &s).unwrap();
    assert_eq!(load_state(&path).unwrap(), s);
    std::fs::write(&path, b"{oops").unwrap();
    let err = load_state(&path).unwrap_err().to_string();
    assert!(err.contains("remove it to start afresh"), "{err}");
    std::fs::write(&path, br#"{"version": 9}"#).unwrap();
    assert_eq!(
        load_state(&path).unwrap_err().kind(),
        crate::ErrorKind::UnsupportedVersion
    );
    // The lock: a second holder is turned away.
    let held = try_lock(&path).unwrap().unwrap();
    assert!(try_lock(&path).unwrap().is_none());
    drop(held);
    assert!(try_lock(&path).unwrap().is_some());
}

/// The vector cases: (file, expect, error kind or "", the file's text).
fn vector_cases() -> Vec<(&'static str, &'static str, &'static str, String)> {
    let mut state = WatchState {
        version: WATCH_STATE_VERSION,
        ..WatchState::default()
    };
    state.apply(&Notice::Overdue("web1".into()), 1_796_342_400);
    state.apply(&Notice::MirrorLagging("offsite".into()), 1_796_342_700);
    state.apply(&Notice::Digest("2026-12-03".into()), 1_796_342_700);
    let good = serde_json::to_string_pretty(&state).unwrap() + "\n";
    vec![
        ("watch-state-example.txt", "success", "", good.clone()),
        (
            "watch-state-future-version.txt",
            "failure",
            "unsupported-version",
            good.replace("\"version\": 1", "\"version\": 2"),
        ),
        (
            "watch-state-unknown-field.txt",
            "failure",
            "corrupt",
            good.replace(
                "\"version\": 1,",
                "\"version\": 1,\n  \"colour\": \"blue\",",
            ),
        ),
    ]
}

#[test]
fn vectors_reproduce_and_decode_as_expected() {
    use crate::format::pack::vector_file::{check_or_write, header, list, parse, path};
    for (name, expect, error, text) in vector_cases() {
        let mut headers = vec![
            ("expect", expect.to_string()),
            ("description", "watch-state.json as UTF-8 JSON".to_string()),
        ];
        if !error.is_empty() {
            headers.push(("error", error.to_string()));
        }
        check_or_write(name, &headers, text.as_bytes());
    }
    let names = list("watch-state-");
    assert_eq!(names.len(), 3, "{names:?}");
    for name in names {
        let (headers, data) = parse(&std::fs::read_to_string(path(&name)).unwrap());
        let result = decode_state(&data, Path::new(&name));
        match (
            header(&headers, "expect"),
            header(&headers, "error"),
            result,
        ) {
            (Some("success"), _, Ok(s)) => {
                assert_eq!(s.overdue.get("web1"), Some(&1_796_342_400));
                assert_eq!(s.last_digest.as_deref(), Some("2026-12-03"));
            }
            (Some("failure"), Some("unsupported-version"), Err(e)) => {
                assert_eq!(e.kind(), crate::ErrorKind::UnsupportedVersion, "{name}")
            }
            (Some("failure"), Some("corrupt"), Err(e)) => {
                assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{name}")
            }
            (expect, error, result) => panic!("{name}: {expect:?} {error:?} {result:?}"),
        }
    }
}
