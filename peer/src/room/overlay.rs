//! Which members of a room a peer links to.
//!
//! Each peer links to its **successor** in the ring of online members sorted by name, which
//! keeps the overlay connected whenever the members agree on who is online (every peer's
//! successor link together form a ring), plus random others until it has `degree` links, which
//! keeps the diameter, and so the hop count, small. A room no larger than `degree + 1` is a full
//! mesh. Links are symmetric once open, whoever opened them; a peer accepts inbound links up to
//! `2 * degree + 2` so the ring never starves while random links stay bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Bound::{Excluded, Included, Unbounded};

use rand::seq::IndexedRandom;
use rand::Rng;

/// The other online members of one room, indexed for the two questions the overlay asks on
/// every membership event: who follows a peer in the ring (an ordered map, O(log n)) and a
/// member at random (a dense vector, O(1)). Answering them by re-reading the whole member list
/// made every event O(n), and forming a room of n members O(n²).
#[derive(Debug, Default, Clone)]
pub struct Members {
    by_name: BTreeMap<String, Entry>,
    /// Every member once, in no particular order; `Entry::slot` is the index here.
    dense: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: SocketAddr,
    slot: usize,
    /// Set when the registry said the member joined or came online while we were in the room:
    /// a mark of the room's message history then (see `tree::Broadcast::mark`).
    since: Option<u64>,
}

impl Members {
    /// How many members.
    pub fn len(&self) -> usize {
        self.dense.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.dense.is_empty()
    }

    /// Whether `name` is a member.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The peer listener of `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.by_name.get(name).map(|e| e.addr)
    }

    /// Adds `name`, or updates its address.
    pub fn insert(&mut self, name: String, addr: SocketAddr) {
        if let Some(e) = self.by_name.get_mut(&name) {
            e.addr = addr;
            return;
        }
        let slot = self.dense.len();
        self.dense.push(name.clone());
        self.by_name.insert(
            name,
            Entry {
                addr,
                slot,
                since: None,
            },
        );
    }

    /// Records when (in the room's message history) `name` joined or came online.
    pub fn set_since(&mut self, name: &str, mark: u64) {
        if let Some(e) = self.by_name.get_mut(name) {
            e.since = Some(mark);
        }
    }

    /// What [`Members::set_since`] recorded for `name`.
    pub fn since(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).and_then(|e| e.since)
    }

    /// Removes `name`, returning its address.
    pub fn remove(&mut self, name: &str) -> Option<SocketAddr> {
        let e = self.by_name.remove(name)?;
        self.dense.swap_remove(e.slot);
        // The last member moved into the freed slot: point its entry there.
        if let Some(moved) = self.dense.get(e.slot) {
            if let Some(m) = self.by_name.get_mut(moved) {
                m.slot = e.slot;
            }
        }
        Some(e.addr)
    }

    /// Member names in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The next member after `me` in name order that `held` does not hold back, wrapping
    /// around. O(log n + |held|).
    pub fn successor(&self, me: &str, held: impl Fn(&str) -> bool) -> Option<&str> {
        let after = self.by_name.range::<str, _>((Excluded(me), Unbounded));
        let before = self.by_name.range::<str, _>((Unbounded, Included(me)));
        after
            .chain(before)
            .map(|(n, _)| n.as_str())
            .find(|n| *n != me && !held(n))
    }

    /// A member chosen uniformly at random.
    pub fn random(&self, rng: &mut impl Rng) -> Option<&str> {
        self.dense.choose(rng).map(String::as_str)
    }
}

impl FromIterator<(String, SocketAddr)> for Members {
    fn from_iter<I: IntoIterator<Item = (String, SocketAddr)>>(iter: I) -> Members {
        let mut m = Members::default();
        for (name, addr) in iter {
            m.insert(name, addr);
        }
        m
    }
}

/// Whom `me` should link to, given the room's online members, the members `held` back for
/// now (a failed or refused link), and its current links.
///
/// Keeps every current link that is still a candidate (churn costs nothing for links that are
/// fine), adds the ring successor, then random candidates until `degree` links are wanted.
/// Costs O(d log n + |held|) once the room is larger than a few times the degree: random
/// members are drawn from [`Members::random`] and redrawn on a clash, which is rare then.
pub fn targets(
    me: &str,
    online: &Members,
    held: &BTreeSet<String>,
    linked: &BTreeSet<String>,
    degree: usize,
    rng: &mut impl Rng,
) -> BTreeSet<String> {
    let degree = degree.max(1);
    let is_candidate = |n: &str| n != me && online.contains(n) && !held.contains(n);
    let excluded = held.iter().filter(|n| online.contains(n)).count()
        + usize::from(online.contains(me) && !held.contains(me));
    let candidates = online.len() - excluded;
    if candidates <= degree {
        return online
            .names()
            .filter(|n| is_candidate(n))
            .map(str::to_string)
            .collect();
    }
    let mut want: BTreeSet<String> = BTreeSet::new();
    if let Some(s) = online.successor(me, |n| held.contains(n)) {
        want.insert(s.to_string());
    }
    for l in linked {
        if want.len() >= degree {
            break;
        }
        if is_candidate(l) {
            want.insert(l.clone());
        }
    }
    let missing = degree.saturating_sub(want.len());
    let spare = candidates - want.len();
    if missing == 0 {
        return want;
    }
    if spare >= 4 * missing {
        // At least three draws in four hit a spare candidate, so this bound is reached only
        // with vanishing probability; the scan below finishes the job if it ever is.
        let mut draws = 16 + 8 * missing;
        while want.len() < degree && draws > 0 {
            draws -= 1;
            if let Some(n) = online.random(rng) {
                if is_candidate(n) && !want.contains(n) {
                    want.insert(n.to_string());
                }
            }
        }
    }
    let missing = degree.saturating_sub(want.len());
    if missing > 0 {
        let rest: Vec<&str> = online
            .names()
            .filter(|n| is_candidate(n) && !want.contains(*n))
            .collect();
        for pick in rest.choose_multiple(rng, missing) {
            want.insert((*pick).to_string());
        }
    }
    want
}

/// Most neighbours a peer lets *others* add in one room: a link request beyond this is refused.
/// A peer's own requests are not counted against it (its ring successor must always be
/// reachable), so a peer can end up with more, as the flooding-cost table shows.
pub fn max_links(degree: usize) -> usize {
    2 * degree + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::{HashMap, VecDeque};

    fn names(n: usize) -> Members {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        (0..n).map(|i| (format!("p{i:02}"), addr)).collect()
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn small_rooms_are_a_full_mesh() {
        let mut rng = StdRng::seed_from_u64(1);
        let online = names(4);
        let t = targets("p00", &online, &none(), &none(), 4, &mut rng);
        assert_eq!(
            t,
            ["p01", "p02", "p03"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }

    #[test]
    fn successor_wraps() {
        let online = names(3);
        assert_eq!(online.successor("p01", |_| false), Some("p02"));
        assert_eq!(online.successor("p02", |_| false), Some("p00"));
        assert_eq!(online.successor("zzz", |_| false), Some("p00"));
        let held: BTreeSet<String> = ["p02".to_string()].into();
        assert_eq!(
            online.successor("p01", |n| held.contains(n)),
            Some("p00"),
            "held back: skipped"
        );
    }

    /// The index stays consistent with a plain map through random inserts and removes, and a
    /// random draw is always a member.
    #[test]
    fn members_index_matches_a_plain_map() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut m = Members::default();
        let mut model: std::collections::BTreeMap<String, SocketAddr> = Default::default();
        for step in 0..5_000u32 {
            let name = format!("u{}", rng.random_range(0..200u32));
            let addr: SocketAddr = format!("127.0.0.1:{}", 1000 + step % 50).parse().unwrap();
            if rng.random_bool(0.55) {
                m.insert(name.clone(), addr);
                model.insert(name, addr);
            } else {
                assert_eq!(m.remove(&name), model.remove(&name));
            }
            assert_eq!(m.len(), model.len());
            if let Some(r) = m.random(&mut rng) {
                assert!(model.contains_key(r), "step {step}: drew {r}, not a member");
            }
        }
        assert!(m.names().eq(model.keys().map(String::as_str)));
        for (n, a) in &model {
            assert_eq!(m.addr(n), Some(*a));
        }
    }

    /// Churn costs nothing for links that are fine: current links to online members are
    /// kept, gone ones are not wanted, the successor is always wanted, and the total is the
    /// degree once the room is larger than that.
    #[test]
    fn current_links_are_kept_and_the_successor_added() {
        let mut rng = StdRng::seed_from_u64(3);
        let online = names(10);
        let linked: BTreeSet<String> = ["p05", "p07", "gone"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for _ in 0..20 {
            let t = targets("p00", &online, &none(), &linked, 3, &mut rng);
            let want: BTreeSet<String> = ["p01", "p05", "p07"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(t, want);
        }
        for _ in 0..20 {
            let t = targets("p03", &online, &none(), &none(), 4, &mut rng);
            assert_eq!(t.len(), 4);
            assert!(t.contains("p04"), "the successor");
            assert!(!t.contains("p03"), "never itself");
            assert!(t.iter().all(|n| online.contains(n)));
            let held: BTreeSet<String> = ["p04".to_string()].into();
            let t = targets("p03", &online, &held, &none(), 4, &mut rng);
            assert_eq!(t.len(), 4);
            assert!(
                t.contains("p05") && !t.contains("p04"),
                "held back: not wanted"
            );
        }
    }

    /// Every peer links to its targets; the union must be connected for many seeds and sizes,
    /// also after random members leave.
    #[test]
    fn overlays_are_connected_and_degree_bounded() {
        for seed in 0..50u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let n = 5 + (seed as usize % 40);
            let mut online = names(n);
            let mut links: HashMap<String, BTreeSet<String>> = HashMap::new();
            for round in 0..3 {
                if round > 0 {
                    // Some members leave; survivors keep their live links and refill.
                    let gone: Vec<String> = online
                        .names()
                        .filter(|_| rng.random_bool(0.2))
                        .map(str::to_string)
                        .collect();
                    for g in &gone {
                        online.remove(g);
                        links.remove(g);
                    }
                    for l in links.values_mut() {
                        l.retain(|x| online.contains(x));
                    }
                }
                let everyone: Vec<String> = online.names().map(str::to_string).collect();
                for me in everyone {
                    let linked = links.get(&me).cloned().unwrap_or_default();
                    for t in targets(&me, &online, &none(), &linked, 3, &mut rng) {
                        links.entry(me.clone()).or_default().insert(t.clone());
                        links.entry(t).or_default().insert(me.clone());
                    }
                }
                let Some(start) = online.names().next().map(str::to_string) else {
                    continue;
                };
                let mut seen = BTreeSet::from([start.clone()]);
                let mut q = VecDeque::from([start]);
                while let Some(x) = q.pop_front() {
                    for y in links.get(&x).into_iter().flatten() {
                        if seen.insert(y.clone()) {
                            q.push_back(y.clone());
                        }
                    }
                }
                assert_eq!(
                    seen.len(),
                    online.len(),
                    "seed {seed} round {round}: disconnected"
                );
                for l in links.values() {
                    assert!(
                        l.len() <= max_links(3) + 3,
                        "seed {seed}: {} links",
                        l.len()
                    );
                }
            }
        }
    }
}
