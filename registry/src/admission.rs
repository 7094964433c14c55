//! Connection admission: a cap on connections per source address and on connections not yet
//! logged in, and which connection makes room when a cap is reached.
//!
//! Policy (docs/architecture.md, "Admission"): a connection that has not logged in holds a slot
//! it has not earned, so when a cap is reached the *oldest pre-login* connection is closed to make
//! room for the new one; logged-in connections are never evicted. A newcomer therefore always
//! gets in while some connection is still pre-login, and it has the whole pre-login deadline
//! before it becomes the oldest. The per-source cap applies the same rule inside one source
//! first, so a flood from one address evicts only its own connections and never holds more
//! than its share of the table.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::dense::hash_table_bytes;
use crate::io::ConnId;
use crate::limits::source_key;

/// A connection that has not logged in.
#[derive(Debug, Clone, Copy)]
struct Entry {
    source: IpAddr,
    /// Position in the pre-login order.
    seq: u64,
}

/// Why a new connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source holds `max_per_source` connections, all logged in.
    Source,
    /// The table holds `max_clients` connections, all logged in.
    Full,
}

/// The caps in force.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub(crate) max_clients: usize,
    pub(crate) max_per_source: usize,
    pub(crate) max_unauthenticated: usize,
}

/// Who is connected from where, and the pre-login connections in age order.
///
/// Only pre-login connections have an entry here (at most `max_unauthenticated` of them); a
/// logged-in one is only counted, in `total` and its source's count, and the caller names
/// its address when it logs out or closes. A source with no pre-login connection is a count
/// alone, 24 bytes in its table (it was 56 with an empty pre-login set beside it): online
/// peers usually each have a source of their own (memory per online peer, performance.md).
#[derive(Debug, Default)]
pub(crate) struct Admission {
    seq: u64,
    /// Open connections, logged in or not.
    total: usize,
    conns: HashMap<ConnId, Entry>,
    prelogin: BTreeSet<(u64, ConnId)>,
    /// Open connections per source. `u32`: a process holds far fewer sockets than 2^32.
    sources: HashMap<IpAddr, u32>,
    /// The pre-login connections of each source that has any, in age order.
    prelogin_by_source: HashMap<IpAddr, BTreeSet<(u64, ConnId)>>,
}

impl Admission {
    /// The connections to evict so that one more from `ip` fits, or why it cannot.
    pub(crate) fn admit(&self, ip: IpAddr, caps: Caps) -> Result<Vec<ConnId>, Refusal> {
        let mut evict = Vec::new();
        let source = source_key(ip);
        let open = self.sources.get(&source).map_or(0, |&n| n as usize);
        if open >= caps.max_per_source.max(1) {
            match self.prelogin_by_source.get(&source).and_then(|s| s.first()) {
                Some(&(_, oldest)) => evict.push(oldest),
                None => return Err(Refusal::Source),
            }
        }
        let total = self.total - evict.len();
        let unauthenticated = self.prelogin.len() - evict.len();
        if total >= caps.max_clients || unauthenticated >= caps.max_unauthenticated.max(1) {
            let oldest = self
                .prelogin
                .iter()
                .map(|&(_, conn)| conn)
                .find(|conn| !evict.contains(conn));
            match oldest {
                Some(conn) => evict.push(conn),
                None => return Err(Refusal::Full),
            }
        }
        Ok(evict)
    }

    /// Records a new connection from `ip` (not logged in).
    pub(crate) fn add(&mut self, conn: ConnId, ip: IpAddr) {
        self.total += 1;
        *self.sources.entry(source_key(ip)).or_default() += 1;
        self.set_prelogin(conn, ip);
    }

    /// The connection from `ip` is not logged in (new, or logged out): it joins the pre-login
    /// order as the youngest.
    pub(crate) fn set_prelogin(&mut self, conn: ConnId, ip: IpAddr) {
        if self.conns.contains_key(&conn) {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let source = source_key(ip);
        self.conns.insert(conn, Entry { source, seq });
        self.prelogin.insert((seq, conn));
        self.prelogin_by_source
            .entry(source)
            .or_default()
            .insert((seq, conn));
    }

    /// The connection logged in: it can no longer be evicted.
    pub(crate) fn set_logged_in(&mut self, conn: ConnId) {
        let Some(e) = self.conns.remove(&conn) else {
            return;
        };
        self.prelogin.remove(&(e.seq, conn));
        if let Some(s) = self.prelogin_by_source.get_mut(&e.source) {
            s.remove(&(e.seq, conn));
            if s.is_empty() {
                self.prelogin_by_source.remove(&e.source);
            }
        }
    }

    /// Forgets a closed connection from `ip`.
    pub(crate) fn remove(&mut self, conn: ConnId, ip: IpAddr) {
        self.set_logged_in(conn);
        self.total = self.total.saturating_sub(1);
        let source = source_key(ip);
        if let Some(n) = self.sources.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.sources.remove(&source);
            }
        }
    }

    /// Connections not logged in.
    pub(crate) fn unauthenticated(&self) -> usize {
        self.prelogin.len()
    }

    /// Bytes of the per-source and per-connection tables as allocated (capacity, not use);
    /// the B-trees of the pre-login order are left out.
    pub(crate) fn table_bytes(&self) -> usize {
        hash_table_bytes::<IpAddr, u32>(self.sources.capacity())
            + hash_table_bytes::<IpAddr, BTreeSet<(u64, ConnId)>>(
                self.prelogin_by_source.capacity(),
            )
            + hash_table_bytes::<ConnId, Entry>(self.conns.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(max_clients: usize, max_per_source: usize, max_unauthenticated: usize) -> Caps {
        Caps {
            max_clients,
            max_per_source,
            max_unauthenticated,
        }
    }

    #[test]
    fn the_oldest_prelogin_connection_makes_room_and_logged_in_ones_never_do() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut adm = Admission::default();
        let c = caps(3, 10, 10);
        for i in 1..=3 {
            assert_eq!(adm.admit(a, c), Ok(vec![]));
            adm.add(ConnId(i), a);
        }
        adm.set_logged_in(ConnId(1));
        assert_eq!(adm.admit(a, c), Ok(vec![ConnId(2)]), "oldest pre-login");
        adm.remove(ConnId(2), a);
        adm.add(ConnId(4), a);
        // Logging out makes a connection the youngest pre-login one.
        adm.set_prelogin(ConnId(1), a);
        assert_eq!(adm.admit(a, c), Ok(vec![ConnId(3)]));
        adm.set_logged_in(ConnId(1));
        adm.set_logged_in(ConnId(3));
        adm.set_logged_in(ConnId(4));
        assert_eq!(adm.admit(a, c), Err(Refusal::Full));
        assert_eq!(adm.unauthenticated(), 0);
        // Logged-in connections hold no entry, only their count, and their source no
        // pre-login set.
        assert!(adm.conns.is_empty() && adm.prelogin_by_source.is_empty());
        assert_eq!(adm.total, 3);
        assert_eq!(adm.sources.get(&a), Some(&3));
    }

    #[test]
    fn a_source_at_its_cap_evicts_only_its_own() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut adm = Admission::default();
        let c = caps(100, 2, 100);
        adm.add(ConnId(1), b);
        adm.add(ConnId(2), a);
        adm.add(ConnId(3), a);
        assert_eq!(adm.admit(a, c), Ok(vec![ConnId(2)]));
        assert_eq!(adm.admit(b, c), Ok(vec![]));
        adm.set_logged_in(ConnId(2));
        adm.set_logged_in(ConnId(3));
        assert_eq!(adm.admit(a, c), Err(Refusal::Source));
        adm.remove(ConnId(3), a);
        assert_eq!(adm.admit(a, c), Ok(vec![]));
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let mut adm = Admission::default();
        adm.add(ConnId(1), x);
        adm.set_logged_in(ConnId(1));
        assert_eq!(adm.admit(y, caps(100, 1, 100)), Err(Refusal::Source));
    }

    #[test]
    fn the_unauthenticated_cap_evicts_across_sources() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut adm = Admission::default();
        adm.add(ConnId(1), a);
        adm.add(ConnId(2), b);
        assert_eq!(adm.admit(b, caps(100, 100, 2)), Ok(vec![ConnId(1)]));
        adm.remove(ConnId(1), a);
        adm.remove(ConnId(2), b);
        assert!(adm.sources.is_empty() && adm.conns.is_empty() && adm.total == 0);
        assert!(adm.prelogin_by_source.is_empty());
    }
}
