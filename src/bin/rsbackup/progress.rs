//! The progress bar of long interactive work: bytes done (and in all, when known), rate and
//! time left, drawn on standard error only when it is a terminal and `--quiet` was not given.
//! The library counts ([`rsbackup::progress::Progress`]); this draws.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar on standard error, or nothing. Cleared when dropped, so that the lines printed after it
/// (the summary, errors) stand alone.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar when standard error is a terminal and `quiet` is false; otherwise one that draws
    /// nothing (cron, systemd, a pipe, a file).
    pub fn new(quiet: bool) -> Bar {
        if quiet || !std::io::stderr().is_terminal() {
            return Bar { bar: None };
        }
        // Hidden until the first phase starts, so that nothing is drawn before it has a style.
        Bar {
            bar: Some(ProgressBar::hidden()),
        }
    }

    /// Whether this bar draws anything.
    #[cfg(test)]
    fn draws(&self) -> bool {
        self.bar.is_some()
    }
}

/// `{msg} [====>   ] 1.20 GiB/3.00 GiB 210 MiB/s ETA 9s`, or without a total a spinner with
/// the bytes, the rate and the time so far.
fn style(total: bool) -> ProgressStyle {
    let template = if total {
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}"
    } else {
        "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}"
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

impl rsbackup::progress::Progress for Bar {
    fn start(&self, what: &str, total: Option<u64>) {
        let Some(bar) = &self.bar else { return };
        bar.set_style(style(total.is_some()));
        match total {
            Some(total) => bar.set_length(total),
            None => bar.unset_length(),
        }
        bar.reset();
        bar.set_message(what.to_owned());
        if bar.is_hidden() {
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            bar.enable_steady_tick(Duration::from_millis(250));
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_draws_nothing_and_both_styles_parse() {
        assert!(!Bar::new(true).draws());
        let _ = style(true);
        let _ = style(false);
    }
}
