//! Scenarios built on [`World`]: log many peers in, form a room, flood messages through it and
//! check who showed what. Shared by `tests/sim.rs` and `p2pchat-bench sim-flood`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use p2pchat_peer::NodeEvent;

use super::{NodeId, World};

/// Every simulated user's password.
pub const PASSWORD: &str = "password1";

/// The username of the `i`th node added by [`add_users`].
pub fn user_name(i: usize) -> String {
    format!("user{i}")
}

/// The node events the scenarios need (a filter for [`super::SimConfig::keep_event`] that
/// keeps a big world's memory small: room membership chatter is dropped).
pub fn scenario_events(e: &NodeEvent) -> bool {
    !matches!(
        e,
        NodeEvent::MemberJoined { .. }
            | NodeEvent::MemberLeft { .. }
            | NodeEvent::RoomMessageSent { .. }
            | NodeEvent::RegistryConnected { .. }
    )
}

/// Adds `n` nodes with overlay degree `degree`; node `i` registers and logs in as
/// [`user_name`]`(i)`. Runs until all are logged in.
pub fn add_users(
    w: &mut World,
    n: usize,
    degree: usize,
    limit: Duration,
) -> Result<Vec<NodeId>, String> {
    add_users_with(w, n, limit, |c| c.degree = degree)
}

/// [`add_users`] with any configuration: `tweak` is applied to each node's default config.
pub fn add_users_with(
    w: &mut World,
    n: usize,
    limit: Duration,
    tweak: impl Fn(&mut p2pchat_peer::Config),
) -> Result<Vec<NodeId>, String> {
    let first = w.node_count();
    let mut ids = Vec::with_capacity(n);
    for i in first..first + n {
        let id = w.add_node(&tweak);
        let name = user_name(i);
        w.command(id, &format!("/register {name} {PASSWORD}"));
        w.command(id, &format!("/login {name} {PASSWORD}"));
        ids.push(id);
    }
    let ok = w.run_until(|w| ids.iter().all(|id| w.node(*id).name().is_some()), limit);
    if !ok {
        let missing: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|id| w.node(*id).name().is_none())
            .collect();
        let why: Vec<String> = missing
            .first()
            .map(|id| {
                w.events(*id)
                    .filter_map(|e| match e {
                        NodeEvent::Error { message } => Some(message.clone()),
                        _ => None,
                    })
                    .take(3)
                    .collect()
            })
            .unwrap_or_default();
        return Err(format!(
            "{} of {n} not logged in after {limit:?}: {:?} (first one's errors: {why:?})",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    Ok(ids)
}

/// `members[0]` creates `room`, the others join it; runs until every member is in it and the
/// overlay of the live members is connected, and the network is quiet.
pub fn form_room(
    w: &mut World,
    members: &[NodeId],
    room: &str,
    limit: Duration,
) -> Result<(), String> {
    let end = w.elapsed() + limit;
    let Some(&creator) = members.first() else {
        return Ok(());
    };
    w.command(creator, &format!("/create {room}"));
    let created = w.run_until(|w| w.node(creator).room_stats(room).is_some(), limit);
    if !created {
        return Err(format!("{creator} could not create {room}"));
    }
    for &id in &members[1..] {
        w.command(id, &format!("/join {room}"));
    }
    let left = end.saturating_sub(w.elapsed());
    // Checked often: only the members not in yet are looked at, without allocating.
    let mut waiting: Vec<NodeId> = members.to_vec();
    let joined = w.run_until(
        |w| {
            waiting.retain(|id| w.node(*id).room_stats(room).is_none());
            waiting.is_empty()
        },
        left,
    );
    if !joined {
        return Err(format!("not every member joined {room} within {limit:?}"));
    }
    settle(w, members, room, end.saturating_sub(w.elapsed()))
}

/// Runs until the network is quiet and the overlay of the live `members` is connected.
pub fn settle(
    w: &mut World,
    members: &[NodeId],
    room: &str,
    limit: Duration,
) -> Result<(), String> {
    let end = w.elapsed() + limit;
    loop {
        w.run_until_idle(end.saturating_sub(w.elapsed()));
        let parts = components(w, members, room);
        if parts == 1 {
            return Ok(());
        }
        if w.elapsed() >= end {
            return Err(format!(
                "overlay of {room} still in {parts} parts after {limit:?}"
            ));
        }
        w.run_for(Duration::from_millis(250).min(end - w.elapsed()));
    }
}

/// Connected components of the overlay among the live `members`, counting only mutual links
/// (both ends list each other): a peer drops room messages from a sender it does not count
/// as its neighbour, so a one-way link carries nothing.
pub fn components(w: &World, members: &[NodeId], room: &str) -> usize {
    let (live, adj) = mutual_links(w, members, room);
    let mut seen = vec![false; live.len()];
    let mut parts = 0;
    for start in 0..live.len() {
        if seen[start] {
            continue;
        }
        parts += 1;
        seen[start] = true;
        let mut q = VecDeque::from([start]);
        while let Some(x) = q.pop_front() {
            for &y in &adj[x] {
                if !seen[y] {
                    seen[y] = true;
                    q.push_back(y);
                }
            }
        }
    }
    parts
}

/// The live members and, for each, the indices of the live members it has a mutual link with.
fn mutual_links(w: &World, members: &[NodeId], room: &str) -> (Vec<NodeId>, Vec<Vec<usize>>) {
    let live: Vec<NodeId> = members
        .iter()
        .copied()
        .filter(|id| w.is_alive(*id))
        .collect();
    let index: HashMap<String, usize> = live
        .iter()
        .enumerate()
        .filter_map(|(i, id)| w.node(*id).name().map(|n| (n.to_string(), i)))
        .collect();
    let lists: Vec<BTreeSet<usize>> = live
        .iter()
        .map(|id| {
            w.node(*id)
                .room_neighbors(room)
                .iter()
                .filter_map(|n| index.get(n).copied())
                .collect()
        })
        .collect();
    let adj = lists
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.iter()
                .copied()
                .filter(|j| lists[*j].contains(&i))
                .collect()
        })
        .collect();
    (live, adj)
}

/// Links among the live `members` that only one end lists: `(who lists it, the other's name)`.
pub fn one_way_links(w: &World, members: &[NodeId], room: &str) -> Vec<(NodeId, String)> {
    let names: HashMap<String, NodeId> = members
        .iter()
        .filter(|id| w.is_alive(**id))
        .filter_map(|id| w.node(*id).name().map(|n| (n.to_string(), *id)))
        .collect();
    let mut out = Vec::new();
    for (me, &id) in &names {
        for n in w.node(id).room_neighbors(room) {
            if let Some(&other) = names.get(&n) {
                if !w.node(other).room_neighbors(room).contains(me) {
                    out.push((id, n));
                }
            }
        }
    }
    out.sort();
    out
}

/// Mean and largest number of confirmed neighbours of the live `members` in `room`.
pub fn neighbour_counts(w: &World, members: &[NodeId], room: &str) -> (f64, usize) {
    let counts: Vec<usize> = members
        .iter()
        .filter(|id| w.is_alive(**id))
        .map(|id| w.node(*id).room_neighbors(room).len())
        .collect();
    let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
    (mean, counts.into_iter().max().unwrap_or(0))
}

/// A room message a test sent: who sent it and its (unique) text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The origin.
    pub from: NodeId,
    /// The text.
    pub text: String,
}

/// Sends `/say room text` from `from` and remembers it.
pub fn say(w: &mut World, from: NodeId, room: &str, text: String) -> Sent {
    w.command(from, &format!("/say {room} {text}"));
    Sent { from, text }
}

/// Checks that every live member other than the origin showed each sent message exactly once
/// (as a [`NodeEvent::RoomMessage`] from the origin's name) and that no origin showed its own.
/// Returns the problems found, at most `max` of them.
pub fn check_exactly_once(
    w: &World,
    members: &[NodeId],
    room: &str,
    sent: &[Sent],
    max: usize,
) -> Vec<String> {
    let texts: BTreeMap<&str, NodeId> = sent.iter().map(|s| (s.text.as_str(), s.from)).collect();
    let mut problems = Vec::new();
    for &id in members.iter().filter(|id| w.is_alive(**id)) {
        let mut shown: HashMap<&str, usize> = HashMap::new();
        let me = w.node(id).name().unwrap_or_default();
        for e in w.events(id) {
            if let NodeEvent::RoomMessage {
                room: r,
                from,
                text,
            } = e
            {
                if r != room {
                    continue;
                }
                if from == me {
                    problems.push(format!("{id} ({me}) showed its own message {text:?}"));
                }
                if let Some(origin) = texts.get(text.as_str()) {
                    let expected_from = w.node(*origin).name().unwrap_or_default();
                    if from != expected_from {
                        problems.push(format!(
                            "{id} showed {text:?} from {from}, not {expected_from}"
                        ));
                    }
                    *shown.entry(text.as_str()).or_default() += 1;
                }
            }
        }
        for s in sent {
            let n = shown.get(s.text.as_str()).copied().unwrap_or(0);
            let want = usize::from(s.from != id);
            if n != want {
                problems.push(format!(
                    "{id} ({me}) showed {:?} from {} {n} times, expected {want}",
                    s.text, s.from
                ));
            }
        }
        if problems.len() >= max {
            problems.truncate(max);
            break;
        }
    }
    problems
}

/// Flooding counters summed over the live `members`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Messages originated.
    pub originated: u64,
    /// Room-message frames sent.
    pub frames_sent: u64,
    /// First deliveries.
    pub delivered: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
}

/// Sums [`p2pchat_peer::RoomStats`] over the live `members`.
pub fn totals(w: &World, members: &[NodeId], room: &str) -> Totals {
    let mut t = Totals::default();
    for id in members.iter().filter(|id| w.is_alive(**id)) {
        if let Some(s) = w.node(*id).room_stats(room) {
            t.originated += s.originated;
            t.frames_sent += s.frames_sent;
            t.delivered += s.delivered;
            t.duplicates += s.duplicates;
        }
    }
    t
}

/// Overlay links among the live `members`: half the sum of their neighbour counts (a mutual
/// link counts once; a one-way link, see [`one_way_links`], counts half).
pub fn link_count(w: &World, members: &[NodeId], room: &str) -> f64 {
    let directed: usize = members
        .iter()
        .filter(|id| w.is_alive(**id))
        .map(|id| w.node(*id).room_neighbors(room).len())
        .sum();
    directed as f64 / 2.0
}
