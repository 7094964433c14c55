//! Which members of a room a peer links to.
//!
//! Each peer links to its **successor** in the ring of online members sorted by name, which
//! keeps the overlay connected whenever the members agree on who is online (every peer's
//! successor link together form a ring), plus random others until it has `degree` links, which
//! keeps the diameter, and so the hop count, small. A room no larger than `degree + 1` is a full
//! mesh. Links are symmetric once open, whoever opened them; a peer accepts inbound links up to
//! `2 * degree + 2` so the ring never starves while random links stay bounded.

use std::collections::BTreeSet;

use rand::seq::IndexedRandom;
use rand::Rng;

/// Whom `me` should link to, given the other online members and its current links.
///
/// Keeps every current link that is still a member (churn costs nothing for links that are
/// fine), adds the ring successor, then random members until `degree` links are wanted.
pub fn targets(
    me: &str,
    online: &BTreeSet<String>,
    linked: &BTreeSet<String>,
    degree: usize,
    rng: &mut impl Rng,
) -> BTreeSet<String> {
    let others: Vec<&String> = online.iter().filter(|n| n.as_str() != me).collect();
    if others.len() <= degree {
        return others.into_iter().cloned().collect();
    }
    let mut want: BTreeSet<String> = BTreeSet::new();
    if let Some(s) = successor(me, online) {
        want.insert(s);
    }
    for l in linked {
        if want.len() >= degree.max(1) {
            break;
        }
        if online.contains(l) && l != me {
            want.insert(l.clone());
        }
    }
    let candidates: Vec<&String> = others.into_iter().filter(|n| !want.contains(*n)).collect();
    let missing = degree.saturating_sub(want.len());
    for pick in candidates.choose_multiple(rng, missing) {
        want.insert((*pick).clone());
    }
    want
}

/// The next online member after `me` in name order, wrapping around.
pub fn successor(me: &str, online: &BTreeSet<String>) -> Option<String> {
    online
        .range::<str, _>((std::ops::Bound::Excluded(me), std::ops::Bound::Unbounded))
        .find(|n| n.as_str() != me)
        .or_else(|| online.iter().find(|n| n.as_str() != me))
        .cloned()
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

    fn names(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| format!("p{i:02}")).collect()
    }

    #[test]
    fn small_rooms_are_a_full_mesh() {
        let mut rng = StdRng::seed_from_u64(1);
        let online = names(4);
        let t = targets("p00", &online, &BTreeSet::new(), 4, &mut rng);
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
        assert_eq!(successor("p01", &online).as_deref(), Some("p02"));
        assert_eq!(successor("p02", &online).as_deref(), Some("p00"));
        assert_eq!(successor("zzz", &online).as_deref(), Some("p00"));
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
            let t = targets("p00", &online, &linked, 3, &mut rng);
            let want: BTreeSet<String> = ["p01", "p05", "p07"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(t, want);
        }
        for _ in 0..20 {
            let t = targets("p03", &online, &BTreeSet::new(), 4, &mut rng);
            assert_eq!(t.len(), 4);
            assert!(t.contains("p04"), "the successor");
            assert!(!t.contains("p03"), "never itself");
            assert!(t.iter().all(|n| online.contains(n)));
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
                        .iter()
                        .filter(|_| rng.random_bool(0.2))
                        .cloned()
                        .collect();
                    for g in &gone {
                        online.remove(g);
                        links.remove(g);
                    }
                    for l in links.values_mut() {
                        l.retain(|x| online.contains(x));
                    }
                }
                for me in online.clone() {
                    let linked = links.get(&me).cloned().unwrap_or_default();
                    for t in targets(&me, &online, &linked, 3, &mut rng) {
                        links.entry(me.clone()).or_default().insert(t.clone());
                        links.entry(t).or_default().insert(me.clone());
                    }
                }
                let Some(start) = online.iter().next().cloned() else {
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
