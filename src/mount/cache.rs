//! A least-recently-used map bounded by the total weight (bytes) of its values: the mount keeps
//! decoded manifest chunks and opened data chunks in two of them, so that memory stays bounded
//! whatever is read.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Values with their weights, evicted oldest use first once the weights add up past the bound.
pub(super) struct Lru<K, V> {
    bound: u64,
    used: u64,
    tick: u64,
    map: HashMap<K, (V, u64, u64)>,
    /// Use tick → key, oldest first.
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An empty cache holding at most `bound` bytes of values.
    pub(super) fn new(bound: u64) -> Self {
        Lru {
            bound,
            used: 0,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The value of `key`, now the most recently used.
    pub(super) fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (value, _, used_at) = self.map.get_mut(key)?;
        self.order.remove(used_at);
        *used_at = tick;
        self.order.insert(tick, key.clone());
        Some(value.clone())
    }

    /// Keep `value` of `weight` bytes, evicting the least recently used values as needed. A
    /// value heavier than the whole bound is not kept.
    pub(super) fn insert(&mut self, key: K, value: V, weight: u64) {
        if weight > self.bound || self.map.contains_key(&key) {
            return;
        }
        while self.used + weight > self.bound {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, w, _)) = self.map.remove(&oldest) {
                self.used -= w;
            }
        }
        self.tick += 1;
        self.used += weight;
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, (value, weight, self.tick));
    }

    /// Bytes held.
    #[cfg(test)]
    pub(super) fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_the_bound() {
        let mut lru = Lru::new(10);
        lru.insert("a", 1, 4);
        lru.insert("b", 2, 4);
        assert_eq!(lru.get(&"a"), Some(1)); // b is now the oldest
        lru.insert("c", 3, 4);
        assert_eq!(lru.get(&"b"), None);
        assert_eq!((lru.get(&"a"), lru.get(&"c")), (Some(1), Some(3)));
        assert_eq!(lru.used(), 8);
        lru.insert("huge", 4, 11);
        assert_eq!(lru.get(&"huge"), None, "heavier than the bound: not kept");
        assert_eq!(lru.used(), 8);
    }
}
