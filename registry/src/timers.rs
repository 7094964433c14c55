//! A deadline index: at most one deadline per key, the earliest found in O(log n), expired ones
//! popped in O(log n) each, so a sweep costs time proportional to what expires, never to
//! everything that is armed (mini-redis's `BTreeSet<(Instant, Key)>`).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// Deadlines by key.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    by_key: HashMap<K, Instant>,
    order: BTreeSet<(Instant, K)>,
}

impl<K: Copy + Ord + Hash> Timers<K> {
    pub(crate) fn new() -> Self {
        Timers {
            by_key: HashMap::new(),
            order: BTreeSet::new(),
        }
    }

    /// Arms (or moves) `key`'s deadline.
    pub(crate) fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key, at) {
            self.order.remove(&(old, key));
        }
        self.order.insert((at, key));
    }

    /// Disarms `key`.
    pub(crate) fn cancel(&mut self, key: K) {
        if let Some(old) = self.by_key.remove(&key) {
            self.order.remove(&(old, key));
        }
    }

    pub(crate) fn is_set(&self, key: K) -> bool {
        self.by_key.contains_key(&key)
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Removes and returns one key whose deadline is `<= now` (inclusive, like quinn).
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<K> {
        let &(at, key) = self.order.first()?;
        if at > now {
            return None;
        }
        self.order.remove(&(at, key));
        self.by_key.remove(&key);
        Some(key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
// Tests anchor their virtual clock at one real instant and only add durations to it.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expiry_is_inclusive_and_ordered() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timers::new();
        t.set(1u32, t0 + ms(20));
        t.set(2, t0 + ms(10));
        t.set(3, t0 + ms(30));
        assert_eq!(t.next(), Some(t0 + ms(10)));
        assert_eq!(t.pop_expired(t0 + ms(9)), None);
        assert_eq!(t.pop_expired(t0 + ms(10)), Some(2));
        t.set(1, t0 + ms(40)); // moved later
        assert_eq!(t.pop_expired(t0 + ms(35)), Some(3));
        assert_eq!(t.pop_expired(t0 + ms(35)), None);
        t.cancel(1);
        assert_eq!(t.next(), None);
        assert_eq!(t.len(), 0);
    }
}
