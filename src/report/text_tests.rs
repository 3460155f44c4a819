use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn job() -> JobReport {
    JobReport {
        client: "web1".into(),
        host: "web1.example.org".into(),
        started: ts("2026-11-28T02:00:00Z"),
        finished: ts("2026-11-28T02:03:04Z"),
        steps: vec![
            StepReport {
                name: "init hook /usr/local/bin/dump-db".into(),
                started: ts("2026-11-28T02:00:00Z"),
                duration: Duration::from_millis(12_300),
                status: StepStatus::Ok,
                output: "dumped 3 databases\n".into(),
            },
            StepReport {
                name: "rsync".into(),
                started: ts("2026-11-28T02:00:13Z"),
                duration: Duration::from_secs(171),
                status: StepStatus::Ok,
                output: "Number of files: 1,024\x1b[2J\n".into(),
            },
            StepReport {
                name: "complete".into(),
                started: ts("2026-11-28T02:03:04Z"),
                duration: Duration::ZERO,
                status: StepStatus::Ok,
                output: String::new(),
            },
        ],
        session: Some("20261128T020304Z-web1".into()),
        outcome: RunOutcome::Ok,
        reason: None,
        figures: vec![
            ("files".into(), "1024".into()),
            ("bytes sent".into(), "12 MiB".into()),
        ],
    }
}

#[test]
fn job_report_renders_steps_timing_and_output() {
    let report = job();
    assert!(report.succeeded());
    assert_eq!(
        report.subject(),
        "[rsbackup] web1: backup ok (2026-11-28 02:00 UTC)"
    );
    let text = report.render_text();
    assert!(
        text.contains("finished: 2026-11-28T02:03:04Z (3 min 04 s)"),
        "{text}"
    );
    assert!(text.contains("session:  20261128T020304Z-web1"));
    assert!(text.contains("  bytes sent  12 MiB"), "{text}");
    assert!(
        text.contains("1. init hook /usr/local/bin/dump-db"),
        "{text}"
    );
    assert!(text.contains("12.3 s  ok"), "{text}");
    assert!(text.contains("--- output of step 1: init hook /usr/local/bin/dump-db (started 2026-11-28T02:00:00Z) ---\ndumped 3 databases\n"));
    assert!(
        text.contains("Number of files: 1,024[2J"),
        "escape stripped: {text}"
    );
    assert!(!text.contains('\x1b'));
    assert!(
        !text.contains("output of step 3"),
        "empty output is not shown"
    );
}

#[test]
fn failed_job_and_error_report() {
    let mut report = job();
    report.steps[1].status = StepStatus::Failed("rsync exited with status 23".into());
    report.steps[2].status = StepStatus::Skipped("rsync failed".into());
    report.session = None;
    report.outcome = RunOutcome::Failed;
    assert!(!report.succeeded());
    assert_eq!(
        report.subject(),
        "[rsbackup] web1: backup FAILED: no backup made (2026-11-28 02:00 UTC)"
    );
    let text = report.render_text();
    assert!(
        text.contains("FAILED: rsync exited with status 23"),
        "{text}"
    );
    assert!(text.contains("skipped: rsync failed"));
    assert!(!text.contains("session:"));

    let mut timed_out = job();
    timed_out.steps[0].status = StepStatus::TimedOut(Duration::from_secs(900));
    assert!(!timed_out.succeeded());
    assert!(
        timed_out
            .render_text()
            .contains("TIMED OUT after 15 min 00 s")
    );

    let err = ErrorReport {
        client: "web1".into(),
        host: "web1.example.org".into(),
        started: ts("2026-11-28T02:00:00Z"),
        outcome: RunOutcome::Partial,
        failures: vec![Failure {
            step: "rsync".into(),
            what: "rsync exited with status 23 (some files could not be transferred)".into(),
            location: "/var/www/private: Permission denied".into(),
            action: "run the client as root or exclude the directory".into(),
        }],
    };
    assert_eq!(
        err.subject(),
        "[rsbackup] web1: ERROR: 1 failure; outcome PARTIAL (2026-11-28 02:00 UTC)"
    );
    let text = err.render_text();
    assert!(
        text.contains("1. rsync failed\n   what:  rsync exited with status 23"),
        "{text}"
    );
    assert!(text.contains("   where: /var/www/private: Permission denied"));
    assert!(text.contains("   to do: run the client as root"));
}

#[test]
fn long_output_is_clipped_in_the_middle() {
    let mut report = job();
    let long = format!(
        "HEAD{}é{}TAIL",
        "a".repeat(MAX_STEP_OUTPUT_BYTES),
        "b".repeat(MAX_STEP_OUTPUT_BYTES)
    );
    report.steps[0].output = long;
    let text = report.render_text();
    assert!(text.contains("HEAD") && text.contains("TAIL"));
    assert!(text.contains("bytes left out ...]"));
    assert!(text.len() < 3 * MAX_STEP_OUTPUT_BYTES / 2, "{}", text.len());
    // A multi-byte character at the cut does not panic.
    let at_cut = format!(
        "{}é{}",
        "a".repeat(MAX_STEP_OUTPUT_BYTES / 2 - 1),
        "b".repeat(MAX_STEP_OUTPUT_BYTES)
    );
    assert!(clip_output(&at_cut).contains("left out"));
}

#[test]
fn refusal_alert() {
    let alert = RefusalAlert {
        host: "backup".into(),
        refusals: vec!["2026-11-28T02:00:00Z client=web1 ip=203.0.113.9 decision=refuse".into()],
        dropped: 4,
    };
    assert_eq!(alert.subject(), "[rsbackup] backup: 5 refused requests");
    let text = alert.render_text();
    assert!(text.contains("ip=203.0.113.9"));
    assert!(text.contains("and 4 more"));
    let one = RefusalAlert {
        dropped: 0,
        ..alert
    };
    assert_eq!(one.subject(), "[rsbackup] backup: 1 refused request");
    assert!(!one.render_text().contains("more"));
}

#[test]
fn durations() {
    assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
    assert_eq!(human_duration(Duration::from_secs(3599)), "59 min 59 s");
    assert_eq!(human_duration(Duration::from_secs(7500)), "2 h 05 min");
}
