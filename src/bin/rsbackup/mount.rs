//! `rsbackup mount --repo R --identity K [--client C] [--cache-mib N] MOUNTPOINT`: a read-only
//! FUSE view of the sessions, in the foreground until SIGINT or SIGTERM (or until unmounted from
//! outside), then unmounted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use rsbackup::ingest::validate_client_name;
use rsbackup::mount::{DEFAULT_CACHE_BYTES, MountOptions, Unmounted};
use rsbackup::{Error, ErrorKind};

use crate::Outcome;

/// Arguments of `mount`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    at: crate::open::RepoIdentityArgs,
    /// Only this client's sessions.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// Memory for data chunks already read, in MiB (file contents are read on demand and
    /// verified; this bounds what is kept for further reads).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_CACHE_BYTES >> 20)]
    cache_mib: u64,
    /// An empty directory to mount on.
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
}

/// Run `mount`.
pub fn run(args: Args) -> Result<Outcome> {
    if let Some(client) = &args.client {
        validate_client_name(client)?;
    }
    let Some(cache_bytes) = args.cache_mib.checked_mul(1 << 20) else {
        return Err(
            crate::UsageError(format!("--cache-mib {} is too large", args.cache_mib)).into(),
        );
    };
    // Refuse a bad mountpoint before asking for a passphrase.
    rsbackup::mount::check_mountpoint(&args.mountpoint)?;
    let repo = crate::open::repo(&args.at.repo)?;
    let sessions = repo.index()?.sessions(args.client.as_deref())?;
    if let Some(client) = &args.client
        && sessions.is_empty()
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "client {client:?} has no sessions in repository {}",
                args.at.repo.display()
            ),
        )
        .into());
    }
    // A wrong identity fails here, before anything is mounted.
    let reader = crate::open::reader(&repo, &args.at.identity)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Error::io("setting up signal handling", e))?;
    }
    let options = MountOptions {
        cache_bytes,
        warn: Arc::new(|line: &str| eprintln!("rsbackup: mount: {line}")),
    };
    let count = sessions.len();
    let mounted = rsbackup::mount::mount(reader, sessions, &args.mountpoint, options)?;
    eprintln!(
        "rsbackup: {} session{} mounted read-only at {}; stop with Ctrl-C, kill or fusermount3 -u",
        count,
        if count == 1 { "" } else { "s" },
        args.mountpoint.display()
    );
    while !stop.load(Ordering::Relaxed) && !mounted.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    match mounted.unmount()? {
        Unmounted::Clean => eprintln!("rsbackup: unmounted {}", args.mountpoint.display()),
        Unmounted::Detached => eprintln!(
            "rsbackup: unmounted {} lazily: files or directories were still open in it, and \
             reading them now fails",
            args.mountpoint.display()
        ),
    }
    Ok(Outcome::Ok)
}
