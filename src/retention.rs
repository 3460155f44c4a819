//! Retention rules: which sessions of one client to keep. A pure function of the session list,
//! the policy, the time zone that defines hours/days/weeks, and `now` — no I/O, no clock — so
//! that every decision can be tested over fixed lists and printed by `prune --dry-run`.
//!
//! Semantics follow restic's `forget` (and borg's `prune`), over the server's session times:
//!
//! * `keep-last N`: the N newest complete sessions.
//! * `keep-hourly/daily/weekly/monthly/yearly N`: walk complete sessions newest first; the first
//!   session seen in a new hour (day, ISO week, month, year) is kept, until N such periods have
//!   a kept session. Periods without sessions do not count.
//! * `keep-within D`: every session (complete or not) newer than `now - D`. Unlike restic, which
//!   measures from the newest snapshot, the cut-off is measured from `now`, as borg does: session
//!   times are the server's own, so `now` is trustworthy.
//! * The rules combine as the union of what each keeps.
//!
//! And, beyond restic:
//!
//! * the newest complete session is always kept, whatever the rules;
//! * a pinned session is kept until unpinned;
//! * a partial session never counts toward any counting rule (so it can neither use up a
//!   `keep-last` slot nor take the place of a complete session in a period); it is kept only when
//!   pinned, covered by `keep-within`, or newer than every complete session (it then holds the
//!   newest copy of whatever could be read);
//! * a policy with no rules at all keeps everything: roll-off has to be asked for.

use std::collections::BTreeSet;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

use crate::error::{Error, Result};

/// The retention rules of one client (`server.toml`); zero means "rule not used".
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Keep the N newest complete sessions.
    pub keep_last: u32,
    /// Keep the newest complete session of each of the last N hours that have one.
    pub keep_hourly: u32,
    /// Likewise per day.
    pub keep_daily: u32,
    /// Likewise per ISO week.
    pub keep_weekly: u32,
    /// Likewise per month.
    pub keep_monthly: u32,
    /// Likewise per year.
    pub keep_yearly: u32,
    /// Keep every session newer than `now - keep_within`.
    pub keep_within: Option<Span>,
}

// `Span` compares field by field only on request: "24h" and "1d" are different rules as
// written, which is what a configuration comparison wants.
impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.keep_last == other.keep_last
            && self.keep_hourly == other.keep_hourly
            && self.keep_daily == other.keep_daily
            && self.keep_weekly == other.keep_weekly
            && self.keep_monthly == other.keep_monthly
            && self.keep_yearly == other.keep_yearly
            && match (self.keep_within, other.keep_within) {
                (Some(a), Some(b)) => a.fieldwise() == b.fieldwise(),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Policy {
    /// True when no rule is set: nothing is rolled off.
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none()
    }
}

/// What the rules need to know of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    /// Session id; ties in time are broken by id (higher is newer).
    pub id: i64,
    /// Server time of the session (Unix seconds).
    pub time: i64,
    /// False for a partial session.
    pub complete: bool,
    /// Pinned by the administrator.
    pub pinned: bool,
}

/// Why a session is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Pinned.
    Pinned,
    /// The newest complete session.
    NewestComplete,
    /// A partial session newer than every complete one.
    NewestPartial,
    /// No rules: everything is kept.
    #[serde(rename = "no-rules")]
    NoPolicy,
    /// `keep-last`.
    #[serde(rename = "keep-last")]
    Last,
    /// `keep-hourly`.
    #[serde(rename = "keep-hourly")]
    Hourly,
    /// `keep-daily`.
    #[serde(rename = "keep-daily")]
    Daily,
    /// `keep-weekly`.
    #[serde(rename = "keep-weekly")]
    Weekly,
    /// `keep-monthly`.
    #[serde(rename = "keep-monthly")]
    Monthly,
    /// `keep-yearly`.
    #[serde(rename = "keep-yearly")]
    Yearly,
    /// `keep-within`.
    #[serde(rename = "keep-within")]
    Within,
}

impl Reason {
    /// The rule's name as written in `server.toml` and printed by `prune --dry-run`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Pinned => "pinned",
            Reason::NewestComplete => "newest complete",
            Reason::NewestPartial => "newest (partial)",
            Reason::NoPolicy => "no retention rules",
            Reason::Last => "keep-last",
            Reason::Hourly => "keep-hourly",
            Reason::Daily => "keep-daily",
            Reason::Weekly => "keep-weekly",
            Reason::Monthly => "keep-monthly",
            Reason::Yearly => "keep-yearly",
            Reason::Within => "keep-within",
        }
    }
}

/// The decision for one session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// Session id.
    pub id: i64,
    /// Kept or removed.
    pub keep: bool,
    /// Every rule that keeps it (empty when removed).
    pub reasons: Vec<Reason>,
}

/// The period key of a time for a bucket rule, in the policy's time zone.
fn period(zoned: &Zoned, reason: Reason) -> (i32, i32, i32, i32) {
    let (y, m, d, h) = (
        i32::from(zoned.year()),
        i32::from(zoned.month()),
        i32::from(zoned.day()),
        i32::from(zoned.hour()),
    );
    match reason {
        Reason::Hourly => (y, m, d, h),
        Reason::Daily => (y, m, d, -1),
        Reason::Weekly => {
            // ISO weeks: the week-year differs from the calendar year around the new year.
            let iso = zoned.date().iso_week_date();
            (i32::from(iso.year()), i32::from(iso.week()), -1, -1)
        }
        Reason::Monthly => (y, m, -1, -1),
        Reason::Yearly => (y, -1, -1, -1),
        _ => unreachable!("not a bucket rule"),
    }
}

/// Decide, for every session of one client, whether to keep it and by which rules. The result is
/// in the order of `sessions`.
pub fn decide(
    sessions: &[SessionFacts],
    policy: &Policy,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<Vec<Decision>> {
    let mut reasons: Vec<BTreeSet<Reason>> = vec![BTreeSet::new(); sessions.len()];

    // Newest first; ties in time by id, higher id newer.
    let mut order: Vec<usize> = (0..sessions.len()).collect();
    order.sort_by(|&a, &b| {
        (sessions[b].time, sessions[b].id).cmp(&(sessions[a].time, sessions[a].id))
    });

    let zoned: Vec<Zoned> = sessions
        .iter()
        .map(|s| {
            Timestamp::from_second(s.time)
                .map(|t| t.to_zoned(tz.clone()))
                .map_err(|e| {
                    Error::corrupt(format!(
                        "session {} has an impossible time {}: {e}",
                        s.id, s.time
                    ))
                })
        })
        .collect::<Result<_>>()?;

    for (i, s) in sessions.iter().enumerate() {
        if s.pinned {
            reasons[i].insert(Reason::Pinned);
        }
        if policy.is_empty() {
            reasons[i].insert(Reason::NoPolicy);
        }
    }

    let mut complete: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| sessions[i].complete)
        .collect();
    if let Some(&newest) = complete.first() {
        reasons[newest].insert(Reason::NewestComplete);
        for &i in order.iter().take_while(|&&i| i != newest) {
            reasons[i].insert(Reason::NewestPartial);
        }
    } else if let Some(&newest) = order.first() {
        // No complete session at all: the partial ones are the best there is, so the counting
        // rules apply to them rather than keeping every one forever.
        reasons[newest].insert(Reason::NewestPartial);
        complete = order.clone();
    }

    for &i in complete.iter().take(policy.keep_last as usize) {
        reasons[i].insert(Reason::Last);
    }

    for (reason, count) in [
        (Reason::Hourly, policy.keep_hourly),
        (Reason::Daily, policy.keep_daily),
        (Reason::Weekly, policy.keep_weekly),
        (Reason::Monthly, policy.keep_monthly),
        (Reason::Yearly, policy.keep_yearly),
    ] {
        let mut left = count;
        let mut last = None;
        for &i in &complete {
            if left == 0 {
                break;
            }
            let key = period(&zoned[i], reason);
            if last != Some(key) {
                reasons[i].insert(reason);
                last = Some(key);
                left -= 1;
            }
        }
    }

    if let Some(within) = policy.keep_within {
        // Calendar arithmetic in the policy's zone, so "1d" across a DST change is a day.
        let cutoff = now
            .to_zoned(tz.clone())
            .checked_sub(within)
            .map_err(|e| Error::invalid(format!("keep-within {within} cannot be applied: {e}")))?
            .timestamp();
        for (i, s) in sessions.iter().enumerate() {
            if s.time > cutoff.as_second() {
                reasons[i].insert(Reason::Within);
            }
        }
    }

    Ok(sessions
        .iter()
        .zip(reasons)
        .map(|(s, r)| Decision {
            id: s.id,
            keep: !r.is_empty(),
            reasons: r.into_iter().collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn facts(times: &[&str]) -> Vec<SessionFacts> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| SessionFacts {
                id: i as i64 + 1,
                time: ts(t),
                complete: true,
                pinned: false,
            })
            .collect()
    }

    fn kept(d: &[Decision]) -> Vec<i64> {
        d.iter().filter(|d| d.keep).map(|d| d.id).collect()
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn now() -> Timestamp {
        "2027-01-10T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn empty_list_and_empty_policy() {
        assert!(
            decide(&[], &Policy::default(), &utc(), now())
                .unwrap()
                .is_empty()
        );
        let s = facts(&["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]);
        let d = decide(&s, &Policy::default(), &utc(), now()).unwrap();
        assert_eq!(kept(&d), vec![1, 2]);
        assert!(d[0].reasons.contains(&Reason::NoPolicy));
    }

    #[test]
    fn keep_last_counts_only_complete_and_newest_is_always_kept() {
        let mut s = facts(&[
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
        ]);
        s[2].complete = false; // id 3
        let p = Policy {
            keep_last: 2,
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        // 4 and 2 are the two newest complete ones; 3 is partial and older than 4.
        assert_eq!(kept(&d), vec![2, 4]);
        assert_eq!(d[3].reasons, vec![Reason::NewestComplete, Reason::Last]);
    }

    #[test]
    fn newest_partial_is_kept_but_displaces_nothing() {
        let mut s = facts(&[
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
        ]);
        s[2].complete = false;
        let p = Policy {
            keep_last: 1,
            keep_daily: 1,
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        assert_eq!(kept(&d), vec![2, 3]);
        assert_eq!(d[2].reasons, vec![Reason::NewestPartial]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let s = facts(&[
            "2026-03-01T01:00:00Z",
            "2026-03-01T23:00:00Z",
            "2026-03-02T05:00:00Z",
            "2026-03-02T06:00:00Z",
            "2026-03-04T06:00:00Z",
        ]);
        let p = Policy {
            keep_daily: 3,
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        assert_eq!(kept(&d), vec![2, 4, 5]);
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_year_end() {
        // 2026-12-31 (Thursday) and 2027-01-03 (Sunday) are both in ISO week 2026-W53;
        // 2027-01-04 (Monday) starts 2027-W01.
        let s = facts(&[
            "2026-12-28T10:00:00Z",
            "2026-12-31T10:00:00Z",
            "2027-01-03T10:00:00Z",
            "2027-01-04T10:00:00Z",
        ]);
        let p = Policy {
            keep_weekly: 2,
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        assert_eq!(kept(&d), vec![3, 4]);
    }

    #[test]
    fn monthly_and_yearly_at_month_ends() {
        let s = facts(&[
            "2025-12-31T23:59:59Z",
            "2026-01-31T23:59:59Z",
            "2026-02-01T00:00:00Z",
            "2026-02-28T23:00:00Z",
        ]);
        let p = Policy {
            keep_monthly: 2,
            keep_yearly: 2,
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        assert_eq!(kept(&d), vec![1, 2, 4]);
        assert_eq!(d[0].reasons, vec![Reason::Yearly]);
        assert_eq!(d[1].reasons, vec![Reason::Monthly]);
    }

    #[test]
    fn days_follow_the_time_zone_across_dst() {
        // Europe/Berlin: 2026-03-29 02:00 local jumps to 03:00. 22:30Z on 03-28 is 23:30 local
        // (same day), 23:30Z is 01:30 local on 03-29: another day in Berlin, the same in UTC.
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let s = facts(&["2026-03-28T22:30:00Z", "2026-03-28T23:30:00Z"]);
        let p = Policy {
            keep_daily: 5,
            ..Policy::default()
        };
        assert_eq!(kept(&decide(&s, &p, &tz, now()).unwrap()), vec![1, 2]);
        assert_eq!(kept(&decide(&s, &p, &utc(), now()).unwrap()), vec![2]);
    }

    #[test]
    fn equal_times_break_ties_by_id() {
        let s = facts(&[
            "2026-05-05T05:05:05Z",
            "2026-05-05T05:05:05Z",
            "2026-05-05T05:05:05Z",
        ]);
        let p = Policy {
            keep_last: 1,
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        assert_eq!(kept(&d), vec![3]);
    }

    #[test]
    fn keep_within_is_measured_from_now_and_covers_partial() {
        let mut s = facts(&[
            "2027-01-01T12:00:00Z",
            "2027-01-05T12:00:00Z",
            "2027-01-08T12:00:00Z",
            "2027-01-09T12:00:00Z",
        ]);
        s[1].complete = false;
        let p = Policy {
            keep_within: Some("7d".parse().unwrap()),
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        assert_eq!(kept(&d), vec![2, 3, 4]);
        assert!(d[1].reasons.contains(&Reason::Within));
    }

    #[test]
    fn reasons_serialize_as_the_rule_names() {
        let json = serde_json::to_string(&[Reason::Last, Reason::NewestComplete, Reason::NoPolicy])
            .unwrap();
        assert_eq!(json, r#"["keep-last","newest-complete","no-rules"]"#);
    }

    #[test]
    fn pinned_is_kept_whatever_the_rules() {
        let mut s = facts(&["2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z"]);
        s[0].pinned = true;
        let p = Policy {
            keep_last: 1,
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        assert_eq!(kept(&d), vec![1, 2]);
        assert_eq!(d[0].reasons, vec![Reason::Pinned]);
    }

    #[test]
    fn only_partial_sessions_fall_back_to_the_rules() {
        let mut s = facts(&[
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
        ]);
        for f in &mut s {
            f.complete = false;
        }
        let p = Policy {
            keep_last: 2,
            ..Policy::default()
        };
        let d = decide(&s, &p, &utc(), now()).unwrap();
        // No complete session exists: the rules apply to the partial ones instead of keeping
        // all of them forever.
        assert_eq!(kept(&d), vec![2, 3]);
        assert_eq!(d[2].reasons, vec![Reason::NewestPartial, Reason::Last]);
    }
}
