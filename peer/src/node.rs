//! [`Node`]: one peer's state machine. Owns the registry session, the peer links and the chats;
//! routes inputs to them and collects their outputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use log::{debug, info};
use p2pchat_protocol::Msg;
use rand::rngs::StdRng;

use crate::chat::Chat;

mod rooms;

/// Room messages held while a rename's new ticket is on its way (one registry round trip).
const MAX_HELD_SAYS: usize = 64;
use crate::command::{Command, FocusCommand, Password};
use crate::io::{CloseReason, Config, Input, LinkId, NodeEvent, Output};
use crate::link::Links;
use crate::registry_link::{Outcome, RegistryLink, Request};
use crate::room::Rooms;

/// Page size for `/users`.
const PAGE: u16 = 1000;

/// One p2pchat peer: the registry session, the peer links and the private chats, without I/O.
///
/// The methods, grouped as in quinn's `Connection`:
///
/// - **A. Getters** (`&self`): [`Node::name`], [`Node::chats`], [`Node::focus`],
///   [`Node::is_registry_ready`], [`Node::link_count`].
/// - **B/C. Inputs and commands**: [`Node::handle_input`], with network events and user
///   [`Command`]s alike as [`Input`] values.
/// - **D. Outputs**: [`Node::poll_output`] (connects, bytes, datagrams, closes, UI events) and
///   [`Node::poll_timeout`] (when to feed [`Input::Timeout`] at the latest).
///
/// Time comes in as `now` on every input; wall-clock time (for the heartbeat timestamp) is
/// derived from the one reading given to [`Node::new`]. Randomness (reconnect jitter) comes from
/// the seeded `StdRng` given to `new`, so a simulator replays a node exactly.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: Config,
    pub(crate) rng: StdRng,
    epoch: Instant,
    wall_epoch_ms: u64,
    pub(crate) registry: RegistryLink,
    pub(crate) links: Links,
    pub(crate) chats: BTreeMap<String, Chat>,
    pub(crate) focus: Option<Target>,
    /// Open chats and joined rooms, least recently focused first: where the focus falls back
    /// to when the focused one ends.
    pub(crate) recent: Vec<Target>,
    /// When each chat request (ours or theirs) expires if still unanswered. Entries for chats
    /// that moved on are dropped when their time comes.
    pub(crate) request_deadlines: BTreeMap<String, Instant>,
    /// Since when user requests have waited on the registry without any reply, and the
    /// registry's reply count then (progress restarts the wait).
    registry_wait: Option<(Instant, u64)>,
    /// Our name as of the last input, to notice a rename and tell chat partners.
    known_name: Option<String>,
    /// Renames already announced (`alice is now known as alicia`), so that each shows once.
    pub(crate) renames_shown: BTreeSet<(String, String)>,
    /// The focus fell back during this input: say where plain lines go now, after the events
    /// that ended the old target.
    focus_moved: bool,
    /// `/away MESSAGE`: the message, and who was already told since.
    pub(crate) away: Option<(String, BTreeSet<String>)>,
    pub(crate) rooms: Rooms,
    pub(crate) muted: BTreeSet<String>,
    next_dial: u64,
    /// The earliest deadline as of the end of the last input ([`Node::poll_timeout`]): the
    /// timers run only once it has come, not on every input (in a 10,000-member room a peer
    /// takes many frames per deadline, and walking every timer on each cost a fifth of the
    /// time).
    timers_at: Option<Instant>,
    pub(crate) out: VecDeque<Output>,
    /// Registry commands typed while another registry request is in flight, run in order.
    deferred: VecDeque<Command>,
    /// Room messages typed between a rename and the ticket for the new name (signed with the
    /// old one, every member would refuse them), sent once it is here; at most
    /// `MAX_HELD_SAYS`.
    held_says: VecDeque<(String, String)>,
    quit: Option<Quitting>,
    exited: bool,
}

/// Where plain lines go: the last chat or room opened, or the `/focus` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A private chat with this user.
    User(String),
    /// This room.
    Room(String),
}

impl Target {
    /// How the prompt and `/chats` name it: `@bob` for a chat, `lab` for a room.
    pub fn label(&self) -> String {
        match self {
            Target::User(n) => format!("@{n}"),
            Target::Room(r) => r.clone(),
        }
    }
}

/// `/quit` in progress: waiting for in-flight replies and the logout, at most until `deadline`.
#[derive(Debug)]
struct Quitting {
    deadline: Instant,
    logout_sent: bool,
}

impl Node {
    /// A node that will connect to `config.registry` on its first input (feed
    /// [`Input::Timeout`] right away). `wall_ms` is the Unix time in milliseconds at `now`.
    pub fn new(config: Config, now: Instant, wall_ms: u64, rng: StdRng) -> Node {
        let mut rooms = Rooms::new(wall_ms, config.degree.max(1), config.room_mode);
        rooms.set_trace(config.room_trace);
        Node {
            registry: RegistryLink::new(now, &config),
            links: Links::new(),
            config,
            rng,
            epoch: now,
            wall_epoch_ms: wall_ms,
            chats: BTreeMap::new(),
            focus: None,
            recent: Vec::new(),
            request_deadlines: BTreeMap::new(),
            away: None,
            focus_moved: false,
            known_name: None,
            registry_wait: None,
            renames_shown: BTreeSet::new(),
            rooms,
            muted: BTreeSet::new(),
            next_dial: 0,
            out: VecDeque::new(),
            deferred: VecDeque::new(),
            held_says: VecDeque::new(),
            quit: None,
            exited: false,
            timers_at: Some(now),
        }
    }

    /// Feeds one input. Time must not go backwards between calls. Every call also runs the
    /// timers that are due, so [`Input::Timeout`] is just "nothing else happened"; a call that
    /// comes before the earliest deadline skips walking them.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.exited {
            return;
        }
        let mut outcomes = Vec::new();
        let mut timers = false;
        match input {
            Input::Command(command) => self.handle_command(now, command),
            Input::Accepted { link, remote } => {
                if matches!(link, LinkId::Accepted(_)) && !self.links.contains(link) {
                    self.links.handle_accepted(now, link, remote, &self.config);
                } else {
                    debug!("driver reused {link:?} for an accepted link; ignored");
                }
            }
            Input::Connected { link } => {
                if self.registry.owns(link) {
                    self.registry
                        .handle_connected(now, link, &self.config, &mut self.out);
                } else {
                    let me = self.registry.name().map(str::to_string);
                    let event = self
                        .links
                        .handle_connected(link, me.as_deref(), &mut self.out);
                    self.handle_link_events(now, event);
                }
            }
            Input::Received { link, bytes } => {
                if self.registry.owns(link) {
                    self.registry.handle_received(
                        now,
                        link,
                        &bytes,
                        &self.config,
                        &mut self.rng,
                        &mut self.out,
                        &mut outcomes,
                    );
                } else {
                    // Borrowed, not copied: this runs for every chunk from a peer.
                    let me = self.registry.name();
                    let events = self
                        .links
                        .handle_received(now, link, &bytes, me, &mut self.out);
                    self.handle_link_events(now, events);
                }
            }
            Input::Closed { link } => {
                if self.registry.owns(link) {
                    self.registry.handle_closed(
                        now,
                        link,
                        &self.config,
                        &mut self.rng,
                        &mut self.out,
                        &mut outcomes,
                    );
                } else {
                    let event = self.links.handle_closed(link);
                    self.handle_link_events(now, event);
                }
            }
            Input::Timeout => timers = true,
        }
        let timers = timers || self.timers_at.is_some_and(|t| t <= now);
        self.settle(now, outcomes, timers);
        self.timers_at = self.deadline();
        if !timers && self.timers_at.is_some_and(|t| t <= now) {
            // The input set a deadline for now (the first heartbeat after a login, say): it
            // runs in this call, as it did when every call ran the timers.
            self.settle(now, Vec::new(), true);
            self.timers_at = self.deadline();
        }
    }

    /// What every input ends with: the timers (when `timers`), the registry timeout, the
    /// registry outcomes, and the follow-ups of what changed.
    fn settle(&mut self, now: Instant, mut outcomes: Vec<Outcome>, timers: bool) {
        if timers {
            self.run_timers(now, &mut outcomes);
        }
        self.registry_deadline(now, &mut outcomes);
        for outcome in outcomes {
            self.handle_outcome(now, outcome);
        }
        self.run_deferred(now);
        let name = self.registry.name();
        if name != self.known_name.as_deref() {
            if let (Some(_), Some(new)) = (&self.known_name, name) {
                let new = new.to_string();
                self.tell_partners_renamed(&new);
            }
            self.known_name = self.registry.name().map(str::to_string);
        }
        if std::mem::take(&mut self.focus_moved) && self.quit.is_none() {
            // With nothing left open there is nothing to say: the prompt goes back to `> `.
            if let Some(next) = &self.focus {
                let target = next.label();
                self.event(NodeEvent::Focus { target });
            }
        }
        self.advance_quit(now);
    }

    /// The next thing for the driver to do, or `None` when there is nothing more for now. Call
    /// after every [`Node::handle_input`] until it returns `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The latest moment to feed [`Input::Timeout`]; `None` when no timer runs (only after
    /// [`Output::Exit`]). Changes after every input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers_at
    }

    fn deadline(&self) -> Option<Instant> {
        if self.exited {
            return None;
        }
        [
            self.registry.poll_timeout(&self.config),
            self.links.poll_timeout(&self.config),
            self.rooms.poll_timeout(),
            self.request_deadlines.values().min().copied(),
            self.registry_wait
                .map(|(since, _)| since + self.config.registry_timeout),
            self.quit.as_ref().map(|q| q.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Our username, while logged in (also while the registry is away and will be resumed).
    pub fn name(&self) -> Option<&str> {
        self.registry.name()
    }

    /// Our identity ticket and the registry key that signed it, once the registry issued one
    /// (`Config::identity_key`): what the driver shows peers in the peer-link handshake.
    ///
    /// None while a rename's ticket for the new name is on its way (one registry round trip):
    /// the old ticket names the old name while our hello claims the new one, so every peer
    /// would refuse a link proved with it. The driver holds peer links without a ticket and
    /// starts them once it comes (or once the request settles otherwise, with the old one).
    pub fn ticket(&self) -> Option<(&[u8], [u8; 32])> {
        if self.registry.ticket_outdated() {
            return None;
        }
        self.registry.ticket()
    }

    /// The users we have a private chat with (started ones), sorted.
    pub fn chats(&self) -> Vec<&str> {
        self.chats
            .iter()
            .filter(|(_, c)| **c == Chat::Active)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Where plain lines go.
    pub fn focus(&self) -> Option<&str> {
        match &self.focus {
            Some(Target::User(n) | Target::Room(n)) => Some(n),
            None => None,
        }
    }

    /// Where plain lines go, with its kind (for the prompt).
    pub fn target(&self) -> Option<&Target> {
        self.focus.as_ref()
    }

    /// Whether a registry request is in flight or queued: the answer to the last command
    /// may still change the focus.
    pub fn is_waiting_for_registry(&self) -> bool {
        self.registry.has_pending() || !self.deferred.is_empty()
    }

    /// Whether the registry connection is up (and the session, if any, resumed).
    pub fn is_registry_ready(&self) -> bool {
        self.registry.is_ready()
    }

    /// Peer links open or opening.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Unix time in milliseconds at `now`.
    pub(crate) fn wall_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_millis();
        self.wall_epoch_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    pub(crate) fn event(&mut self, event: NodeEvent) {
        self.out.push_back(Output::Event(event));
    }

    pub(crate) fn error(&mut self, message: impl Into<String>) {
        self.event(NodeEvent::error(message));
    }

    pub(crate) fn next_link(&mut self) -> LinkId {
        self.next_dial += 1;
        LinkId::Dialed(self.next_dial)
    }

    fn run_timers(&mut self, now: Instant, outcomes: &mut Vec<Outcome>) {
        let wall_ms = self.wall_ms(now);
        let next_dial = &mut self.next_dial;
        self.registry.handle_timeout(
            now,
            wall_ms,
            || {
                *next_dial += 1;
                LinkId::Dialed(*next_dial)
            },
            &self.config,
            &mut self.rng,
            &mut self.out,
            outcomes,
        );
        let events = self.links.handle_timeout(now, &self.config, &mut self.out);
        self.handle_link_events(now, events);
        self.with_rooms(now, |r, cx| r.room_timeouts(cx, now));
        self.chat_request_timeouts(now);
    }

    /// Gives up on registry requests when the registry has answered nothing for
    /// `registry_timeout` while they waited.
    fn registry_deadline(&mut self, now: Instant, outcomes: &mut Vec<Outcome>) {
        if !self.registry.has_pending() {
            self.registry_wait = None;
            return;
        }
        let answered = self.registry.answered();
        match self.registry_wait {
            Some((since, seen)) if seen == answered => {
                if now >= since + self.config.registry_timeout {
                    self.registry.abandon_requests(&mut self.out, outcomes);
                    self.deferred.clear();
                    self.registry_wait = None;
                }
            }
            _ => self.registry_wait = Some((now, answered)),
        }
    }

    /// A registry reply or event the node acts on.
    fn handle_outcome(&mut self, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::ChatSearch { query, result } => self.handle_chat_search(now, query, result),
            Outcome::MuteChecked { query, found } => match found {
                Some(name) => self.mute_user(name),
                None => self.error(format!("{query} not found")),
            },
            Outcome::RoomCreated { room } => self.with_rooms(now, |r, cx| r.room_created(cx, room)),
            Outcome::RoomJoined { room, peers, reply } => {
                self.with_rooms(now, |r, cx| r.room_joined(cx, now, room, peers, reply))
            }
            Outcome::RoomRefilled { room, peers } => {
                if self.rooms.rooms.contains_key(&room) {
                    self.with_rooms(now, |r, cx| r.room_refilled(cx, now, room, peers))
                } else if self.registry.name().is_some() {
                    // Kicked (or gone) while the refill, a join, was on its way: the registry
                    // joined us again. Leave at once, quietly, so the kick stands.
                    let msg = Msg::LeaveRoom { room: room.clone() };
                    self.request(Request::UndoRefill { room }, msg);
                }
            }
            Outcome::RoomLeft { room } => self.with_rooms(now, |r, cx| r.room_left(cx, room)),
            Outcome::RoomEvent { room, event } => self.room_event(now, room, event),
            Outcome::SessionEnded => {
                self.held_says.clear();
                self.forget_rooms(now)
            }
            Outcome::Resumed => self.rooms.start_sync(),
            Outcome::RoomsSynced => self.with_rooms(now, |r, cx| r.rooms_synced(cx)),
            Outcome::TicketSettled => {
                for (room, text) in std::mem::take(&mut self.held_says) {
                    self.with_rooms(now, |r, cx| r.cmd_say(cx, now, room, text));
                }
            }
        }
    }

    /// Plain lines now go to `target` (the chat or room the user just opened or chose).
    pub(crate) fn set_focus(&mut self, target: Target) {
        self.recent.retain(|t| *t != target);
        self.recent.push(target.clone());
        self.focus = Some(target);
    }

    /// `target` ended. When it had the focus, the focus falls back to the most recently
    /// focused chat or room still open, and the user is told where plain lines go now.
    pub(crate) fn drop_target(&mut self, target: &Target) {
        self.recent.retain(|t| t != target);
        if self.focus.as_ref() != Some(target) {
            return;
        }
        self.focus = self.recent.last().cloned();
        self.focus_moved = true;
    }

    pub(crate) fn set_focus_room(&mut self, room: &str) {
        self.set_focus(Target::Room(room.to_string()));
    }

    pub(crate) fn unfocus_room(&mut self, room: &str) {
        self.drop_target(&Target::Room(room.to_string()));
    }

    /// Sends a registry request, or says why it cannot.
    pub(crate) fn request(&mut self, req: Request, msg: Msg) {
        if let Err(message) = self.registry.request(req, msg, &self.config, &mut self.out) {
            self.error(message);
        }
    }

    /// True when logged in; otherwise says so to the user.
    pub(crate) fn need_login(&mut self) -> bool {
        if self.registry.name().is_some() {
            return true;
        }
        self.error("not logged in");
        false
    }

    fn handle_command(&mut self, now: Instant, command: Command) {
        if self.quit.is_some() {
            debug!("quitting; command ignored");
            return;
        }
        let to_registry = matches!(
            command,
            Command::Register { .. }
                | Command::Login { .. }
                | Command::Logout
                | Command::Rename { .. }
                | Command::Users
                | Command::Search { .. }
                | Command::Chat { .. }
                | Command::Rooms
                | Command::Create { .. }
                | Command::Join { .. }
                | Command::Leave { .. }
                | Command::Members { .. }
                | Command::Kick { .. }
                | Command::Promote { .. }
        );
        if to_registry && (self.registry.has_pending() || !self.deferred.is_empty()) {
            // One registry request at a time, in the order typed, so that a script's
            // `/login` is answered before its `/search` is judged.
            if self.deferred.len() >= self.config.max_queued {
                return self.error("too many commands waiting for the registry");
            }
            self.deferred.push_back(command);
            return;
        }
        self.execute(now, command);
    }

    /// Runs deferred registry commands while no registry request is in flight.
    fn run_deferred(&mut self, now: Instant) {
        while !self.registry.has_pending() {
            let Some(command) = self.deferred.pop_front() else {
                return;
            };
            self.execute(now, command);
        }
    }

    fn execute(&mut self, now: Instant, command: Command) {
        match command {
            Command::Register { name, password } => {
                let Some(Password(password)) = password else {
                    return self.error("usage: /register NAME PASSWORD");
                };
                let msg = Msg::Register {
                    name: name.clone(),
                    password,
                };
                self.request(Request::Register { name }, msg);
            }
            Command::Login { name, password } => {
                let Some(Password(password)) = password else {
                    return self.error("usage: /login NAME PASSWORD");
                };
                if let Some(me) = self.registry.name() {
                    let message = format!("already logged in as {me}");
                    return self.error(message);
                }
                let msg = Msg::Login {
                    name: name.clone(),
                    password,
                    listen: self.config.listen,
                };
                self.request(Request::Login { name }, msg);
            }
            Command::Logout => {
                if self.need_login() {
                    self.registry.logout(&self.config, &mut self.out);
                    // The session is over from now on, whether or not the registry is there to
                    // hear it: leave the room overlays now. (Waiting for its `Ok` kept showing
                    // room messages after "Logged out" when the registry was away.)
                    self.forget_rooms(now);
                }
            }
            Command::Rename { name } => {
                if self.need_login() {
                    let msg = Msg::Rename { name: name.clone() };
                    self.request(Request::Rename { name }, msg);
                }
            }
            Command::Users => {
                if self.need_login() {
                    let msg = Msg::ListOnline {
                        after: String::new(),
                        limit: PAGE,
                    };
                    self.request(Request::ListOnline { names: Vec::new() }, msg);
                }
            }
            Command::Search { name } => {
                if self.need_login() {
                    let msg = Msg::Search { name: name.clone() };
                    self.request(
                        Request::Search {
                            name,
                            for_chat: false,
                        },
                        msg,
                    );
                }
            }
            Command::Chat { name } => self.cmd_chat(now, name),
            Command::Accept { name } => self.cmd_accept(name),
            Command::Reject { name } => self.cmd_reject(now, name),
            Command::Msg { name, text } => self.cmd_msg(name, text),
            Command::Text(text) => match self.focus.clone() {
                Some(Target::User(name)) => self.cmd_msg(name, text),
                Some(Target::Room(room)) => self.cmd_say(now, room, text),
                None => self.error("no current chat or room: use /chat NAME, /join ROOM or /focus"),
            },
            // An action travels as text starting with `/me ` (docs/protocol.md); a client
            // shows it as `* NAME TEXT`, an older one as the plain text.
            Command::Me(text) => {
                let text = format!("/me {text}");
                match self.focus.clone() {
                    Some(Target::User(name)) => self.cmd_msg(name, text),
                    Some(Target::Room(room)) => self.cmd_say(now, room, text),
                    None => self.error("no current chat or room for /me"),
                }
            }
            Command::Away(message) => self.cmd_away(message),
            Command::OnFocus(what) => {
                let command = match (what, self.focus.clone()) {
                    (FocusCommand::Leave, Some(Target::Room(room))) => Command::Leave { room },
                    (FocusCommand::Members, Some(Target::Room(room))) => Command::Members { room },
                    (FocusCommand::End, Some(Target::User(name))) => Command::End { name },
                    (FocusCommand::End, _) => return self.error("no current chat: /end NAME"),
                    _ => return self.error("no current room: name the room"),
                };
                // Leave and Members go to the registry: queue them like typed ones.
                self.handle_command(now, command);
            }
            Command::Chats => self.cmd_chats(),
            Command::End { name } => self.cmd_end(now, name),
            Command::Focus { target } => self.cmd_focus(target),
            Command::Mute { target } => self.cmd_mute(target, true),
            Command::Unmute { target } => self.cmd_mute(target, false),
            Command::Rooms => {
                if self.need_login() {
                    let msg = Msg::ListRooms {
                        after: String::new(),
                        limit: PAGE,
                    };
                    self.request(Request::ListRooms { rooms: Vec::new() }, msg);
                }
            }
            Command::Create { room } => {
                if self.need_login() {
                    let msg = Msg::CreateRoom { room: room.clone() };
                    self.request(Request::CreateRoom { room }, msg);
                }
            }
            Command::Join { room } => {
                if self.need_login() {
                    self.request(Request::JoinRoom, Msg::JoinRoom { room });
                }
            }
            Command::Leave { room } => {
                if self.need_login() {
                    let msg = Msg::LeaveRoom { room: room.clone() };
                    self.request(Request::LeaveRoom { room }, msg);
                }
            }
            Command::Members { room } => {
                if self.need_login() {
                    self.request(Request::Members, Msg::ListMembers { room });
                }
            }
            Command::Say { room, text } => self.cmd_say(now, room, text),
            Command::Kick { room, name } => {
                if self.need_login() {
                    self.request(Request::RoomAdmin, Msg::Kick { room, name });
                }
            }
            Command::Promote { room, name } => {
                if self.need_login() {
                    let req = Request::Promote {
                        room: room.clone(),
                        name: name.clone(),
                    };
                    self.request(req, Msg::Promote { room, name });
                }
            }
            Command::Help(command) => self.event(NodeEvent::Help { command }),
            Command::Quit(message) => {
                if let Some(text) = message {
                    self.say_everywhere(now, text);
                }
                self.start_quit(now);
            }
        }
    }

    /// `/quit`: end the chats, let in-flight replies arrive, log out, then exit.
    fn start_quit(&mut self, now: Instant) {
        info!("quitting");
        self.end_all_chats(now);
        self.quit = Some(Quitting {
            deadline: now + self.config.quit_grace,
            logout_sent: false,
        });
    }

    fn advance_quit(&mut self, now: Instant) {
        let Some(quit) = &mut self.quit else {
            return;
        };
        if quit.deadline > now {
            if self.registry.has_pending() || !self.deferred.is_empty() {
                return;
            }
            if !quit.logout_sent && self.registry.name().is_some() && self.registry.is_ready() {
                quit.logout_sent = true;
                self.registry.logout(&self.config, &mut self.out);
                return;
            }
        }
        self.links.close_all(CloseReason::Quit, &mut self.out);
        self.registry.close(&mut self.out);
        self.out.push_back(Output::Exit);
        self.exited = true;
    }
}
