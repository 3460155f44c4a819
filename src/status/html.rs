//! The status page: one self-contained HTML file (inline CSS and SVG, no script, nothing
//! fetched), readable on a phone. It shows names, times and sizes only: no paths, no keys, no
//! audit command text, no refusal reasons (those can quote what a client sent).

use std::fmt::Write as _;

use jiff::tz::TimeZone;

use super::fmt::{size, span, time};
use super::{ClientStatus, FleetStatus, HISTORY_DAYS, SessionBrief};

/// `&`, `<`, `>`, `"` and `'` as entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0.8em;color:#222;background:#fff}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.4em}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:0.3em 0.5em;border-bottom:1px solid #ddd;vertical-align:middle}\
td.n{text-align:right;white-space:nowrap}td:first-child{overflow-wrap:anywhere}\
.dot{display:inline-block;width:0.9em;height:0.9em;border-radius:50%;margin-right:0.3em}\
.green{background:#2a2}.amber{background:#e90}.red{background:#d22}\
.wrap{overflow-x:auto}svg{vertical-align:middle}\
.small{color:#666;font-size:0.85em}\
@media (max-width:40em){.wide{display:none}}";

/// A small line chart of `values` (oldest first) over the last [`HISTORY_DAYS`] days, placed
/// by each value's time; `label` is its accessible name.
fn sparkline(points: &[(i64, f64)], now: i64, label: &str) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let span_s = (HISTORY_DAYS * 86_400) as f64;
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let mut svg = format!(
        "<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"{}\"><rect width=\"{W}\" height=\"{H}\" fill=\"#f4f4f4\"/>",
        escape(label)
    );
    if !points.is_empty() {
        let xy: Vec<String> = points
            .iter()
            .map(|(t, v)| {
                let x = (W * (1.0 - (now - t) as f64 / span_s)).clamp(1.0, W - 1.0);
                let y = if max > 0.0 {
                    H - 2.0 - (H - 4.0) * v / max
                } else {
                    H - 2.0
                };
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"{}\"/>",
            xy.join(" ")
        );
        if let Some(last) = xy.last() {
            let (x, y) = last.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, "<circle cx=\"{x}\" cy=\"{y}\" r=\"2\" fill=\"#36c\"/>");
        }
    }
    svg.push_str("</svg>");
    svg
}

fn chart(
    history: &[SessionBrief],
    now: i64,
    what: &str,
    value: fn(&SessionBrief) -> f64,
) -> String {
    let points: Vec<(i64, f64)> = history.iter().map(|s| (s.finished, value(s))).collect();
    sparkline(&points, now, what)
}

fn client_row(out: &mut String, c: &ClientStatus, tz: &TimeZone) {
    let health = c.health.name();
    let state = if c.overdue {
        "overdue"
    } else if c.lease_held {
        "running"
    } else {
        "ok"
    };
    let good = c.last_good.as_ref();
    let latest = c.latest.as_ref();
    let _ = write!(
        out,
        "<tr><td><span class=\"dot {health}\" title=\"{health}\"></span>{name}</td>\
         <td>{state}</td><td>{at}</td><td class=\"n\">{age}</td>\
         <td class=\"n\">{size}</td><td class=\"n wide\">{new}</td>\
         <td class=\"n\">{refused}</td></tr>",
        name = escape(&c.client),
        at = good.map_or("never".into(), |s| time(s.finished, tz)),
        age = c.last_good_age_seconds.map_or("-".into(), span),
        size = latest.map_or("-".into(), |s| size(s.bytes)),
        new = latest.map_or("-".into(), |s| size(s.new_bytes)),
        refused = c.refusals_7d,
    );
}

/// A row of the history table: the client's session sizes and durations over 30 days.
fn history_row(out: &mut String, c: &ClientStatus, now: i64) {
    let _ = write!(
        out,
        "<tr><td>{name}</td><td>{sizes}</td><td>{durations}</td></tr>",
        name = escape(&c.client),
        sizes = chart(
            &c.history,
            now,
            &format!("{}: session sizes", c.client),
            |s| s.bytes as f64
        ),
        durations = chart(
            &c.history,
            now,
            &format!("{}: session durations", c.client),
            |s| s.duration_seconds as f64
        ),
    );
}

/// The page. `host` names the server in the title.
pub fn render(fleet: &FleetStatus, host: &str, tz: &TimeZone) -> String {
    let now = fleet.now;
    let (red, amber) = fleet
        .clients
        .iter()
        .fold((0, 0), |(r, a), c| match c.health {
            super::Health::Red => (r + 1, a),
            super::Health::Amber => (r, a + 1),
            super::Health::Green => (r, a),
        });
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>rsbackup: {host}</title><style>{STYLE}</style></head><body>\
         <h1>rsbackup on {host}</h1>\
         <p>{at}: {n} clients, {red} overdue, {amber} to look at.</p>",
        host = escape(host),
        at = time(now, tz),
        n = fleet.clients.len(),
    );
    out.push_str(
        "<h2>Clients</h2><div class=\"wrap\"><table><thead><tr><th>Client</th><th>State</th>\
         <th>Last good</th><th>Age</th><th>Size</th><th class=\"wide\">New</th>\
         <th>Refused 7 d</th></tr></thead><tbody>",
    );
    for c in &fleet.clients {
        client_row(&mut out, c, tz);
    }
    out.push_str(
        "</tbody></table></div><h2>Last 30 days</h2><table><thead><tr><th>Client</th>\
         <th>Session sizes</th><th>Durations</th></tr></thead><tbody>",
    );
    for c in &fleet.clients {
        history_row(&mut out, c, now);
    }
    out.push_str("</tbody></table>");
    if !fleet.mirrors.is_empty() {
        out.push_str(
            "<h2>Mirrors</h2><div class=\"wrap\"><table><thead><tr><th>Mirror</th>\
             <th>Updated</th><th>Sessions behind</th><th>Oldest behind</th></tr></thead><tbody>",
        );
        for m in &fleet.mirrors {
            let health = if m.lagging { "red" } else { "green" };
            let _ = write!(
                out,
                "<tr><td><span class=\"dot {health}\" title=\"{health}\"></span>{}</td>\
                 <td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&m.mirror),
                m.updated.map_or("never".into(), |u| time(u, tz)),
                m.unmirrored_sessions,
                m.oldest_unmirrored_age_seconds.map_or("-".into(), span),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    let growth: Vec<(i64, f64)> = fleet
        .growth
        .iter()
        .enumerate()
        .map(|(i, b)| (now - (HISTORY_DAYS - 1 - i as i64) * 86_400, *b as f64))
        .collect();
    let _ = write!(
        out,
        "<h2>Repository</h2><table><tbody>\
         <tr><td>Stored in chunks</td><td class=\"n\">{}</td></tr>\
         <tr><td>Pack files</td><td class=\"n\">{} in {} packs</td></tr>\
         <tr><td>Logical, all sessions</td><td class=\"n\">{}</td></tr>\
         <tr><td>Added in 30 days</td><td class=\"n\">{} {}</td></tr>\
         </tbody></table><p class=\"small\">Generated by rsbackup at {}.</p></body></html>",
        size(fleet.store.chunk_bytes),
        size(fleet.store.pack_bytes),
        fleet.store.packs,
        size(fleet.logical_bytes),
        size(fleet.growth.iter().sum()),
        sparkline(&growth, now, "bytes added per day"),
        time(now, tz),
    );
    out.push('\n');
    out
}
