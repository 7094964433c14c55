//! Rooms on the peer: the membership view pushed by the registry, the overlay of room links
//! between members, and how room messages spread across it (flooding or a broadcast tree).
//!
//! [`Rooms`] is a sans-IO state machine of its own: the node calls it with a [`Cx`] (our name,
//! a [`RoomIo`] over the peer links, randomness, mutes, wall time) and applies the
//! [`RoomOut`]s it leaves. Nothing here imports the node.
//!
//! - The registry says who is in a room and online (`RoomJoined`, then `Room` events). The peer
//!   keeps that view per room and picks neighbours from it ([`overlay::targets`]).
//! - A room link is a neighbour relation carried on the one peer link of a pair: `RoomLink`
//!   asks, `RoomLink` back confirms (when both ask at once, each request confirms the other),
//!   `RoomUnlink` ends it. Only confirmed neighbours send or receive the room's messages, so a
//!   member that was kicked or left stops receiving as soon as its neighbours drop it.
//! - A message is `(origin, seq)` with a hop limit. It is shown and forwarded the first time it
//!   is seen; duplicates are counted and dropped ([`dedup::Dedup`], bounded memory). Flooding
//!   forwards to every neighbour except the one it came from; the broadcast tree
//!   ([`tree::Broadcast`], `--room-mode tree`) only along a spanning tree, announcing ids on the
//!   other links.

mod api;
pub mod dedup;
pub mod overlay;
pub mod sign;
pub mod tree;

pub(crate) use api::{Cx, RoomIo, RoomOut};
pub use api::{RoomMode, RoomStats};
pub use sign::RoomSigner;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use p2pchat_protocol::{Frame, Msg, PeerInfo, RoomAuth, RoomEvent, PEER_VERSION};

use crate::io::NodeEvent;
use dedup::Dedup;
use overlay::View;
pub use tree::HOP_LIMIT;
use tree::{Action, Broadcast};
/// A member whose link failed or who refused us is not picked again for this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Refused (forged or unsigned) room messages from one neighbour before it is unlinked: each
/// costs one or two Ed25519 checks, so a member that keeps sending them would otherwise make
/// every neighbour spend its CPU on them. A few are tolerated: a ticket can lapse in flight.
const REFUSALS_TO_UNLINK: u32 = 8;
/// How long an unlinked forger is neither picked nor accepted as a neighbour.
const BANNED_FOR: Duration = Duration::from_secs(600);
/// "Joined room" is shown once the first neighbour confirms (from then on every message sent
/// in the room reaches us), or after this long if none does.
const JOIN_NOTICE_WAIT: Duration = Duration::from_secs(5);
/// A view that ran short asks the registry for the member list at most this often.
const REFILL_AFTER: Duration = Duration::from_secs(2);

/// One joined room.
#[derive(Debug)]
pub(crate) struct Room {
    /// Our bounded view of the other online members (successors, a sample, recent arrivals
    /// and departures): no member list, so a peer's state does not grow with the room.
    online: View,
    /// When we last asked the registry for the member list because the view ran short.
    refill_at: Option<Instant>,
    /// Confirmed neighbours.
    neighbors: BTreeSet<String>,
    /// Neighbours asked (or to be asked once their link is up), not yet confirmed.
    pending: BTreeSet<String>,
    /// The neighbours (and pending ones) that we asked for, as opposed to those that asked us.
    /// Only these are ours to prune when the overlay wants fewer links.
    initiated: BTreeSet<String>,
    /// Members not to pick until the instant given.
    retry: BTreeMap<String, Instant>,
    /// Refused messages per neighbour (see `REFUSALS_TO_UNLINK`).
    refusals: BTreeMap<String, u32>,
    /// Neighbours unlinked for forged messages, and until when their room links are refused.
    banned: BTreeMap<String, Instant>,
    /// Dedup, flooding and the broadcast tree over `neighbors`.
    cast: Broadcast,
    /// While set, "Joined room" has not been shown yet; shown at the latest then.
    announce: Option<Instant>,
    /// Set by `refresh_room` when the room was settled: our ring successor then. Until anything
    /// but a member coming online changes, a member coming online outside (me, successor) in
    /// ring order leaves it settled, so that event needs no refresh at all (see
    /// `Rooms::room_event`). Cleared by every other change.
    settled: Option<String>,
}

impl Room {
    /// A member renamed: it keeps its address, its place among the neighbours and any retry
    /// delay, under the new name.
    fn rename_member(&mut self, old: &str, new: &str) {
        self.online.rename(old, new);
        for set in [&mut self.neighbors, &mut self.pending, &mut self.initiated] {
            if set.remove(old) {
                set.insert(new.to_string());
            }
        }
        self.cast.rename_peer(old, new);

        if let Some(at) = self.retry.remove(old) {
            self.retry.insert(new.to_string(), at);
        }
    }

    fn new(
        name: &str,
        mode: RoomMode,
        me: &str,
        peers: Vec<PeerInfo>,
        rng: &mut impl rand::Rng,
    ) -> Room {
        let mut online = View::new(me);
        online.reset(me, peers.into_iter().map(|p| (p.name, p.addr)), rng);
        Room {
            online,
            refill_at: None,
            neighbors: BTreeSet::new(),
            pending: BTreeSet::new(),
            initiated: BTreeSet::new(),
            retry: BTreeMap::new(),
            refusals: BTreeMap::new(),
            banned: BTreeMap::new(),
            cast: Broadcast::new(name, mode),
            announce: None,
            settled: None,
        }
    }

    /// `name` is no longer a confirmed or pending neighbour; true if it was either.
    fn forget_neighbor(&mut self, name: &str) -> bool {
        self.initiated.remove(name);
        self.cast.remove_peer(name);
        self.neighbors.remove(name) | self.pending.remove(name)
    }

    fn uses(&self, name: &str) -> bool {
        self.neighbors.contains(name) || self.pending.contains(name)
    }

    /// Whether `name` counts as online for the overlay: in the view, or linked (a departure
    /// unlinks a member, so a linked one is online as far as we were told).
    fn is_online(&self, name: &str) -> bool {
        self.online.contains(name) || self.uses(name)
    }

    /// Whether [`overlay::targets`] would change nothing: the room is larger than the degree,
    /// we hold at least `degree` links, one of them to our ring successor, and every link we
    /// opened is among those the overlay keeps (the successor and the first `degree - 1`
    /// others in name order). In a big room nearly every membership event is about somebody
    /// else and lands here, checked in O(d log n) without allocating.
    #[cfg(test)]
    fn is_settled(&self, me: &str, degree: usize) -> bool {
        self.settled_successor(me, degree).is_some()
    }

    /// [`Room::is_settled`], giving the ring successor when settled.
    fn settled_successor(&self, me: &str, degree: usize) -> Option<&str> {
        let held = |n: &str| self.retry.contains_key(n);
        if self.online.len() <= degree + self.retry.len() + 1
            || self.neighbors.len() + self.pending.len() < degree
        {
            return None;
        }
        let succ = self.online.successor(held)?;
        if !self.uses(succ) {
            return None;
        }
        let candidate = |n: &str| n != me && self.is_online(n) && !held(n);
        // The links in name order, each once, as `targets` walks their union.
        let mut a = self.neighbors.iter().map(String::as_str).peekable();
        let mut b = self.pending.iter().map(String::as_str).peekable();
        let linked = std::iter::from_fn(|| match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x == y => {
                b.next();
                a.next()
            }
            (Some(x), Some(y)) if x < y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        });
        let mut kept = 1;
        let mut last: Option<&str> = None;
        for n in linked {
            if kept >= degree {
                break;
            }
            if n != succ && candidate(n) {
                kept += 1;
                last = Some(n);
            }
        }
        if kept < degree {
            // `targets` would draw random members to fill up.
            return None;
        }
        self.initiated
            .iter()
            .filter(|n| self.neighbors.contains(*n))
            .all(|n| n == succ || (candidate(n) && last.is_some_and(|l| n.as_str() <= l)))
            .then_some(succ)
    }

    /// Whether `name` coming online leaves a settled room settled: it is not us, not held back,
    /// not linked, and not between us and our successor in ring order (so the successor stays;
    /// our links and the other candidates are unchanged, and `targets` wants nothing new).
    fn stays_settled_with(&self, me: &str, name: &str) -> bool {
        let Some(succ) = self.settled.as_deref() else {
            return false;
        };
        let between = if me < succ {
            me < name && name < succ
        } else {
            name > me || name < succ
        };
        name != me && !between && !self.retry.contains_key(name) && !self.uses(name)
    }
}

/// Every joined room of a node, and the node's message sequence: the rooms' sans-IO state
/// machine. The node feeds it registry outcomes, room frames, link changes and time through a
/// [`Cx`]; it answers through the [`RoomIo`] and [`RoomOut`]s.
#[derive(Debug)]
pub(crate) struct Rooms {
    pub(crate) rooms: BTreeMap<String, Room>,
    /// Overlay degree.
    degree: usize,
    /// How messages spread in new rooms.
    mode: RoomMode,
    /// Next sequence number for messages we originate. It starts at the wall clock in µs, so a
    /// restarted peer never reuses numbers its rooms' dedup state still remembers.
    next_seq: u64,
    /// After a resume, the rooms the registry has pushed so far (`None` outside a resume).
    sync: Option<BTreeSet<String>>,
    /// What was shown in rooms left lately (oldest first, at most `MAX_LEFT_SEEN`): a member
    /// that leaves and joins again, or logs out and in, is announced the room's recent ids by
    /// its neighbours' catch-up, and without this would show again what it showed before.
    left_seen: VecDeque<(String, Dedup)>,
    /// Checks others' room messages (tickets verified so far, per origin).
    verifier: sign::Verifier,
}

/// Rooms whose seen-message sets are kept after leaving them.
const MAX_LEFT_SEEN: usize = 64;

impl Rooms {
    pub(crate) fn new(wall_ms: u64, degree: usize, mode: RoomMode) -> Rooms {
        Rooms {
            rooms: BTreeMap::new(),
            degree,
            mode,
            next_seq: wall_ms.saturating_mul(1000),
            sync: None,
            left_seen: VecDeque::new(),
            verifier: sign::Verifier::default(),
        }
    }

    /// A resume succeeded: start collecting the rooms the registry pushes.
    pub(crate) fn start_sync(&mut self) {
        self.sync = Some(BTreeSet::new());
    }

    /// Whether any room needs a link to `name`.
    pub(crate) fn uses(&self, name: &str) -> bool {
        self.rooms.values().any(|r| r.uses(name))
    }

    /// Flooding counters of a joined room.
    pub(crate) fn stats(&self, room: &str) -> Option<RoomStats> {
        self.rooms.get(room).map(|r| r.cast.stats())
    }

    /// Confirmed neighbours in a joined room, sorted.
    pub(crate) fn neighbors(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|r| r.neighbors.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.rooms
            .values()
            .flat_map(|r| {
                r.announce
                    .into_iter()
                    .chain(r.retry.values().copied())
                    .chain(r.cast.poll_timeout())
            })
            .min()
    }
}

impl Rooms {
    // ----- commands -----

    /// `/say ROOM TEXT`, and plain lines while a room has the focus.
    pub(crate) fn cmd_say(&mut self, cx: &mut Cx<'_>, now: Instant, room: String, text: String) {
        let Some(me) = cx.me.map(str::to_string) else {
            return cx.error("not logged in");
        };
        let Some(r) = self.rooms.get_mut(&room) else {
            return cx.error(format!("you are not in room {room}"));
        };
        if r.neighbors.is_empty() && !r.online.is_empty() {
            return cx.error(format!(
                "not connected to anyone in {room} yet; try again in a moment"
            ));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let sent_ms = cx.wall_ms;
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        // Signed once we hold a ticket (peers that hold one refuse unsigned messages).
        let auth = match (cx.signer, cx.ticket) {
            (Some(signer), Some((ticket, _))) => {
                Some(signer.sign(ticket, &room, &me, seq, sent_ms, &text))
            }
            _ => None,
        };
        let mut actions = Vec::new();
        r.cast
            .originate_signed(now, &me, seq, sent_ms, text.clone(), auth, &mut actions);
        self.run_actions(cx, &room, actions);
        cx.io.event(NodeEvent::RoomMessageSent { room, text });
    }

    // ----- registry outcomes -----

    /// We are in `room` with these online members: a join reply, or (`pushed`) the registry's
    /// list of our rooms at login or resume.
    pub(crate) fn room_joined(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        room: String,
        peers: Vec<PeerInfo>,
        reply: bool,
    ) {
        if let Some(pushed) = &mut self.sync {
            pushed.insert(room.clone());
        }
        let me = cx.me.map(str::to_string);
        let peers: Vec<PeerInfo> = peers
            .into_iter()
            .filter(|p| Some(p.name.as_str()) != me.as_deref())
            .collect();
        if let Some(r) = self.rooms.get_mut(&room) {
            // Already in it: a re-join after a reconnect (or a `/join` of a room we are in).
            // After a registry restart the members resume one by one, so this list may lack
            // members that are alive and linked to us: a neighbour whose peer link is up stays
            // (an `offline`, `left` or `kicked` event, or the link's loss, removes it later).
            let listed: BTreeSet<&str> = peers.iter().map(|p| p.name.as_str()).collect();
            let stale: Vec<String> = r
                .neighbors
                .iter()
                .chain(r.pending.iter())
                // Not listed, and not a confirmed neighbour whose link is still up.
                .filter(|n| {
                    let live = r.neighbors.contains(*n) && cx.io.is_ready(n);
                    !listed.contains(n.as_str()) && !live
                })
                .cloned()
                .collect();
            let live: Vec<String> = r
                .neighbors
                .iter()
                .filter(|n| !listed.contains(n.as_str()) && cx.io.is_ready(n))
                .cloned()
                .collect();
            let me = me.as_deref().unwrap_or_default();
            r.online
                .reset(me, peers.into_iter().map(|p| (p.name, p.addr)), cx.rng);
            for n in &live {
                r.online.keep_online(n);
            }
            // A full list just came: the next refill waits its turn like any other (a list that
            // leaves the view short, as one naming only some members after a registry restart,
            // must not be asked for again at once, and again, with no time passing).
            r.refill_at = Some(now);
            r.settled = None;
            for n in stale {
                self.drop_neighbor(cx, &room, &n, true);
            }
            self.refresh_room(cx, now, &room);
            if reply {
                // An explicit `/join` of a room we are in: the view is refreshed (that repairs
                // a partial one) and the room gets the focus, but nothing was joined.
                cx.out.push(RoomOut::Focus(room.to_string()));
                cx.error(format!("already in room {room}"));
            }
            return;
        }
        let me = me.as_deref().unwrap_or_default();
        let mut r = Room::new(&room, self.mode, me, peers, cx.rng);
        self.restore_seen(&room, &mut r);
        if r.online.is_empty() {
            cx.io.event(NodeEvent::RoomJoined { room: room.clone() });
        } else {
            r.announce = Some(now + JOIN_NOTICE_WAIT);
        }
        self.rooms.insert(room.clone(), r);
        cx.out.push(RoomOut::Focus(room.to_string()));
        self.refresh_room(cx, now, &room);
    }

    /// The registry's answer to a refill ([`RoomOut::Refill`]): the room's online members now.
    /// Ignored if we left the room meanwhile.
    pub(crate) fn room_refilled(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        room: String,
        peers: Vec<PeerInfo>,
    ) {
        if self.rooms.contains_key(&room) {
            self.room_joined(cx, now, room, peers, false);
        }
    }

    pub(crate) fn room_created(&mut self, cx: &mut Cx<'_>, room: String) {
        let me = cx.me.unwrap_or_default().to_string();
        let mut r = Room::new(&room, self.mode, &me, Vec::new(), cx.rng);
        self.restore_seen(&room, &mut r);
        self.rooms.insert(room.clone(), r);
        cx.out.push(RoomOut::Focus(room.to_string()));
        cx.io.event(NodeEvent::RoomCreated { room });
    }

    pub(crate) fn room_left(&mut self, cx: &mut Cx<'_>, room: String) {
        self.leave_locally(cx, &room);
        cx.io.event(NodeEvent::RoomLeft { room });
    }

    /// Every room of the resumed session has been pushed: a room we hold that was not pushed is
    /// one we were removed from while away (kicked, most likely). Leave it here too.
    pub(crate) fn rooms_synced(&mut self, cx: &mut Cx<'_>) {
        let Some(pushed) = self.sync.take() else {
            return;
        };
        let gone: Vec<String> = self
            .rooms
            .keys()
            .filter(|r| !pushed.contains(*r))
            .cloned()
            .collect();
        for room in gone {
            info!("no longer a member of {room} after the resume");
            self.room_left(cx, room);
        }
    }

    /// Forgets every room (logged out, or the session could not be resumed).
    pub(crate) fn forget_rooms(&mut self, cx: &mut Cx<'_>) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.leave_locally(cx, &room);
        }
    }

    /// Drops a room: unlinks every neighbour, forgets the state.
    fn leave_locally(&mut self, cx: &mut Cx<'_>, room: &str) {
        let Some(r) = self.rooms.remove(room) else {
            return;
        };
        for n in r.neighbors.iter().chain(r.pending.iter()) {
            let msg = Msg::RoomUnlink {
                room: room.to_string(),
            };
            cx.io.send(n, msg);
            cx.out.push(RoomOut::Release(n.to_string()));
        }
        cx.out.push(RoomOut::Unfocus(room.to_string()));
        self.left_seen.retain(|(name, _)| name != room);
        if self.left_seen.len() >= MAX_LEFT_SEEN {
            self.left_seen.pop_front();
        }
        self.left_seen
            .push_back((room.to_string(), r.cast.into_seen()));
    }

    /// A room joined again gets back what it had seen before it was left.
    fn restore_seen(&mut self, room: &str, r: &mut Room) {
        if let Some(i) = self.left_seen.iter().position(|(name, _)| name == room) {
            if let Some((_, seen)) = self.left_seen.remove(i) {
                r.cast.restore_seen(seen);
            }
        }
    }

    /// A room event pushed by the registry.
    pub(crate) fn room_event(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        room: String,
        event: RoomEvent,
    ) {
        let Some(r) = self.rooms.get_mut(&room) else {
            debug!("event for room {room} we are not in: {event:?}");
            return;
        };
        // The common event in a big room: somebody else came online, far from us in the ring.
        // A settled room stays settled; no refresh (it was most of the cost of forming a room).
        if let (RoomEvent::Joined { name, addr } | RoomEvent::Online { name, addr }, Some(me)) =
            (&event, cx.me)
        {
            if r.stays_settled_with(me, name) {
                r.online.insert(name.clone(), *addr, cx.rng);
                let mark = r.cast.mark();
                r.online.note(name, Some(mark));
                if let RoomEvent::Joined { name, .. } = event {
                    cx.io.event(NodeEvent::MemberJoined { room, name });
                }
                return;
            }
        }
        r.settled = None;
        let me = cx.me.map(str::to_string);
        match event {
            RoomEvent::Joined { name, addr } => {
                self.set_online(cx, &room, &name, Some(addr));
                self.mark_since(&room, &name);
                cx.io.event(NodeEvent::MemberJoined {
                    room: room.clone(),
                    name,
                });
            }
            RoomEvent::Online { name, addr } => {
                self.set_online(cx, &room, &name, Some(addr));
                self.mark_since(&room, &name);
            }
            RoomEvent::Left { name } => {
                self.set_online(cx, &room, &name, None);
                self.drop_neighbor(cx, &room, &name, true);
                cx.io.event(NodeEvent::MemberLeft {
                    room: room.clone(),
                    name,
                });
            }
            RoomEvent::Offline { name } => {
                self.set_online(cx, &room, &name, None);
                // Told, because "offline" is the registry's view: the peer link may well be
                // up. Dropping it silently would leave it counting us as a neighbour (and
                // ignoring our `RoomLink` once it is back online), a one-way edge for good.
                self.drop_neighbor(cx, &room, &name, true);
            }
            RoomEvent::Kicked { name, .. } => {
                if Some(name.as_str()) == me.as_deref() {
                    self.leave_locally(cx, &room);
                    cx.io.event(NodeEvent::MemberKicked { room, name });
                    return;
                }
                self.set_online(cx, &room, &name, None);
                self.drop_neighbor(cx, &room, &name, true);
                cx.io.event(NodeEvent::MemberKicked {
                    room: room.clone(),
                    name,
                });
            }
            RoomEvent::Promoted { name } => {
                cx.io.event(NodeEvent::MemberPromoted {
                    room: room.clone(),
                    name,
                });
            }
            RoomEvent::Renamed { old, new } => {
                // The node refiled the link (and a chat) under the new name first
                // (`Node::room_event`), so the member keeps its place over the same link.
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.rename_member(&old, &new);
                }
            }
        }
        self.refresh_room(cx, now, &room);
    }

    /// `name` joined or came online now: remembered in the view's bounded log of recent
    /// arrivals, for the catch-up if it links to us.
    fn mark_since(&mut self, room: &str, name: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            let mark = r.cast.mark();
            r.online.note(name, Some(mark));
        }
    }

    fn set_online(&mut self, cx: &mut Cx<'_>, room: &str, name: &str, addr: Option<SocketAddr>) {
        let me = cx.me;
        if Some(name) == me {
            return;
        }
        if let Some(r) = self.rooms.get_mut(room) {
            match addr {
                Some(a) => {
                    r.online.insert(name.to_string(), a, cx.rng);
                    r.retry.remove(name);
                }
                None => {
                    r.online.remove(name);
                    r.online.note(name, None);
                }
            }
        }
    }

    // ----- the overlay -----

    /// Links to the members the overlay wants and that are not linked yet.
    fn refresh_room(&mut self, cx: &mut Cx<'_>, now: Instant, room: &str) {
        let Some(me) = cx.me.map(str::to_string) else {
            return;
        };
        let degree = self.degree.max(1);
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.retry.retain(|_, until| *until > now);
        r.online.set_me(&me);
        if r.online.needs_refill() && r.refill_at.is_none_or(|at| now >= at + REFILL_AFTER) {
            // Members left and the view ran short: ask for the list again (the registry answers
            // a join of a room one is in with its online members, and tells nobody).
            r.refill_at = Some(now);
            cx.out.push(RoomOut::Refill(room.to_string()));
        }
        if let Some(succ) = r.settled_successor(&me, degree) {
            r.settled = Some(succ.to_string());
            return;
        }
        r.settled = None;
        // O(d log n) per event (see `overlay::targets`): rooms form in linear time.
        let held: BTreeSet<String> = r.retry.keys().cloned().collect();
        let linked: BTreeSet<String> = r.neighbors.union(&r.pending).cloned().collect();
        let want = overlay::targets(&me, &r.online, &held, &linked, degree, cx.rng);
        let to_add: Vec<String> = want.difference(&linked).cloned().collect();
        // Links we opened that the overlay no longer wants (a room that outgrew its full mesh,
        // say) are dropped, so each peer opens about `degree` links. Links others opened to us
        // are theirs to keep or drop, which keeps the two ends from fighting over one link.
        let prune: Vec<String> = r
            .initiated
            .iter()
            .filter(|n| r.neighbors.contains(*n) && !want.contains(*n))
            .cloned()
            .collect();
        for name in prune {
            self.drop_neighbor(cx, room, &name, true);
        }
        for name in to_add {
            let Some(addr) = self.rooms.get(room).and_then(|r| r.online.addr(&name)) else {
                continue;
            };
            if let Some(r) = self.rooms.get_mut(room) {
                r.pending.insert(name.clone());
                r.initiated.insert(name.clone());
            }
            if cx.io.is_ready(&name) {
                self.send_room_link(cx, room, &name);
            } else if !cx.io.is_dialing(&name) {
                cx.io.dial(now, &name, addr);
            }
        }
    }

    fn send_room_link(&mut self, cx: &mut Cx<'_>, room: &str, name: &str) {
        debug!("room {room}: asking {name} to link");
        cx.io.hold(name);
        let msg = Msg::RoomLink {
            room: room.to_string(),
        };
        cx.io.send(name, msg);
    }

    /// Ends the neighbour relation with `name` in `room` (telling it, if `tell`).
    fn drop_neighbor(&mut self, cx: &mut Cx<'_>, room: &str, name: &str, tell: bool) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if !r.forget_neighbor(name) {
            return;
        }
        debug!("room {room}: unlinking {name} (telling it: {tell})");
        if tell {
            let msg = Msg::RoomUnlink {
                room: room.to_string(),
            };
            cx.io.send(name, msg);
        }
        cx.out.push(RoomOut::Release(name.to_string()));
    }

    /// The link to `name` is ready: ask for the room links waiting for it.
    pub(crate) fn room_link_ready(&mut self, cx: &mut Cx<'_>, name: &str) {
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.pending.contains(name))
            .map(|(n, _)| n.clone())
            .collect();
        for room in rooms {
            self.send_room_link(cx, &room, name);
        }
    }

    /// The link to `name` is gone (or could not be opened): repair every room that used it.
    pub(crate) fn room_link_down(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        name: &str,
        failed: bool,
    ) {
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.uses(name))
            .map(|(n, _)| n.clone())
            .collect();
        for room in rooms {
            if let Some(r) = self.rooms.get_mut(&room) {
                r.forget_neighbor(name);
                // Until the registry says it is gone, do not hammer a member we cannot reach.
                r.retry.insert(name.to_string(), now + RETRY_AFTER);
                if failed {
                    debug!("could not link to {name} for room {room}");
                }
            }
            self.refresh_room(cx, now, &room);
        }
    }

    /// A room frame on the link from `from`.
    pub(crate) fn handle_room_frame(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        from: String,
        msg: Msg,
    ) {
        match msg {
            Msg::RoomLink { room } => self.handle_room_link(cx, now, from, room),
            Msg::RoomUnlink { room } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.retry.insert(from.clone(), now + RETRY_AFTER);
                }
                self.drop_neighbor(cx, &room, &from, false);
                self.refresh_room(cx, now, &room);
            }
            Msg::RoomMessage {
                room,
                origin,
                seq,
                hops,
                sent_ms,
                text,
                auth,
            } => self
                .handle_room_message(cx, now, from, room, origin, seq, hops, sent_ms, text, auth),
            Msg::RoomIhave { room, ids } => {
                let Some(me) = cx.me.map(str::to_string) else {
                    return;
                };
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.cast.on_ihave(now, &me, &from, ids);
                }
            }
            Msg::RoomGraft { room, ids } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    let mut actions = Vec::new();
                    r.cast.on_graft(now, &from, ids, &mut actions);
                    self.run_actions(cx, &room, actions);
                }
            }
            Msg::RoomPrune { room } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.cast.on_prune(&from);
                }
            }
            _ => {}
        }
    }

    fn handle_room_link(&mut self, cx: &mut Cx<'_>, now: Instant, from: String, room: String) {
        let max = overlay::max_links(self.degree.max(1));
        let Some(r) = self.rooms.get_mut(&room) else {
            let msg = Msg::RoomUnlink { room };
            cx.io.send(&from, msg);
            cx.out.push(RoomOut::Release(from.to_string()));
            return;
        };
        if r.neighbors.contains(&from) {
            return;
        }
        if r.banned.get(&from).is_some_and(|until| *until > now) {
            debug!("refusing a room link to {room} from {from}: it sent forged messages");
            let msg = Msg::RoomUnlink { room };
            cx.io.send(&from, msg);
            cx.out.push(RoomOut::Release(from.to_string()));
            return;
        }
        r.settled = None;
        // Tree frames only on links whose both ends speak them (docs/protocol.md §9).
        let tree = cx.io.version(&from) >= PEER_VERSION;
        if r.pending.remove(&from) {
            // Our request crossed theirs, or this is their confirmation.
            r.neighbors.insert(from.clone());
            r.cast.add_peer(&from, tree);
        } else if r.online.is_online(&from) && r.neighbors.len() < max {
            r.initiated.remove(&from);
            r.neighbors.insert(from.clone());
            r.cast.add_peer(&from, tree);
            let msg = Msg::RoomLink { room: room.clone() };
            cx.io.send(&from, msg);
        } else {
            // Not a member we know online (kicked, say), or we are full.
            debug!("refusing a room link to {room} from {from}");
            let msg = Msg::RoomUnlink { room };
            cx.io.send(&from, msg);
            cx.out.push(RoomOut::Release(from.to_string()));
            return;
        }
        if let Some(r) = self.rooms.get_mut(&room) {
            // A member the registry said joined or came online while we were in the room is
            // told only of messages since then: a newcomer is not shown what came before it.
            let since = r.online.since(&from);
            r.cast.catch_up(now, &from, since);
        }
        debug!("room {room}: linked with {from}");
        cx.io.hold(&from);
        let announce = self.rooms.get_mut(&room).and_then(|r| r.announce.take());
        if announce.is_some() {
            self.announce_joined(cx, room);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_room_message(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        from: String,
        room: String,
        origin: String,
        seq: u64,
        hops: u8,
        sent_ms: u64,
        text: String,
        auth: Option<RoomAuth>,
    ) {
        let Some(me) = cx.me.map(str::to_string) else {
            return;
        };
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        if !r.neighbors.contains(&from) {
            debug!("room message for {room} from non-neighbour {from}; dropped");
            return;
        }
        // Layer 4: with a ticket of our own we know the registry key, and a new message must
        // be signed by its origin. Checked before dedup records it, so a forged copy neither
        // shows nor hides the genuine one; copies already seen skip the (costly) check.
        if let Some((_, registry)) = cx.ticket {
            if r.cast.is_new(&me, &origin, seq) {
                if let Err(why) = self.verifier.check(
                    registry,
                    cx.wall_ms / 1000,
                    &room,
                    &origin,
                    seq,
                    sent_ms,
                    &text,
                    auth.as_ref(),
                ) {
                    warn!("room {room}: message claiming to be from {origin} (via {from}) refused: {why}");
                    r.cast.refused();
                    let refused = r.refusals.entry(from.clone()).or_insert(0);
                    *refused += 1;
                    if *refused >= REFUSALS_TO_UNLINK {
                        warn!("room {room}: unlinking {from}, which relayed {refused} refused messages");
                        r.refusals.remove(&from);
                        r.banned.insert(from.clone(), now + BANNED_FOR);
                        r.retry.insert(from.clone(), now + BANNED_FOR);
                        self.drop_neighbor(cx, &room, &from, true);
                        self.refresh_room(cx, now, &room);
                    }
                    return;
                }
            }
        }
        let mut actions = Vec::new();
        r.cast.receive_signed(
            now,
            &me,
            &from,
            origin,
            seq,
            hops,
            sent_ms,
            text,
            auth,
            &mut actions,
        );
        self.run_actions(cx, &room, actions);
    }

    /// Carries out what a room's [`Broadcast`] asks for: frames to neighbours (each encoded
    /// once), messages to show.
    fn run_actions(&mut self, cx: &mut Cx<'_>, room: &str, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, msg } => {
                    let bytes = Frame::event(msg).to_bytes();
                    for n in &to {
                        cx.io.send_bytes(n, &bytes);
                    }
                }
                Action::Deliver { origin, text } => {
                    // A muted room is kept as `#ROOM` (rooms and users are different
                    // namespaces).
                    if !cx.muted.contains(&format!("#{room}")) && !cx.muted.contains(&origin) {
                        cx.io.event(NodeEvent::RoomMessage {
                            room: room.to_string(),
                            from: origin,
                            text,
                        });
                    }
                }
            }
        }
    }

    /// `Joined room ROOM`, shown once the overlay has taken us in. The room shown last gets the
    /// focus (after a login that puts us back in several rooms, plain lines go to the last one
    /// announced), unless the user has a chat in focus meanwhile.
    fn announce_joined(&mut self, cx: &mut Cx<'_>, room: String) {
        cx.out.push(RoomOut::FocusUnlessChat(room.clone()));
        cx.io.event(NodeEvent::RoomJoined { room });
    }

    /// Shows overdue "Joined room" notices and lets retry holds lapse.
    pub(crate) fn room_timeouts(&mut self, cx: &mut Cx<'_>, now: Instant) {
        let mut due = Vec::new();
        let mut refresh = Vec::new();
        let mut casts = Vec::new();
        for (name, r) in &mut self.rooms {
            if r.cast.poll_timeout().is_some_and(|t| t <= now) {
                let mut actions = Vec::new();
                r.cast.on_timeout(now, &mut actions);
                casts.push((name.clone(), actions));
            }
            if r.announce.is_some_and(|t| t <= now) {
                r.announce = None;
                due.push(name.clone());
            }
            r.banned.retain(|_, until| *until > now);
            let before = r.retry.len();
            r.retry.retain(|_, until| *until > now);
            if r.retry.len() != before {
                refresh.push(name.clone());
            }
        }
        for (room, actions) in casts {
            self.run_actions(cx, &room, actions);
        }
        for room in due {
            info!("no neighbour confirmed in {room} yet");
            self.announce_joined(cx, room);
        }
        for room in refresh {
            self.refresh_room(cx, now, &room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The fast path must never skip work the full computation would do: whenever
    /// `is_settled` says so, `targets` wants no new link and no link we opened is pruned.
    /// Also checks that it does say so in the common case (full links with the successor), so
    /// the test cannot pass by the fast path never firing.
    #[test]
    fn settled_rooms_are_exactly_those_targets_leaves_alone() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        // A retry hold's instant plays no part here; any instant will do.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut settled = 0;
        for case in 0..20_000 {
            let n = rng.random_range(1..30usize);
            let degree = rng.random_range(1..5usize);
            let me = format!("m{:02}", rng.random_range(0..30usize));
            let mut room = Room::new("r", RoomMode::Flood, &me, Vec::new(), &mut rng);
            for i in 0..n {
                let name = format!("m{i:02}");
                if name != me && rng.random_bool(0.8) {
                    room.online.insert(name, addr, &mut rng);
                }
            }
            let pick = |rng: &mut StdRng| format!("m{:02}", rng.random_range(0..30usize));
            for _ in 0..rng.random_range(0..8) {
                let x = pick(&mut rng);
                if x == me {
                    continue;
                }
                if rng.random_bool(0.7) {
                    room.neighbors.insert(x.clone());
                } else if !room.neighbors.contains(&x) {
                    room.pending.insert(x.clone());
                }
                if rng.random_bool(0.5) {
                    room.initiated.insert(x);
                }
            }
            if rng.random_bool(0.2) {
                room.retry.insert(pick(&mut rng), t0);
            }
            if !room.is_settled(&me, degree) {
                continue;
            }
            settled += 1;
            let held: BTreeSet<String> = room.retry.keys().cloned().collect();
            let linked: BTreeSet<String> = room.neighbors.union(&room.pending).cloned().collect();
            let want = overlay::targets(&me, &room.online, &held, &linked, degree, &mut rng);
            assert!(
                want.is_subset(&linked),
                "case {case}: settled, yet targets adds {:?} (me {me}, degree {degree}, online {:?}, linked {linked:?}, held {held:?})",
                want.difference(&linked).collect::<Vec<_>>(),
                room.online.names().collect::<Vec<_>>()
            );
            let pruned: Vec<&String> = room
                .initiated
                .iter()
                .filter(|x| room.neighbors.contains(*x) && !want.contains(*x))
                .collect();
            assert!(
                pruned.is_empty(),
                "case {case}: settled, yet prunes {pruned:?}"
            );
        }
        assert!(settled > 200, "the fast path fired only {settled} times");
    }

    /// The event fast path (`Room::stays_settled_with`) is exact: in random settled rooms, a
    /// member it lets through without a refresh leaves the room settled with the same
    /// successor, as the full check confirms; and it does let most members through.
    #[test]
    fn a_member_coming_online_far_from_us_leaves_a_settled_room_settled() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut rng = StdRng::seed_from_u64(12);
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let (mut passed, mut tried) = (0, 0);
        for case in 0..20_000 {
            let degree = rng.random_range(1..5usize);
            let me = format!("m{:02}", rng.random_range(0..60usize));
            let mut room = Room::new("r", RoomMode::Flood, &me, Vec::new(), &mut rng);
            for i in 0..60 {
                let name = format!("m{i:02}");
                if name != me && rng.random_bool(0.5) {
                    room.online.insert(name, addr, &mut rng);
                }
            }
            let names: Vec<String> = room.online.names().map(str::to_string).collect();
            for _ in 0..rng.random_range(0..8) {
                let x = names[rng.random_range(0..names.len())].clone();
                if rng.random_bool(0.8) {
                    room.neighbors.insert(x.clone());
                } else if !room.neighbors.contains(&x) {
                    room.pending.insert(x.clone());
                }
                if rng.random_bool(0.5) {
                    room.initiated.insert(x);
                }
            }
            if rng.random_bool(0.2) {
                room.retry
                    .insert(names[rng.random_range(0..names.len())].clone(), t0);
            }
            let Some(succ) = room.settled_successor(&me, degree).map(str::to_string) else {
                continue;
            };
            room.settled = Some(succ.clone());
            for _ in 0..5 {
                let name = format!("m{:02}", rng.random_range(0..60usize));
                tried += 1;
                if !room.stays_settled_with(&me, &name) {
                    continue;
                }
                passed += 1;
                room.online.insert(name.clone(), addr, &mut rng);
                assert_eq!(
                    room.settled_successor(&me, degree),
                    Some(succ.as_str()),
                    "case {case}: {name} came online and the room is no longer settled the same way"
                );
            }
        }
        assert!(
            passed * 2 > tried,
            "the fast path let only {passed} of {tried} through"
        );
    }
}

#[cfg(test)]
#[path = "rooms_tests.rs"]
mod rooms_tests;
