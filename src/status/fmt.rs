//! Sizes, ages and times as the fleet views print them.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A size in the largest fitting binary unit, e.g. `1.50 GiB`; below 1 KiB, `512 bytes` (also
/// what the binary prints for sizes).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// An age or span in seconds, coarsely: `45 s`, `12 min`, `5.5 h`, `3.2 d`.
pub fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 2 * 86_400 {
        format!("{:.1} h", s as f64 / 3600.0)
    } else {
        format!("{:.1} d", s as f64 / 86_400.0)
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM` in `tz`.
pub fn time(unix: i64, tz: &TimeZone) -> String {
    match Timestamp::from_second(unix) {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => format!("@{unix}"),
    }
}
