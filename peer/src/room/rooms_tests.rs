//! The rooms' state machine on its own: a [`Rooms`] driven through [`Cx`] by a plain driver
//! that keeps link state and records what the rooms did (no node, no registry).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use p2pchat_protocol::{Frame, Msg, PeerInfo, RoomEvent, PEER_VERSION};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::io::NodeEvent;

/// Link state as the node would keep it, and a record of what the rooms asked for.
#[derive(Default)]
struct Driver {
    ready: BTreeMap<String, u16>,
    dialing: BTreeSet<String>,
    dials: Vec<String>,
    sent: Vec<(String, Msg)>,
    events: Vec<NodeEvent>,
}

impl RoomIo for Driver {
    fn is_ready(&self, name: &str) -> bool {
        self.ready.contains_key(name)
    }
    fn is_dialing(&self, name: &str) -> bool {
        self.dialing.contains(name)
    }
    fn version(&self, name: &str) -> u16 {
        self.ready.get(name).copied().unwrap_or(0)
    }
    fn dial(&mut self, _now: Instant, name: &str, _addr: SocketAddr) {
        self.dialing.insert(name.to_string());
        self.dials.push(name.to_string());
    }
    fn send(&mut self, name: &str, msg: Msg) -> bool {
        let ok = self.is_ready(name);
        if ok {
            self.sent.push((name.to_string(), msg));
        }
        ok
    }
    fn send_bytes(&mut self, name: &str, bytes: &Bytes) -> bool {
        let msg = Frame::decode(&bytes[4..]).unwrap().msg;
        self.send(name, msg)
    }
    fn hold(&mut self, _name: &str) {}
    fn event(&mut self, event: NodeEvent) {
        self.events.push(event);
    }
}

struct Harness {
    rooms: Rooms,
    io: Driver,
    rng: StdRng,
    muted: BTreeSet<String>,
    now: Instant,
    outs: Vec<RoomOut>,
    /// Our ticket and the registry key, when we hold one (then messages must be signed).
    ticket: Option<(Vec<u8>, [u8; 32])>,
}

impl Harness {
    fn new(mode: RoomMode) -> Harness {
        Harness {
            rooms: Rooms::new(1_700_000_000_000, 3, mode),
            io: Driver::default(),
            rng: StdRng::seed_from_u64(5),
            muted: BTreeSet::new(),
            // A virtual clock anchored at one real instant.
            #[allow(clippy::disallowed_methods)]
            now: Instant::now(),
            outs: Vec::new(),
            ticket: None,
        }
    }

    fn run<R>(&mut self, f: impl FnOnce(&mut Rooms, &mut Cx<'_>, Instant) -> R) -> R {
        let mut cx = Cx {
            me: Some("me"),
            io: &mut self.io,
            rng: &mut self.rng,
            muted: &self.muted,
            wall_ms: 1_700_000_000_000,
            now: self.now,
            signer: None,
            ticket: self.ticket.as_ref().map(|(t, k)| (t.as_slice(), *k)),
            out: Vec::new(),
        };
        let r = f(&mut self.rooms, &mut cx, self.now);
        self.outs.extend(cx.out);
        r
    }

    /// The link to `name` came up (at `version`); the rooms send what waited for it.
    fn link_up(&mut self, name: &str, version: u16) {
        self.io.dialing.remove(name);
        self.io.ready.insert(name.to_string(), version);
        self.run(|r, cx, _| r.room_link_ready(cx, name));
    }

    fn frame(&mut self, from: &str, msg: Msg) {
        self.run(|r, cx, now| r.handle_room_frame(cx, now, from.to_string(), msg));
    }
}

fn peer(name: &str) -> PeerInfo {
    PeerInfo {
        name: name.into(),
        addr: "127.0.0.1:9".parse().unwrap(),
    }
}

const ROOM: &str = "lab";

fn link() -> Msg {
    Msg::RoomLink { room: ROOM.into() }
}

/// Joining: the rooms dial the members the overlay wants (the ring successor among them), ask
/// each for a room link once its peer link is up, and announce "Joined" at the first
/// confirmation, once.
#[test]
fn joining_links_to_the_overlay_and_announces_once() {
    let mut h = Harness::new(RoomMode::Flood);
    let members: Vec<PeerInfo> = ["a", "b", "c", "n", "x", "y", "z"]
        .iter()
        .map(|n| peer(n))
        .collect();
    h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members, true));
    assert_eq!(h.outs, [RoomOut::Focus(ROOM.into())]);
    assert_eq!(h.io.dials.len(), 3, "degree 3: {:?}", h.io.dials);
    assert!(
        h.io.dials.contains(&"n".to_string()),
        "the ring successor of me"
    );
    assert!(
        h.io.events.is_empty(),
        "not joined before a neighbour confirms"
    );
    let dials = h.io.dials.clone();
    for d in &dials {
        h.link_up(d, PEER_VERSION);
    }
    let asked: Vec<&String> = h.io.sent.iter().map(|(to, _)| to).collect();
    assert_eq!(asked, dials.iter().collect::<Vec<_>>());
    assert!(h.io.sent.iter().all(|(_, m)| *m == link()));
    for d in &dials {
        h.frame(d, link());
    }
    assert_eq!(
        h.io.events,
        [NodeEvent::RoomJoined { room: ROOM.into() }],
        "shown at the first confirmation only"
    );
    assert_eq!(h.rooms.neighbors(ROOM), {
        let mut d = dials.clone();
        d.sort();
        d
    });
}

/// A settled room ignores membership events about others: no dial, no frame, whatever joins.
#[test]
fn events_about_others_cost_nothing_in_a_settled_room() {
    let mut h = Harness::new(RoomMode::Tree);
    let members: Vec<PeerInfo> = (0..50).map(|i| peer(&format!("m{i:02}"))).collect();
    h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members, false));
    let dials = h.io.dials.clone();
    for d in &dials {
        h.link_up(d, PEER_VERSION);
        h.frame(d, link());
    }
    let (sent, dialed) = (h.io.sent.len(), h.io.dials.len());
    for i in 50..150 {
        let name = format!("m{i:03}");
        let event = RoomEvent::Joined {
            name,
            addr: "127.0.0.1:9".parse().unwrap(),
        };
        h.run(|r, cx, now| r.room_event(cx, now, ROOM.into(), event));
    }
    assert_eq!(h.io.dials.len(), dialed, "no new link");
    assert_eq!(h.io.sent.len(), sent, "no frame");
    assert_eq!(
        h.io.events.len(),
        1 + 100,
        "Joined room, then one notice per member"
    );
}

/// Tree mode through the rooms: a message from one neighbour is shown once and pushed on; a
/// copy from a lazy neighbour is pruned; a version-1 neighbour is never sent a tree frame.
#[test]
fn tree_frames_go_only_to_version_2_neighbours() {
    let mut h = Harness::new(RoomMode::Tree);
    let members: Vec<PeerInfo> = ["a", "b", "old"].iter().map(|n| peer(n)).collect();
    h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members, false));
    for (n, v) in [("a", PEER_VERSION), ("b", PEER_VERSION), ("old", 1)] {
        h.link_up(n, v);
        h.frame(n, link());
    }
    h.io.sent.clear();
    let msg = |hops| Msg::RoomMessage {
        room: ROOM.into(),
        origin: "zed".into(),
        seq: 1,
        hops,
        sent_ms: 0,
        text: "hi".into(),
        auth: None,
    };
    h.frame("a", msg(5));
    h.frame("old", msg(5));
    h.frame("b", msg(5));
    let shown: Vec<&NodeEvent> =
        h.io.events
            .iter()
            .filter(|e| matches!(e, NodeEvent::RoomMessage { .. }))
            .collect();
    assert_eq!(shown.len(), 1);
    let sent: Vec<(&str, &str)> =
        h.io.sent
            .iter()
            .map(|(to, m)| (to.as_str(), m.kind_name()))
            .collect();
    // New tree links start lazy. The room's first message re-roots the tree (tree.rs): a
    // full copy on every link, an empty graft to a, whose copy came first; b's copy, sent on
    // purpose, is not pruned at once. The version-1 neighbour gets the full copy and no tree
    // frame, then or when the round is decided.
    assert_eq!(
        sent,
        [
            ("a", "room-graft"),
            ("b", "room-message"),
            ("old", "room-message")
        ],
        "full copies, the graft to a version-2 neighbour only"
    );
    h.io.sent.clear();
    h.now += tree::REROOT_DECIDE;
    h.run(|r, cx, now| r.room_timeouts(cx, now));
    assert!(
        h.io.sent.iter().all(|(to, _)| to != "old"),
        "nothing for old when the round is decided: {:?}",
        h.io.sent
    );
}

/// A link we opened that the overlay no longer wants (others linked to us since) is dropped
/// in flood mode, and in tree mode only while it is lazy: a link on the broadcast tree is
/// kept, since dropping it would cut the tree (docs/performance.md, "Where the tree's extra
/// frames come from").
#[test]
fn links_on_the_broadcast_tree_are_not_dropped_to_rebalance() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for mode in [RoomMode::Tree, RoomMode::Flood] {
        let mut h = Harness::new(mode);
        let members: Vec<PeerInfo> = ["n", "x", "y", "z"].iter().map(|n| peer(n)).collect();
        h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members, false));
        // Degree 3 of 4 others: the ring successor n and two of x, y, z.
        let dials = h.io.dials.clone();
        assert_eq!(dials.len(), 3);
        assert!(dials.contains(&s("n")));
        for d in &dials {
            h.link_up(d, PEER_VERSION);
            h.frame(d, link());
        }
        let mut surplus: Vec<String> = dials.iter().filter(|d| *d != "n").cloned().collect();
        surplus.sort();
        // The first of the two carries the tree: its end grafted us.
        let graft = Msg::RoomGraft {
            room: ROOM.into(),
            ids: Vec::new(),
        };
        h.frame(&surplus[0], graft);
        h.io.sent.clear();
        // a, b and q join, a and b link to us: the overlay then wants n and the first others
        // in name order (n, a and b), so the two links we opened besides n's become surplus,
        // the second one when b joins, the first one when q joins.
        for n in ["a", "b", "q"] {
            let event = RoomEvent::Joined {
                name: n.into(),
                addr,
            };
            h.run(|r, cx, now| r.room_event(cx, now, ROOM.into(), event));
            if n != "q" {
                h.link_up(n, PEER_VERSION);
                h.frame(n, link());
            }
        }
        let unlinked: Vec<&str> =
            h.io.sent
                .iter()
                .filter(|(_, m)| matches!(m, Msg::RoomUnlink { .. }))
                .map(|(to, _)| to.as_str())
                .collect();
        let kept = h.rooms.neighbors(ROOM);
        match mode {
            RoomMode::Tree => {
                assert_eq!(unlinked, [surplus[1].as_str()], "only the lazy link goes");
                assert!(kept.contains(&surplus[0]), "the tree link stays: {kept:?}");
            }
            RoomMode::Flood => {
                assert_eq!(unlinked, [surplus[1].as_str(), surplus[0].as_str()]);
            }
        }
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

/// Leaving and joining again (or logging out and in) does not show again what was shown
/// before: the neighbours' catch-up announces the room's recent ids to a member that comes
/// back, and a fresh seen-set would graft and show them a second time (found by the
/// simulator with churn). A message first sent while we were away is still news.
#[test]
fn a_member_that_leaves_and_rejoins_does_not_show_a_message_twice() {
    for mode in [RoomMode::Flood, RoomMode::Tree] {
        let mut h = Harness::new(mode);
        let msg = |seq| Msg::RoomMessage {
            room: ROOM.into(),
            origin: "zed".into(),
            seq,
            hops: 5,
            sent_ms: 0,
            text: format!("message {seq}"),
            auth: None,
        };
        let shown = |h: &Harness| {
            h.io.events
                .iter()
                .filter(|e| matches!(e, NodeEvent::RoomMessage { .. }))
                .count()
        };
        for round in 0..2 {
            let members = vec![peer("a")];
            h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members, false));
            if round == 0 {
                h.link_up("a", PEER_VERSION);
            } else {
                h.run(|r, cx, _| r.room_link_ready(cx, "a"));
            }
            h.frame("a", link());
            h.frame("a", msg(1));
            h.run(|r, cx, _| r.room_left(cx, ROOM.into()));
        }
        assert_eq!(
            shown(&h),
            1,
            "{mode:?}: message 1 shown once over two stays"
        );
        let members = vec![peer("a")];
        h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members, false));
        h.run(|r, cx, _| r.room_link_ready(cx, "a"));
        h.frame("a", link());
        h.frame("a", msg(2));
        assert_eq!(shown(&h), 2, "{mode:?}: a new message is shown");
    }
}

/// A neighbour that keeps relaying messages that fail the signature check (forged, or unsigned
/// where signatures are required) is unlinked after a few and its room links are refused for a
/// while, so it cannot make us spend CPU on Ed25519 checks without end; the others stay.
#[test]
fn a_neighbour_relaying_forged_messages_is_unlinked_and_refused() {
    let mut h = Harness::new(RoomMode::Tree);
    // With a ticket of our own (any bytes do here), every new message must be signed.
    h.ticket = Some((vec![1; 8], [7; 32]));
    let members: Vec<PeerInfo> = ["a", "mal"].iter().map(|n| peer(n)).collect();
    h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members, false));
    for n in ["a", "mal"] {
        h.link_up(n, PEER_VERSION);
        h.frame(n, link());
    }
    assert_eq!(h.rooms.neighbors(ROOM), ["a", "mal"]);
    let forged = |seq| Msg::RoomMessage {
        room: ROOM.into(),
        origin: "a".into(),
        seq,
        hops: 5,
        sent_ms: 0,
        text: "forged".into(),
        auth: None,
    };
    h.io.sent.clear();
    for seq in 1..super::REFUSALS_TO_UNLINK as u64 {
        h.frame("mal", forged(seq));
    }
    assert_eq!(h.rooms.neighbors(ROOM), ["a", "mal"], "a few are tolerated");
    h.frame("mal", forged(99));
    assert_eq!(h.rooms.neighbors(ROOM), ["a"], "unlinked");
    let unlink = Msg::RoomUnlink { room: ROOM.into() };
    assert!(h.io.sent.contains(&("mal".to_string(), unlink.clone())));
    assert!(
        !h.io
            .events
            .iter()
            .any(|e| matches!(e, NodeEvent::RoomMessage { .. })),
        "nothing forged was shown"
    );
    // It asks to link again: refused.
    h.io.sent.clear();
    h.frame("mal", link());
    assert_eq!(h.rooms.neighbors(ROOM), ["a"]);
    assert_eq!(h.io.sent, [("mal".to_string(), unlink)]);
}

/// Members leaving until the view runs short make the rooms ask the registry for the list
/// again (at most every `REFILL_AFTER`), and the answer is applied silently: the view is
/// whole again (nothing more is asked), nothing is shown, no error, the focus does not move.
#[test]
fn a_view_that_ran_short_is_refilled_silently() {
    let mut h = Harness::new(RoomMode::Flood);
    let members: Vec<PeerInfo> = (0..60).map(|i| peer(&format!("u{i:02}"))).collect();
    h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members.clone(), true));
    let refills = |h: &Harness| {
        h.outs
            .iter()
            .filter(|o| matches!(o, RoomOut::Refill(r) if r == ROOM))
            .count()
    };
    assert_eq!(refills(&h), 0, "a full list needs no refill");
    // "me" sorts before every "uNN": its successors are u00, u01, ...; they leave one by one.
    for i in 0..(overlay::SUCC_KEEP - overlay::SUCC_WANT + 1) {
        let name = format!("u{i:02}");
        h.run(|r, cx, now| r.room_event(cx, now, ROOM.into(), RoomEvent::Left { name }));
    }
    assert_eq!(refills(&h), 1, "short of successors: one refill asked");
    let name = "u20".to_string();
    h.run(|r, cx, now| r.room_event(cx, now, ROOM.into(), RoomEvent::Left { name }));
    assert_eq!(refills(&h), 1, "not again before REFILL_AFTER");
    // The registry's answer: everyone still online.
    let left = overlay::SUCC_KEEP - overlay::SUCC_WANT + 1;
    let online: Vec<PeerInfo> = members[left..]
        .iter()
        .filter(|p| p.name != "u20")
        .cloned()
        .collect();
    let events = h.io.events.len();
    let outs = h.outs.len();
    h.run(|r, cx, now| r.room_refilled(cx, now, ROOM.into(), online.clone()));
    assert!(
        !h.io.events[events..]
            .iter()
            .any(|e| matches!(e, NodeEvent::Error { .. } | NodeEvent::RoomJoined { .. })),
        "{:?}",
        &h.io.events[events..]
    );
    assert!(!h.outs[outs..]
        .iter()
        .any(|o| matches!(o, RoomOut::Focus(_) | RoomOut::Refill(_))));
    let view = &h.rooms.rooms[ROOM].online;
    assert_eq!(view.len(), online.len());
    assert_eq!(
        view.successors().collect::<Vec<_>>(),
        online[..overlay::SUCC_KEEP]
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
    );
    // A refill answer for a room left meanwhile is ignored, not a join.
    h.run(|r, cx, now| r.room_refilled(cx, now, "elsewhere".into(), online.clone()));
    assert!(!h.rooms.rooms.contains_key("elsewhere"));
}

/// Room links are accepted from online members only, though a peer's view holds few of them:
/// one from a member outside the view (a 200-member room) is accepted, one from a peer that is
/// not in the room or that left it is refused with `room-unlink`.
#[test]
fn room_links_only_from_online_members_even_outside_the_view() {
    let mut h = Harness::new(RoomMode::Flood);
    let members: Vec<PeerInfo> = (0..200).map(|i| peer(&format!("u{i:03}"))).collect();
    h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), members, false));
    let unlink = Msg::RoomUnlink { room: ROOM.into() };
    let outside = (0..200)
        .map(|i| format!("u{i:03}"))
        .find(|n| !h.rooms.rooms[ROOM].online.contains(n) && !h.io.dials.contains(n))
        .expect("a member outside the view");
    for (who, member) in [("stranger", false), (outside.as_str(), true)] {
        h.io.ready.insert(who.to_string(), PEER_VERSION);
        h.io.sent.clear();
        h.frame(who, link());
        let answer: Vec<&Msg> = h.io.sent.iter().map(|(_, m)| m).collect();
        if member {
            assert_eq!(answer, [&link()], "{who} is a member: link confirmed");
            assert!(h.rooms.neighbors(ROOM).contains(&who.to_string()));
        } else {
            assert_eq!(answer, [&unlink], "{who} is not in the room");
            assert!(!h.rooms.neighbors(ROOM).contains(&who.to_string()));
        }
    }
    // A member that left is refused too (its old link had to go first).
    let left = (0..200)
        .map(|i| format!("u{i:03}"))
        .find(|n| n != &outside && !h.rooms.neighbors(ROOM).contains(n) && !h.io.dials.contains(n))
        .unwrap();
    let name = left.clone();
    h.run(|r, cx, now| r.room_event(cx, now, ROOM.into(), RoomEvent::Left { name }));
    h.io.ready.insert(left.clone(), PEER_VERSION);
    h.io.sent.clear();
    h.frame(&left, link());
    assert_eq!(h.io.sent, [(left.clone(), unlink)]);
}

/// The trace (`Config::room_trace`) records what a lost delivery needs explained: the room
/// link made, a message from a member that is no neighbour dropped, a message shown and
/// sent on; it keeps only the newest lines, and records nothing when off.
#[test]
fn the_trace_tells_links_drops_and_deliveries_and_stays_bounded() {
    let message = |origin: &str, seq: u64| Msg::RoomMessage {
        room: ROOM.into(),
        origin: origin.into(),
        seq,
        hops: 8,
        sent_ms: 1,
        text: "hi".into(),
        auth: None,
    };
    let mut off = Harness::new(RoomMode::Flood);
    let mut h = Harness::new(RoomMode::Flood);
    h.rooms.set_trace(16);
    for h in [&mut off, &mut h] {
        h.run(|r, cx, now| r.room_joined(cx, now, ROOM.into(), vec![peer("a"), peer("b")], false));
        h.link_up("a", PEER_VERSION);
        h.link_up("b", PEER_VERSION);
        h.frame("a", link());
        h.frame("b", link());
        h.frame("z", message("z", 1));
        h.frame("a", message("x", 7));
    }
    assert_eq!(off.rooms.trace().count(), 0, "off: nothing kept");
    let lines: Vec<&str> = h.rooms.trace().map(|(_, l)| l.as_str()).collect();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(has("lab: linked with a"), "{lines:#?}");
    assert!(has("DROPPED z/1 from non-neighbour z"), "{lines:#?}");
    assert!(has("lab: x/7 first"), "{lines:#?}");
    assert!(
        has(r#"sent room-message x/7 hops 7 to ["b"], no link to []"#),
        "{lines:#?}"
    );
    for seq in 0..100 {
        h.frame("a", message("x", 100 + seq));
    }
    assert_eq!(h.rooms.trace().count(), 16, "only the newest lines");
    assert!(h.rooms.trace().any(|(_, l)| l.contains("x/199 first")));
}
