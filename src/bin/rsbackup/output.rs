//! Printing: a buffered stdout that notices a closed pipe, human sizes, durations and times.

use std::io::{self, BufWriter, StdoutLock, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static BROKEN_PIPE: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout failed because the reader went away.
pub fn broken_pipe() -> bool {
    BROKEN_PIPE.load(Ordering::Relaxed)
}

fn note(err: &io::Error) {
    if err.kind() == io::ErrorKind::BrokenPipe {
        BROKEN_PIPE.store(true, Ordering::Relaxed);
    }
}

/// Buffered standard output that records a broken pipe, so that `rsbackup ls | head` exits 0
/// even when the library wraps the write error in its own.
pub struct Stdout {
    inner: BufWriter<StdoutLock<'static>>,
}

impl Stdout {
    /// Lock standard output.
    pub fn new() -> Stdout {
        Stdout {
            inner: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(note)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf).inspect_err(note)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(note)
    }
}

/// Write `value` as pretty JSON and a newline, then flush.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = Stdout::new();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// A failure in `--json` mode: `{"error": {"code": N, "kind": "...", "message": "..."}}` on
/// standard output (the one-line message goes to stderr as always). Nothing more can be done
/// when stdout itself fails, so that is ignored.
pub fn print_json_error(code: u8, message: &str) {
    let _ = print_json(&json_error(code, message));
}

/// The `error` object of a failure (docs/usage.md "JSON output").
pub fn json_error(code: u8, message: &str) -> serde_json::Value {
    let kind = crate::exit::code(code).map_or("failure", |c| c.name);
    serde_json::json!({"error": {"code": code, "kind": kind, "message": message}})
}

pub use rsbackup::status::fmt::size;

/// A size in a binary unit with the exact byte count, e.g. `1.50 GiB (1610612736 bytes)`.
pub fn size_exact(bytes: u64) -> String {
    if bytes < 1024 {
        size(bytes)
    } else {
        format!("{} ({bytes} bytes)", size(bytes))
    }
}

/// A duration: `0.42 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    if seconds < 10.0 {
        return format!("{seconds:.2} s");
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
    }
}

/// Throughput of `bytes` over `seconds`, e.g. `310.2 MiB/s`.
pub fn rate(bytes: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".into();
    }
    format!("{:.1} MiB/s", bytes as f64 / seconds / (1024.0 * 1024.0))
}

/// Unix seconds as local time `YYYY-MM-DD HH:MM:SS ZONE` (UTC if the zone is unknown); the
/// zone's abbreviation says which local time, and where clocks went back, which hour.
pub fn time(unix: i64) -> String {
    match jiff::Timestamp::from_second(unix) {
        Ok(ts) => {
            let tz = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
            ts.to_zoned(tz).strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
        }
        Err(_) => format!("@{unix}"),
    }
}

/// Path bytes for display: control characters as `\xNN`, everything else as is.
pub fn path_bytes(path: &[u8], out: &mut Vec<u8>) {
    if path.is_empty() {
        out.push(b'.');
        return;
    }
    for &b in path {
        if b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// Path bytes for one-line messages: lossy UTF-8, quoted and escaped.
pub fn path_display(path: &[u8]) -> String {
    if path.is_empty() {
        "the session root".into()
    } else {
        format!("{:?}", String::from_utf8_lossy(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_pick_a_readable_unit() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(1024), "1.00 KiB");
        assert_eq!(size(3 << 20), "3.00 MiB");
        assert_eq!(size(3 << 30), "3.00 GiB");
        assert_eq!(size_exact(1 << 20), "1.00 MiB (1048576 bytes)");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.421), "0.42 s");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(245.0), "4 min 05 s");
        assert_eq!(duration(7380.0), "2 h 03 min");
        assert_eq!(duration(f64::NAN), "?");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = Vec::new();
        path_bytes(b"a\nb\xff", &mut out);
        assert_eq!(out, b"a\\x0ab\xff");
        let mut root = Vec::new();
        path_bytes(b"", &mut root);
        assert_eq!(root, b".");
    }
}
