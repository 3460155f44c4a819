//! Plain-data reports and their text rendering: the job report (every step with its timing and
//! output), the error report (what failed, where, and what to do), and the server's refusal
//! alert. Nothing here sends anything; [`super::Mailer`] does.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;

/// Most bytes of one step's output kept in a report; the middle of longer output is cut.
pub const MAX_STEP_OUTPUT_BYTES: usize = 64 * 1024;

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepStatus {
    /// It succeeded.
    Ok,
    /// It failed; the message says how (exit status, error).
    Failed(String),
    /// It ran past its time limit and was killed.
    TimedOut(Duration),
    /// It did not run, and why (an earlier step failed).
    Skipped(String),
}

impl StepStatus {
    fn label(&self) -> String {
        match self {
            StepStatus::Ok => "ok".to_owned(),
            StepStatus::Failed(why) => format!("FAILED: {why}"),
            StepStatus::TimedOut(limit) => format!("TIMED OUT after {}", human_duration(*limit)),
            StepStatus::Skipped(why) => format!("skipped: {why}"),
        }
    }

    /// Did the step fail or time out?
    pub fn is_failure(&self) -> bool {
        matches!(self, StepStatus::Failed(_) | StepStatus::TimedOut(_))
    }
}

/// How a backup run ended, in one word for the subject, the body, the exit code and `--json`
/// of `rsbackup run` (docs/usage.md, "Outcomes"). Decided by the session the server recorded,
/// not by which steps failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// The session was recorded `complete` and nothing warned.
    Ok,
    /// The session was recorded `complete`, but a hook (or a server step after the ingest)
    /// failed.
    OkWithWarnings,
    /// The session was recorded `partial`.
    Partial,
    /// No session was recorded.
    Failed,
}

impl RunOutcome {
    /// What the subject says after "backup ".
    pub fn words(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::OkWithWarnings => "ok, with warnings",
            RunOutcome::Partial => "PARTIAL",
            RunOutcome::Failed => "FAILED: no backup made",
        }
    }

    /// The name in `--json` (`ok`, `ok-with-warnings`, `partial`, `failed`).
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::OkWithWarnings => "ok-with-warnings",
            RunOutcome::Partial => "partial",
            RunOutcome::Failed => "failed",
        }
    }

    /// Was a session recorded (complete or partial)?
    pub fn backup_made(self) -> bool {
        self != RunOutcome::Failed
    }
}

/// One step of a run: a hook, `prepare`, the rsync upload, `complete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// e.g. `init hook /usr/local/bin/dump-db`, `prepare`, `rsync`, `complete`.
    pub name: String,
    /// When it started.
    pub started: Timestamp,
    /// How long it ran.
    pub duration: Duration,
    /// How it ended.
    pub status: StepStatus,
    /// What it printed (stdout and stderr), as text.
    pub output: String,
}

/// The job report: one per run, whatever happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// The client's name.
    pub client: String,
    /// The machine that wrote the report (client host name, or the server's).
    pub host: String,
    /// When the run started.
    pub started: Timestamp,
    /// When it ended.
    pub finished: Timestamp,
    /// The steps, in order.
    pub steps: Vec<StepReport>,
    /// The session the server recorded, if any.
    pub session: Option<String>,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// Why the session is partial, as the server recorded it.
    pub reason: Option<String>,
    /// Figures worth a line each (rsync's stats, bytes stored), in order.
    pub figures: Vec<(String, String)>,
}

impl JobReport {
    /// Did every step that ran succeed?
    pub fn succeeded(&self) -> bool {
        !self.steps.iter().any(|s| s.status.is_failure())
    }

    /// The mail subject: `[rsbackup] CLIENT: backup OUTCOME (DATE)`.
    pub fn subject(&self) -> String {
        format!(
            "[rsbackup] {}: backup {} ({})",
            self.client,
            self.outcome.words(),
            self.started.strftime("%Y-%m-%d %H:%M UTC")
        )
    }

    /// The mail body.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let total = self.finished.duration_since(self.started).unsigned_abs();
        let _ = writeln!(out, "rsbackup job report");
        let _ = writeln!(out);
        let _ = writeln!(out, "client:   {}", clean(&self.client));
        let _ = writeln!(out, "host:     {}", clean(&self.host));
        let _ = writeln!(out, "started:  {}", self.started);
        let _ = writeln!(
            out,
            "finished: {} ({})",
            self.finished,
            human_duration(total)
        );
        let _ = writeln!(out, "outcome:  backup {}", self.outcome.words());
        if let Some(session) = &self.session {
            let _ = writeln!(out, "session:  {}", clean(session));
        }
        if let Some(reason) = &self.reason {
            let _ = writeln!(out, "partial:  {}", clean(reason));
        }
        if !self.figures.is_empty() {
            let _ = writeln!(out);
            let width = self.figures.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (key, value) in &self.figures {
                let _ = writeln!(out, "  {:width$}  {}", clean(key), clean(value));
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "steps:");
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. {:<40} {:>10}  {}",
                i + 1,
                clean(&step.name),
                human_duration(step.duration),
                step.status.label()
            );
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.output.trim().is_empty() {
                continue;
            }
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "--- output of step {}: {} (started {}) ---",
                i + 1,
                clean(&step.name),
                step.started
            );
            out.push_str(&clip_output(&step.output));
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// One failure in an error report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The step that failed.
    pub step: String,
    /// What happened.
    pub what: String,
    /// Where: the host, file, or command involved.
    pub location: String,
    /// What the administrator should do about it.
    pub action: String,
}

/// The error report: sent only when something failed, possibly to other addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// The client's name.
    pub client: String,
    /// The machine that wrote the report.
    pub host: String,
    /// When the run started.
    pub started: Timestamp,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// What failed, in order.
    pub failures: Vec<Failure>,
}

impl ErrorReport {
    /// The mail subject: `[rsbackup] CLIENT: ERROR: N failures; outcome OUTCOME (DATE)` (not
    /// "backup OUTCOME", which names the job report).
    pub fn subject(&self) -> String {
        format!(
            "[rsbackup] {}: ERROR: {} failure{}; outcome {} ({})",
            self.client,
            self.failures.len(),
            if self.failures.len() == 1 { "" } else { "s" },
            self.outcome.words(),
            self.started.strftime("%Y-%m-%d %H:%M UTC")
        )
    }

    /// The mail body.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rsbackup error report for client {} on {}, run started {}",
            clean(&self.client),
            clean(&self.host),
            self.started
        );
        let _ = writeln!(out, "outcome: {}", self.outcome.words());
        let _ = writeln!(out);
        for (i, f) in self.failures.iter().enumerate() {
            let _ = writeln!(out, "{}. {} failed", i + 1, clean(&f.step));
            let _ = writeln!(out, "   what:  {}", clean(&f.what));
            let _ = writeln!(out, "   where: {}", clean(&f.location));
            let _ = writeln!(out, "   to do: {}", clean(&f.action));
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "The job report, sent separately, has every step's output."
        );
        out
    }
}

/// The server's mail to the administrator about refused requests (coalesced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalAlert {
    /// The server's host name.
    pub host: String,
    /// The refusals: audit lines, oldest first.
    pub refusals: Vec<String>,
    /// How many more refusals were not kept.
    pub dropped: u64,
}

impl RefusalAlert {
    /// The mail subject.
    pub fn subject(&self) -> String {
        let n = self.refusals.len() as u64 + self.dropped;
        format!(
            "[rsbackup] {}: {n} refused request{}",
            clean(&self.host),
            if n == 1 { "" } else { "s" }
        )
    }

    /// The mail body.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "The rsbackup server on {} refused these requests:",
            clean(&self.host)
        );
        let _ = writeln!(out);
        for line in &self.refusals {
            let _ = writeln!(out, "{}", clean(line));
        }
        if self.dropped > 0 {
            let _ = writeln!(
                out,
                "... and {} more, not listed; see the audit log.",
                self.dropped
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "A refusal did nothing on the server. If a client should have been allowed, check its \
             addresses, windows and commands in server.toml ([clients.NAME]; for client \
             mirror-of:NAME, the primary's [mirror-of.NAME]); otherwise, someone holds a client's \
             or the primary's key, or is probing the server."
        );
        out
    }
}

/// `1.2 s`, `3 min 04 s`, `2 h 05 min`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60)
    }
}

/// Drop control characters other than newline and tab, so that program output cannot rewrite
/// the terminal of whoever reads the mail.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// Keep the head and tail of long output, cut at character boundaries.
fn clip_output(output: &str) -> String {
    let output = clean(output);
    if output.len() <= MAX_STEP_OUTPUT_BYTES {
        return output;
    }
    let half = MAX_STEP_OUTPUT_BYTES / 2;
    let mut head_end = half;
    while !output.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = output.len() - half;
    while !output.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!(
        "{}\n[... {} bytes left out ...]\n{}",
        &output[..head_end],
        tail_start - head_end,
        &output[tail_start..]
    )
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
