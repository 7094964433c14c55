//! Duplicate suppression for flooded room messages, with bounded memory.
//!
//! A message id is `(origin, seq)`. Per origin we keep the highest sequence seen and a bitmap of
//! the 64 before it (the anti-replay window of `p2pchat_protocol::ReplayWindow`), so memory is
//! O(origins), never O(messages). A message more than 64 behind its origin's newest is treated
//! as already seen: flooding delivers within a few hops, so such a straggler is far more likely
//! a duplicate than news. Origins are capped too (least recently heard evicted first), so forged
//! origin names cannot grow the table.

use std::collections::{BTreeMap, HashMap};

use p2pchat_protocol::ReplayWindow;

/// Default cap on tracked origins per room.
pub const MAX_ORIGINS: usize = 4096;

#[derive(Debug)]
struct Origin {
    window: ReplayWindow,
    /// Recency stamp, for eviction.
    touched: u64,
}

/// Seen-message set for one room.
#[derive(Debug)]
pub struct Dedup {
    origins: HashMap<String, Origin>,
    by_recency: BTreeMap<u64, String>,
    clock: u64,
    max_origins: usize,
    duplicates: u64,
}

impl Dedup {
    /// A set tracking at most `max_origins` origins.
    pub fn new(max_origins: usize) -> Dedup {
        Dedup {
            origins: HashMap::new(),
            by_recency: BTreeMap::new(),
            clock: 0,
            max_origins: max_origins.max(1),
            duplicates: 0,
        }
    }

    /// Records `(origin, seq)`; true the first time it is seen.
    pub fn first_sight(&mut self, origin: &str, seq: u64) -> bool {
        self.clock += 1;
        let stamp = self.clock;
        if let Some(o) = self.origins.get_mut(origin) {
            // The name moves to its new stamp: every copy of every message passes here, so no
            // allocation (a 10,000-member flood makes millions of these calls).
            let name = self
                .by_recency
                .remove(&o.touched)
                .unwrap_or_else(|| origin.to_owned());
            o.touched = stamp;
            self.by_recency.insert(stamp, name);
            let fresh = o.window.accept(seq);
            if !fresh {
                self.duplicates += 1;
            }
            return fresh;
        }
        if self.origins.len() >= self.max_origins {
            if let Some((_, oldest)) = self.by_recency.pop_first() {
                self.origins.remove(&oldest);
            }
        }
        let mut window = ReplayWindow::default();
        window.accept(seq);
        self.origins.insert(
            origin.to_owned(),
            Origin {
                window,
                touched: stamp,
            },
        );
        self.by_recency.insert(stamp, origin.to_owned());
        true
    }

    /// Whether `(origin, seq)` would be a duplicate now (seen, or older than its origin's
    /// window), without recording anything.
    pub fn seen(&self, origin: &str, seq: u64) -> bool {
        match self.origins.get(origin) {
            Some(o) => !o.window.clone().accept(seq),
            None => false,
        }
    }

    /// Duplicates dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Origins tracked now.
    pub fn origins(&self) -> usize {
        self.origins.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_id_is_new_once_and_out_of_order_is_fine() {
        let mut d = Dedup::new(16);
        assert!(d.first_sight("a", 5));
        assert!(d.first_sight("a", 3), "older but unseen, within the window");
        assert!(!d.first_sight("a", 5));
        assert!(!d.first_sight("a", 3));
        assert!(d.first_sight("b", 5), "origins are independent");
        assert_eq!(d.duplicates(), 2);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut d = Dedup::new(8);
        for i in 0..10_000u64 {
            d.first_sight(&format!("o{}", i % 100), i);
        }
        assert_eq!(d.origins(), 8);
        for seq in 0..100_000u64 {
            assert!(d.first_sight("steady", seq));
        }
        assert!(d.origins() <= 8);
    }

    #[test]
    fn the_least_recent_origin_is_evicted() {
        let mut d = Dedup::new(2);
        d.first_sight("a", 1);
        d.first_sight("b", 1);
        d.first_sight("a", 2); // a is now more recent than b
        d.first_sight("c", 1); // evicts b
        assert!(!d.first_sight("a", 2), "a is still tracked");
        assert!(d.first_sight("b", 1), "b was forgotten");
    }
}
