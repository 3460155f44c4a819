//! The fleet as plain text: the table `status` prints, and the daily digest mail.

use jiff::tz::TimeZone;

use super::fmt::{size, span, time};
use super::{ClientStatus, FleetStatus};
use crate::index::RefusalRow;

/// Lay out rows under a header; columns listed in `right` are right-aligned.
fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if right.contains(&i) {
                line.push_str(&format!("{cell:>w$}"));
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn state_word(c: &ClientStatus) -> String {
    let mut word = if c.overdue { "OVERDUE" } else { "ok" }.to_owned();
    if c.lease_held {
        word.push_str(", running");
    }
    word
}

/// One line per client, then one per mirror target, then the store's size.
pub fn render(fleet: &FleetStatus, tz: &TimeZone) -> String {
    let rows: Vec<Vec<String>> = fleet
        .clients
        .iter()
        .map(|c| {
            let good = c.last_good.as_ref();
            vec![
                c.client.clone(),
                state_word(c),
                good.map_or("-".into(), |s| s.id.to_string()),
                good.map_or("never".into(), |s| time(s.finished, tz)),
                c.last_good_age_seconds.map_or("-".into(), span),
                span(c.expect_every_seconds as i64),
                c.latest
                    .as_ref()
                    .map_or("-".into(), |s| format!("{} {}", s.id, state_name(s.state))),
                c.latest.as_ref().map_or("-".into(), |s| size(s.bytes)),
                c.latest.as_ref().map_or("-".into(), |s| size(s.new_bytes)),
                c.refusals_7d.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "CLIENT",
            "STATE",
            "LAST OK",
            "AT",
            "AGE",
            "EXPECT",
            "NEWEST",
            "SIZE",
            "NEW",
            "REFUSED 7D",
        ],
        &rows,
        &[2, 4, 5, 7, 8, 9],
    );
    if fleet.clients.is_empty() {
        out = "no clients configured\n".into();
    }
    if !fleet.mirrors.is_empty() {
        let rows: Vec<Vec<String>> = fleet
            .mirrors
            .iter()
            .map(|m| {
                vec![
                    m.mirror.clone(),
                    if m.lagging { "LAGGING" } else { "ok" }.into(),
                    m.updated.map_or("never".into(), |u| time(u, tz)),
                    m.unmirrored_sessions.to_string(),
                    m.oldest_unmirrored_age_seconds.map_or("-".into(), span),
                    span(m.expect_every_seconds as i64),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["MIRROR", "STATE", "UPDATED", "BEHIND", "OLDEST", "EXPECT"],
            &rows,
            &[3, 4, 5],
        ));
    }
    out.push_str(&format!(
        "\nrepository: {} in {} chunks, {} in {} packs; {} logical in all sessions\n",
        size(fleet.store.chunk_bytes),
        fleet.store.chunks,
        size(fleet.store.pack_bytes),
        fleet.store.packs,
        size(fleet.logical_bytes),
    ));
    out
}

fn state_name(state: crate::index::SessionState) -> &'static str {
    match state {
        crate::index::SessionState::Complete => "complete",
        crate::index::SessionState::Partial => "partial",
        crate::index::SessionState::Running => "running",
    }
}

/// The daily digest: the status table, the sessions and refusals of the 24 hours before
/// `fleet.now`, and the store's growth.
pub fn digest(fleet: &FleetStatus, refusals: &[RefusalRow], tz: &TimeZone) -> String {
    let since = fleet.now - 86_400;
    let mut out = format!(
        "rsbackup status at {}\n\n{}",
        time(fleet.now, tz),
        render(fleet, tz)
    );
    out.push_str("\nSessions of the last 24 hours:\n");
    let mut rows = Vec::new();
    for c in &fleet.clients {
        for s in c.history.iter().filter(|s| s.finished > since) {
            rows.push(vec![
                s.id.to_string(),
                c.client.clone(),
                state_name(s.state).into(),
                time(s.started, tz),
                span(s.duration_seconds),
                size(s.bytes),
                size(s.new_bytes),
            ]);
        }
    }
    if rows.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table(
            &["ID", "CLIENT", "STATE", "STARTED", "TOOK", "SIZE", "NEW"],
            &rows,
            &[0, 4, 5, 6],
        ));
    }
    out.push_str("\nRefused requests of the last 24 hours:\n");
    if refusals.is_empty() {
        out.push_str("  none\n");
    }
    for r in refusals {
        out.push_str(&format!(
            "  {} client {} from {}: {}\n",
            time(r.time, tz),
            r.client,
            r.ip,
            r.reason
        ));
    }
    let day: u64 = fleet.growth.last().copied().unwrap_or(0);
    let month: u64 = fleet.growth.iter().sum();
    out.push_str(&format!(
        "\nRepository growth: {} in the last 24 hours, {} in the last 30 days.\n",
        size(day),
        size(month)
    ));
    out
}
