//! One measured broadcast run on a formed room: messages from random stable members while the
//! network loses room data, members churn (crash and restart, or leave and join again) and a
//! partition cuts the room in two, then what it cost and who showed what.
//!
//! # What counts as delivered
//!
//! A member is *expected* to show message `k` (sent at `t`) when it is not the origin and was
//! up, without a break, from `t - rejoin_grace` to the end of the run: a member that went down
//! after `t`, or came back less than `rejoin_grace` before it, may miss `k` without counting
//! against the delivery ratio (it is still checked never to show `k` twice). Senders are drawn
//! from the members that never churn. The ratio is first displays by expected members over
//! expected (member, message) pairs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use p2pchat_peer::NodeEvent;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::faults::ROOM_DATA_KINDS;
use super::scenario::{link_count, neighbour_counts, one_way_links, PASSWORD};
use super::{NodeId, WireStats, World};

/// The faults of a run. Times are offsets from the first send.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Probability that a chunk of room data between two peers is lost.
    pub loss: f64,
    /// Fraction of the members that go down once during the sending window.
    pub churn: f64,
    /// A churning member stays down for a time drawn uniformly from this range.
    pub downtime: (Duration, Duration),
    /// Fraction of the churning members that crash (kill, then restart and log in); the rest
    /// leave the room and join it again.
    pub crash_share: f64,
    /// A partition: this fraction of the members is cut off from the rest.
    pub partition: Option<Partition>,
    /// See the module docs.
    pub rejoin_grace: Duration,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            loss: 0.0,
            churn: 0.0,
            downtime: (Duration::from_secs(1), Duration::from_secs(3)),
            crash_share: 0.5,
            partition: None,
            rejoin_grace: Duration::from_secs(2),
        }
    }
}

/// A partition of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Partition {
    /// Fraction of the members on the cut-off side.
    pub fraction: f64,
    /// When it starts (offset from the first send).
    pub at: Duration,
    /// How long it lasts.
    pub length: Duration,
}

/// What one run found.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Members of the room.
    pub peers: usize,
    /// Messages sent.
    pub messages: usize,
    /// Full-message frames (kind `room-message`) peers sent each other.
    pub full_frames: u64,
    /// Of those, the frames of each message, in sending order (with [`World::track_hops`]).
    pub message_frames: Vec<u64>,
    /// Frames and bytes of the other room-data frames (announcements, grafts, prunes), by
    /// kind name.
    pub control: BTreeMap<&'static str, (u64, u64)>,
    /// Bytes of the announcement (`room-ihave`) frames, length prefixes included.
    pub announce_bytes: u64,
    /// Room-data frames the network dropped (loss, partition).
    pub dropped_frames: u64,
    /// Duplicate copies peers received and dropped (their `RoomStats`).
    pub duplicates: u64,
    /// Expected (member, message) pairs.
    pub expected: u64,
    /// Of those, shown.
    pub delivered: u64,
    /// (member, message) pairs shown more than once by one run of a member.
    pub shown_twice: u64,
    /// Pairs shown again by a member after it restarted (a restarted client has no history).
    pub reshown_after_restart: u64,
    /// Origins that showed their own message.
    pub own_shown: u64,
    /// First displays by hops travelled (index 1: a neighbour of the origin).
    pub hops: Vec<u64>,
    /// For each message, the time from its send to its display at the last expected member
    /// that showed it.
    pub last_member: Vec<Duration>,
    /// Every first display's latency from its send.
    pub latencies: Vec<Duration>,
    /// Virtual time from the first send to the end of the run.
    pub virtual_time: Duration,
    /// Members that crashed and came back.
    pub crashed: usize,
    /// Members that left and joined again.
    pub rejoined: usize,
    /// Overlay links, mean and most neighbours, one-way links, before the run.
    pub links: f64,
    /// Mean confirmed neighbours.
    pub mean_neighbours: f64,
    /// Most confirmed neighbours.
    pub max_neighbours: usize,
    /// Links only one end lists.
    pub one_way: usize,
    /// The first problems found (a message shown twice, or an origin showing its own).
    pub problems: Vec<String>,
}

impl RunReport {
    /// Delivered over expected (1 when nothing was expected).
    pub fn delivery(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }

    /// Whether no message was shown twice by one run of a member and no origin showed its own.
    pub fn exactly_once(&self) -> bool {
        self.shown_twice == 0 && self.own_shown == 0
    }

    /// Largest and mean hop count of first displays.
    pub fn hop_summary(&self) -> (usize, f64) {
        let n: u64 = self.hops.iter().sum();
        let max = self.hops.iter().rposition(|c| *c > 0).unwrap_or(0);
        let mean = if n == 0 {
            0.0
        } else {
            self.hops
                .iter()
                .enumerate()
                .map(|(h, c)| h as f64 * *c as f64)
                .sum::<f64>()
                / n as f64
        };
        (max, mean)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Cut,
    Heal,
    Down { id: usize, crash: bool },
    Up { id: usize, crash: bool },
    Send(usize),
}

/// Sends `messages` messages in `room` (text `flood-K`), `gap` apart, from random members
/// that do not churn, with `plan`'s faults; runs until the network is quiet and the tree's
/// timers had time to fire, and measures. Call on a formed, settled room with
/// [`World::track_hops`] on; nodes must have been made by [`super::scenario::add_users`].
pub fn run(
    w: &mut World,
    members: &[NodeId],
    room: &str,
    messages: usize,
    gap: Duration,
    plan: &FaultPlan,
    rng: &mut StdRng,
) -> Result<RunReport, String> {
    let live: Vec<NodeId> = members.iter().copied().filter(|m| w.is_alive(*m)).collect();
    if live.len() < 2 {
        return Err("fewer than two live members".into());
    }
    let names: Vec<String> = live
        .iter()
        .map(|id| w.node(*id).name().unwrap_or_default().to_string())
        .collect();
    let (mean_neighbours, max_neighbours) = neighbour_counts(w, &live, room);
    let links = link_count(w, &live, room);
    let one_way = one_way_links(w, &live, room).len();

    // The plan, as timed actions.
    let window = gap * messages as u32;
    let mut order: Vec<usize> = (0..live.len()).collect();
    order.shuffle(rng);
    let churners = ((plan.churn * live.len() as f64).round() as usize).min(live.len() - 1);
    let (churning, stable) = order.split_at(churners);
    let mut actions: Vec<(Duration, Action)> = Vec::new();
    let mut down: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); live.len()];
    let (mut crashed, mut rejoined) = (0, 0);
    for (j, &i) in churning.iter().enumerate() {
        let at = Duration::from_micros(rng.random_range(0..=window.as_micros() as u64));
        let (lo, hi) = plan.downtime;
        let stay = lo + Duration::from_micros(rng.random_range(0..=(hi - lo).as_micros() as u64));
        let crash = (j as f64) < plan.crash_share * churners as f64;
        if crash {
            crashed += 1;
        } else {
            rejoined += 1;
        }
        actions.push((at, Action::Down { id: i, crash }));
        actions.push((at + stay, Action::Up { id: i, crash }));
        down[i].push((at, at + stay));
    }
    if let Some(p) = plan.partition {
        actions.push((p.at, Action::Cut));
        actions.push((p.at + p.length, Action::Heal));
    }
    let mut senders = Vec::with_capacity(messages);
    for k in 0..messages {
        actions.push((gap * k as u32, Action::Send(k)));
        senders.push(stable[rng.random_range(0..stable.len())]);
    }
    actions.sort();
    let side: Vec<NodeId> = match plan.partition {
        Some(p) => {
            let mut o: Vec<NodeId> = live.clone();
            o.shuffle(rng);
            o.truncate((p.fraction * live.len() as f64).round() as usize);
            o
        }
        None => Vec::new(),
    };

    // Stats of members' earlier runs (a crash or a leave loses a member's counters).
    let mut retired_dups = 0u64;
    let dups_now = |w: &World| -> u64 {
        live.iter()
            .filter(|id| w.is_alive(**id))
            .filter_map(|id| w.node(*id).room_stats(room))
            .map(|s| s.duplicates)
            .sum()
    };
    let dups_before = dups_now(w);
    let wire_before: WireStats = w.wire().clone();
    let hops_before = w.hop_histogram().to_vec();
    let events_before: Vec<usize> = live.iter().map(|id| w.events(*id).count()).collect();
    // A warm-up run before this one used the same texts; its frames are all sent by now.
    let text = |k: usize| format!("flood-{k}");
    let frames_before: Vec<u64> = (0..messages).map(|k| w.frames_of(&text(k))).collect();
    w.set_frame_loss(plan.loss);
    let start = w.elapsed();
    let mut sent_at = vec![Duration::ZERO; messages];
    for (at, action) in actions {
        let due = start + at;
        if due > w.elapsed() {
            w.run_for(due - w.elapsed());
        }
        match action {
            Action::Send(k) => {
                let from = live[senders[k]];
                sent_at[k] = w.elapsed() - start;
                w.command(from, &format!("/say {room} {}", text(k)));
            }
            Action::Down { id, crash } => {
                let node = live[id];
                retired_dups += w.node(node).room_stats(room).map_or(0, |s| s.duplicates);
                if crash {
                    w.kill(node);
                } else {
                    w.command(node, &format!("/leave {room}"));
                }
            }
            Action::Up { id, crash } => {
                let node = live[id];
                if crash {
                    w.restart(node);
                    w.command(node, &format!("/login {} {PASSWORD}", names[id]));
                } else {
                    w.command(node, &format!("/join {room}"));
                }
            }
            Action::Cut => w.partition(side.iter().copied()),
            Action::Heal => w.heal(),
        }
    }
    // Quiet, then time for announcement and graft timers, then quiet again.
    let limit = Duration::from_secs(600);
    if !w.run_until_idle(limit) {
        return Err("the network did not go quiet within 600 s".into());
    }
    w.run_for(Duration::from_secs(3));
    if !w.run_until_idle(limit) {
        return Err("the network did not go quiet within 600 s".into());
    }
    w.set_frame_loss(0.0);
    let virtual_time = w.elapsed() - start;

    let wire = w.wire().since(&wire_before);
    let full = wire.kind(p2pchat_protocol::kind::ROOM_MESSAGE);
    let mut control = BTreeMap::new();
    let mut announce_bytes = 0;
    let mut dropped_frames = 0;
    for (k, c) in &wire.by_kind {
        if ROOM_DATA_KINDS.contains(k) {
            dropped_frames += c.dropped;
            if *k != p2pchat_protocol::kind::ROOM_MESSAGE {
                control.insert(p2pchat_protocol::kind_name(*k), (c.frames, c.bytes));
            }
            if *k == p2pchat_protocol::kind::ROOM_IHAVE {
                announce_bytes += c.bytes;
            }
        }
    }
    // Members that left and did not come back have no stats; that is fine, they were retired.
    let duplicates = (dups_now(w) + retired_dups).saturating_sub(dups_before);
    let hops: Vec<u64> = w
        .hop_histogram()
        .iter()
        .enumerate()
        .map(|(i, n)| n - hops_before.get(i).copied().unwrap_or(0))
        .collect();

    // Who showed what.
    let mut r = RunReport {
        peers: live.len(),
        messages,
        full_frames: full.frames,
        message_frames: (0..messages)
            .map(|k| w.frames_of(&text(k)) - frames_before[k])
            .collect(),
        control,
        announce_bytes,
        dropped_frames,
        duplicates,
        expected: 0,
        delivered: 0,
        shown_twice: 0,
        reshown_after_restart: 0,
        own_shown: 0,
        hops,
        last_member: Vec::new(),
        latencies: Vec::new(),
        virtual_time,
        crashed,
        rejoined,
        links,
        mean_neighbours,
        max_neighbours,
        one_way,
        problems: Vec::new(),
    };
    let mut last: Vec<Option<Duration>> = vec![None; messages];
    for (i, &id) in live.iter().enumerate() {
        let restarts = w.restarts_at(id);
        // Message -> (first display, displays per run of the member).
        let mut shown: HashMap<usize, (Duration, BTreeMap<usize, u32>)> = HashMap::new();
        for (e, (t, ev)) in w.timed_events(id).iter().enumerate().skip(events_before[i]) {
            let NodeEvent::RoomMessage {
                room: r_,
                from,
                text,
            } = ev
            else {
                continue;
            };
            let Some(k) = text
                .strip_prefix("flood-")
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|k| *k < messages && r_ == room)
            else {
                continue;
            };
            if live[senders[k]] == id || *from == names[i] {
                r.own_shown += 1;
                push_problem(&mut r.problems, format!("{id} showed its own flood-{k}"));
                continue;
            }
            let run = restarts.iter().filter(|s| **s <= e).count();
            let entry = shown.entry(k).or_insert((*t, BTreeMap::new()));
            *entry.1.entry(run).or_default() += 1;
        }
        for (k, (_, runs)) in &shown {
            if runs.values().any(|n| *n > 1) {
                r.shown_twice += 1;
                push_problem(&mut r.problems, format!("{id} showed flood-{k} twice"));
            }
            if runs.len() > 1 {
                r.reshown_after_restart += 1;
            }
        }
        for (k, &s) in senders.iter().enumerate() {
            if live[s] == id {
                continue;
            }
            let t_k = sent_at[k];
            let up = down[i]
                .iter()
                .all(|(_, back)| *back + plan.rejoin_grace <= t_k);
            if !up {
                continue;
            }
            r.expected += 1;
            if let Some((t, _)) = shown.get(&k) {
                r.delivered += 1;
                let lat = t.saturating_sub(start + t_k);
                r.latencies.push(lat);
                last[k] = Some(last[k].map_or(lat, |l: Duration| l.max(lat)));
            }
        }
    }
    r.last_member = last.into_iter().flatten().collect();
    Ok(r)
}

fn push_problem(problems: &mut Vec<String>, p: String) {
    if problems.len() < 10 {
        problems.push(p);
    }
}
