//! The stable fuzz runner: for every target of `rsbackup::fuzz`, replay its seeds, the
//! committed corpus (`fuzz/corpus/TARGET/`) and every saved crash (`fuzz/crashes/TARGET/`),
//! then mutate them for a few seconds.
//!
//! `RSBACKUP_FUZZ_SECONDS` sets the mutation time per target (default 2), and
//! `RSBACKUP_FUZZ_SEED` the seed of the mutation (default: from the clock); the seed is
//! printed when a target fails, and the same seed replays the same inputs. A failing input is
//! saved under the target directory (`fuzz-crashes/TARGET/`) and printed in hex; copy it to
//! `fuzz/crashes/TARGET/` with the fix, so that it is replayed for good.
//!
//! What counts as a failure: a panic (the targets assert their round trips and promises), one
//! input running longer than [`HANG_SECONDS`], and one allocation over the input's cap
//! ([`alloc_cap::cap_for`]).

mod alloc_cap;
mod mutate;

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rsbackup::fuzz::{TARGETS, Target};

#[global_allocator]
static ALLOCATOR: alloc_cap::CappedAllocator = alloc_cap::CappedAllocator;

/// One input running this long is a hang.
const HANG_SECONDS: u64 = 10;

/// Print to the real stderr, past the test harness's capture, so that the figures of a long
/// run and the seed of a process that aborts are always seen.
fn say(text: &str) {
    let _ = std::io::stderr().write_all(format!("{text}\n").as_bytes());
}

fn repo_dir(sub: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(sub)
        .join(target)
}

/// The files of a corpus directory, sorted by name; missing directory: none.
fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Why one input failed, or `None`.
fn run_one(target: &Target, input: &[u8]) -> Option<String> {
    alloc_cap::reset(alloc_cap::cap_for(input.len()));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let over = alloc_cap::take_over_cap();
    match outcome {
        Err(payload) => Some(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned()),
        ),
        Ok(()) if over > 0 => Some(format!(
            "allocated {over} bytes at once for {} bytes of input, over the cap of {} bytes",
            input.len(),
            alloc_cap::cap_for(input.len())
        )),
        Ok(()) => None,
    }
}

/// Save a failing input and fail the test with everything needed to reproduce it.
fn fail(target: &Target, input: &[u8], why: &str, how: &str) -> ! {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-crashes")
        .join(target.name);
    let _ = std::fs::create_dir_all(&dir);
    let name = &blake3::hash(input).to_hex()[..16];
    let path = dir.join(name);
    let _ = std::fs::write(&path, input);
    let shown = if input.len() <= 4096 {
        hex::encode(input)
    } else {
        format!("{} bytes", input.len())
    };
    panic!(
        "fuzz target {}: {why}\n{how}\ninput saved to {}\ninput: {shown}",
        target.name,
        path.display()
    );
}

/// Replay, then mutate for `seconds`.
fn fuzz(name: &str) {
    let target = rsbackup::fuzz::target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let corpus = files_in(&repo_dir("corpus", name));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{name}/ is empty or missing: the committed seed corpus is gone"
    );
    let crashes = files_in(&repo_dir("crashes", name));
    let mut inputs: Vec<Vec<u8>> = (target.seeds)();
    for (path, bytes) in corpus.iter().chain(&crashes) {
        if let Some(why) = run_one(target, bytes) {
            fail(
                target,
                bytes,
                &why,
                &format!("replaying {}", path.display()),
            );
        }
    }
    for seed in &inputs {
        if let Some(why) = run_one(target, seed) {
            fail(target, seed, &why, "replaying a built-in seed");
        }
    }
    inputs.extend(corpus.into_iter().map(|(_, b)| b));
    inputs.extend(crashes.into_iter().map(|(_, b)| b));

    let seconds: u64 = std::env::var("RSBACKUP_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("RSBACKUP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let reproduce = format!(
        "reproduce: RSBACKUP_FUZZ_SEED={seed} RSBACKUP_FUZZ_SECONDS={seconds} cargo test --test \
         fuzz -- --exact {name}"
    );
    let watch = Watchdog::start(name, &reproduce);
    alloc_cap::reset_largest();
    let mut rng = mutate::Rng::new(seed);
    let start = Instant::now();
    let mut executions = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let input = mutate::mutate(&mut rng, &inputs);
        watch.begin(&input);
        let failed = run_one(target, &input);
        watch.end();
        executions += 1;
        if let Some(why) = failed {
            fail(
                target,
                &input,
                &why,
                &format!("{reproduce} (execution {executions})"),
            );
        }
    }
    say(&format!(
        "fuzz {name}: {executions} executions in {:.1} s, {} starting inputs, largest \
         allocation {} bytes, seed {seed}",
        start.elapsed().as_secs_f64(),
        inputs.len(),
        alloc_cap::largest()
    ));
}

/// Ends the process when one input runs longer than [`HANG_SECONDS`], printing the input.
struct Watchdog {
    current: Arc<Mutex<Vec<u8>>>,
    /// Milliseconds since `epoch` when the running input began; 0: none running.
    began: Arc<AtomicU64>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(name: &str, reproduce: &str) -> Watchdog {
        let w = Watchdog {
            current: Arc::default(),
            began: Arc::default(),
            epoch: Instant::now(),
            stop: Arc::default(),
        };
        let (current, began, stop, epoch) =
            (w.current.clone(), w.began.clone(), w.stop.clone(), w.epoch);
        let (name, reproduce) = (name.to_owned(), reproduce.to_owned());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let at = began.load(Ordering::Relaxed);
                let now = epoch.elapsed().as_millis() as u64;
                if at != 0 && now.saturating_sub(at) > HANG_SECONDS * 1000 {
                    let input = current.lock().map(|i| i.clone()).unwrap_or_default();
                    say(&format!(
                        "fuzz target {name}: one input ran over {HANG_SECONDS} s (a hang)\n\
                         {reproduce}\ninput: {}",
                        hex::encode(&input)
                    ));
                    std::process::exit(101);
                }
            }
        });
        w
    }

    fn begin(&self, input: &[u8]) {
        if let Ok(mut current) = self.current.lock() {
            current.clear();
            current.extend_from_slice(input);
        }
        let now = (self.epoch.elapsed().as_millis() as u64).max(1);
        self.began.store(now, Ordering::Relaxed);
    }

    fn end(&self) {
        self.began.store(0, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Write every target's built-in seeds to `fuzz/corpus/TARGET/seed-N` (run by hand after a
/// format change: `cargo test --test fuzz -- --ignored write_seed_corpus`; review the diff).
#[test]
#[ignore = "writes into the source tree"]
fn write_seed_corpus() {
    for target in TARGETS {
        let dir = repo_dir("corpus", target.name);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (i, seed) in (target.seeds)().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).expect("writing a seed");
        }
    }
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                fuzz(stringify!($name));
            }
        )*

        /// Every target of the library has its test here, so none is left out of the suite.
        #[test]
        fn every_target_runs() {
            let here = [$(stringify!($name)),*];
            let mut listed: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
            listed.sort_unstable();
            let mut here = here.to_vec();
            here.sort_unstable();
            assert_eq!(here, listed, "tests/fuzz/main.rs must list every fuzz target");
        }
    };
}

targets!(
    pack,
    envelope,
    manifest,
    records,
    keys,
    files_cache,
    repository_toml,
    wire,
    restore_wire,
    server_answer,
    command,
    machines,
    placeholders,
    staging_meta,
    server_config,
    client_config,
    config_values,
);
