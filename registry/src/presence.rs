//! Who is online: sessions by id, by account and by name, heartbeat authentication, and each
//! session's expiry deadline.
//!
//! Memory per session is kept small (issue 12, docs/performance.md "Memory per online peer"):
//! the heartbeat key is kept as its 32 bytes (ring's `hmac::Key` holds two SHA-256 states,
//! 5x larger, and is rebuilt per heartbeat for two extra compressions), the name is the account's
//! `Arc<str>`, shared by the account, the session and the sorted name set, and the expiry deadline is a field of
//! the session rather than an entry in a general timer index.
//!
//! Expiry is O(1) per heartbeat: a heartbeat only moves `Session::deadline`. A min-heap holds
//! one entry per session (plus stale ones of ended sessions until their time comes); when an
//! entry comes due, the session expires if its deadline has passed, else the entry is pushed
//! again at the session's current deadline. So the heap is touched once per timeout period
//! per session, never per heartbeat, and expiry stays exact to the heartbeat.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use p2pchat_protocol::{Heartbeat, HeartbeatKey, ReplayWindow};

use crate::dense::{hash_table_bytes, DenseMap};
use crate::io::ConnId;
use crate::store::AccountId;
use p2pchat_engine::IdHasher;

// Session ids are uniformly random `u64`s drawn by the registry (`open_session`), so they are
// already well spread; a datagram naming an id only looks it up, it cannot place entries, so
// no input can build collisions. Saves SipHash on every heartbeat. Dense (`dense.rs`): the
// 136-byte sessions sit side by side, only the index of positions has a hash table's slack.
type IdMap<V> = DenseMap<u64, V, BuildHasherDefault<IdHasher>>;

/// One logged-in session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) account: AccountId,
    pub(crate) name: Arc<str>,
    pub(crate) conn: ConnId,
    key: [u8; 32],
    window: ReplayWindow,
    /// Where other peers reach this user.
    pub(crate) addr: SocketAddr,
    /// The session expires when no heartbeat came by then.
    deadline: Instant,
}

/// Bytes of one session entry.
pub(crate) fn session_size() -> usize {
    std::mem::size_of::<Session>()
}

/// Why a heartbeat datagram was ignored (counted, never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatRejection {
    /// Not a heartbeat datagram at all.
    Malformed,
    /// No live session with that id.
    UnknownSession,
    /// The tag does not verify.
    BadTag,
    /// The counter was seen before or is older than the window.
    Replayed,
}

#[derive(Debug, Default)]
pub(crate) struct Presence {
    sessions: IdMap<Session>,
    by_account: HashMap<AccountId, u64, crate::io::IdKeyed>,
    names: BTreeSet<Arc<str>>,
    /// (when to look, session): see the module comment.
    expiry: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Presence {
    /// Adds a session that expires at `deadline` unless a heartbeat moves it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        id: u64,
        account: AccountId,
        name: Arc<str>,
        conn: ConnId,
        key: &[u8; 32],
        addr: SocketAddr,
        deadline: Instant,
    ) {
        self.by_account.insert(account, id);
        self.names.insert(name.clone());
        self.expiry.push(Reverse((deadline, id)));
        self.sessions.insert(
            id,
            Session {
                account,
                name,
                conn,
                key: *key,
                window: ReplayWindow::default(),
                addr,
                deadline,
            },
        );
    }

    /// Removes a session. Its expiry entry stays in the heap and is skipped when it comes due.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        self.by_account.remove(&s.account);
        self.names.remove(&s.name);
        if self.sessions.is_empty() {
            // Nothing can be due: drop the stale entries of ended sessions.
            self.expiry.clear();
        }
        Some(s)
    }

    /// The earliest moment a session may expire (possibly early: a stale entry of an ended
    /// session, or a session whose deadline moved; looking then is harmless).
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiry.peek().map(|Reverse((at, _))| *at)
    }

    /// One session whose deadline is `<= now` (inclusive, as the timer index), to be ended by
    /// the caller; `None` when no session is due.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<u64> {
        while let Some(&Reverse((at, id))) = self.expiry.peek() {
            if at > now {
                return None;
            }
            self.expiry.pop();
            let Some(s) = self.sessions.get(&id) else {
                continue; // ended before its deadline
            };
            if s.deadline <= now {
                return Some(id);
            }
            // Heartbeats moved it: look again at its current deadline.
            self.expiry.push(Reverse((s.deadline, id)));
        }
        None
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.sessions.contains_key(&id)
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub(crate) fn session_of(&self, account: AccountId) -> Option<u64> {
        self.by_account.get(&account).copied()
    }

    pub(crate) fn addr_of(&self, account: AccountId) -> Option<SocketAddr> {
        self.session_of_account(account).map(|s| s.addr)
    }

    /// The account's session, if online.
    pub(crate) fn session_of_account(&self, account: AccountId) -> Option<&Session> {
        self.sessions.get(self.by_account.get(&account)?)
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// The account's session, if online, takes its new name (the account's, shared).
    pub(crate) fn rename(&mut self, account: AccountId, new: Arc<str>) {
        let Some(id) = self.by_account.get(&account) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(id) {
            self.names.remove(&s.name);
            s.name = new;
            self.names.insert(s.name.clone());
        }
    }

    /// Checks a datagram in the order of DESIGN.md §5: shape, session, tag, counter. A fresh,
    /// authentic heartbeat moves its session's deadline to `deadline` and returns the session
    /// id; nothing changes otherwise. O(1), allocation-free.
    pub(crate) fn check_heartbeat(
        &mut self,
        datagram: &[u8],
        deadline: Instant,
    ) -> Result<u64, HeartbeatRejection> {
        let hb = Heartbeat::decode(datagram).map_err(|_| HeartbeatRejection::Malformed)?;
        let s = self
            .sessions
            .get_mut(&hb.session)
            .ok_or(HeartbeatRejection::UnknownSession)?;
        if !hb.is_authentic(&HeartbeatKey::new(&s.key)) {
            return Err(HeartbeatRejection::BadTag);
        }
        if !s.window.accept(hb.counter) {
            return Err(HeartbeatRejection::Replayed);
        }
        s.deadline = s.deadline.max(deadline);
        Ok(hb.session)
    }

    /// Bytes of the per-session tables as allocated (capacity, not use): the sessions, the
    /// sessions by account, the expiry heap. The sorted name set is left out (a B-tree does
    /// not tell its node count).
    pub(crate) fn table_bytes(&self) -> [(&'static str, usize); 3] {
        [
            (
                "sessions (dense table and index)",
                self.sessions.table_bytes(),
            ),
            (
                "sessions by account",
                hash_table_bytes::<AccountId, u64>(self.by_account.capacity()),
            ),
            (
                "expiry heap",
                self.expiry.capacity() * std::mem::size_of::<Reverse<(Instant, u64)>>(),
            ),
        ]
    }

    /// Online names greater than `after`, at most `limit`, and whether more follow.
    pub(crate) fn page(&self, after: &str, limit: usize) -> (Vec<String>, bool) {
        let start = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after)
        };
        let mut it = self.names.range::<str, _>((start, Bound::Unbounded));
        let names: Vec<String> = it.by_ref().take(limit).map(|n| n.to_string()).collect();
        let more = it.next().is_some();
        (names, more)
    }
}

#[cfg(test)]
// Tests anchor their virtual clock at one real instant and only add durations to it.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn heartbeat_checks_in_order() {
        let t0 = Instant::now();
        let mut p = Presence::default();
        p.insert(7, 1, "alice".into(), ConnId(1), &[3; 32], addr(), t0);
        let key = HeartbeatKey::new(&[3; 32]);
        let good = Heartbeat::sign(&key, 7, 1, 0).encode();
        assert_eq!(p.check_heartbeat(&good, t0), Ok(7));
        assert_eq!(
            p.check_heartbeat(&good, t0),
            Err(HeartbeatRejection::Replayed)
        );
        let forged = Heartbeat::sign(&HeartbeatKey::new(&[4; 32]), 7, 2, 0).encode();
        assert_eq!(
            p.check_heartbeat(&forged, t0),
            Err(HeartbeatRejection::BadTag)
        );
        // The forged counter 2 did not consume the window: the real 2 is still fresh.
        let next = Heartbeat::sign(&key, 7, 2, 0).encode();
        assert_eq!(p.check_heartbeat(&next, t0), Ok(7));
        let other = Heartbeat::sign(&key, 8, 3, 0).encode();
        assert_eq!(
            p.check_heartbeat(&other, t0),
            Err(HeartbeatRejection::UnknownSession)
        );
        assert_eq!(
            p.check_heartbeat(b"hello", t0),
            Err(HeartbeatRejection::Malformed)
        );
    }

    #[test]
    fn expiry_follows_heartbeats_exactly_and_heartbeats_do_not_grow_the_heap() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Presence::default();
        let key = HeartbeatKey::new(&[5; 32]);
        p.insert(1, 1, "a".into(), ConnId(1), &[5; 32], addr(), t0 + s(20));
        p.insert(2, 2, "b".into(), ConnId(2), &[5; 32], addr(), t0 + s(20));
        p.insert(3, 3, "c".into(), ConnId(3), &[5; 32], addr(), t0 + s(20));
        // Session 1 beats many times; only its deadline moves.
        for c in 1..=100u64 {
            let hb = Heartbeat::sign(&key, 1, c, 0).encode();
            assert_eq!(p.check_heartbeat(&hb, t0 + s(5) + s(20)), Ok(1));
        }
        assert_eq!(p.expiry.len(), 3);
        // Session 3 logs out: its entry is skipped when it comes due.
        assert!(p.remove(3).is_some());
        assert_eq!(p.next_expiry(), Some(t0 + s(20)));
        assert_eq!(p.pop_expired(t0 + s(19)), None);
        // At 20 s session 2 is due (inclusive); session 1 is looked at again at 25 s.
        assert_eq!(p.pop_expired(t0 + s(20)), Some(2));
        assert!(p.remove(2).is_some());
        assert_eq!(p.pop_expired(t0 + s(20)), None);
        assert_eq!(p.next_expiry(), Some(t0 + s(25)));
        assert_eq!(p.pop_expired(t0 + s(24)), None);
        assert_eq!(p.pop_expired(t0 + s(25)), Some(1));
        assert!(p.remove(1).is_some());
        assert_eq!(p.next_expiry(), None);
    }

    #[test]
    fn pages_are_sorted_and_resume_after_a_name() {
        let t0 = Instant::now();
        let mut p = Presence::default();
        for (i, n) in ["dave", "alice", "carol", "bob"].iter().enumerate() {
            p.insert(
                i as u64,
                i as i64,
                Arc::from(*n),
                ConnId(i as u64),
                &[0; 32],
                addr(),
                t0,
            );
        }
        assert_eq!(p.page("", 2), (vec!["alice".into(), "bob".into()], true));
        assert_eq!(
            p.page("bob", 2),
            (vec!["carol".into(), "dave".into()], false)
        );
        p.rename(0, "zed".into());
        assert_eq!(p.page("carol", 5), (vec!["zed".into()], false));
        p.remove(0);
        assert_eq!(p.len(), 3);
        assert_eq!(p.page("carol", 5), (vec![], false));
    }
}
