//! Time windows: when a client may talk to the server, e.g. `mon-fri 22:00-06:00`.
//!
//! A window is a set of weekdays and a wall-clock range in the client's stated time zone. When
//! the end is not after the start, the window crosses midnight: `fri 22:00-06:00` starts on
//! Friday at 22:00 and ends on Saturday at 06:00. `00:00-24:00` is the whole day.
//!
//! Times are compared as wall-clock times in the zone, which is what an administrator means by
//! "22:00": on the night clocks go back, the repeated hour is inside a window twice; on the night
//! clocks go forward, the skipped hour does not exist, so a window lying wholly inside it is
//! empty that night.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

const DAY_NAMES: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

const MINUTES_PER_DAY: u16 = 24 * 60;

/// One window: the weekdays it starts on and a wall-clock range in minutes after midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// Bit `n` set: the window starts on the weekday `n` days after Monday.
    days: u8,
    /// Start, minutes after midnight (0..1440).
    start: u16,
    /// End, minutes after midnight (1..=1440); not after `start` means the next day.
    end: u16,
    text: String,
}

impl TimeWindow {
    /// Parse `DAYS HH:MM-HH:MM`. DAYS is `daily`, `*`, or a comma list of days (`mon`..`sun`)
    /// and ranges (`mon-fri`, `fri-mon` wraps over the weekend). The error says what is wrong.
    pub fn parse(text: &str) -> Result<TimeWindow, String> {
        let mut words = text.split_ascii_whitespace();
        let (Some(days), Some(range), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "time window {text:?} is not of the form \"DAYS HH:MM-HH:MM\" \
                 (e.g. \"mon-fri 22:00-06:00\")"
            ));
        };
        let days = parse_days(days).map_err(|e| format!("time window {text:?}: {e}"))?;
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| format!("time window {text:?}: {range:?} is not HH:MM-HH:MM"))?;
        let start = parse_clock(start).map_err(|e| format!("time window {text:?}: {e}"))?;
        let end = parse_clock(end).map_err(|e| format!("time window {text:?}: {e}"))?;
        if start == MINUTES_PER_DAY {
            return Err(format!(
                "time window {text:?}: a window cannot start at 24:00"
            ));
        }
        if start == end {
            return Err(format!(
                "time window {text:?}: start and end are equal; write 00:00-24:00 for a whole day"
            ));
        }
        Ok(TimeWindow {
            days,
            start,
            end,
            text: text.to_owned(),
        })
    }

    /// When the window starts, in minutes after Monday 00:00, once per weekday it starts on.
    pub fn starts_in_week(&self) -> impl Iterator<Item = u32> + '_ {
        (0..7u32)
            .filter(|d| self.days & (1 << d) != 0)
            .map(|d| d * MINUTES_PER_DAY as u32 + u32::from(self.start))
    }

    /// Does the window contain the instant `now`, read as wall-clock time in `tz`?
    pub fn contains(&self, now: Timestamp, tz: &TimeZone) -> bool {
        let local = now.to_zoned(tz.clone());
        let day = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let starts_on = |d: u8| self.days & (1 << d) != 0;
        if self.start < self.end {
            starts_on(day) && self.start <= minute && minute < self.end
        } else {
            // Crosses midnight: the evening part belongs to today's window, the morning part to
            // the window that started yesterday.
            let yesterday = (day + 6) % 7;
            (starts_on(day) && minute >= self.start) || (starts_on(yesterday) && minute < self.end)
        }
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn day_index(name: &str) -> Result<u8, String> {
    DAY_NAMES
        .iter()
        .position(|(n, _)| *n == name)
        .map(|i| i as u8)
        .ok_or_else(|| format!("{name:?} is not a day (use mon, tue, wed, thu, fri, sat, sun)"))
}

fn parse_days(text: &str) -> Result<u8, String> {
    if text == "daily" || text == "*" {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            None => days |= 1 << day_index(part)?,
            Some((from, to)) => {
                let (from, to) = (day_index(from)?, day_index(to)?);
                let mut d = from;
                loop {
                    days |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
    }
    Ok(days)
}

fn parse_clock(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time HH:MM between 00:00 and 24:00");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: &str, civil: &str) -> (Timestamp, TimeZone) {
        let tz = TimeZone::get(tz).unwrap();
        let dt: jiff::civil::DateTime = civil.parse().unwrap();
        (tz.to_ambiguous_zoned(dt).earlier().unwrap().timestamp(), tz)
    }

    fn inside(window: &str, tz: &str, civil: &str) -> bool {
        let (ts, tz) = at(tz, civil);
        TimeWindow::parse(window).unwrap().contains(ts, &tz)
    }

    // 2026-11-27 is a Friday.
    #[test]
    fn plain_window() {
        assert!(inside("mon-fri 08:00-17:00", "UTC", "2026-11-27T08:00"));
        assert!(inside("mon-fri 08:00-17:00", "UTC", "2026-11-27T16:59"));
        assert!(!inside("mon-fri 08:00-17:00", "UTC", "2026-11-27T17:00"));
        assert!(!inside("mon-fri 08:00-17:00", "UTC", "2026-11-27T07:59"));
        assert!(!inside("mon-fri 08:00-17:00", "UTC", "2026-11-28T12:00"));
    }

    #[test]
    fn crossing_midnight() {
        // Friday's window covers Saturday 03:00, but not Saturday 07:00 or Friday 03:00.
        assert!(inside("fri 22:00-06:00", "UTC", "2026-11-28T03:00"));
        assert!(inside("fri 22:00-06:00", "UTC", "2026-11-27T23:30"));
        assert!(!inside("fri 22:00-06:00", "UTC", "2026-11-28T07:00"));
        assert!(!inside("fri 22:00-06:00", "UTC", "2026-11-27T03:00"));
        assert!(!inside("fri 22:00-06:00", "UTC", "2026-11-28T22:30"));
        // Sunday night's window wraps into Monday.
        assert!(inside("sun 23:00-01:00", "UTC", "2026-11-30T00:30"));
    }

    /// Regression: every edge minute of a window that crosses midnight, in particular its very
    /// first minute (22:00, where `>=` against `>` decides), midnight, and the minute before it
    /// ends. Seconds inside a minute belong to that minute.
    #[test]
    fn crossing_midnight_edges() {
        let w = "fri 22:00-06:00";
        for (civil, expected) in [
            ("2026-11-27T21:59:59", false),
            ("2026-11-27T22:00:00", true),
            ("2026-11-27T22:00:30", true),
            ("2026-11-27T23:59:59", true),
            ("2026-11-28T00:00:00", true),
            ("2026-11-28T05:59:59", true),
            ("2026-11-28T06:00:00", false),
            ("2026-11-27T00:00:00", false),
            ("2026-11-28T22:00:00", false),
        ] {
            assert_eq!(inside(w, "UTC", civil), expected, "{w} at {civil}");
        }
        // A window starting at midnight does not cross it, but one ending there does not
        // reach into the next day either.
        assert!(inside("sat 00:00-06:00", "UTC", "2026-11-28T00:00"));
        assert!(!inside("fri 18:00-24:00", "UTC", "2026-11-28T00:00"));
        assert!(inside("fri 18:00-24:00", "UTC", "2026-11-27T23:59"));
        // One minute long, across midnight, on the week's edge (Sunday into Monday).
        assert!(inside("sun 23:59-00:01", "UTC", "2026-11-29T23:59"));
        assert!(inside("sun 23:59-00:01", "UTC", "2026-11-30T00:00"));
        assert!(!inside("sun 23:59-00:01", "UTC", "2026-11-30T00:01"));
    }

    #[test]
    fn whole_day_and_wrapping_day_ranges() {
        assert!(inside("sat,sun 00:00-24:00", "UTC", "2026-11-29T23:59"));
        assert!(inside("sat,sun 00:00-24:00", "UTC", "2026-11-28T00:00"));
        assert!(!inside("sat,sun 00:00-24:00", "UTC", "2026-11-30T00:00"));
        assert!(inside("fri-mon 10:00-11:00", "UTC", "2026-11-29T10:30"));
        assert!(!inside("fri-mon 10:00-11:00", "UTC", "2026-11-25T10:30"));
        assert!(inside("daily 10:00-11:00", "UTC", "2026-11-25T10:30"));
    }

    #[test]
    fn time_zone_is_applied() {
        // 21:30 UTC on a Friday in November is 22:30 in Berlin (CET, +01:00).
        let ts: Timestamp = "2026-11-27T21:30:00Z".parse().unwrap();
        let w = TimeWindow::parse("fri 22:00-06:00").unwrap();
        assert!(w.contains(ts, &TimeZone::get("Europe/Berlin").unwrap()));
        assert!(!w.contains(ts, &TimeZone::UTC));
    }

    #[test]
    fn dst_edges() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 2026-03-29: clocks jump from 02:00 to 03:00. 00:59 UTC is 01:59 CET, 01:00 UTC is 03:00.
        let w = TimeWindow::parse("sun 02:00-03:00").unwrap();
        let before: Timestamp = "2026-03-29T00:59:00Z".parse().unwrap();
        let after: Timestamp = "2026-03-29T01:00:00Z".parse().unwrap();
        assert!(!w.contains(before, &berlin));
        assert!(
            !w.contains(after, &berlin),
            "the skipped hour does not exist"
        );
        let w = TimeWindow::parse("sat 22:00-03:30").unwrap();
        assert!(
            w.contains(after, &berlin),
            "03:00 CEST is inside 22:00-03:30"
        );
        // 2026-10-25: 02:00-03:00 happens twice (00:30 UTC is 02:30 CEST, 01:30 UTC is 02:30 CET).
        let w = TimeWindow::parse("sun 02:00-03:00").unwrap();
        for utc in ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"] {
            assert!(w.contains(utc.parse().unwrap(), &berlin), "{utc}");
        }
        assert!(!w.contains("2026-10-25T02:30:00Z".parse().unwrap(), &berlin));
    }

    #[test]
    fn bad_windows() {
        for bad in [
            "",
            "mon-fri",
            "22:00-06:00",
            "mon-fri 22:00-06:00 extra",
            "monday 22:00-06:00",
            "mon-fry 22:00-06:00",
            "mon,,tue 22:00-06:00",
            "mon 22:00",
            "mon 22:00-",
            "mon 2:00-06:00",
            "mon 22:60-23:00",
            "mon 25:00-06:00",
            "mon 24:00-06:00",
            "mon 10:00-24:01",
            "mon 10:00-10:00",
            "mon +1:00-10:00",
            "Mon 10:00-11:00",
        ] {
            assert!(TimeWindow::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let err = TimeWindow::parse("mon 10:00-10:00").unwrap_err();
        assert!(err.contains("00:00-24:00"), "{err}");
    }
}
