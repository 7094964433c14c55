//! [`DenseMap`]: a map whose entries sit side by side in one `Vec`, found through a hash index
//! that holds only each key and a 4-byte position.
//!
//! Why (memory per online peer, docs/performance.md): a hash table keeps between 12.5 % and
//! 56 % of its buckets empty (hashbrown grows at 7/8 load, to twice the buckets), and each
//! empty bucket is as large as an entry. For the registry's connection and session entries
//! (72 and 136 bytes) that slack cost 70-150 bytes per online peer. Here the slack is in the
//! index, whose buckets are 16 bytes, and the entries are dense: a removal moves the last entry
//! into the gap. A lookup costs one more memory access (the position, then the entry).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Below this many entries of capacity a map never shrinks (a few kilobytes at most).
const MIN_SHRINK_CAPACITY: usize = 64;

/// The fewest entries a growth adds, so a small map does not reallocate at every insert.
const MIN_GROWTH: usize = 16;

/// A map from `K` to `V` with the entries in one dense `Vec` (see the module comment). Order of
/// iteration is unspecified, as for `HashMap`.
#[derive(Debug)]
pub(crate) struct DenseMap<K, V, S> {
    /// Where each key's entry is in `entries`.
    index: HashMap<K, u32, S>,
    /// Every entry, without gaps.
    entries: Vec<(K, V)>,
}

impl<K, V, S: Default> Default for DenseMap<K, V, S> {
    fn default() -> Self {
        DenseMap {
            index: HashMap::default(),
            entries: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Copy, V, S: BuildHasher> DenseMap<K, V, S> {
    /// Entries in the map.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has none.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let &at = self.index.get(key)?;
        self.entries.get(at as usize).map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let &at = self.index.get(key)?;
        self.entries.get_mut(at as usize).map(|(_, v)| v)
    }

    /// Inserts or replaces; returns the value it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(old) = self.get_mut(&key) {
            return Some(std::mem::replace(old, value));
        }
        // The registry's maps hold one entry per connection or session, far below 2^32 (a
        // process cannot hold that many sockets).
        let at = u32::try_from(self.entries.len()).expect("fewer than 2^32 entries");
        if self.entries.len() == self.entries.capacity() {
            let more = growth(self.entries.capacity(), std::mem::size_of::<(K, V)>());
            self.entries.reserve_exact(more);
        }
        self.index.insert(key, at);
        self.entries.push((key, value));
        None
    }

    /// Removes and returns the value of `key`. The last entry moves into its place.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.index.remove(key)?;
        let (_, value) = self.entries.swap_remove(at as usize);
        if let Some((moved, _)) = self.entries.get(at as usize) {
            if let Some(position) = self.index.get_mut(moved) {
                *position = at;
            }
        }
        self.shrink_if_sparse();
        Some(value)
    }

    /// The keys, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// After a crowd has left (a quarter of the capacity in use), gives back half of the
    /// capacity: the table stays at most four times what it holds, and a shrink (which rebuilds
    /// the index, O(n)) comes only after another three quarters have left, so its cost is O(1)
    /// per removal on average.
    fn shrink_if_sparse(&mut self) {
        let capacity = self.entries.capacity();
        if capacity > MIN_SHRINK_CAPACITY && self.entries.len() * 4 <= capacity {
            let keep = (self.entries.len() * 2).max(MIN_SHRINK_CAPACITY);
            self.entries.shrink_to(keep);
            self.index.shrink_to(keep);
        }
    }

    /// Bytes held by the two tables as allocated (capacity, not use), for memory reports:
    /// the index's buckets and control bytes, and the entries' `Vec`.
    pub(crate) fn table_bytes(&self) -> usize {
        hash_table_bytes::<K, u32>(self.index.capacity())
            + self.entries.capacity() * std::mem::size_of::<(K, V)>()
    }
}

/// Below this many bytes a table is a block of malloc's `brk` heap, above it a mapping of its
/// own (glibc's mmap threshold, which the registry binary fixes at this value).
pub(crate) const MAPPED_TABLE_BYTES: usize = 128 * 1024;

/// How many entries of `entry_bytes` a full table of `capacity` entries should grow by. A small
/// table doubles: in the `brk` heap each growth copies it and leaves the old block as a hole,
/// and doubling keeps all those holes together smaller than the table. A mapped table grows by
/// an eighth: there growth is an `mremap` (no copy, no hole), so it can stay within 12.5 % of
/// the most entries held at once.
pub(crate) fn growth(capacity: usize, entry_bytes: usize) -> usize {
    if capacity.saturating_mul(entry_bytes) < MAPPED_TABLE_BYTES {
        capacity.max(MIN_GROWTH)
    } else {
        capacity / 8
    }
}

/// Bytes of the allocation behind a std `HashMap<K, V>` (hashbrown) that reports `capacity`:
/// its buckets, one control byte each and one group (16) more. hashbrown has 7/8 of its
/// buckets as capacity from 8 buckets up; below, 4 or 8 buckets.
pub(crate) fn hash_table_bytes<K, V>(capacity: usize) -> usize {
    let buckets = match capacity {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        c => (c * 8 / 7).next_power_of_two(),
    };
    buckets * (std::mem::size_of::<(K, V)>() + 1) + 16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::RandomState;

    type Map = DenseMap<u64, String, RandomState>;

    #[test]
    fn a_removal_moves_the_last_entry_and_it_is_still_found() {
        let mut m = Map::default();
        for k in 0..5u64 {
            assert_eq!(m.insert(k, format!("v{k}")), None);
        }
        assert_eq!(m.remove(&1), Some("v1".to_owned()));
        // Entry 4 moved into position 1: found through the index, changeable in place.
        assert_eq!(m.get(&4).map(String::as_str), Some("v4"));
        m.get_mut(&4).unwrap().push('!');
        assert_eq!(m.get(&4).map(String::as_str), Some("v4!"));
        assert_eq!(m.insert(4, "w".into()), Some("v4!".to_owned()));
        assert_eq!(m.len(), 4);
        assert!(!m.contains_key(&1) && m.remove(&1).is_none());
        let mut keys: Vec<u64> = m.keys().copied().collect();
        keys.sort_unstable();
        assert_eq!(keys, vec![0, 2, 3, 4]);
    }

    #[test]
    fn capacity_follows_the_crowd_down() {
        let mut m = Map::default();
        for k in 0..10_000u64 {
            m.insert(k, String::new());
        }
        let peak = m.table_bytes();
        for k in 0..9_990u64 {
            assert!(m.remove(&k).is_some());
        }
        assert!(m.entries.capacity() <= 4 * MIN_SHRINK_CAPACITY);
        assert!(m.table_bytes() * 50 < peak, "{} of {peak}", m.table_bytes());
        for k in 9_990..10_000u64 {
            assert_eq!(m.get(&k), Some(&String::new()));
        }
        m.insert(5, "back".into());
        assert_eq!(m.get(&5).map(String::as_str), Some("back"));
    }

    #[test]
    fn table_bytes_counts_what_hashbrown_allocates() {
        let mut m = Map::default();
        assert_eq!(m.table_bytes(), 0);
        for k in 0..2_000u64 {
            m.insert(k, String::new());
        }
        // 2,000 keys: 4,096 index buckets of 16 bytes and a control byte each; the entries'
        // `Vec` of 32-byte entries doubled (to 2,048).
        assert_eq!(m.entries.capacity(), 2048);
        assert_eq!(m.table_bytes(), 4096 * 17 + 16 + 2048 * 32);
        // It doubles up to 128 KiB (4,096 entries), then grows by eighths.
        for k in 2_000..4_097u64 {
            m.insert(k, String::new());
        }
        assert_eq!(m.entries.capacity(), 4096 + 512);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16),
        Remove(u8),
    }

    proptest! {
        /// Any sequence of inserts and removals leaves the same contents as a `HashMap`.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(
            prop_oneof![
                (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
                any::<u8>().prop_map(Op::Remove),
            ],
            0..400,
        )) {
            let mut dense = DenseMap::<u8, u16, RandomState>::default();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(dense.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(dense.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(dense.len(), model.len());
            }
            for k in 0..=255u8 {
                prop_assert_eq!(dense.get(&k), model.get(&k));
            }
        }
    }
}
