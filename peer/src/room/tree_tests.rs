//! Tests of [`Broadcast`]: graft and prune one step at a time, then property tests over a whole
//! network of them with adversarial delivery.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use p2pchat_protocol::{Msg, RoomMsgId};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn t0() -> Instant {
    // A virtual clock anchored at one real instant.
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn id(origin: &str, seq: u64) -> RoomMsgId {
    RoomMsgId {
        origin: origin.into(),
        seq,
    }
}

/// A member of a formed tree whose links to `peers` are all eager (new links start lazy). Its
/// last shaping round was long ago: the next message starts a round, which does not re-root
/// (a member's first round does, see `a_first_round_floods_...`).
fn tree(peers: &[&str]) -> Broadcast {
    let mut b = Broadcast::new("lab", RoomMode::Tree);
    for p in peers {
        b.add_peer(p, true);
        b.set_push(p, Push::Eager);
    }
    b.set_last_round(0, t0() - SHAPE_RESET - Duration::from_secs(1));
    b
}

/// A member's first round re-roots the tree: its message goes as a full copy on lazy links
/// too, the link of the first copy becomes eager (an empty graft tells the sender), and when
/// the round is decided (sooner than others) only eager links that brought a duplicate are
/// pruned: what stays eager is the link of the first copy and the links it went out on to
/// members that had not seen it.
#[test]
fn a_first_round_floods_on_every_link_and_keeps_only_the_first_copys_links() {
    let now = t0();
    let mut b = Broadcast::new("lab", RoomMode::Tree);
    for p in ["a", "b", "c", "d"] {
        b.add_peer(p, true);
    }
    b.set_push("c", Push::Eager);
    let mut out = Vec::new();
    b.receive(now, "me", "a", s("o"), 1, 10, 5_000, s("hi"), &mut out);
    assert_eq!(delivered(&out), ["hi"]);
    assert_eq!(
        sends(&out),
        [
            (s("a"), "room-graft"),
            (s("b"), "room-message"),
            (s("c"), "room-message"),
            (s("d"), "room-message"),
        ],
        "full copies on every link but the first copy's, which is grafted"
    );
    assert_eq!(b.push_of("a"), Some(Push::Eager));
    out.clear();
    // Duplicates: on the lazy link (b sent it on purpose) and on the eager one (c).
    b.receive(now, "me", "b", s("o"), 1, 9, 5_000, s("hi"), &mut out);
    b.receive(now, "me", "c", s("o"), 1, 9, 5_000, s("hi"), &mut out);
    assert!(out.is_empty(), "nothing pruned before the round is decided");
    assert_eq!(b.poll_timeout(), Some(now + REROOT_DECIDE));
    b.on_timeout(now + REROOT_DECIDE, &mut out);
    assert_eq!(sends(&out), [(s("c"), "room-prune")]);
    assert_eq!(b.push_of("b"), Some(Push::Lazy));
    assert_eq!(b.push_of("c"), Some(Push::Lazy));
    // d never sent a copy back: it took its first copy from us, so our link to it is on the
    // new tree. It stays lazy here until it grafts, as a's graft made a eager at a.
    assert_eq!(b.push_of("d"), Some(Push::Lazy));
    b.on_graft(now + REROOT_DECIDE, "d", Vec::new(), &mut out);
    assert_eq!(b.push_of("d"), Some(Push::Eager));
}

/// After the first round, one round in each `REROOT_EVERY_MS` of `sent_ms` re-roots; the
/// others only prune.
#[test]
fn one_round_in_each_reroot_period_floods() {
    let now = t0();
    let mut b = tree(&["a", "b"]);
    b.set_push("b", Push::Lazy);
    b.set_last_round(REROOT_EVERY_MS, now - Duration::from_secs(2));
    let mut out = Vec::new();
    // A round in the same period as the last one: b (lazy) only hears of it.
    let same = REROOT_EVERY_MS + SHAPE_GAP_MS;
    b.originate(now, "me", 1, same, s("x"), &mut out);
    assert_eq!(sends(&out), [(s("a"), "room-message")]);
    assert_eq!(b.poll_timeout(), Some(now + IHAVE_TICK));
    out.clear();
    let t = now + SHAPE_DECIDE;
    b.on_timeout(t, &mut out);
    out.clear();
    // The next period's first round: a full copy on the lazy link too.
    b.originate(t, "me", 2, 2 * REROOT_EVERY_MS, s("y"), &mut out);
    assert_eq!(
        sends(&out),
        [(s("a"), "room-message"), (s("b"), "room-message")]
    );
}

/// `(to, kind name)` of every frame sent, in order.
fn sends(actions: &[Action]) -> Vec<(String, &'static str)> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Send { to, msg } => to.iter().map(|t| (t.clone(), msg.kind_name())).collect(),
            Action::Deliver { .. } => Vec::new(),
        })
        .collect()
}

fn delivered(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver { text, .. } => Some(text.clone()),
            Action::Send { .. } => None,
        })
        .collect()
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn a_duplicate_of_the_rounds_message_prunes_the_link_and_later_messages_are_only_announced_on_it() {
    let now = t0();
    let mut b = tree(&["a", "b", "c"]);
    let mut out = Vec::new();
    b.receive(now, "me", "a", s("o"), 1, 10, 0, s("hi"), &mut out);
    assert_eq!(delivered(&out), ["hi"]);
    assert_eq!(
        sends(&out),
        [(s("b"), "room-message"), (s("c"), "room-message")],
        "pushed eagerly to all but the sender"
    );
    out.clear();
    // A duplicate of the shaping round's message (the first one seen) is remembered, and the
    // link pruned when the round is decided.
    b.receive(now, "me", "b", s("o"), 1, 9, 0, s("hi"), &mut out);
    assert!(out.is_empty(), "shown once, nothing sent yet");
    assert_eq!(b.poll_timeout(), Some(now + SHAPE_DECIDE));
    b.on_timeout(now + SHAPE_DECIDE, &mut out);
    assert_eq!(sends(&out), [(s("b"), "room-prune")]);
    assert_eq!(b.push_of("b"), Some(Push::Lazy));
    // A duplicate on the now lazy link means b still pushes to us: pruned again at once.
    out.clear();
    b.receive(now, "me", "b", s("o"), 1, 9, 0, s("hi"), &mut out);
    assert_eq!(sends(&out), [(s("b"), "room-prune")]);
    assert_eq!(b.stats().duplicates, 2);
    assert_eq!(b.stats().prunes_sent, 2);
    out.clear();
    let now = now + SHAPE_DECIDE;

    // Our next message: full to a and c, only the id to b, batched until the tick.
    b.originate(now, "me", 7, 0, s("yo"), &mut out);
    assert_eq!(
        sends(&out),
        [(s("a"), "room-message"), (s("c"), "room-message")]
    );
    out.clear();
    assert_eq!(b.poll_timeout(), Some(now + IHAVE_TICK));
    b.on_timeout(now + IHAVE_TICK / 2, &mut out);
    assert!(out.is_empty(), "not before the tick");
    b.on_timeout(now + IHAVE_TICK, &mut out);
    assert_eq!(
        out,
        [Action::Send {
            to: vec![s("b")],
            msg: Msg::RoomIhave {
                room: s("lab"),
                ids: vec![id("me", 7)],
            },
        }]
    );
    assert_eq!(b.poll_timeout(), None);
}

/// A new message on a link we pruned a moment ago was sent before our prune arrived (it
/// crossed it): shown and passed on, but the link stays lazy, so the cycle the prune cut stays
/// cut. Once [`PRUNE_CROSSING`] has passed, a full message on the lazy link means the
/// neighbour pushes to us on purpose (it grafted us): the link is eager again.
#[test]
fn a_message_that_crossed_our_prune_leaves_the_link_lazy() {
    let now = t0();
    let mut b = tree(&["a", "b", "c"]);
    b.set_push("b", Push::Lazy);
    let mut out = Vec::new();
    b.receive(now, "me", "a", s("o"), 1, 10, 0, s("hi"), &mut out);
    out.clear();
    // b still pushes to us: its duplicate on the lazy link is pruned at once.
    b.receive(now, "me", "b", s("o"), 1, 9, 0, s("hi"), &mut out);
    assert_eq!(sends(&out), [(s("b"), "room-prune")]);
    out.clear();
    // Sent by b before our prune arrived, and first here: shown, pushed to the eager links.
    let soon = now + PRUNE_CROSSING - Duration::from_millis(1);
    b.receive(soon, "me", "b", s("p"), 1, 9, 0, s("raced"), &mut out);
    assert_eq!(delivered(&out), ["raced"]);
    assert_eq!(
        sends(&out),
        [(s("a"), "room-message"), (s("c"), "room-message")]
    );
    assert_eq!(b.push_of("b"), Some(Push::Lazy), "the cut stays");
    out.clear();
    // Later, a full message on the lazy link is the neighbour's choice: the link is eager.
    b.receive(
        now + PRUNE_CROSSING,
        "me",
        "b",
        s("q"),
        1,
        9,
        0,
        s("later"),
        &mut out,
    );
    assert_eq!(delivered(&out), ["later"]);
    assert_eq!(b.push_of("b"), Some(Push::Eager));
}

/// Two messages in flight at once, from different origins, each bring a duplicate on a
/// different link: only the shaping round's message (the earlier `sent_ms`) prunes, so a cycle
/// is cut once, not at two places.
#[test]
fn only_the_shaping_messages_duplicates_prune() {
    let now = t0();
    let mut b = tree(&["a", "b", "c", "d"]);
    let mut out = Vec::new();
    // Arrival order differs from send order: the later message comes first.
    b.receive(now, "me", "a", s("y"), 1, 10, 1_005, s("later"), &mut out);
    b.receive(now, "me", "c", s("x"), 1, 10, 1_000, s("earlier"), &mut out);
    b.receive(now, "me", "b", s("y"), 1, 9, 1_005, s("later"), &mut out);
    b.receive(now, "me", "d", s("x"), 1, 9, 1_000, s("earlier"), &mut out);
    out.clear();
    b.on_timeout(now + SHAPE_DECIDE, &mut out);
    assert_eq!(sends(&out), [(s("d"), "room-prune")]);
    assert_eq!(
        b.push_of("b"),
        Some(Push::Eager),
        "the other message's duplicate link stays"
    );
    // Messages sent less than SHAPE_GAP_MS after the round's message do not shape.
    out.clear();
    let t = now + SHAPE_DECIDE;
    b.receive(t, "me", "a", s("z"), 1, 10, 1_900, s("z"), &mut out);
    b.receive(t, "me", "b", s("z"), 1, 9, 1_900, s("z"), &mut out);
    out.clear();
    b.on_timeout(t + SHAPE_DECIDE, &mut out);
    assert!(
        !sends(&out).iter().any(|(_, k)| *k == "room-prune"),
        "no round under way"
    );
    // The next round starts with the first message sent SHAPE_GAP_MS after.
    b.receive(t, "me", "a", s("w"), 1, 10, 2_000, s("w"), &mut out);
    b.receive(t, "me", "b", s("w"), 1, 9, 2_000, s("w"), &mut out);
    out.clear();
    b.on_timeout(t + SHAPE_DECIDE, &mut out);
    let prunes: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(_, k)| *k == "room-prune")
        .collect();
    assert_eq!(prunes, [(s("b"), "room-prune")]);
}

/// New tree links start lazy; a member with no eager link grafts the first announcer at once
/// (no full copy could come otherwise), and only that one.
#[test]
fn a_member_without_eager_links_grafts_its_first_announcer_at_once() {
    let now = t0();
    let mut b = Broadcast::new("lab", RoomMode::Tree);
    b.add_peer("a", true);
    b.add_peer("b", true);
    assert_eq!(b.push_of("a"), Some(Push::Lazy));
    b.on_ihave(now, "me", "b", vec![id("o", 1)]);
    b.on_ihave(now, "me", "a", vec![id("o", 2)]);
    assert_eq!(b.push_of("b"), Some(Push::Eager));
    assert_eq!(b.push_of("a"), Some(Push::Lazy));
    assert_eq!(b.poll_timeout(), Some(now), "grafted at once");
    let mut out = Vec::new();
    b.on_timeout(now, &mut out);
    assert_eq!(sends(&out), [(s("b"), "room-graft")]);
    assert_eq!(
        b.poll_timeout(),
        Some(now + GRAFT_RETRY),
        "the next graft of the first id is due before the second id's timer"
    );
    assert_eq!(b.missing_len(), 2);
    out.clear();
    b.on_timeout(now + GRAFT_RETRY, &mut out);
    assert_eq!(
        sends(&out),
        [(s("b"), "room-graft")],
        "the second id waits for the eager link (GRAFT_TIMEOUT)"
    );
}

#[test]
fn a_prune_makes_the_link_lazy_in_tree_mode_only() {
    let now = t0();
    let mut b = tree(&["a", "b"]);
    b.on_prune("a");
    assert_eq!(b.push_of("a"), Some(Push::Lazy));
    let mut out = Vec::new();
    b.originate(now, "me", 1, 0, s("x"), &mut out);
    assert_eq!(sends(&out), [(s("b"), "room-message")]);

    let mut f = Broadcast::new("lab", RoomMode::Flood);
    f.add_peer("a", true);
    f.add_peer("b", true);
    f.on_prune("a");
    let mut out = Vec::new();
    f.originate(now, "me", 1, 0, s("x"), &mut out);
    f.receive(now, "me", "a", s("me"), 1, 5, 0, s("x"), &mut out);
    assert_eq!(
        sends(&out),
        [(s("a"), "room-message"), (s("b"), "room-message")],
        "flooding ignores prunes and never prunes"
    );
    assert_eq!(f.poll_timeout(), None, "and never announces");
}

#[test]
fn a_missing_announced_message_is_grafted_from_each_announcer_in_turn() {
    let now = t0();
    let mut b = tree(&["a", "b", "c"]);
    b.on_prune("a");
    b.on_prune("b");
    b.on_ihave(now, "me", "a", vec![id("o", 3)]);
    b.on_ihave(now + Duration::from_millis(10), "me", "b", vec![id("o", 3)]);
    assert_eq!(b.poll_timeout(), Some(now + GRAFT_TIMEOUT));
    let mut out = Vec::new();
    b.on_timeout(now + GRAFT_TIMEOUT - Duration::from_millis(1), &mut out);
    assert!(out.is_empty(), "the eager copy may still come");
    let t1 = now + GRAFT_TIMEOUT;
    b.on_timeout(t1, &mut out);
    assert_eq!(
        out,
        [Action::Send {
            to: vec![s("a")],
            msg: Msg::RoomGraft {
                room: s("lab"),
                ids: vec![id("o", 3)],
            },
        }]
    );
    assert_eq!(
        b.push_of("a"),
        Some(Push::Eager),
        "a graft makes the link eager"
    );
    out.clear();
    let t2 = t1 + GRAFT_RETRY;
    b.on_timeout(t2, &mut out);
    assert_eq!(
        sends(&out),
        [(s("b"), "room-graft")],
        "then the next announcer"
    );
    // It arrives (from b): shown once, the timer is gone.
    out.clear();
    b.receive(t2, "me", "b", s("o"), 3, 5, 0, s("late"), &mut out);
    assert_eq!(delivered(&out), ["late"]);
    assert_eq!(b.missing_len(), 0);
    assert_eq!(
        b.poll_timeout(),
        Some(t2 + SHAPE_DECIDE),
        "no graft timer left; only the shaping round it opened"
    );
}

#[test]
fn grafts_stop_after_max_grafts_and_for_departed_announcers() {
    let now = t0();
    let mut b = tree(&["a"]);
    b.on_ihave(now, "me", "a", vec![id("o", 1)]);
    let mut grafts = 0;
    let mut t = now;
    while let Some(next) = b.poll_timeout() {
        t = next.max(t);
        let mut out = Vec::new();
        b.on_timeout(t, &mut out);
        grafts += sends(&out).len();
    }
    assert_eq!(grafts, usize::from(MAX_GRAFTS));
    assert_eq!(b.missing_len(), 0);

    b.on_ihave(t, "me", "a", vec![id("o", 2)]);
    b.remove_peer("a");
    let mut out = Vec::new();
    b.on_timeout(t + GRAFT_TIMEOUT, &mut out);
    assert!(out.is_empty(), "no graft to a peer that is gone");
    assert_eq!(b.missing_len(), 0);
}

#[test]
fn an_announcement_of_a_seen_message_or_of_our_own_starts_no_timer() {
    let now = t0();
    let mut b = tree(&["a", "b"]);
    let mut out = Vec::new();
    b.receive(now, "me", "a", s("o"), 1, 5, 0, s("x"), &mut out);
    b.on_ihave(now, "me", "b", vec![id("o", 1), id("me", 9)]);
    assert_eq!(b.missing_len(), 0);
    b.on_ihave(now, "me", "stranger", vec![id("o", 2)]);
    assert_eq!(b.missing_len(), 0, "only neighbours are listened to");
}

#[test]
fn a_graft_is_answered_from_the_cache_and_makes_the_link_eager() {
    let now = t0();
    let mut b = tree(&["a", "b"]);
    b.on_prune("b");
    let mut out = Vec::new();
    b.receive(now, "me", "a", s("o"), 4, 10, 77, s("x"), &mut out);
    out.clear();
    b.on_graft(now, "b", vec![id("o", 4), id("o", 5)], &mut out);
    assert_eq!(
        out,
        [Action::Send {
            to: vec![s("b")],
            msg: Msg::RoomMessage {
                room: s("lab"),
                origin: s("o"),
                seq: 4,
                hops: 9,
                sent_ms: 77,
                text: s("x"),
                auth: None,
            },
        }],
        "what we hold, with the hops we forward with; the unknown id is ignored"
    );
    assert_eq!(b.push_of("b"), Some(Push::Eager));
}

#[test]
fn legacy_neighbours_always_get_full_messages_and_are_never_pruned() {
    let now = t0();
    let mut b = tree(&["a"]);
    b.add_peer("old", false);
    let mut out = Vec::new();
    b.receive(now, "me", "a", s("o"), 1, 5, 0, s("x"), &mut out);
    b.receive(now, "me", "old", s("o"), 1, 5, 0, s("x"), &mut out);
    assert_eq!(b.push_of("old"), Some(Push::Legacy));
    out.clear();
    b.on_prune("a");
    b.originate(now, "me", 2, 0, s("y"), &mut out);
    assert_eq!(sends(&out), [(s("old"), "room-message")]);
}

/// A new link hears of the recent messages (so a member whose links were re-forming grafts what
/// it missed), but not of those from before the registry said it joined, nor of old ones.
#[test]
fn a_new_link_is_told_of_recent_messages() {
    for mode in [RoomMode::Tree, RoomMode::Flood] {
        let now = t0();
        let mut b = Broadcast::new("lab", mode);
        b.add_peer("a", true);
        b.set_push("a", Push::Eager);
        let mut out = Vec::new();
        b.originate(now, "me", 1, 0, s("old"), &mut out);
        let t1 = now + CATCH_UP;
        b.originate(t1, "me", 2, 0, s("before join"), &mut out);
        let joined = t1 + Duration::from_secs(1);
        let mark = b.mark();
        b.receive(joined, "me", "a", s("o"), 5, 9, 0, s("after"), &mut out);
        out.clear();
        b.add_peer("fresh", true);
        b.catch_up(joined, "fresh", Some(mark));
        b.add_peer("back", true);
        b.catch_up(joined, "back", None);
        b.add_peer("old", false);
        b.catch_up(joined, "old", None);
        b.on_timeout(joined + IHAVE_TICK, &mut out);
        let ihave = |to: &str, ids: Vec<RoomMsgId>| Action::Send {
            to: vec![s(to)],
            msg: Msg::RoomIhave {
                room: s("lab"),
                ids,
            },
        };
        assert_eq!(
            out,
            [
                ihave("back", vec![id("me", 2), id("o", 5)]),
                ihave("fresh", vec![id("o", 5)]),
            ],
            "{mode:?}"
        );
        // The member that missed one grafts it and gets it.
        out.clear();
        b.on_graft(joined, "back", vec![id("me", 2)], &mut out);
        assert_eq!(sends(&out), [(s("back"), "room-message")], "{mode:?}");
    }
}

#[test]
fn state_stays_bounded() {
    let now = t0();
    let mut b = tree(&["a"]);
    let ids: Vec<RoomMsgId> = (0..(MAX_MISSING as u64 * 3))
        .map(|i| id(&format!("o{i}"), 1))
        .collect();
    for chunk in ids.chunks(MAX_IDS) {
        b.on_ihave(now, "me", "a", chunk.to_vec());
    }
    assert_eq!(b.missing_len(), MAX_MISSING);
    let mut out = Vec::new();
    for seq in 0..(MAX_CACHE as u64 * 2) {
        b.originate(now, "me", seq, 0, s("x"), &mut out);
    }
    assert_eq!(b.cache_len(), MAX_CACHE);
    // A graft of everything we hold is answered with at most MAX_GRAFT_SERVE messages.
    out.clear();
    let all: Vec<RoomMsgId> = (MAX_CACHE as u64..MAX_CACHE as u64 * 2)
        .map(|seq| id("me", seq))
        .collect();
    b.on_graft(now, "a", all, &mut out);
    assert_eq!(out.len(), MAX_GRAFT_SERVE);
    b.on_timeout(now + CACHE_TTL, &mut out);
    assert_eq!(b.cache_len(), 0, "old messages are dropped");
}

// ----- a network of `Broadcast`s -----

struct Peer {
    name: String,
    cast: Broadcast,
    alive: bool,
    /// Text shown -> times.
    shown: BTreeMap<String, u32>,
}

struct Net {
    peers: Vec<Peer>,
    /// Links, lower index first, and whether they run version 1.
    links: BTreeMap<(usize, usize), bool>,
    flight: Vec<(usize, usize, Msg)>,
    now: Instant,
    rng: StdRng,
    seq: u64,
    /// Per message: the text, and the peers alive when it was sent.
    sent: Vec<(String, BTreeSet<usize>)>,
    /// Every `room-ihave` is lost.
    mute_announcements: bool,
    /// The virtual clock's origin: messages carry their send time from it (`sent_ms`), as real
    /// peers carry the wall clock (tree shaping rounds go by it).
    start: Instant,
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Net {
    fn new(seed: u64, n: usize, extra: usize, flooders: usize, legacy_p: f64) -> Net {
        let mut net = Net {
            peers: Vec::new(),
            links: BTreeMap::new(),
            flight: Vec::new(),
            now: t0(),
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            sent: Vec::new(),
            mute_announcements: false,
            start: t0(),
        };
        net.now = net.start;
        for i in 0..n {
            let mode = if i < flooders {
                RoomMode::Flood
            } else {
                RoomMode::Tree
            };
            net.add_peer(mode);
        }
        // A ring keeps it connected, chords make it an overlay with redundant paths.
        for i in 0..n {
            let legacy = net.rng.random_bool(legacy_p);
            net.link(i, (i + 1) % n, legacy);
        }
        for _ in 0..extra {
            let (a, b) = (net.rng.random_range(0..n), net.rng.random_range(0..n));
            let legacy = net.rng.random_bool(legacy_p);
            net.link(a, b, legacy);
        }
        net
    }

    fn add_peer(&mut self, mode: RoomMode) -> usize {
        let name = format!("p{:03}", self.peers.len());
        self.peers.push(Peer {
            cast: Broadcast::new("lab", mode),
            name,
            alive: true,
            shown: BTreeMap::new(),
        });
        self.peers.len() - 1
    }

    fn link(&mut self, a: usize, b: usize, legacy: bool) {
        if a == b || self.links.contains_key(&key(a, b)) {
            return;
        }
        self.links.insert(key(a, b), legacy);
        let (na, nb) = (self.peers[a].name.clone(), self.peers[b].name.clone());
        self.peers[a].cast.add_peer(&nb, !legacy);
        self.peers[b].cast.add_peer(&na, !legacy);
    }

    fn unlink(&mut self, a: usize, b: usize) {
        if self.links.remove(&key(a, b)).is_none() {
            return;
        }
        let (na, nb) = (self.peers[a].name.clone(), self.peers[b].name.clone());
        self.peers[a].cast.remove_peer(&nb);
        self.peers[b].cast.remove_peer(&na);
        // What was in flight on the link is lost with it.
        self.flight.retain(|(f, t, _)| key(*f, *t) != key(a, b));
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.peers.len())
            .filter(|i| self.peers[*i].alive)
            .collect()
    }

    fn connected(&self) -> bool {
        let alive = self.alive();
        let Some(start) = alive.first() else {
            return true;
        };
        let mut seen = BTreeSet::from([*start]);
        let mut q = VecDeque::from([*start]);
        while let Some(x) = q.pop_front() {
            for (a, b) in self.links.keys() {
                let y = if *a == x {
                    *b
                } else if *b == x {
                    *a
                } else {
                    continue;
                };
                if seen.insert(y) {
                    q.push_back(y);
                }
            }
        }
        seen.len() == alive.len()
    }

    fn index(&self, name: &str) -> usize {
        self.peers.iter().position(|p| p.name == name).unwrap()
    }

    fn apply(&mut self, at: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { to, msg } => {
                    if self.mute_announcements && matches!(msg, Msg::RoomIhave { .. }) {
                        continue;
                    }
                    for t in to {
                        let t = self.index(&t);
                        assert!(
                            self.links.contains_key(&key(at, t)),
                            "{} sent to non-neighbour {}",
                            self.peers[at].name,
                            self.peers[t].name
                        );
                        self.flight.push((at, t, msg.clone()));
                    }
                }
                Action::Deliver { text, .. } => {
                    *self.peers[at].shown.entry(text).or_default() += 1;
                }
            }
        }
    }

    fn send(&mut self, from: usize) {
        self.seq += 1;
        let text = format!("{}:{}", self.peers[from].name, self.seq);
        let me = self.peers[from].name.clone();
        let mut out = Vec::new();
        let (now, seq) = (self.now, self.seq);
        let sent_ms = now.duration_since(self.start).as_millis() as u64;
        self.peers[from]
            .cast
            .originate(now, &me, seq, sent_ms, text.clone(), &mut out);
        *self.peers[from].shown.entry(text.clone()).or_default() += 1;
        self.apply(from, out);
        let alive = self.alive().into_iter().collect();
        self.sent.push((text, alive));
    }

    fn deliver(&mut self, k: usize, keep: bool) {
        if self.flight.is_empty() {
            return;
        }
        let k = k % self.flight.len();
        let (from, to, msg) = if keep {
            self.flight[k].clone()
        } else {
            self.flight.swap_remove(k)
        };
        if !self.links.contains_key(&key(from, to)) || !self.peers[to].alive {
            return;
        }
        let fname = self.peers[from].name.clone();
        let me = self.peers[to].name.clone();
        let now = self.now;
        let mut out = Vec::new();
        let cast = &mut self.peers[to].cast;
        match msg {
            Msg::RoomMessage {
                origin,
                seq,
                hops,
                sent_ms,
                text,
                ..
            } => cast.receive(now, &me, &fname, origin, seq, hops, sent_ms, text, &mut out),
            Msg::RoomIhave { ids, .. } => cast.on_ihave(now, &me, &fname, ids),
            Msg::RoomGraft { ids, .. } => cast.on_graft(now, &fname, ids, &mut out),
            Msg::RoomPrune { .. } => cast.on_prune(&fname),
            other => panic!("unexpected {other:?}"),
        }
        self.apply(to, out);
    }

    /// Carries out one step; lost announcements and membership changes only with `faults`.
    fn step(&mut self, s: Step, faults: bool) {
        match s {
            Step::Send(i) => {
                let alive = self.alive();
                self.send(alive[i % alive.len()]);
            }
            Step::Deliver(k) => self.deliver(k, false),
            Step::Duplicate(k) => self.deliver(k, true),
            Step::Tick(ms) => self.tick(Duration::from_millis(ms)),
            _ if !faults => {}
            Step::LoseAnnouncement(k) => self.drop_announcement(k),
            Step::Leave(i) => {
                let alive = self.alive();
                self.leave(alive[i % alive.len()]);
            }
            Step::Join => self.join(RoomMode::Tree),
            Step::DropLink => self.drop_link(),
        }
    }

    fn drop_announcement(&mut self, k: usize) {
        if self.flight.is_empty() {
            return;
        }
        let k = k % self.flight.len();
        if matches!(self.flight[k].2, Msg::RoomIhave { .. }) {
            self.flight.swap_remove(k);
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        for i in self.alive() {
            if self.peers[i]
                .cast
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let mut out = Vec::new();
                let now = self.now;
                self.peers[i].cast.on_timeout(now, &mut out);
                self.apply(i, out);
            }
        }
    }

    /// Delivers everything in random order and runs every timer, until nothing is left.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            if !self.flight.is_empty() {
                let k = self.rng.random_range(0..self.flight.len());
                self.deliver(k, false);
                continue;
            }
            let next = self
                .alive()
                .into_iter()
                .filter_map(|i| self.peers[i].cast.poll_timeout())
                .min();
            let Some(next) = next else {
                return;
            };
            let by = next.saturating_duration_since(self.now);
            self.tick(by);
        }
        panic!("the network never settled");
    }

    /// A member leaves (its links go); the others stay connected, patched with a link across.
    fn leave(&mut self, who: usize) {
        let alive = self.alive();
        if alive.len() <= 3 || !self.peers[who].alive {
            return;
        }
        let nbrs: Vec<usize> = self
            .links
            .keys()
            .filter_map(|(a, b)| match (*a == who, *b == who) {
                (true, _) => Some(*b),
                (_, true) => Some(*a),
                _ => None,
            })
            .collect();
        for n in &nbrs {
            self.unlink(who, *n);
        }
        self.peers[who].alive = false;
        // Like the overlay's ring repair: its neighbours link up in a chain.
        for w in nbrs.windows(2) {
            self.link(w[0], w[1], false);
        }
        let rest = self.alive();
        while !self.connected() {
            let a = rest[self.rng.random_range(0..rest.len())];
            let b = rest[self.rng.random_range(0..rest.len())];
            self.link(a, b, false);
        }
    }

    fn join(&mut self, mode: RoomMode) {
        let alive = self.alive();
        let me = self.add_peer(mode);
        for _ in 0..2 {
            let to = alive[self.rng.random_range(0..alive.len())];
            self.link(me, to, false);
        }
    }

    /// A random link goes, if the overlay stays connected without it.
    fn drop_link(&mut self) {
        let keys: Vec<(usize, usize)> = self.links.keys().copied().collect();
        if keys.is_empty() {
            return;
        }
        let (a, b) = keys[self.rng.random_range(0..keys.len())];
        let legacy = self.links[&(a, b)];
        self.unlink(a, b);
        if !self.connected() {
            self.link(a, b, legacy);
        }
    }

    fn assert_at_most_once(&self) {
        for p in &self.peers {
            for (text, times) in &p.shown {
                assert_eq!(*times, 1, "{} showed {text} {times} times", p.name);
            }
        }
    }

    fn assert_none_lost(&self) {
        for (text, members) in &self.sent {
            for m in members {
                let p = &self.peers[*m];
                if p.alive {
                    assert_eq!(
                        p.shown.get(text),
                        Some(&1),
                        "{} never showed {text}",
                        p.name
                    );
                }
            }
        }
    }
}

/// One adversarial step.
#[derive(Debug, Clone)]
enum Step {
    Send(usize),
    Deliver(usize),
    Duplicate(usize),
    LoseAnnouncement(usize),
    Tick(u64),
    Leave(usize),
    Join,
    DropLink,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<usize>().prop_map(Step::Send),
        12 => any::<usize>().prop_map(Step::Deliver),
        2 => any::<usize>().prop_map(Step::Duplicate),
        2 => any::<usize>().prop_map(Step::LoseAnnouncement),
        2 => (1u64..600).prop_map(Step::Tick),
        1 => any::<usize>().prop_map(Step::Leave),
        1 => Just(Step::Join),
        1 => Just(Step::DropLink),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever the network does (any order, duplicated frames, lost announcements, members
    /// leaving and joining and links failing while messages are in flight, flooding and legacy
    /// peers mixed in), no message is ever shown twice, and no peer sends to a non-neighbour.
    #[test]
    fn no_message_is_ever_shown_twice(
        seed in any::<u64>(),
        n in 3usize..12,
        extra in 0usize..12,
        flooders in 0usize..3,
        steps in proptest::collection::vec(step(), 1..300),
    ) {
        let mut net = Net::new(seed, n, extra, flooders, 0.2);
        for s in steps {
            net.step(s, true);
        }
        net.drain();
        net.assert_at_most_once();
    }

    /// With messages in flight concurrently, delivered in any order, with duplicated frames and
    /// a member leaving or joining (and the overlay repaired, connected) between bursts, every
    /// message reaches every member that was there when it was sent and stayed: the tree heals
    /// through announcements and grafts.
    #[test]
    fn no_message_is_lost_under_reordering_duplicates_and_churn(
        seed in any::<u64>(),
        n in 3usize..14,
        extra in 0usize..14,
        flooders in 0usize..3,
        bursts in proptest::collection::vec(
            (proptest::collection::vec(step(), 1..60), any::<usize>(), 0u8..4), 1..8),
    ) {
        let mut net = Net::new(seed, n, extra, flooders, 0.2);
        for (steps, who, churn) in bursts {
            for s in steps {
                net.step(s, false);
            }
            net.drain();
            let alive = net.alive();
            match churn {
                0 => net.leave(alive[who % alive.len()]),
                1 => net.join(RoomMode::Tree),
                2 => net.drop_link(),
                _ => {}
            }
        }
        net.drain();
        net.assert_at_most_once();
        net.assert_none_lost();
    }

    /// Once the tree has formed, announcements are redundant: losing all of them, one message
    /// after another, in any delivery order and with graft timers firing early, loses no
    /// message (every first-arrival link stays eager, so the eager links keep a spanning tree).
    /// Links are TCP here: a frame is not duplicated on its own link (a copy on the tree link
    /// would prune it, and the next message would then need its announcement).
    #[test]
    fn lost_announcements_lose_nothing_on_a_formed_tree(
        seed in any::<u64>(),
        n in 3usize..14,
        extra in 0usize..14,
        rounds in proptest::collection::vec(
            (any::<usize>(), proptest::collection::vec(step(), 1..80)), 1..10),
    ) {
        let mut net = Net::new(seed, n, extra, 0, 0.2);
        // The tree forms by grafts, from announcements: one message, then none.
        net.send(0);
        net.drain();
        net.mute_announcements = true;
        for (origin, steps) in rounds {
            let alive = net.alive();
            net.send(alive[origin % alive.len()]);
            for s in steps {
                match s {
                    Step::Deliver(k) => net.deliver(k, false),
                    Step::Tick(ms) => net.tick(Duration::from_millis(ms)),
                    _ => {}
                }
            }
            net.drain();
        }
        net.assert_at_most_once();
        net.assert_none_lost();
    }
}

/// Messages from different origins, one after another (a second apart, so each opens a
/// shaping round): the eager links settle into a spanning tree, exactly n - 1 links eager on
/// both ends, and a message then costs n - 1 full frames.
#[test]
fn sequential_messages_from_many_origins_settle_into_a_spanning_tree() {
    for seed in 0..20u64 {
        let n = 40;
        let mut net = Net::new(seed, n, 60, 0, 0.0);
        for k in 0..6 {
            net.send(k * 7 % n);
            net.drain();
            net.tick(Duration::from_millis(SHAPE_GAP_MS));
        }
        let eager = |net: &Net, a: usize, b: usize| {
            net.peers[a].cast.push_of(&net.peers[b].name) == Some(Push::Eager)
        };
        let mut edges = 0;
        for &(a, b) in net.links.keys() {
            let (ab, ba) = (eager(&net, a, b), eager(&net, b, a));
            assert_eq!(ab, ba, "seed {seed}: link {a}-{b} eager on one end only");
            edges += usize::from(ab);
        }
        assert_eq!(edges, n - 1, "seed {seed}: eager links");
        let before: u64 = net.peers.iter().map(|p| p.cast.stats().frames_sent).sum();
        net.send(5);
        net.drain();
        let after: u64 = net.peers.iter().map(|p| p.cast.stats().frames_sent).sum();
        assert_eq!(after - before, n as u64 - 1, "seed {seed}: full frames");
        net.assert_none_lost();
        net.assert_at_most_once();
    }
}

/// The point of the tree: after the first message, a message costs about one full frame per
/// member (n - 1), where flooding costs one per link end.
#[test]
fn a_formed_tree_sends_one_full_frame_per_member() {
    for seed in 0..20u64 {
        let n = 40;
        let mut net = Net::new(seed, n, 60, 0, 0.0);
        net.send(0);
        net.drain();
        let before: u64 = net.peers.iter().map(|p| p.cast.stats().frames_sent).sum();
        for k in 0..10 {
            net.send(k * 3 % n);
            net.drain();
        }
        let after: u64 = net.peers.iter().map(|p| p.cast.stats().frames_sent).sum();
        let per_msg = (after - before) as f64 / 10.0;
        assert!(
            per_msg <= 1.2 * (n as f64 - 1.0),
            "seed {seed}: {per_msg} full frames per message"
        );
        net.assert_none_lost();
        net.assert_at_most_once();
    }
}

// ----- steady state with latency -----

/// A network with per-link latency (FIFO per link, like TCP) and a virtual clock: the cost of
/// the tree in steady state when messages overlap in flight and arrive at different speeds.
struct Timed {
    casts: Vec<Broadcast>,
    names: Vec<String>,
    latency: BTreeMap<(usize, usize), Duration>,
    /// (arrival, order, from, to, msg)
    queue: BTreeSet<(Instant, u64, usize, usize, MsgBox)>,
    last_on_link: BTreeMap<(usize, usize), Instant>,
    order: u64,
    now: Instant,
    /// The clock's origin (`sent_ms` counts from it).
    start: Instant,
    rng: StdRng,
    shown: BTreeMap<String, u32>,
    max_depth: u8,
}

/// `Msg` ordered by nothing (the queue orders by time and sequence).
#[derive(Debug, Clone)]
struct MsgBox(Msg);
impl PartialEq for MsgBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for MsgBox {}
impl PartialOrd for MsgBox {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for MsgBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Timed {
    fn new(seed: u64, n: usize, chords: usize) -> Timed {
        let mut rng = StdRng::seed_from_u64(seed);
        let names: Vec<String> = (0..n).map(|i| format!("p{i:04}")).collect();
        let mut casts: Vec<Broadcast> = (0..n)
            .map(|_| Broadcast::new("lab", RoomMode::Tree))
            .collect();
        let mut latency = BTreeMap::new();
        let mut add = |a: usize, b: usize, rng: &mut StdRng, casts: &mut Vec<Broadcast>| {
            if a == b || latency.contains_key(&key(a, b)) {
                return;
            }
            latency.insert(key(a, b), Duration::from_millis(rng.random_range(5..=25)));
            casts[a].add_peer(&names[b], true);
            casts[b].add_peer(&names[a], true);
        };
        for i in 0..n {
            add(i, (i + 1) % n, &mut rng, &mut casts);
            for _ in 0..chords {
                let j = rng.random_range(0..n);
                add(i, j, &mut rng, &mut casts);
            }
        }
        let start = t0();
        Timed {
            casts,
            names,
            latency,
            queue: BTreeSet::new(),
            last_on_link: BTreeMap::new(),
            order: 0,
            now: start,
            start,
            rng,
            shown: BTreeMap::new(),
            max_depth: 0,
        }
    }

    fn apply(&mut self, at: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { to, msg } => {
                    for t in to {
                        let t: usize = t[1..].parse().unwrap();
                        let lat = self.latency[&key(at, t)];
                        let jitter = Duration::from_micros(self.rng.random_range(0..2000));
                        let last = self.last_on_link.get(&(at, t)).copied();
                        let arrive = (self.now + lat + jitter).max(last.unwrap_or(self.now));
                        self.last_on_link.insert((at, t), arrive);
                        self.order += 1;
                        self.queue
                            .insert((arrive, self.order, at, t, MsgBox(msg.clone())));
                    }
                }
                Action::Deliver { text, .. } => *self.shown.entry(text).or_default() += 1,
            }
        }
    }

    fn send(&mut self, from: usize, seq: u64) {
        let mut out = Vec::new();
        let (now, me) = (self.now, self.names[from].clone());
        let sent_ms = now.duration_since(self.start).as_millis() as u64;
        self.casts[from].originate(now, &me, seq, sent_ms, format!("{me}:{seq}"), &mut out);
        self.apply(from, out);
    }

    /// Runs until `until`: frames in arrival order, timers when due.
    fn run_until(&mut self, until: Instant) {
        loop {
            let frame = self.queue.first().map(|f| f.0);
            let timer = self
                .casts
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.poll_timeout().map(|t| (t, i)))
                .min();
            let next = match (frame, timer) {
                (Some(f), Some((t, _))) => f.min(t),
                (Some(f), None) => f,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if frame == Some(next) {
                let Some((_, _, from, to, MsgBox(msg))) = self.queue.pop_first() else {
                    break;
                };
                let (f, me, now) = (self.names[from].clone(), self.names[to].clone(), self.now);
                let mut out = Vec::new();
                let c = &mut self.casts[to];
                match msg {
                    Msg::RoomMessage {
                        origin,
                        seq,
                        hops,
                        sent_ms,
                        text,
                        ..
                    } => {
                        self.max_depth = self.max_depth.max(HOP_LIMIT - hops + 1);
                        c.receive(now, &me, &f, origin, seq, hops, sent_ms, text, &mut out)
                    }
                    Msg::RoomIhave { ids, .. } => c.on_ihave(now, &me, &f, ids),
                    Msg::RoomGraft { ids, .. } => c.on_graft(now, &f, ids, &mut out),
                    Msg::RoomPrune { .. } => c.on_prune(&f),
                    other => panic!("{other:?}"),
                }
                self.apply(to, out);
            } else if let Some((_, i)) = timer {
                let mut out = Vec::new();
                let now = self.now;
                self.casts[i].on_timeout(now, &mut out);
                self.apply(i, out);
            }
        }
        self.now = self.now.max(until);
    }

    fn frames(&self) -> (u64, u64, u64) {
        let s = self.casts.iter().map(|c| c.stats());
        s.fold((0, 0, 0), |(f, d, g), s| {
            (f + s.frames_sent, d + s.duplicates, g + s.grafts_sent)
        })
    }
}

/// With per-link latencies of 5-25 ms and messages overlapping in flight (one every 20 ms
/// from random members, some 20 in flight at once), the tree costs at most 1.2 (n - 1) full
/// frames per message once formed (exactly n - 1 in these runs), and everyone shows every
/// message once.
#[test]
fn the_tree_stays_cheap_with_latency_and_overlapping_messages() {
    for seed in [1u64, 2, 3] {
        let n = 128;
        let mut net = Timed::new(seed, n, 2);
        let gap = Duration::from_millis(20);
        let mut seq = 0;
        // The tree forms while messages do not overlap much (one every 300 ms, about the time
        // a message takes to reach everyone here); see the next test for a burst from the
        // start.
        let warm_gap = Duration::from_millis(300);
        for _ in 0..30 {
            seq += 1;
            let from = net.rng.random_range(0..n);
            net.send(from, seq);
            let t = net.now + warm_gap;
            net.run_until(t);
        }
        net.run_until(net.now + Duration::from_secs(5));
        let (f0, d0, g0) = net.frames();
        net.max_depth = 0;
        let measured = 100;
        for _ in 0..measured {
            seq += 1;
            let from = net.rng.random_range(0..n);
            net.send(from, seq);
            let t = net.now + gap;
            net.run_until(t);
        }
        net.run_until(net.now + Duration::from_secs(5));
        let (f1, d1, g1) = net.frames();
        let per = (f1 - f0) as f64 / measured as f64;
        println!(
            "seed {seed}: {per:.1} full frames/msg ({:.2} (n-1)), {:.1} dups/msg, {:.1} grafts/msg, max depth {}",
            per / (n as f64 - 1.0),
            (d1 - d0) as f64 / measured as f64,
            (g1 - g0) as f64 / measured as f64,
            net.max_depth
        );
        assert_eq!(net.shown.len() as u64, seq);
        assert!(
            net.shown.values().all(|c| *c as usize == n - 1),
            "each shown once by every other member"
        );
        assert!(per <= 1.2 * (n as f64 - 1.0), "seed {seed}: {per}");
    }
}

/// Known limit, measured: when the tree has to form *under* a burst (~20 messages in flight
/// from different origins), members that graft into different origins' trees join them at
/// several places, and the cycles left wait for the next shaping round (one message a
/// second prunes). With links that started eager and pruned on every duplicate this was about
/// 1.6 (n - 1) full frames per message and trees 25-30 hops deep; with links that start lazy
/// and shaping rounds it is 1.40 (n - 1) and 14 hops (seed 1, 130 messages 20 ms apart,
/// all counted). Delivery stays exactly once; this test pins that, and prints the cost.
#[test]
fn a_tree_formed_under_a_burst_still_delivers_everything_once() {
    let n = 128;
    let mut net = Timed::new(1, n, 2);
    let mut seq = 0;
    for _ in 0..130 {
        seq += 1;
        let from = net.rng.random_range(0..n);
        net.send(from, seq);
        let t = net.now + Duration::from_millis(20);
        net.run_until(t);
    }
    net.run_until(net.now + Duration::from_secs(10));
    let (f, d, g) = net.frames();
    println!(
        "burst from the start: {:.2} (n-1) full frames/msg, {:.1} dups/msg, {:.1} grafts/msg, max depth {}",
        f as f64 / seq as f64 / (n as f64 - 1.0),
        d as f64 / seq as f64,
        g as f64 / seq as f64,
        net.max_depth
    );
    assert_eq!(net.shown.len() as u64, seq);
    assert!(
        net.shown.values().all(|c| *c as usize == n - 1),
        "each shown once by every other member"
    );
}
