//! The message path of the joined rooms: sending, receiving (signature check, dedup,
//! forwarding through [`super::tree::Broadcast`]), and the rooms' timers.

use std::time::Instant;

use log::{debug, info, warn};
use p2pchat_protocol::{Frame, Msg, RoomAuth};

use super::trace;
use super::tree::Action;
use super::{Cx, RoomOut, Rooms, BANNED_FOR, REFUSALS_TO_UNLINK, RETRY_AFTER};
use crate::io::NodeEvent;

impl Rooms {
    /// `/say ROOM TEXT`, and plain lines while a room has the focus.
    pub(crate) fn cmd_say(&mut self, cx: &mut Cx<'_>, now: Instant, room: String, text: String) {
        let Some(me) = cx.me else {
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
                Some(signer.sign(ticket, &room, me, seq, sent_ms, &text))
            }
            _ => None,
        };
        let mut actions = Vec::new();
        r.cast
            .originate_signed(now, me, seq, sent_ms, text.clone(), auth, &mut actions);
        self.trace.add(now, || {
            format!("{room}: say {me}/{seq} sent_ms {sent_ms} {text:?}")
        });
        self.run_actions(cx, &room, actions);
        cx.io.event(NodeEvent::RoomMessageSent { room, text });
    }

    /// A room frame on the link from `from`.
    pub(crate) fn handle_room_frame(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        from: String,
        msg: Msg,
    ) {
        if !self.trace.is_on() {
            return self.room_frame(cx, now, from, msg);
        }
        let room = trace::room_of(&msg).to_string();
        let push = |rooms: &Rooms| {
            rooms.rooms.get(&room).map(|r| {
                (
                    r.neighbors.contains(&from),
                    r.pending.contains(&from),
                    r.cast.push_of(&from),
                )
            })
        };
        let before = push(self);
        self.trace.add(now, || {
            format!(
                "{room}: got {} from {from} ({before:?})",
                trace::describe(&msg)
            )
        });
        self.room_frame(cx, now, from.clone(), msg);
        // What the frame changed about the link: neighbour, pending, how we push to it.
        let after = push(self);
        if after != before {
            self.trace
                .add(now, || format!("{room}: {from} now {after:?}"));
        }
    }

    /// [`Rooms::handle_room_frame`] without the trace.
    fn room_frame(&mut self, cx: &mut Cx<'_>, now: Instant, from: String, msg: Msg) {
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
                let Some(me) = cx.me else {
                    return;
                };
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.cast.on_ihave(now, me, &from, ids);
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_room_message(
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
        let Some(me) = cx.me else {
            return;
        };
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        if !r.neighbors.contains(&from) {
            debug!("room message for {room} from non-neighbour {from}; dropped");
            self.trace.add(now, || {
                format!("{room}: DROPPED {origin}/{seq} from non-neighbour {from}")
            });
            return;
        }
        // Layer 4: with a ticket of our own we know the registry key, and a new message must
        // be signed by its origin. Checked before dedup records it, so a forged copy neither
        // shows nor hides the genuine one; copies already seen skip the (costly) check.
        if let Some((_, registry)) = cx.ticket {
            if r.cast.is_new(me, &origin, seq) {
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
        let id = self.trace.is_on().then(|| format!("{origin}/{seq}"));
        r.cast.receive_signed(
            now,
            me,
            &from,
            origin,
            seq,
            hops,
            sent_ms,
            text,
            auth,
            &mut actions,
        );
        if let Some(id) = id {
            // A message seen first is delivered (shown or, if muted, not: that is decided
            // when the actions run).
            let first = actions.iter().any(|a| matches!(a, Action::Deliver { .. }));
            let what = if first { "first" } else { "duplicate" };
            self.trace.add(now, || format!("{room}: {id} {what}"));
        }
        self.run_actions(cx, &room, actions);
    }

    /// Carries out what a room's [`Broadcast`] asks for: frames to neighbours (each encoded
    /// once), messages to show.
    pub(super) fn run_actions(&mut self, cx: &mut Cx<'_>, room: &str, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, msg } => {
                    let what = self.trace.is_on().then(|| trace::describe(&msg));
                    let bytes = Frame::event(msg).to_bytes();
                    let mut lost = Vec::new();
                    for n in &to {
                        if !cx.io.send_bytes(n, &bytes) {
                            lost.push(n.as_str());
                        }
                    }
                    if let Some(what) = what {
                        self.trace.add(cx.now, || {
                            format!("{room}: sent {what} to {to:?}, no link to {lost:?}")
                        });
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
    pub(super) fn announce_joined(&mut self, cx: &mut Cx<'_>, room: String) {
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
