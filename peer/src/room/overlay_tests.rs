use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashMap};

fn addr() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

fn list(n: usize) -> Vec<(String, SocketAddr)> {
    (0..n).map(|i| (format!("p{i:02}"), addr())).collect()
}

fn view_of(me: &str, members: &[(String, SocketAddr)], rng: &mut StdRng) -> View {
    let mut v = View::new(me);
    v.reset(me, members.iter().cloned(), rng);
    v
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

/// The true `k` nearest online members after `me` in ring order.
fn true_successors<'a>(
    me: &str,
    online: impl Iterator<Item = &'a String>,
    k: usize,
) -> Vec<String> {
    let mut all: Vec<&String> = online.filter(|n| n.as_str() != me).collect();
    all.sort_by(|a, b| ring_key(me, a).cmp(&ring_key(me, b)));
    all.into_iter().take(k).cloned().collect()
}

#[test]
fn small_rooms_are_a_full_mesh() {
    let mut rng = StdRng::seed_from_u64(1);
    let view = view_of("p00", &list(4), &mut rng);
    let t = targets("p00", &view, &none(), &none(), 4, &mut rng);
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
    let mut rng = StdRng::seed_from_u64(1);
    let members = list(3);
    assert_eq!(
        view_of("p01", &members, &mut rng).successor(|_| false),
        Some("p02")
    );
    assert_eq!(
        view_of("p02", &members, &mut rng).successor(|_| false),
        Some("p00")
    );
    assert_eq!(
        view_of("zzz", &members, &mut rng).successor(|_| false),
        Some("p00")
    );
    assert_eq!(
        view_of("p01", &members, &mut rng).successor(|n| n == "p02"),
        Some("p00"),
        "held back: skipped"
    );
}

/// The view stays bounded however large the room: a join storm of 300 members, each pushed
/// to every peer already in, leaves every peer with its 16 true successors, a full sample and
/// an exact count, without a single refill.
#[test]
fn a_join_storm_keeps_every_view_exact_and_bounded() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut order: Vec<String> = (0..300).map(|i| format!("u{i:03}")).collect();
    // Joins in random order, so that successors arrive out of ring order.
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut views: Vec<View> = Vec::new();
    let mut online: Vec<String> = Vec::new();
    for name in &order {
        for v in &mut views {
            v.insert(name, addr(), &mut rng);
        }
        let members: Vec<(String, SocketAddr)> =
            online.iter().map(|n| (n.clone(), addr())).collect();
        views.push(view_of(name, &members, &mut rng));
        online.push(name.clone());
    }
    for v in &views {
        let me = v.me().to_string();
        assert_eq!(
            v.successors().map(str::to_string).collect::<Vec<_>>(),
            true_successors(&me, online.iter(), SUCC_KEEP),
            "{me}"
        );
        assert_eq!(v.len(), online.len() - 1);
        assert_eq!(v.sample.len(), SAMPLE);
        assert!(v.names().count() <= SUCC_KEEP + SAMPLE);
        assert!(!v.needs_refill(), "{me}");
    }
}

/// The property the overlay rests on: under random joins, leaves, comings online, goings
/// offline and renames, with refills that are sometimes lost, the successor list is always
/// the true nearest successors as far as it goes (a prefix of the true order), it is all of
/// them once a refill arrives, a short list always asks for a refill, the count is exact, and
/// everything in the view is online.
#[test]
fn successor_lists_are_true_prefixes_under_churn_and_lost_refills() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let me = format!("u{:03}", rng.random_range(0..120u32));
        let mut online: BTreeMap<String, SocketAddr> = BTreeMap::new();
        for i in 0..rng.random_range(0..60u32) {
            let n = format!("u{:03}", i * 2);
            if n != me {
                online.insert(n, addr());
            }
        }
        let mut view = view_of(
            &me,
            &online.clone().into_iter().collect::<Vec<_>>(),
            &mut rng,
        );
        let mut next_name = 1000u32;
        for step in 0..2_000 {
            let op = rng.random_range(0..10u32);
            if op < 4 || online.is_empty() {
                // Joined or online: a member not online yet.
                let n = format!("u{:03}", rng.random_range(0..120u32));
                if n != me && !online.contains_key(&n) {
                    let a: SocketAddr = format!("127.0.0.1:{}", 2 + step).parse().unwrap();
                    online.insert(n.clone(), a);
                    view.insert(&n, a, &mut rng);
                    view.note(&n, Some(step as u64));
                }
            } else if op < 8 {
                // Left or offline.
                let all: Vec<String> = online.keys().cloned().collect();
                let n = all[rng.random_range(0..all.len())].clone();
                online.remove(&n);
                view.remove(&n);
                view.note(&n, None);
                assert!(!view.is_online(&n) && !view.contains(&n) && view.since(&n).is_none());
            } else if op == 8 {
                // Renamed (to a name that sorts anywhere).
                let all: Vec<String> = online.keys().cloned().collect();
                let old = all[rng.random_range(0..all.len())].clone();
                next_name += 1;
                let new = format!("u{:03}x{next_name}", rng.random_range(0..120u32));
                let a = online.remove(&old).unwrap();
                online.insert(new.clone(), a);
                view.rename(&old, &new);
            } else if view.needs_refill() {
                if rng.random_bool(0.5) {
                    // Lost on the way: nothing changes, the view asks again later.
                    continue;
                }
                view.reset(&me, online.clone(), &mut rng);
                assert_eq!(
                    view.successors().map(str::to_string).collect::<Vec<_>>(),
                    true_successors(&me, online.keys(), SUCC_KEEP),
                    "seed {seed} step {step}: refilled"
                );
            }
            let succ: Vec<String> = view.successors().map(str::to_string).collect();
            let truth = true_successors(&me, online.keys(), succ.len());
            assert_eq!(succ, truth, "seed {seed} step {step}: not a prefix");
            if succ.len() < SUCC_WANT.min(online.len()) {
                assert!(view.needs_refill(), "seed {seed} step {step}: silent");
            }
            assert_eq!(view.len(), online.len(), "seed {seed} step {step}: count");
            for n in view.names() {
                assert_eq!(view.addr(n), online.get(n).copied(), "seed {seed}: {n}");
            }
        }
    }
}

/// Every peer links to its targets, picked from its own bounded view; the union must be
/// connected for many seeds and sizes (up to ten times the view), also after random members
/// leave and the survivors' views refill.
#[test]
fn overlays_are_connected() {
    for seed in 0..30u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = 5 + (seed as usize * 17 % 400);
        let mut online: BTreeSet<String> = (0..n).map(|i| format!("p{i:03}")).collect();
        let full = |online: &BTreeSet<String>| -> Vec<(String, SocketAddr)> {
            online.iter().map(|n| (n.clone(), addr())).collect()
        };
        let mut views: HashMap<String, View> = online
            .iter()
            .map(|me| (me.clone(), view_of(me, &full(&online), &mut rng)))
            .collect();
        let mut links: HashMap<String, BTreeSet<String>> = HashMap::new();
        for round in 0..3 {
            if round > 0 {
                // Some members leave; survivors hear of it, keep their live links and refill.
                let gone: Vec<String> = online
                    .iter()
                    .filter(|_| rng.random_bool(0.2))
                    .cloned()
                    .collect();
                for g in &gone {
                    online.remove(g);
                    links.remove(g);
                    views.remove(g);
                    for v in views.values_mut() {
                        v.remove(g);
                    }
                }
                for l in links.values_mut() {
                    l.retain(|x| online.contains(x));
                }
                let list = full(&online);
                for (me, v) in views.iter_mut() {
                    if v.needs_refill() {
                        v.reset(me, list.iter().cloned(), &mut rng);
                    }
                }
            }
            for me in online.iter() {
                let linked = links.get(me).cloned().unwrap_or_default();
                for t in targets(me, &views[me], &none(), &linked, 3, &mut rng) {
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
                "seed {seed} n {n} round {round}: disconnected"
            );
            for me in &online {
                let succ = true_successors(me, online.iter(), 1);
                assert!(
                    succ.iter().all(|s| links[me].contains(s)),
                    "seed {seed}: {me} not linked to its successor"
                );
            }
        }
    }
}
