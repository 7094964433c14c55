//! Membership of the joined rooms: the registry's answers and pushes (who is in a room and
//! online) applied to each room's member view, and leaving rooms.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, info};
use p2pchat_protocol::{Msg, PeerInfo, RoomEvent};

use super::{Cx, Room, RoomOut, Rooms, JOIN_NOTICE_WAIT, MAX_LEFT_SEEN};
use crate::io::NodeEvent;

impl Rooms {
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
    pub(super) fn leave_locally(&mut self, cx: &mut Cx<'_>, room: &str) {
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
    pub(super) fn restore_seen(&mut self, room: &str, r: &mut Room) {
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
                r.online.insert(name, *addr, cx.rng);
                let mark = r.cast.mark();
                r.online.note(name, Some(mark));
                if let RoomEvent::Joined { name, .. } = event {
                    cx.io.event(NodeEvent::MemberJoined { room, name });
                }
                return;
            }
        }
        r.settled = None;
        let me = cx.me;
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
                if Some(name.as_str()) == me {
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
    pub(super) fn mark_since(&mut self, room: &str, name: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            let mark = r.cast.mark();
            r.online.note(name, Some(mark));
        }
    }

    pub(super) fn set_online(
        &mut self,
        cx: &mut Cx<'_>,
        room: &str,
        name: &str,
        addr: Option<SocketAddr>,
    ) {
        let me = cx.me;
        if Some(name) == me {
            return;
        }
        if let Some(r) = self.rooms.get_mut(room) {
            match addr {
                Some(a) => {
                    r.online.insert(name, a, cx.rng);
                    r.retry.remove(name);
                }
                None => {
                    r.online.remove(name);
                    r.online.note(name, None);
                }
            }
        }
    }
}
