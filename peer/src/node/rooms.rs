//! The node's rooms side: the context the rooms' state machine (`room/`) runs in, and the
//! node's handling of what it leaves.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use p2pchat_protocol::{Msg, RoomEvent};

use super::{Node, Target, MAX_HELD_SAYS};
use crate::io::{Config, LinkId, NodeEvent, Output};
use crate::link::Links;
use crate::registry_link::Request;
use crate::room::{Cx, RoomIo, RoomOut, RoomStats, Rooms};

/// The node's side of [`RoomIo`]: the rooms reach the peer links and the user through it.
struct NodeIo<'a> {
    links: &'a mut Links,
    out: &'a mut VecDeque<Output>,
    next_dial: &'a mut u64,
    config: &'a Config,
}

impl RoomIo for NodeIo<'_> {
    fn is_ready(&self, name: &str) -> bool {
        self.links.is_ready(name)
    }

    fn is_dialing(&self, name: &str) -> bool {
        self.links.is_dialing(name)
    }

    fn version(&self, name: &str) -> u16 {
        self.links.version(name)
    }

    fn dial(&mut self, now: Instant, name: &str, addr: SocketAddr) {
        *self.next_dial += 1;
        let link = LinkId::Dialed(*self.next_dial);
        self.links
            .dial(now, link, addr, name, self.config, self.out);
    }

    fn send(&mut self, name: &str, msg: Msg) -> bool {
        self.links.send_to(name, msg, self.out)
    }

    fn send_bytes(&mut self, name: &str, bytes: &Bytes) -> bool {
        self.links.send_bytes_to(name, bytes, self.out)
    }

    fn hold(&mut self, name: &str) {
        self.links.set_idle(name, None);
    }

    fn event(&mut self, event: NodeEvent) {
        self.out.push_back(Output::Event(event));
    }
}

/// Rooms: the node drives the rooms' state machine (`room/`) and carries out what it leaves.
impl Node {
    /// Runs `f` on the rooms with a context over this node's links, then applies the
    /// [`RoomOut`]s it left, in order.
    pub(super) fn with_rooms<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Rooms, &mut Cx<'_>) -> R,
    ) -> R {
        let wall_ms = self.wall_ms(now);
        let mut io = NodeIo {
            links: &mut self.links,
            out: &mut self.out,
            next_dial: &mut self.next_dial,
            config: &self.config,
        };
        let mut cx = Cx {
            me: self.registry.name(),
            io: &mut io,
            rng: &mut self.rng,
            muted: &self.muted,
            wall_ms,
            now,
            signer: self.config.identity.as_ref(),
            ticket: self.registry.ticket(),
            out: Vec::new(),
        };
        let result = f(&mut self.rooms, &mut cx);
        let outs = std::mem::take(&mut cx.out);
        for out in outs {
            match out {
                RoomOut::Release(name) => self.release_link(now, &name, false),
                RoomOut::Focus(room) => self.set_focus_room(&room),
                RoomOut::FocusUnlessChat(room) => {
                    if !matches!(self.focus, Some(Target::User(_))) {
                        self.set_focus_room(&room);
                    }
                }
                RoomOut::Unfocus(room) => self.unfocus_room(&room),
                RoomOut::Refill(room) => {
                    // Not while leaving it: the join would be applied after the leave.
                    if !self.registry.leaving(&room) {
                        self.request(Request::RefillRoom, Msg::JoinRoom { room });
                    }
                }
            }
        }
        result
    }

    /// `/say ROOM TEXT`, and plain lines while a room has the focus.
    pub(crate) fn cmd_say(&mut self, now: Instant, room: String, text: String) {
        if self.registry.ticket_outdated() {
            if self.held_says.len() >= MAX_HELD_SAYS {
                return self.error("too many room messages waiting for the new name's ticket");
            }
            return self.held_says.push_back((room, text));
        }
        self.with_rooms(now, |r, cx| r.cmd_say(cx, now, room, text));
    }

    /// A room event pushed by the registry.
    pub(super) fn room_event(&mut self, now: Instant, room: String, event: RoomEvent) {
        if let RoomEvent::Renamed { old, new } = &event {
            if self.rooms.rooms.contains_key(&room) && self.registry.name() != Some(new.as_str()) {
                // Refiles the link (and a chat) under the new name first, so the member keeps
                // its place in the overlay over the same link.
                self.peer_renamed(old, new);
            }
        }
        self.with_rooms(now, |r, cx| r.room_event(cx, now, room, event));
    }

    /// Forgets every room (logged out, or the session could not be resumed).
    pub(crate) fn forget_rooms(&mut self, now: Instant) {
        self.with_rooms(now, |r, cx| r.forget_rooms(cx));
    }

    /// The link to `name` is ready: the rooms ask for the room links waiting for it.
    pub(crate) fn room_link_ready(&mut self, now: Instant, name: &str) {
        self.with_rooms(now, |r, cx| r.room_link_ready(cx, name));
    }

    /// The link to `name` is gone (or could not be opened): the rooms repair.
    pub(crate) fn room_link_down(&mut self, now: Instant, name: &str, failed: bool) {
        self.with_rooms(now, |r, cx| r.room_link_down(cx, now, name, failed));
    }

    /// A room frame on the link from `from`.
    pub(crate) fn handle_room_frame(&mut self, now: Instant, from: String, msg: Msg) {
        self.with_rooms(now, |r, cx| r.handle_room_frame(cx, now, from, msg));
    }

    /// Flooding counters of a joined room.
    pub fn room_stats(&self, room: &str) -> Option<RoomStats> {
        self.rooms.stats(room)
    }

    /// The rooms' trace of overlay and message events, oldest first (empty unless
    /// `Config::room_trace` asked for one).
    pub fn room_trace(&self) -> Vec<(Instant, String)> {
        self.rooms.trace().cloned().collect()
    }

    /// Confirmed neighbours in a joined room, sorted.
    pub fn room_neighbors(&self, room: &str) -> Vec<String> {
        self.rooms.neighbors(room)
    }

    /// Rooms we are in, sorted.
    pub fn joined_rooms(&self) -> Vec<String> {
        self.rooms.rooms.keys().cloned().collect()
    }
}
