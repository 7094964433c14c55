//! Who is online: sessions by id, by account and by name, and heartbeat authentication.
//!
//! Expiry deadlines live in the registry's timer index (one per session), so this module holds
//! no clock: it answers "is this datagram a fresh, authentic heartbeat of a live session?".

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::ops::Bound;

use p2pchat_protocol::{Heartbeat, HeartbeatKey, ReplayWindow};

use crate::io::ConnId;
use crate::store::AccountId;

/// One logged-in session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) account: AccountId,
    pub(crate) name: String,
    pub(crate) conn: ConnId,
    key: HeartbeatKey,
    window: ReplayWindow,
    /// Where other peers reach this user.
    pub(crate) addr: SocketAddr,
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
    sessions: HashMap<u64, Session>,
    by_account: HashMap<AccountId, u64>,
    names: BTreeSet<String>,
}

impl Presence {
    pub(crate) fn insert(
        &mut self,
        id: u64,
        account: AccountId,
        name: String,
        conn: ConnId,
        key: &[u8; 32],
        addr: SocketAddr,
    ) {
        self.by_account.insert(account, id);
        self.names.insert(name.clone());
        self.sessions.insert(
            id,
            Session {
                account,
                name,
                conn,
                key: HeartbeatKey::new(key),
                window: ReplayWindow::default(),
                addr,
            },
        );
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        self.by_account.remove(&s.account);
        self.names.remove(&s.name);
        Some(s)
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
        let id = self.by_account.get(&account)?;
        self.sessions.get(id).map(|s| s.addr)
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn rename(&mut self, account: AccountId, new: &str) {
        let Some(id) = self.by_account.get(&account) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(id) {
            self.names.remove(&s.name);
            s.name = new.to_owned();
            self.names.insert(s.name.clone());
        }
    }

    /// Checks a datagram in the order of DESIGN.md §5: shape, session, tag, counter. Returns
    /// the session id of a fresh, authentic heartbeat; nothing changes otherwise.
    pub(crate) fn check_heartbeat(&mut self, datagram: &[u8]) -> Result<u64, HeartbeatRejection> {
        let hb = Heartbeat::decode(datagram).map_err(|_| HeartbeatRejection::Malformed)?;
        let s = self
            .sessions
            .get_mut(&hb.session)
            .ok_or(HeartbeatRejection::UnknownSession)?;
        if !hb.is_authentic(&s.key) {
            return Err(HeartbeatRejection::BadTag);
        }
        if !s.window.accept(hb.counter) {
            return Err(HeartbeatRejection::Replayed);
        }
        Ok(hb.session)
    }

    /// Online names greater than `after`, at most `limit`, and whether more follow.
    pub(crate) fn page(&self, after: &str, limit: usize) -> (Vec<String>, bool) {
        let start = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after.to_owned())
        };
        let mut it = self.names.range((start, Bound::Unbounded));
        let names: Vec<String> = it.by_ref().take(limit).cloned().collect();
        let more = it.next().is_some();
        (names, more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn heartbeat_checks_in_order() {
        let mut p = Presence::default();
        p.insert(7, 1, "alice".into(), ConnId(1), &[3; 32], addr());
        let key = HeartbeatKey::new(&[3; 32]);
        let good = Heartbeat::sign(&key, 7, 1, 0).encode();
        assert_eq!(p.check_heartbeat(&good), Ok(7));
        assert_eq!(p.check_heartbeat(&good), Err(HeartbeatRejection::Replayed));
        let forged = Heartbeat::sign(&HeartbeatKey::new(&[4; 32]), 7, 2, 0).encode();
        assert_eq!(p.check_heartbeat(&forged), Err(HeartbeatRejection::BadTag));
        // The forged counter 2 did not consume the window: the real 2 is still fresh.
        let next = Heartbeat::sign(&key, 7, 2, 0).encode();
        assert_eq!(p.check_heartbeat(&next), Ok(7));
        let other = Heartbeat::sign(&key, 8, 3, 0).encode();
        assert_eq!(
            p.check_heartbeat(&other),
            Err(HeartbeatRejection::UnknownSession)
        );
        assert_eq!(
            p.check_heartbeat(b"hello"),
            Err(HeartbeatRejection::Malformed)
        );
    }

    #[test]
    fn pages_are_sorted_and_resume_after_a_name() {
        let mut p = Presence::default();
        for (i, n) in ["dave", "alice", "carol", "bob"].iter().enumerate() {
            p.insert(
                i as u64,
                i as i64,
                n.to_string(),
                ConnId(i as u64),
                &[0; 32],
                addr(),
            );
        }
        assert_eq!(p.page("", 2), (vec!["alice".into(), "bob".into()], true));
        assert_eq!(
            p.page("bob", 2),
            (vec!["carol".into(), "dave".into()], false)
        );
        p.rename(0, "zed");
        assert_eq!(p.page("carol", 5), (vec!["zed".into()], false));
        p.remove(0);
        assert_eq!(p.len(), 3);
        assert_eq!(p.page("carol", 5), (vec![], false));
    }
}
