//! The fleet as node_exporter textfile metrics (`rsbackup_*`, one `client` or `mirror` label).
//! The callers write it with [`crate::store::durable::write_atomic`] (a temporary file beside
//! it, synced, renamed over the old one), so that node_exporter never reads half a file.

use std::fmt::Write as _;

use super::FleetStatus;

/// A label value with `\`, `"` and newlines escaped (the exposition format's rule).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

/// The metrics text.
pub fn render(fleet: &FleetStatus) -> String {
    let mut m = Metrics(String::new());
    type Per<'a> = &'a dyn Fn(&super::ClientStatus) -> Option<String>;
    let per_client: [(&str, &str, &str, Per); 9] = [
        (
            "rsbackup_last_success_timestamp_seconds",
            "gauge",
            "End of the newest session that counts for the client's expectation (Unix time).",
            &|c| c.last_good.as_ref().map(|s| s.finished.to_string()),
        ),
        (
            "rsbackup_last_session_id",
            "gauge",
            "Id of the client's newest session of any state.",
            &|c| c.latest.as_ref().map(|s| s.id.to_string()),
        ),
        (
            "rsbackup_last_session_bytes",
            "gauge",
            "Logical bytes of the client's newest session.",
            &|c| c.latest.as_ref().map(|s| s.bytes.to_string()),
        ),
        (
            "rsbackup_last_session_new_bytes",
            "gauge",
            "Bytes the client's newest session added to the store.",
            &|c| c.latest.as_ref().map(|s| s.new_bytes.to_string()),
        ),
        (
            "rsbackup_last_session_duration_seconds",
            "gauge",
            "Duration of the client's newest session.",
            &|c| c.latest.as_ref().map(|s| s.duration_seconds.to_string()),
        ),
        (
            "rsbackup_last_session_complete",
            "gauge",
            "1 if the client's newest session is complete, 0 if partial.",
            &|c| {
                c.latest
                    .as_ref()
                    .map(|s| u8::from(s.state == crate::index::SessionState::Complete).to_string())
            },
        ),
        (
            "rsbackup_expect_every_seconds",
            "gauge",
            "The client's expect-every.",
            &|c| Some(c.expect_every_seconds.to_string()),
        ),
        (
            "rsbackup_overdue",
            "gauge",
            "1 if the client has no counted session within expect-every.",
            &|c| Some(u8::from(c.overdue).to_string()),
        ),
        (
            "rsbackup_refusals_7d",
            "gauge",
            "Requests of the client refused in the last 7 days.",
            &|c| Some(c.refusals_7d.to_string()),
        ),
    ];
    for (name, kind, help, value) in per_client {
        m.family(name, kind, help);
        for c in &fleet.clients {
            if let Some(v) = value(c) {
                m.sample(name, &[("client", &c.client)], v);
            }
        }
    }
    m.family(
        "rsbackup_mirror_unmirrored_sessions",
        "gauge",
        "Sessions that ended after the mirror target was last brought up to date.",
    );
    for t in &fleet.mirrors {
        m.sample(
            "rsbackup_mirror_unmirrored_sessions",
            &[("mirror", &t.mirror)],
            t.unmirrored_sessions,
        );
    }
    m.family(
        "rsbackup_mirror_lag_seconds",
        "gauge",
        "Age of the oldest session not yet on the mirror target (0 when none).",
    );
    for t in &fleet.mirrors {
        m.sample(
            "rsbackup_mirror_lag_seconds",
            &[("mirror", &t.mirror)],
            t.oldest_unmirrored_age_seconds.unwrap_or(0),
        );
    }
    for (name, help, value) in [
        (
            "rsbackup_repository_chunk_bytes",
            "Stored bytes of the chunks in the index.",
            fleet.store.chunk_bytes,
        ),
        (
            "rsbackup_repository_pack_bytes",
            "Bytes of the sealed packs.",
            fleet.store.pack_bytes,
        ),
        (
            "rsbackup_repository_chunks",
            "Chunks in the index.",
            fleet.store.chunks,
        ),
        (
            "rsbackup_repository_logical_bytes",
            "Logical bytes of every visible session.",
            fleet.logical_bytes,
        ),
    ] {
        m.family(name, "gauge", help);
        m.sample(name, &[], value);
    }
    m.0
}
