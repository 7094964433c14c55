//! The engine's own per-connection deadlines (connect timeout, close linger).
//!
//! A sorted index, so a turn finds the next deadline and the expired ones in O(log n) without
//! ever scanning all connections. Each connection has at most one deadline at a time (it is
//! either connecting or lingering, never both), and remembers it, so the entry can be removed
//! when the connection leaves that state early.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::token::ConnId;

/// `BTreeSet<(deadline, conn)>`; ties are ordered by `ConnId`, which keeps entries unique.
#[derive(Default, Debug)]
pub(crate) struct Timers {
    index: BTreeSet<(Instant, ConnId)>,
}

impl Timers {
    pub(crate) fn insert(&mut self, at: Instant, conn: ConnId) {
        self.index.insert((at, conn));
    }

    /// Removes the entry; returns whether it was there.
    pub(crate) fn remove(&mut self, at: Instant, conn: ConnId) -> bool {
        self.index.remove(&(at, conn))
    }

    /// Takes the earliest entry whose deadline is `<= now` (expiry is inclusive).
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<ConnId> {
        let &(at, _) = self.index.first()?;
        if at > now {
            return None;
        }
        self.index.pop_first().map(|(_, conn)| conn)
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.index.first().map(|&(at, _)| at)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // tests take one base instant and only add to it
    fn expiry_is_inclusive_and_ordered() {
        let t0 = Instant::now();
        let (a, b, c) = (ConnId::new(0, 1), ConnId::new(1, 1), ConnId::new(2, 1));
        let mut timers = Timers::default();
        timers.insert(t0 + ms(300), c);
        timers.insert(t0 + ms(100), a);
        timers.insert(t0 + ms(200), b);
        assert_eq!(timers.next_deadline(), Some(t0 + ms(100)));
        assert_eq!(timers.pop_expired(t0 + ms(99)), None);
        assert_eq!(timers.pop_expired(t0 + ms(100)), Some(a));
        assert_eq!(timers.pop_expired(t0 + ms(100)), None);
        assert_eq!(timers.pop_expired(t0 + ms(1_000)), Some(b));
        assert_eq!(timers.pop_expired(t0 + ms(1_000)), Some(c));
        assert_eq!(timers.pop_expired(t0 + ms(1_000)), None);
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // tests take one base instant and only add to it
    fn removed_entries_never_fire_and_equal_deadlines_coexist() {
        let t0 = Instant::now();
        let (a, b) = (ConnId::new(0, 1), ConnId::new(0, 2));
        let mut timers = Timers::default();
        timers.insert(t0, a);
        timers.insert(t0, b);
        assert_eq!(timers.len(), 2);
        assert!(timers.remove(t0, a));
        assert!(!timers.remove(t0, a));
        assert!(!timers.remove(t0 + ms(1), b));
        assert_eq!(timers.pop_expired(t0), Some(b));
        assert_eq!(timers.len(), 0);
    }
}
