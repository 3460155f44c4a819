//! `rsbackup run --dry-run`: prints what [`rsbackup::client::dry_run`] found, one step a line
//! group, and exits with the code a real run would most likely end with (`run --help`).

use rsbackup::client::dry_run::dry_run;
use rsbackup::client::remote::Connection;
use rsbackup::config::ClientConfig;

use crate::Outcome;

/// Run the dry run and print it.
pub fn run(config: &ClientConfig, connection: &Connection, json: bool) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(&config.path)?;
    let scratch = tempfile_dir()?;
    let found = dry_run(config, &text, connection, scratch.path());
    let code = crate::run::exit_code(found.status);
    if json {
        crate::output::print_json(&serde_json::json!({
            "dry_run": true,
            "outcome": found.status.outcome().name(),
            "exit_code": code,
            "client": config.name.as_str(),
            "steps": found.steps.iter().map(|s| serde_json::json!({
                "step": s.name, "ok": s.ok, "lines": s.lines,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for step in &found.steps {
            println!(
                "{} {}",
                if step.ok { "ok    " } else { "FAILED" },
                step.name
            );
            for line in &step.lines {
                println!("         {line}");
            }
        }
        println!("dry run: nothing was sent, no session, no mail");
    }
    drop(scratch);
    crate::run::end(code)
}

/// An empty directory for rsync's dry run, removed on drop.
fn tempfile_dir() -> anyhow::Result<TempDir> {
    let path = std::env::temp_dir().join(format!(
        "rsbackup-dry-run-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir(&path)?;
    Ok(TempDir(path))
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
