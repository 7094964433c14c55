//! The room overlay on the peer links: choosing neighbours ([`super::overlay::targets`]),
//! asking and answering room links, and repairing rooms when a link goes.

use std::collections::BTreeSet;
use std::time::Instant;

use log::debug;
use p2pchat_protocol::{Msg, PEER_VERSION};

use super::{overlay, Cx, RoomOut, Rooms, REFILL_AFTER, RETRY_AFTER};

impl Rooms {
    /// Links to the members the overlay wants and that are not linked yet.
    pub(super) fn refresh_room(&mut self, cx: &mut Cx<'_>, now: Instant, room: &str) {
        let Some(me) = cx.me else {
            return;
        };
        let degree = self.degree.max(1);
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.retry.retain(|_, until| *until > now);
        r.online.set_me(me);
        if r.online.needs_refill() && r.refill_at.is_none_or(|at| now >= at + REFILL_AFTER) {
            // Members left and the view ran short: ask for the list again (the registry answers
            // a join of a room one is in with its online members, and tells nobody).
            r.refill_at = Some(now);
            cx.out.push(RoomOut::Refill(room.to_string()));
        }
        if let Some(succ) = r.settled_successor(me, degree) {
            r.settled = Some(succ.to_string());
            return;
        }
        r.settled = None;
        // O(d log n) per event (see `overlay::targets`): rooms form in linear time.
        let held: BTreeSet<String> = r.retry.keys().cloned().collect();
        let linked: BTreeSet<String> = r.neighbors.union(&r.pending).cloned().collect();
        let want = overlay::targets(me, &r.online, &held, &linked, degree, cx.rng);
        let to_add: Vec<String> = want.difference(&linked).cloned().collect();
        // Links we opened that the overlay no longer wants (a room that outgrew its full mesh,
        // say) are dropped, so each peer opens about `degree` links. Links others opened to us
        // are theirs to keep or drop, which keeps the two ends from fighting over one link.
        let (on_tree, mut prune): (Vec<String>, Vec<String>) = r
            .initiated
            .iter()
            .filter(|n| r.neighbors.contains(*n) && !want.contains(*n))
            .cloned()
            .partition(|n| r.cast.is_on_tree(n));
        // Links on the broadcast tree are kept unless we hold more than any peer lets others
        // add: dropping one cuts the tree, and the members cut off graft back in, each on its
        // own, which makes cycles that cost duplicates until the next shaping round. Without
        // this, the first refresh after the 5 s holds of formation lapse re-balanced every view
        // and cut a few hundred tree links at once (docs/performance.md). Once a round prunes
        // such a link to lazy, the next refresh drops it.
        let left = r.neighbors.len() - prune.len();
        let over = left.saturating_sub(overlay::max_links(degree));
        prune.extend(on_tree.into_iter().take(over));
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
                self.trace.add(now, || format!("{room}: dialing {name}"));
                cx.io.dial(now, &name, addr);
            }
        }
    }

    pub(super) fn send_room_link(&mut self, cx: &mut Cx<'_>, room: &str, name: &str) {
        debug!("room {room}: asking {name} to link");
        self.trace
            .add(cx.now, || format!("{room}: asking {name} to link"));
        cx.io.hold(name);
        let msg = Msg::RoomLink {
            room: room.to_string(),
        };
        cx.io.send(name, msg);
    }

    /// Ends the neighbour relation with `name` in `room` (telling it, if `tell`).
    pub(super) fn drop_neighbor(&mut self, cx: &mut Cx<'_>, room: &str, name: &str, tell: bool) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if !r.forget_neighbor(name) {
            return;
        }
        debug!("room {room}: unlinking {name} (telling it: {tell})");
        self.trace.add(cx.now, || {
            format!("{room}: unlinking {name} (telling it: {tell})")
        });
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
        self.trace
            .add(cx.now, || format!("peer link to {name} ready"));
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
        self.trace.add(now, || {
            format!("peer link to {name} down (dial failed: {failed})")
        });
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

    pub(super) fn handle_room_link(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        from: String,
        room: String,
    ) {
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
            self.trace
                .add(now, || format!("{room}: refusing a room link from {from}"));
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
        self.trace
            .add(now, || format!("{room}: linked with {from}"));
        cx.io.hold(&from);
        let announce = self.rooms.get_mut(&room).and_then(|r| r.announce.take());
        if announce.is_some() {
            self.announce_joined(cx, room);
        }
    }
}
