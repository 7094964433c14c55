//! Private one-to-one chats, directly between peers over a peer link, never through the
//! registry.
//!
//! ```text
//!  /chat NAME: Searching ──found──▶ Dialing ──link ready/send ChatRequest──▶ Requested
//!                                                         ChatAccept ──▶ Active
//!                                              ChatReject / ChatBusy ──▶ (gone)
//!  ChatRequest from NAME: Incoming ──/accept──▶ Active      /reject ──▶ (gone)
//!  Active ──/end or ChatEnd──▶ (gone, "ended")     link down ──▶ (gone, "lost")
//! ```
//! A chat is keyed by the peer's name, not by a link: the link under it may be replaced (when
//! both peers dial each other at once) without the chat noticing. A link that no chat uses is
//! closed: at once when the other side has said its last word (reject, busy, end), else after
//! `idle_timeout`.

use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, info, warn};
use p2pchat_protocol::{Msg, Presence};

use crate::io::{CloseReason, NodeEvent};
use crate::link::LinkEvent;
use crate::node::{Node, Target};
use crate::registry_link::Request;

/// A chat message with this text tells the partner we are now known by the rest of it
/// (docs/protocol.md, "Conventions in message text"). Older peers show it as a message.
pub(crate) const NICK: &str = "/nick ";

/// Where a private chat is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chat {
    /// We asked the registry where the user is.
    Searching,
    /// We are connecting to the user.
    Dialing,
    /// We sent a chat request; waiting for the answer.
    Requested,
    /// The user asked us; waiting for `/accept` or `/reject`.
    Incoming,
    /// Both sides agreed; messages flow.
    Active,
}

impl Node {
    /// `/chat NAME`
    pub(crate) fn cmd_chat(&mut self, now: Instant, name: String) {
        if !self.need_login() {
            return;
        }
        if self.registry.name() == Some(name.as_str()) {
            return self.error("you cannot chat with yourself");
        }
        match self.chats.get(&name) {
            Some(Chat::Active) => return self.error(format!("already in a chat with {name}")),
            Some(Chat::Incoming) => return self.cmd_accept(name),
            Some(_) => return self.error(format!("a chat request to {name} is already pending")),
            None => {}
        }
        if self.chats.len() >= self.config.max_chats {
            let max = self.config.max_chats;
            return self.error(format!("too many chats (at most {max}); /end one first"));
        }
        let deadline = now + self.config.chat_request_timeout;
        self.request_deadlines.insert(name.clone(), deadline);
        if self.links.is_ready(&name) {
            self.send_request(now, name);
            return;
        }
        self.chats.insert(name.clone(), Chat::Searching);
        let msg = Msg::Search { name: name.clone() };
        let req = Request::Search {
            name: name.clone(),
            for_chat: true,
        };
        if let Err(message) = self.registry.request(req, msg, &self.config, &mut self.out) {
            self.chats.remove(&name);
            self.error(message);
        }
    }

    /// Withdraws our chat requests and drops theirs that nobody answered in time.
    pub(crate) fn chat_request_timeouts(&mut self, now: Instant) {
        let due: Vec<String> = self
            .request_deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.request_deadlines.remove(&name);
            let outgoing = match self.chats.get(&name) {
                Some(Chat::Searching | Chat::Dialing | Chat::Requested) => true,
                Some(Chat::Incoming) => false,
                Some(Chat::Active) | None => continue,
            };
            if let Some(chat) = self.chats.remove(&name) {
                self.say_goodbye(&name, chat);
            }
            self.event(NodeEvent::ChatRequestExpired {
                with: name.clone(),
                outgoing,
            });
            self.release_link(now, &name, false);
        }
    }

    /// `/chats`
    pub(crate) fn cmd_chats(&mut self) {
        let with = |want: &[Chat]| -> Vec<String> {
            self.chats
                .iter()
                .filter(|(_, c)| want.contains(c))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let event = NodeEvent::Windows {
            chats: with(&[Chat::Active]),
            sent: with(&[Chat::Searching, Chat::Dialing, Chat::Requested]),
            received: with(&[Chat::Incoming]),
            rooms: self.rooms.rooms.keys().cloned().collect(),
            focus: self.focus.as_ref().map(Target::label),
        };
        self.event(event);
    }

    /// Which room or user `/focus`, `/mute` and `/unmute` mean: `#lab` is the room, a bare
    /// name is the room only when we are in it and have no chat with a user of that name.
    fn resolve_target(&mut self, target: &str) -> Option<Target> {
        if let Some(room) = target.strip_prefix('#') {
            return Some(Target::Room(room.to_string()));
        }
        let is_room = self.rooms.rooms.contains_key(target);
        let is_chat = self.chats.contains_key(target);
        if is_room && is_chat {
            self.error(format!(
                "{target} is both a room and a user: use #{target} for the room"
            ));
            return None;
        }
        if is_room {
            Some(Target::Room(target.to_string()))
        } else {
            Some(Target::User(target.to_string()))
        }
    }

    /// `/mute` (`on`) and `/unmute`. Rooms are kept as `#ROOM` in the muted set, users by name.
    pub(crate) fn cmd_mute(&mut self, target: String, on: bool) {
        let Some(target) = self.resolve_target(&target) else {
            return;
        };
        let key = match &target {
            Target::Room(r) => format!("#{r}"),
            Target::User(n) => {
                if self.registry.name() == Some(n.as_str()) {
                    return self.error("you cannot mute yourself");
                }
                let known = self.chats.contains_key(n) || self.muted.contains(n);
                if on && !known && self.registry.name().is_some() {
                    // Ask the registry whether there is such a user (and its exact name).
                    let msg = Msg::Search { name: n.clone() };
                    return self.request(Request::MuteSearch { name: n.clone() }, msg);
                }
                n.clone()
            }
        };
        if on && !self.muted.insert(key.clone()) {
            return self.error(format!("{key} is already muted"));
        }
        if !on && !self.muted.remove(&key) {
            return self.error(format!("{key} is not muted"));
        }
        let event = if on {
            NodeEvent::Muted { target: key }
        } else {
            NodeEvent::Unmuted { target: key }
        };
        self.event(event);
    }

    /// Mutes the user `name` (checked to exist).
    pub(crate) fn mute_user(&mut self, name: String) {
        if self.registry.name() == Some(name.as_str()) {
            return self.error("you cannot mute yourself");
        }
        if !self.muted.insert(name.clone()) {
            return self.error(format!("{name} is already muted"));
        }
        self.event(NodeEvent::Muted { target: name });
    }

    /// `/away [MESSAGE]`
    pub(crate) fn cmd_away(&mut self, message: Option<String>) {
        self.away = message.clone().map(|m| (m, Default::default()));
        self.event(NodeEvent::Away { message });
    }

    /// Sends `text` to every open chat and joined room (`/quit MESSAGE`).
    pub(crate) fn say_everywhere(&mut self, now: Instant, text: String) {
        let chats: Vec<String> = self
            .chats
            .iter()
            .filter(|(_, c)| **c == Chat::Active)
            .map(|(n, _)| n.clone())
            .collect();
        for name in chats {
            self.cmd_msg(name, text.clone());
        }
        let rooms: Vec<String> = self.rooms.rooms.keys().cloned().collect();
        for room in rooms {
            self.cmd_say(now, room, text.clone());
        }
    }

    /// Sends a chat request on the ready link to `name`.
    fn send_request(&mut self, now: Instant, name: String) {
        if self.links.send_to(&name, Msg::ChatRequest, &mut self.out) {
            self.links.set_idle(&name, None);
            self.chats.insert(name.clone(), Chat::Requested);
            self.event(NodeEvent::ChatRequestSent { to: name });
        } else {
            self.chats.remove(&name);
            self.error(format!("could not reach {name}"));
            self.release_link(now, &name, false);
        }
    }

    /// `/accept NAME`
    pub(crate) fn cmd_accept(&mut self, name: String) {
        if self.chats.get(&name) != Some(&Chat::Incoming) {
            return self.error(format!("no chat request from {name}"));
        }
        if self.links.send_to(&name, Msg::ChatAccept, &mut self.out) {
            self.start_chat(name);
        } else {
            self.chats.remove(&name);
            self.event(NodeEvent::ChatLost { with: name });
        }
    }

    /// `/reject NAME`
    pub(crate) fn cmd_reject(&mut self, now: Instant, name: String) {
        if self.chats.get(&name) != Some(&Chat::Incoming) {
            return self.error(format!("no chat request from {name}"));
        }
        self.chats.remove(&name);
        self.links.send_to(&name, Msg::ChatReject, &mut self.out);
        self.event(NodeEvent::ChatRequestDeclined { from: name.clone() });
        self.release_link(now, &name, false);
    }

    /// `/msg NAME TEXT`, and plain lines to the focused chat.
    pub(crate) fn cmd_msg(&mut self, name: String, text: String) {
        if self.chats.get(&name) != Some(&Chat::Active) {
            return self.error(format!("no chat with {name}"));
        }
        if text.starts_with(NICK) {
            return self.error("a message may not start with /nick (it announces a rename)");
        }
        let msg = Msg::ChatMessage { text: text.clone() };
        if self.links.send_to(&name, msg, &mut self.out) {
            self.event(NodeEvent::MessageSent { to: name, text });
        } else {
            self.error(format!("no chat with {name}"));
        }
    }

    /// `/end NAME`
    pub(crate) fn cmd_end(&mut self, now: Instant, name: String) {
        let Some(chat) = self.chats.remove(&name) else {
            return self.error(format!("no chat with {name}"));
        };
        self.say_goodbye(&name, chat);
        self.event(NodeEvent::ChatEnded { with: name.clone() });
        self.unfocus(&name);
        self.release_link(now, &name, false);
    }

    /// Tells the peer a chat in state `chat` is over.
    fn say_goodbye(&mut self, name: &str, chat: Chat) {
        let last = match chat {
            Chat::Active | Chat::Requested => Msg::ChatEnd,
            Chat::Incoming => Msg::ChatReject,
            Chat::Searching | Chat::Dialing => return,
        };
        self.links.send_to(name, last, &mut self.out);
    }

    /// Ends every chat (for `/quit`).
    pub(crate) fn end_all_chats(&mut self, now: Instant) {
        for (name, chat) in std::mem::take(&mut self.chats) {
            self.say_goodbye(&name, chat);
            if chat == Chat::Active {
                self.event(NodeEvent::ChatEnded { with: name.clone() });
            }
            self.release_link(now, &name, false);
        }
        self.focus = None;
        self.recent.clear();
    }

    /// `/focus NAME`
    pub(crate) fn cmd_focus(&mut self, target: String) {
        let Some(target) = self.resolve_target(&target) else {
            return;
        };
        match &target {
            Target::Room(r) if !self.rooms.rooms.contains_key(r) => {
                return self.error(format!("not in room {r}"));
            }
            Target::User(n) if self.chats.get(n) != Some(&Chat::Active) => {
                return self.error(format!("no chat with {n}"));
            }
            _ => {}
        }
        let label = target.label();
        self.set_focus(target);
        self.event(NodeEvent::Focus { target: label });
    }

    fn start_chat(&mut self, name: String) {
        info!("chat with {name} started");
        self.chats.insert(name.clone(), Chat::Active);
        self.request_deadlines.remove(&name);
        self.links.set_idle(&name, None);
        self.set_focus(Target::User(name.clone()));
        self.event(NodeEvent::ChatStarted { with: name });
    }

    fn unfocus(&mut self, name: &str) {
        self.drop_target(&Target::User(name.to_string()));
    }

    /// The link to `name` may have lost its last use: close it now (the peer said its last
    /// word) or after the idle timeout.
    pub(crate) fn release_link(&mut self, now: Instant, name: &str, at_once: bool) {
        if self.chats.contains_key(name) || self.rooms.uses(name) {
            return;
        }
        if at_once {
            self.links
                .close_peer(name, CloseReason::Idle, &mut self.out);
        } else {
            let deadline = now + self.config.idle_timeout;
            self.links.set_idle(name, Some(deadline));
        }
    }

    /// A registry reply the chats wait for.
    pub(crate) fn handle_chat_search(
        &mut self,
        now: Instant,
        query: String,
        result: Result<(String, Presence), String>,
    ) {
        if self.chats.get(&query) != Some(&Chat::Searching) {
            return;
        }
        self.chats.remove(&query);
        let (name, presence) = match result {
            Ok(found) => found,
            Err(message) => return self.error(message),
        };
        let addr = match presence {
            Presence::Online(addr) => addr,
            Presence::Offline => return self.error(format!("{name} is offline")),
            Presence::NotFound => return self.error(format!("{name} not found")),
        };
        if self.registry.name() == Some(name.as_str()) {
            return self.error("you cannot chat with yourself");
        }
        if self.chats.contains_key(&name) {
            // The canonical name differs from what was typed and a chat with it exists.
            return self.error(format!("a chat with {name} already exists"));
        }
        if self.links.is_ready(&name) {
            return self.send_request(now, name);
        }
        self.chats.insert(name.clone(), Chat::Dialing);
        if !self.links.is_dialing(&name) {
            let addr = if addr.ip().is_unspecified() {
                SocketAddr::new(self.config.registry.ip(), addr.port())
            } else {
                addr
            };
            let link = self.next_link();
            self.links
                .dial(now, link, addr, &name, &self.config, &mut self.out);
        }
    }

    /// Acts on what happened to peer links.
    pub(crate) fn handle_link_events(
        &mut self,
        now: Instant,
        events: impl IntoIterator<Item = LinkEvent>,
    ) {
        for event in events {
            match event {
                LinkEvent::Ready { name } => {
                    match self.chats.get(&name) {
                        Some(Chat::Dialing) => self.send_request(now, name.clone()),
                        Some(_) => {}
                        None => self.release_link(now, &name, false),
                    }
                    self.room_link_ready(now, &name);
                }
                LinkEvent::Frame {
                    name,
                    msg:
                        msg @ (Msg::RoomLink { .. }
                        | Msg::RoomUnlink { .. }
                        | Msg::RoomMessage { .. }
                        | Msg::RoomIhave { .. }
                        | Msg::RoomGraft { .. }
                        | Msg::RoomPrune { .. }),
                } => self.handle_room_frame(now, name, msg),
                LinkEvent::Frame { name, msg } => self.handle_peer_msg(now, name, msg),
                LinkEvent::Down { name } => {
                    self.room_link_down(now, &name, false);
                    self.link_down(name);
                }
                LinkEvent::Redial { name, addr } => {
                    let link = self.next_link();
                    self.links
                        .dial(now, link, addr, &name, &self.config, &mut self.out);
                }
                LinkEvent::DialFailed { name, message } => {
                    self.room_link_down(now, &name, true);
                    if self.chats.get(&name) == Some(&Chat::Dialing) {
                        self.chats.remove(&name);
                        let message =
                            message.unwrap_or_else(|| format!("could not connect to {name}"));
                        self.error(message);
                    }
                }
            }
        }
    }

    fn link_down(&mut self, name: String) {
        match self.chats.get(&name) {
            Some(Chat::Active) => {
                self.chats.remove(&name);
                self.unfocus(&name);
                self.event(NodeEvent::ChatLost { with: name });
            }
            Some(Chat::Requested) => {
                self.chats.remove(&name);
                self.error(format!("chat request to {name} failed: connection lost"));
            }
            Some(Chat::Incoming) => {
                info!("{name} went away before we answered their chat request");
                self.chats.remove(&name);
            }
            Some(Chat::Searching | Chat::Dialing) | None => {}
        }
    }

    /// We are now known as `new` (after `/rename`): tell every chat partner, so that their
    /// chat with us goes on under the new name.
    pub(crate) fn tell_partners_renamed(&mut self, new: &str) {
        let text = format!("{NICK}{new}");
        for (name, chat) in &self.chats {
            if *chat == Chat::Active {
                let msg = Msg::ChatMessage { text: text.clone() };
                self.links.send_to(name, msg, &mut self.out);
            }
        }
    }

    /// The chat partner `old` says it is now `new`: the chat, its link, the focus and a mute
    /// follow the new name. Ignored (and logged) when `new` is not a valid name or is already
    /// taken by another chat or link of ours. (Peer names are what the peer claims in its
    /// hello; a rename claims no more than that did.)
    fn partner_renamed(&mut self, old: &str, new: &str) {
        let new = new.trim();
        if old == new {
            // The registry's `renamed` event got here first and refiled everything.
            return;
        }
        let taken = self.chats.contains_key(new) || self.registry.name() == Some(new);
        if !p2pchat_protocol::names::is_valid_name(new) || taken || !self.links.rename(old, new) {
            warn!("ignoring {old}'s rename to {new:?}");
            return;
        }
        self.refile_peer(old, new);
    }

    /// The registry says `old` is now `new` (a `renamed` room event): the link to that peer,
    /// a chat with it, its focus and a mute follow the new name, so the room overlay and the
    /// chat go on over the link already there. (Without this the link stayed filed under the
    /// old name and the overlay could not re-link: the peer's dial to the new name was closed
    /// as a duplicate of that very link.)
    pub(crate) fn peer_renamed(&mut self, old: &str, new: &str) {
        if old == new || self.registry.name() == Some(new) {
            return;
        }
        if !self.links.is_ready(new) {
            self.links.rename(old, new);
        }
        self.refile_peer(old, new);
    }

    /// Files what we keep under a peer's name (chat, mute, focus) under its new name, and
    /// says so.
    fn refile_peer(&mut self, old: &str, new: &str) {
        if !self.chats.contains_key(new) {
            if let Some(chat) = self.chats.remove(old) {
                self.chats.insert(new.to_string(), chat);
            }
            if let Some(at) = self.request_deadlines.remove(old) {
                self.request_deadlines.insert(new.to_string(), at);
            }
        }
        if self.muted.remove(old) {
            self.muted.insert(new.to_string());
        }
        let (from, to) = (Target::User(old.to_string()), Target::User(new.to_string()));
        for t in self.recent.iter_mut().chain(self.focus.as_mut()) {
            if *t == from {
                *t = to.clone();
            }
        }
        self.announce_rename(old, new);
    }

    /// `OLD is now known as NEW`, once per rename even when several rooms and a chat report
    /// it.
    pub(crate) fn announce_rename(&mut self, old: &str, new: &str) {
        let key = (old.to_string(), new.to_string());
        if self.renames_shown.contains(&key) {
            return;
        }
        if self.renames_shown.len() >= 64 {
            self.renames_shown.pop_first();
        }
        self.renames_shown.insert(key);
        self.event(NodeEvent::UserRenamed {
            old: old.to_string(),
            new: new.to_string(),
        });
    }

    /// While `/away`, the first private message from each user is answered with the away
    /// message, as an action line (`* alice is away: ...`).
    fn answer_if_away(&mut self, name: &str) {
        let Some((message, told)) = &mut self.away else {
            return;
        };
        if !told.insert(name.to_string()) {
            return;
        }
        let text = format!("/me is away: {message}");
        self.links
            .send_to(name, Msg::ChatMessage { text }, &mut self.out);
    }

    /// A frame from `name` on its ready link.
    fn handle_peer_msg(&mut self, now: Instant, name: String, msg: Msg) {
        let chat = self.chats.get(&name).copied();
        match (msg, chat) {
            (Msg::ChatRequest, Some(Chat::Requested | Chat::Searching | Chat::Dialing)) => {
                // Both asked at once: that is an agreement.
                self.links.send_to(&name, Msg::ChatAccept, &mut self.out);
                self.start_chat(name);
            }
            (Msg::ChatRequest, Some(Chat::Active | Chat::Incoming)) => {
                debug!("repeated chat request from {name}");
            }
            (Msg::ChatRequest, None) => {
                if self.chats.len() >= self.config.max_chats {
                    info!("busy: refusing a chat request from {name}");
                    self.links.send_to(&name, Msg::ChatBusy, &mut self.out);
                    self.release_link(now, &name, false);
                    return;
                }
                self.chats.insert(name.clone(), Chat::Incoming);
                let deadline = now + self.config.chat_request_timeout;
                self.request_deadlines.insert(name.clone(), deadline);
                self.links.set_idle(&name, None);
                self.event(NodeEvent::ChatRequest { from: name });
            }
            (Msg::ChatAccept, Some(Chat::Requested)) => self.start_chat(name),
            (Msg::ChatReject, Some(Chat::Requested)) => {
                self.chats.remove(&name);
                self.event(NodeEvent::ChatRejected { by: name.clone() });
                self.release_link(now, &name, true);
            }
            (Msg::ChatBusy, Some(Chat::Requested)) => {
                self.chats.remove(&name);
                self.event(NodeEvent::ChatBusy { by: name.clone() });
                self.release_link(now, &name, true);
            }
            (Msg::ChatMessage { text }, Some(Chat::Active)) if text.starts_with(NICK) => {
                self.partner_renamed(&name, &text[NICK.len()..]);
            }
            (Msg::ChatMessage { text }, Some(Chat::Active)) => {
                self.answer_if_away(&name);
                if !self.muted.contains(&name) {
                    self.event(NodeEvent::Message { from: name, text });
                }
            }
            (Msg::ChatEnd | Msg::ChatReject, Some(Chat::Incoming)) => {
                // They withdrew their request (or it expired on their side) before we answered.
                self.chats.remove(&name);
                self.event(NodeEvent::ChatRequestExpired {
                    with: name.clone(),
                    outgoing: false,
                });
                self.release_link(now, &name, true);
            }
            (Msg::ChatEnd | Msg::ChatReject, Some(_)) => {
                self.chats.remove(&name);
                self.unfocus(&name);
                self.event(NodeEvent::ChatEnded { with: name.clone() });
                self.release_link(now, &name, true);
            }
            (
                Msg::ChatAccept
                | Msg::ChatReject
                | Msg::ChatBusy
                | Msg::ChatMessage { .. }
                | Msg::ChatEnd,
                _,
            ) => debug!("chat frame from {name} outside a matching chat; ignored"),
            (Msg::Error { code, message }, _) => warn!("{name} reported error {code}: {message}"),
            (other, _) => {
                let got = other.kind_name();
                warn!("unexpected {got} frame from {name}; closing the link");
                let reason = CloseReason::Unexpected {
                    expected: "a peer message",
                    got,
                };
                self.links.close_peer(&name, reason, &mut self.out);
                self.link_down(name);
            }
        }
    }
}
