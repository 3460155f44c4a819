//! Chunks submitted by this run but not yet committed to the index.
//!
//! Two jobs: deduplicate within the run (a chunk claimed by one worker is not sealed again by
//! another), and let the manifest builder wait until every data chunk a manifest chunk names
//! has been handed to the pack writer, so that the writer (which appends in submission order)
//! never makes a manifest chunk durable before its references. The writer thread removes
//! entries once their pack is committed, which bounds the map to about one open pack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::ids::ChunkId;

#[derive(Default)]
pub(super) struct InFlight {
    // true = handed to the writer; false = claimed, being sealed.
    map: Mutex<HashMap<ChunkId, bool>>,
    changed: Condvar,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<ChunkId, bool>> {
        // A panic elsewhere must not hide the data: the map stays consistent under poison.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claim `id` for sealing. `None` when this run already claimed or submitted it.
    pub fn claim(&self, id: ChunkId) -> Option<Claim<'_>> {
        let mut map = self.lock();
        if map.contains_key(&id) {
            return None;
        }
        map.insert(id, false);
        Some(Claim {
            owner: self,
            id,
            settled: false,
        })
    }

    /// Forget ids that are now committed in the index.
    pub fn forget(&self, ids: &[ChunkId]) {
        let mut map = self.lock();
        for id in ids {
            map.remove(id);
        }
    }

    /// Wait until none of `ids` is merely claimed (each is either submitted to the writer or
    /// not ours). Returns false if `abort` was raised while waiting.
    pub fn wait_submitted(&self, ids: &[ChunkId], abort: &AtomicBool) -> bool {
        let mut map = self.lock();
        loop {
            if !ids.iter().any(|id| map.get(id) == Some(&false)) {
                return true;
            }
            if abort.load(Ordering::Relaxed) {
                return false;
            }
            map = self
                .changed
                .wait_timeout(map, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// An owned claim. Dropped without [`Claim::submitted`] (stored already, or an error), the
/// claim is withdrawn so that waiters do not wait forever.
pub(super) struct Claim<'a> {
    owner: &'a InFlight,
    id: ChunkId,
    settled: bool,
}

impl Claim<'_> {
    /// The sealed chunk has been handed to the writer.
    pub fn submitted(mut self) {
        self.owner.lock().insert(self.id, true);
        self.settled = true;
        self.owner.changed.notify_all();
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.owner.lock().remove(&self.id);
            self.owner.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_is_exclusive_until_withdrawn() {
        let f = InFlight::default();
        let id = ChunkId([1; 32]);
        let c = f.claim(id).unwrap();
        assert!(f.claim(id).is_none());
        drop(c);
        assert_eq!(f.len(), 0);
        let c = f.claim(id).unwrap();
        c.submitted();
        assert!(f.claim(id).is_none());
        f.forget(&[id]);
        assert!(f.claim(id).is_some());
    }

    #[test]
    fn waiter_wakes_when_claim_is_submitted_and_stops_on_abort() {
        let f = InFlight::default();
        let abort = AtomicBool::new(false);
        let id = ChunkId([2; 32]);
        let c = f.claim(id).unwrap();
        std::thread::scope(|s| {
            let h = s.spawn(|| f.wait_submitted(&[id], &abort));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!h.is_finished());
            c.submitted();
            assert!(h.join().unwrap());
        });
        let other = ChunkId([3; 32]);
        let _c = f.claim(other).unwrap();
        abort.store(true, Ordering::Relaxed);
        assert!(!f.wait_submitted(&[other], &abort));
    }
}
