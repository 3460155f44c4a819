//! `rsbackup repair index --repo R`: rebuild `index.db` from the packs, their reference lists,
//! the session records and the wrapped data keys beside them (no key needed).
//! `rsbackup repair chunks --repo R --from NAME|DIR`: heal damaged or missing chunks, packs and
//! the records beside them, fetching good copies from a mirror.

use std::path::PathBuf;

use anyhow::Result;
use rsbackup::gc::Failpoint;
use rsbackup::repair::{HealReport, rebuild_index, repair_chunks};

use crate::Outcome;

/// What to repair.
#[derive(clap::Subcommand)]
pub enum What {
    /// Rebuild index.db from what is on disk beside it (the old one is kept as index.db.old).
    Index(IndexArgs),
    /// Heal damaged or missing chunks and packs from a mirror; rewrite damaged reference
    /// lists, session records and data key files from the index.
    Chunks(ChunksArgs),
}

/// Arguments of `repair chunks`.
#[derive(clap::Args)]
pub struct ChunksArgs {
    /// The repository to repair.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// The mirror: a target named in server.toml (`[mirrors.NAME]`, reached over ssh as by
    /// `mirror`), or a local mirror directory (any value with a `/`).
    #[arg(long, value_name = "NAME|DIR")]
    from: String,
    /// The server configuration (default /etc/rsbackup/server.toml; needed for a named mirror).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// An age identity file: the report then names the paths that chunks still lost break.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `repair index`.
#[derive(clap::Args)]
pub struct IndexArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR", env = "RSBACKUP_REPO")]
    repo: PathBuf,
    /// An age identity file: needed only when a pack's reference list is missing or damaged,
    /// to find its manifest chunks by opening its records.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

/// Run `repair`.
pub fn run(what: What) -> Result<Outcome> {
    match what {
        What::Index(args) => index(args),
        What::Chunks(args) => chunks(args),
    }
}

fn chunks(args: ChunksArgs) -> Result<Outcome> {
    let repo = crate::open::repo(&args.repo)?;
    let config = crate::mirror::config_for(&args.from, args.config.as_deref())?;
    let identities = match &args.identity {
        Some(path) => Some(crate::open::identities(path)?),
        None => None,
    };
    // Crash tests only: abort at a named point, as for prune.
    let fail = Failpoint::new(std::env::var("RSBACKUP_FAILPOINT").ok().as_deref())?;
    let (_, conn) = crate::mirror::connection(&args.from, config.as_ref(), false)?;
    let report = conn
        .run(|reader, writer| repair_chunks(&repo, reader, writer, identities.as_ref(), &fail))?;
    if args.json {
        crate::output::print_json(&report)?;
    } else {
        print_heal(&repo, &args.from, &report);
    }
    Ok(if report.clean() {
        Outcome::Ok
    } else {
        Outcome::Partial
    })
}

fn print_heal(repo: &rsbackup::repo::Repo, from: &str, r: &HealReport) {
    println!(
        "repaired {} from {from}: {} damaged chunks, {} healed into {} new packs ({} damaged \
         packs replaced); rewritten from the index: {} reference lists, {} session records, \
         {} data key files",
        repo.root().display(),
        r.chunks_damaged,
        r.chunks_healed,
        r.packs_written,
        r.packs_replaced,
        r.refs_rewritten,
        r.session_records_rewritten,
        r.key_files_rewritten
    );
    for p in &r.damaged {
        println!("  was damaged: {}", p.what);
    }
    for l in &r.lost {
        eprintln!(
            "rsbackup: still lost (the mirror lacks it too): chunk {} in pack {}, needed by \
             sessions {:?}",
            l.chunk, l.pack, l.sessions
        );
    }
    for p in &r.left {
        let paths = if p.paths.is_empty() {
            String::new()
        } else {
            format!(" (paths: {})", p.paths.join(", "))
        };
        eprintln!(
            "rsbackup: still damaged: {} (sessions {:?}){paths}",
            p.what, p.sessions
        );
    }
}

fn index(args: IndexArgs) -> Result<Outcome> {
    let repo = crate::open::repo(&args.repo)?;
    // Crash tests only: abort at a named point, as for prune.
    let fail = Failpoint::new(std::env::var("RSBACKUP_FAILPOINT").ok().as_deref())?;
    let identities = match &args.identity {
        Some(path) => Some(crate::open::identities(path)?),
        None => None,
    };
    let report = rebuild_index(&repo, identities.as_ref(), &fail)?;
    println!(
        "rebuilt {}: {} sessions, {} chunks ({} manifest) in {} packs, {} data keys{}",
        repo.root().join("index.db").display(),
        report.sessions,
        report.chunks,
        report.manifest_chunks,
        report.packs,
        report.keys,
        if report.old_index_kept {
            "; the old index is index.db.old"
        } else {
            ""
        }
    );
    for line in report
        .sessions_lost
        .iter()
        .map(|l| format!("session lost: {l}"))
        .chain(
            report
                .sessions_damaged
                .iter()
                .map(|l| format!("session damaged: {l}")),
        )
        .chain(report.problems.iter().map(|l| format!("problem: {l}")))
    {
        eprintln!("rsbackup: {line}");
    }
    Ok(if report.clean() {
        Outcome::Ok
    } else {
        Outcome::Partial
    })
}
