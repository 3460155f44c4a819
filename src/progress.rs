//! Progress of long work (restore, check, ingest, mirror, prune), for whoever shows it: the
//! library counts bytes as it goes and says how many there are in all when it knows; the binary
//! decides whether and how to draw (a bar on a terminal, nothing from a timer).
//!
//! Calls come from worker threads too, hence `Sync`; an implementation must be cheap (a few
//! atomic operations), as `advance` runs once per chunk.

/// Receives the progress of one operation.
pub trait Progress: Sync {
    /// A phase of the work starts: what it does, in a few words (`restoring`, `reading packs`),
    /// and how many bytes it will handle, when known. Counting restarts from zero.
    fn start(&self, what: &str, total: Option<u64>) {
        let _ = (what, total);
    }

    /// `bytes` more of the current phase are done.
    fn advance(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// Progress that nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::check::{CheckOptions, check_with_progress};
    use crate::ingest::{IngestOptions, ingest_with_progress};
    use crate::restore::testutil::{TestRepo, noise};
    use crate::restore::{RestoreOptions, restore_with_progress};

    /// Records what an operation reported: the phases with their totals, and the bytes.
    #[derive(Default)]
    struct Recorded {
        phases: Mutex<Vec<(String, Option<u64>)>>,
        bytes: AtomicU64,
    }

    impl super::Progress for Recorded {
        fn start(&self, what: &str, total: Option<u64>) {
            self.phases.lock().unwrap().push((what.to_owned(), total));
            self.bytes.store(0, Ordering::Relaxed);
        }

        fn advance(&self, bytes: u64) {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    impl Recorded {
        fn phases(&self) -> Vec<(String, Option<u64>)> {
            self.phases.lock().unwrap().clone()
        }

        fn bytes(&self) -> u64 {
            self.bytes.load(Ordering::Relaxed)
        }
    }

    /// Ingest, restore and check each count every byte they handle, and the totals they
    /// announce are the bytes they then count.
    #[test]
    fn operations_count_up_to_the_total_they_announce() {
        let t = TestRepo::new();
        let src = t.path("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("a"), noise(1, 3 << 20)).unwrap();
        std::fs::write(src.join("d/b"), noise(2, 70_000)).unwrap();
        let opts = IngestOptions {
            client: "web1".into(),
            source: src.clone(),
            threads: None,
            files_cache: true,
            sources: None,
            restore_recipient: None,
        };
        let seen = Recorded::default();
        let report = ingest_with_progress(&t.repo, &opts, &seen).unwrap();
        assert_eq!(seen.phases(), [("reading files".to_owned(), None)]);
        assert_eq!(seen.bytes(), (3 << 20) + 70_000);

        // A full restore announces the session's bytes; a subset no total, and counts its own.
        let restored = |opts: RestoreOptions| {
            let seen = Recorded::default();
            let session = crate::ids::SessionId(report.session);
            restore_with_progress(&t.reader(), session, &opts, &seen).unwrap();
            (seen.phases(), seen.bytes())
        };
        let total = (3 << 20) + 70_000;
        let full = restored(RestoreOptions {
            target: t.path("to"),
            ..RestoreOptions::default()
        });
        assert_eq!(full, (vec![("restoring".to_owned(), Some(total))], total));
        let subset = restored(RestoreOptions {
            target: t.path("subset"),
            paths: vec![b"d".to_vec()],
            ..RestoreOptions::default()
        });
        assert_eq!(subset, (vec![("restoring".to_owned(), None)], 70_000));

        let seen = Recorded::default();
        let opts = CheckOptions {
            read_data: true,
            identities: None,
        };
        check_with_progress(&t.repo, &opts, &seen).unwrap();
        let phases = seen.phases();
        assert_eq!(phases.len(), 1);
        assert_eq!(phases[0].0, "checking packs");
        let total = phases[0].1.unwrap();
        assert!(total > 3 << 20, "{total}");
        assert_eq!(seen.bytes(), total);
    }
}
