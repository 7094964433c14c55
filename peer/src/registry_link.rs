//! The client side of the registry session: connection, requests and replies, login session,
//! heartbeats, liveness pings and reconnection.
//!
//! Two parts of the state change independently, so each has its own type (hyper's
//! `Reading`/`Writing` split): [`Conn`] is the TCP connection, and `session` is the login,
//! which outlives a connection so that a reconnect can resume it with the token.
//!
//! ```text
//!  Backoff ──due──▶ Connecting ──Connected/send Hello──▶ ExpectWelcome ──Welcome──▶ Ready
//!     ▲                  │                                     │                      │
//!     └──────────────────┴───────── closed / deadline ─────────┴──────────────────────┘
//! ```
//! On `Ready` with a session, the link sends `Resume` first and holds every other request until
//! its reply, so that nothing reaches the registry before the session is back.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use p2pchat_protocol::{status, Frame, Msg, Presence, Role, VERSION};
use rand::rngs::StdRng;
use rand::Rng;

use crate::heartbeat::Heartbeats;
use crate::io::{CloseReason, Config, LinkId, NodeEvent, Output};
use crate::link::{send, FrameReader};

/// Giving up on requests the registry does not answer.
mod abandon;
/// Reassembling answers the registry sent in parts.
mod parts;

/// How much each failed reconnect attempt lengthens the next delay (see `backoff`).
const BACKOFF_GROWTH: f64 = 1.5;

/// Largest page asked for with `ListOnline`.
const PAGE: u16 = 1000;

/// A request waiting for its reply (or, while the registry is away, for a connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Register {
        name: String,
    },
    Login {
        name: String,
    },
    Resume,
    /// An identity ticket for our key (after each login and resume, and to renew it).
    Ticket,
    Logout,
    Rename {
        name: String,
    },
    Search {
        name: String,
        for_chat: bool,
    },
    /// `/mute NAME` of a user we know nothing of: is there such a user?
    MuteSearch {
        name: String,
    },
    ListOnline {
        names: Vec<String>,
    },
    Ping,
    CreateRoom {
        room: String,
    },
    ListRooms {
        rooms: Vec<p2pchat_protocol::RoomInfo>,
    },
    JoinRoom,
    /// A join of a room we are in, sent because its member view ran short: the answer is
    /// applied silently.
    RefillRoom,
    /// A leave that undoes a refill that joined us again: we were kicked while it was on its
    /// way (the registry took it for a new join). Silent either way.
    UndoRefill {
        room: String,
    },
    LeaveRoom {
        room: String,
    },
    Members,
    /// Kick or promote: the registry's pushed event is what the user sees.
    RoomAdmin,
    /// `/promote`: the room and member, to say so when the member was already an admin.
    Promote {
        room: String,
        name: String,
    },
    /// A ping sent right after a resume: the registry answers in order, so its pong comes after
    /// every room it pushed for the new session.
    SyncRooms,
}

/// Replies the node itself must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The search behind `/chat query` finished: the canonical name and presence, or an error.
    ChatSearch {
        query: String,
        result: Result<(String, Presence), String>,
    },
    /// The search behind `/mute query`: the user's canonical name, `None` if there is none.
    MuteChecked {
        query: String,
        found: Option<String>,
    },
    /// `/create` succeeded.
    RoomCreated { room: String },
    /// We are in `room`: a join reply, or the registry's list of our rooms after a login.
    RoomJoined {
        room: String,
        peers: Vec<p2pchat_protocol::PeerInfo>,
        /// The answer to the user's own `/join` (not a push at login or resume).
        reply: bool,
    },
    /// The online members of a room we are in, asked for to refill its member view.
    RoomRefilled {
        room: String,
        peers: Vec<p2pchat_protocol::PeerInfo>,
    },
    /// `/leave` succeeded.
    RoomLeft { room: String },
    /// The registry pushed a room event.
    RoomEvent {
        room: String,
        event: p2pchat_protocol::RoomEvent,
    },
    /// The session ended for good (logout, or a resume refused): rooms are left locally.
    SessionEnded,
    /// A resume succeeded; the registry now pushes the rooms the user is still in.
    Resumed,
    /// Every room of the resumed session has been pushed (see [`Request::SyncRooms`]).
    RoomsSynced,
    /// The ticket asked for after a rename came (or was refused): room messages held since the
    /// rename can go.
    TicketSettled,
}

/// The TCP connection to the registry, named for what it waits for.
#[derive(Debug)]
enum Conn {
    /// Waiting to reconnect.
    Backoff { until: Instant },
    /// Waiting for the TCP connect.
    Connecting { link: LinkId, deadline: Instant },
    /// Hello sent; waiting for the registry's welcome.
    ExpectWelcome { link: LinkId, deadline: Instant },
    /// Open. `resuming`: a `Resume` is in flight and other requests wait for it.
    Ready {
        link: LinkId,
        last_rx: Instant,
        next_ping: Instant,
        resuming: bool,
    },
}

/// Keepalive pings between ticket renewals: 10 at the default 30 s is every 5 minutes, half
/// the registry's default ticket lifetime.
const TICKET_RENEW_PINGS: u32 = 10;

/// A login session: what a resume and the heartbeats need.
#[derive(Debug)]
struct Session {
    name: String,
    token: Vec<u8>,
    /// Our identity ticket and the registry key that signed it (docs/security.md), kept
    /// across resumes and renewed every `TICKET_RENEW_PINGS` keepalive pings.
    ticket: Option<(Vec<u8>, [u8; 32])>,
    /// A rename made `ticket` name the old name and a new one is on its way: room messages
    /// signed now would be refused by every member, so the node holds them until it comes.
    ticket_outdated: bool,
    pings: u32,
    /// Stopped while the connection is down or the session not yet resumed.
    heartbeats: Heartbeats,
}

/// The registry session of one node.
#[derive(Debug)]
pub(crate) struct RegistryLink {
    conn: Conn,
    reader: FrameReader,
    session: Option<Session>,
    next_id: u32,
    pending: BTreeMap<u32, Request>,
    queued: VecDeque<(Request, Msg)>,
    /// Failed connection attempts since the last success.
    attempts: u32,
    ever_connected: bool,
    /// The link was lost; say `Reconnected to registry` once it is back.
    announce_reconnect: bool,
    reported_unreachable: bool,
    /// Replies handled so far: progress, for the node's registry timeout.
    answered: u64,
    /// Promotions pushed since the last `promote` reply: the registry pushes `promoted` before
    /// it answers, so a reply without one means the member was already an admin.
    promotions: Vec<(String, String)>,
    /// The leading parts of a paged answer, until its final frame.
    parts: parts::Parts,
    /// `Logged in as NAME`, held until our identity ticket arrives.
    announce_login: Option<NodeEvent>,
}

fn event(out: &mut VecDeque<Output>, ev: NodeEvent) {
    out.push_back(Output::Event(ev));
}

impl RegistryLink {
    /// A registry link that starts connecting at once (its first `handle_timeout` dials).
    pub(crate) fn new(now: Instant, config: &Config) -> RegistryLink {
        RegistryLink {
            conn: Conn::Backoff { until: now },
            reader: FrameReader::new(config.max_frame),
            session: None,
            next_id: 1,
            pending: BTreeMap::new(),
            queued: VecDeque::new(),
            attempts: 0,
            ever_connected: false,
            announce_reconnect: false,
            reported_unreachable: false,
            answered: 0,
            promotions: Vec::new(),
            parts: parts::Parts::default(),
            announce_login: None,
        }
    }

    /// Whether `link` is the registry connection.
    pub(crate) fn owns(&self, link: LinkId) -> bool {
        match self.conn {
            Conn::Connecting { link: l, .. }
            | Conn::ExpectWelcome { link: l, .. }
            | Conn::Ready { link: l, .. } => l == link,
            Conn::Backoff { .. } => false,
        }
    }

    /// Our username while logged in (also while the registry is away and we will resume).
    pub(crate) fn name(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.name.as_str())
    }

    /// Our identity ticket and the registry key that signed it, once issued.
    pub(crate) fn ticket(&self) -> Option<(&[u8], [u8; 32])> {
        let (ticket, key) = self.session.as_ref()?.ticket.as_ref()?;
        Some((ticket, *key))
    }

    /// Whether a rename left us with a ticket for the old name, the new one still on its way.
    pub(crate) fn ticket_outdated(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.ticket_outdated)
    }

    pub(super) fn ticket_settled(&mut self, outcomes: &mut Vec<Outcome>) {
        if let Some(s) = &mut self.session {
            if std::mem::take(&mut s.ticket_outdated) {
                outcomes.push(Outcome::TicketSettled);
            }
        }
    }

    /// Asks for a ticket for our key, if we have one and the link is up; whether it did.
    fn request_ticket(&mut self, config: &Config, out: &mut VecDeque<Output>) -> bool {
        if let (Some(key), Conn::Ready { link, .. }) = (config.identity_key, &self.conn) {
            let link = *link;
            self.send_request(link, Request::Ticket, Msg::GetTicket { key }, out);
            return true;
        }
        false
    }

    /// Whether the connection is open and the session (if any) resumed.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(
            self.conn,
            Conn::Ready {
                resuming: false,
                ..
            }
        )
    }

    /// Whether a `/leave` of `room` is on its way: a member-view refill (a join of a room one
    /// is in) sent after it would join the room again.
    pub(crate) fn leaving(&self, room: &str) -> bool {
        let is_leave = |r: &Request| matches!(r, Request::LeaveRoom { room: x } if x == room);
        self.pending.values().any(is_leave) || self.queued.iter().any(|(r, _)| is_leave(r))
    }

    /// Whether user requests are waiting for a reply or for the connection.
    pub(crate) fn has_pending(&self) -> bool {
        !self.queued.is_empty()
            || self
                .pending
                .values()
                .any(|r| !matches!(r, Request::Ping | Request::Resume))
    }

    /// Sends `msg` for `req` now, or queues it until the registry is reachable.
    pub(crate) fn request(
        &mut self,
        req: Request,
        msg: Msg,
        config: &Config,
        out: &mut VecDeque<Output>,
    ) -> Result<(), String> {
        if let Conn::Ready {
            link,
            resuming: false,
            ..
        } = self.conn
        {
            self.send_request(link, req, msg, out);
            return Ok(());
        }
        if self.queued.len() >= config.max_queued {
            return Err("the registry is unreachable; try again later".into());
        }
        debug!("registry not ready, queueing {}", msg.kind_name());
        self.queued.push_back((req, msg));
        Ok(())
    }

    fn send_request(&mut self, link: LinkId, req: Request, msg: Msg, out: &mut VecDeque<Output>) {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.pending.insert(id, req);
        send(out, link, Frame::new(id, msg));
    }

    fn flush_queue(&mut self, out: &mut VecDeque<Output>) {
        let Conn::Ready {
            link,
            resuming: false,
            ..
        } = self.conn
        else {
            return;
        };
        while let Some((req, msg)) = self.queued.pop_front() {
            self.send_request(link, req, msg, out);
        }
    }

    /// Ends the session: tells the registry if it is there, else just forgets the session.
    pub(crate) fn logout(&mut self, config: &Config, out: &mut VecDeque<Output>) {
        if self.session.take().is_none() {
            return;
        }
        if self.is_ready() {
            let _ = self.request(Request::Logout, Msg::Logout, config, out);
        } else {
            event(out, NodeEvent::LoggedOut);
        }
    }

    /// Closes the connection for good (the node is exiting).
    pub(crate) fn close(&mut self, out: &mut VecDeque<Output>) {
        if let Conn::Connecting { link, .. }
        | Conn::ExpectWelcome { link, .. }
        | Conn::Ready { link, .. } = self.conn
        {
            out.push_back(Output::Close {
                link,
                reason: CloseReason::Quit,
            });
        }
    }

    /// A connect completed.
    pub(crate) fn handle_connected(
        &mut self,
        now: Instant,
        link: LinkId,
        config: &Config,
        out: &mut VecDeque<Output>,
    ) {
        let Conn::Connecting { link: l, .. } = self.conn else {
            return;
        };
        if l != link {
            return;
        }
        send(
            out,
            link,
            Frame::event(Msg::Hello {
                version: VERSION,
                role: Role::Client,
                name: String::new(),
                ticket: Vec::new(),
            }),
        );
        self.conn = Conn::ExpectWelcome {
            link,
            deadline: now + config.handshake_timeout,
        };
    }

    /// Bytes from the registry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_received(
        &mut self,
        now: Instant,
        link: LinkId,
        bytes: &[u8],
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if !self.owns(link) {
            return;
        }
        let frames = match self.reader.push(now, bytes) {
            Ok(frames) => frames,
            Err(err) => {
                warn!("registry sent undecodable bytes: {err}");
                self.drop_link(now, CloseReason::Decode(err), config, rng, out, outcomes);
                return;
            }
        };
        if let Conn::Ready { last_rx, .. } = &mut self.conn {
            *last_rx = now;
        }
        for frame in frames {
            if !self.owns(link) {
                break;
            }
            self.handle_frame(now, frame, config, rng, out, outcomes);
        }
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        frame: Frame,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        let Some(msg) = self.parts.absorb(frame.id, frame.msg) else {
            return;
        };
        let frame = Frame { id: frame.id, msg };
        if frame.id == 0 {
            match frame.msg {
                // The registry closes the connection, and says why.
                // A connection that never logged in is closed after the registry's pre-login
                // deadline (60 s by default): nothing the user asked for was lost, and the link
                // comes back by itself, so that is no news for the user.
                Msg::Error { code, message }
                    if code == status::TIMEOUT && self.is_idle_without_session() =>
                {
                    debug!("registry closed an idle pre-login connection: {message}")
                }
                Msg::Error { message, .. } => event(out, NodeEvent::error(message)),
                Msg::Welcome { name, .. } => self.handle_welcome(now, &name, config, out),
                Msg::Room { room, event } => {
                    if let p2pchat_protocol::RoomEvent::Promoted { name } = &event {
                        if self.promotions.len() < 64 {
                            self.promotions.push((room.clone(), name.clone()));
                        }
                    }
                    outcomes.push(Outcome::RoomEvent { room, event });
                }
                Msg::RoomJoined { room, peers } => outcomes.push(Outcome::RoomJoined {
                    room,
                    peers,
                    reply: false,
                }),
                other => debug!("registry event ignored: {}", other.kind_name()),
            }
            return;
        }
        if !matches!(self.conn, Conn::Ready { .. }) {
            let got = frame.msg.kind_name();
            let reason = CloseReason::Unexpected {
                expected: "welcome",
                got,
            };
            self.drop_link(now, reason, config, rng, out, outcomes);
            return;
        }
        let Some(req) = self.pending.remove(&frame.id) else {
            // Also the late answer to a request given up on (`abandon_requests`).
            warn!("registry reply with unknown id {}", frame.id);
            return;
        };
        self.answered += 1;
        self.handle_reply(now, req, frame.msg, config, rng, out, outcomes);
    }

    fn handle_welcome(
        &mut self,
        now: Instant,
        server: &str,
        config: &Config,
        out: &mut VecDeque<Output>,
    ) {
        let Conn::ExpectWelcome { link, .. } = self.conn else {
            warn!("unexpected welcome from the registry");
            return;
        };
        info!("registry link up ({server})");
        let resuming = self.session.is_some();
        self.conn = Conn::Ready {
            link,
            last_rx: now,
            next_ping: now + config.ping_interval,
            resuming,
        };
        self.attempts = 0;
        self.reported_unreachable = false;
        if !self.ever_connected {
            self.ever_connected = true;
            event(
                out,
                NodeEvent::RegistryConnected {
                    addr: config.registry,
                },
            );
        }
        if let Some(s) = &self.session {
            let msg = Msg::Resume {
                name: s.name.clone(),
                token: s.token.clone(),
                listen: config.listen,
            };
            self.send_request(link, Request::Resume, msg, out);
            return;
        }
        if std::mem::take(&mut self.announce_reconnect) {
            event(out, NodeEvent::RegistryReconnected);
        }
        self.flush_queue(out);
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_reply(
        &mut self,
        now: Instant,
        req: Request,
        msg: Msg,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        match (req, msg) {
            (Request::Resume, Msg::Error { code, message }) => {
                if matches!(
                    code,
                    status::BAD_RESUME_TOKEN | status::BAD_CREDENTIALS | status::INVALID_NAME
                ) {
                    // The registry is back but our session is not: we are logged out, and
                    // saying "Reconnected" would suggest otherwise.
                    info!("resume refused ({code} {message})");
                    self.session = None;
                    self.announce_reconnect = false;
                    event(out, NodeEvent::SessionLost);
                    outcomes.push(Outcome::SessionEnded);
                    self.resumed(out);
                } else {
                    // Busy, rate limited, or the old session not yet seen dead: try again later.
                    info!("resume refused ({code} {message}); retrying");
                    let reason = CloseReason::Misbehaved("resume refused");
                    self.drop_link(now, reason, config, rng, out, outcomes);
                }
            }
            (
                Request::Search {
                    name,
                    for_chat: true,
                },
                Msg::Error { message, .. },
            ) => {
                outcomes.push(Outcome::ChatSearch {
                    query: name,
                    result: Err(message),
                });
            }
            (Request::Ping, Msg::Error { message, .. }) => debug!("ping refused: {message}"),
            (Request::RefillRoom, Msg::Error { message, .. }) => {
                debug!("member view refill refused: {message}")
            }
            (Request::UndoRefill { room }, Msg::Error { message, .. }) => {
                debug!("undoing the refill of {room} refused: {message}")
            }
            (Request::Ticket, Msg::Error { message, .. }) => {
                info!("no ticket: {message}");
                self.ticket_settled(outcomes);
                if let Some(ev) = self.announce_login.take() {
                    event(out, ev);
                }
            }
            (
                Request::Ticket,
                Msg::TicketIssued {
                    ticket,
                    registry_key,
                },
            ) => {
                if let Some(s) = &mut self.session {
                    s.ticket = Some((ticket, registry_key));
                }
                self.ticket_settled(outcomes);
                if let Some(ev) = self.announce_login.take() {
                    event(out, ev);
                }
            }
            (_, Msg::Error { message, .. }) => event(out, NodeEvent::error(message)),
            (Request::Register { name }, Msg::Ok) => event(out, NodeEvent::Registered { name }),
            (Request::Login { .. }, msg @ Msg::LoggedIn { .. }) => {
                if let Some((name, advertised)) = self.start_session(now, msg, config) {
                    // With an identity, "logged in" is said once the ticket is here: from
                    // then on other peers can reach us (they require it).
                    if self.request_ticket(config, out) {
                        self.announce_login = Some(NodeEvent::LoggedIn { name, advertised });
                    } else {
                        event(out, NodeEvent::LoggedIn { name, advertised });
                    }
                }
            }
            (Request::Resume, msg @ Msg::LoggedIn { .. }) => {
                self.start_session(now, msg, config);
                let _ = self.request_ticket(config, out);
                outcomes.push(Outcome::Resumed);
                // Rooms we were kicked from while away are simply not pushed: a ping marks the
                // end of the pushes so the node can drop them.
                if let Conn::Ready { link, .. } = self.conn {
                    self.send_request(link, Request::SyncRooms, Msg::Ping, out);
                }
                self.resumed(out);
            }
            (Request::SyncRooms, Msg::Pong) => outcomes.push(Outcome::RoomsSynced),
            (Request::Logout, Msg::Ok) => {
                event(out, NodeEvent::LoggedOut);
                outcomes.push(Outcome::SessionEnded);
            }
            (Request::CreateRoom { room }, Msg::Ok) => outcomes.push(Outcome::RoomCreated { room }),
            (Request::JoinRoom, Msg::RoomJoined { room, peers }) => {
                outcomes.push(Outcome::RoomJoined {
                    room,
                    peers,
                    reply: true,
                })
            }
            (Request::RefillRoom, Msg::RoomJoined { room, peers }) => {
                outcomes.push(Outcome::RoomRefilled { room, peers })
            }
            (Request::LeaveRoom { room }, Msg::Ok) => outcomes.push(Outcome::RoomLeft { room }),
            (Request::UndoRefill { room }, Msg::Ok) => debug!("left {room} again after a refill"),
            (Request::Members, Msg::MemberList { room, members }) => {
                event(out, NodeEvent::MemberList { room, members })
            }
            (Request::RoomAdmin, Msg::Ok) => {}
            (Request::Promote { room, name }, Msg::Ok) => {
                let key = (room, name);
                if !self.promotions.contains(&key) {
                    let (room, name) = key;
                    let message = format!("{name} is already admin of {room}");
                    event(out, NodeEvent::error(message));
                }
                self.promotions.clear();
            }
            (Request::ListRooms { mut rooms }, Msg::RoomList { rooms: page, more }) => {
                let last = page.last().map(|r| r.name.clone());
                rooms.extend(page);
                match (more, last, &self.conn) {
                    (true, Some(after), Conn::Ready { link, .. }) => {
                        let link = *link;
                        let msg = Msg::ListRooms { after, limit: PAGE };
                        self.send_request(link, Request::ListRooms { rooms }, msg, out);
                    }
                    _ => event(out, NodeEvent::RoomList { rooms }),
                }
            }
            (Request::Rename { name }, Msg::Ok) => {
                if let Some(s) = &mut self.session {
                    s.name = name.clone();
                }
                event(out, NodeEvent::Renamed { name });
                // Our ticket names the old name: new peer links need one for the new name.
                if self.request_ticket(config, out) {
                    if let Some(s) = &mut self.session {
                        s.ticket_outdated = true;
                    }
                }
            }
            (
                Request::Search {
                    for_chat: false, ..
                },
                Msg::SearchResult { name, presence },
            ) => {
                event(out, search_event(name, presence));
            }
            (Request::MuteSearch { name: query }, Msg::SearchResult { name, presence }) => {
                let found = (presence != Presence::NotFound).then_some(name);
                outcomes.push(Outcome::MuteChecked { query, found });
            }
            (Request::Search { name: query, .. }, Msg::SearchResult { name, presence }) => {
                outcomes.push(Outcome::ChatSearch {
                    query,
                    result: Ok((name, presence)),
                });
            }
            (Request::ListOnline { mut names }, Msg::OnlineList { names: page, more }) => {
                let last = page.last().cloned();
                names.extend(page);
                match (more, last, &self.conn) {
                    (true, Some(after), Conn::Ready { link, .. }) => {
                        let link = *link;
                        let msg = Msg::ListOnline { after, limit: PAGE };
                        self.send_request(link, Request::ListOnline { names }, msg, out);
                    }
                    _ => {
                        names.sort();
                        names.dedup();
                        event(out, NodeEvent::OnlineUsers { names });
                    }
                }
            }
            (Request::Ping, Msg::Pong) => {}
            (req, msg) => {
                warn!("unexpected reply {} to {req:?}", msg.kind_name());
                event(out, NodeEvent::error("unexpected reply from the registry"));
            }
        }
    }

    /// The resume is settled (either way): announce, release held requests.
    fn resumed(&mut self, out: &mut VecDeque<Output>) {
        if let Conn::Ready { resuming, .. } = &mut self.conn {
            *resuming = false;
        }
        if std::mem::take(&mut self.announce_reconnect) {
            event(out, NodeEvent::RegistryReconnected);
        }
        self.flush_queue(out);
    }

    /// Stores a new session from `LoggedIn` and schedules its first heartbeat now.
    fn start_session(
        &mut self,
        now: Instant,
        msg: Msg,
        config: &Config,
    ) -> Option<(String, SocketAddr)> {
        let Msg::LoggedIn {
            name,
            session,
            heartbeat_key,
            heartbeat_interval_ms,
            resume_token,
            udp_port,
            advertised,
            ..
        } = msg
        else {
            return None;
        };
        info!("session {session} as {name}, advertised at {advertised}");
        let udp = config
            .registry_udp
            .unwrap_or_else(|| SocketAddr::new(config.registry.ip(), udp_port));
        // A resume keeps the ticket until the new one comes (peer links go on meanwhile).
        let (ticket, ticket_outdated) = self
            .session
            .take()
            .filter(|s| s.name == name)
            .map_or((None, false), |s| (s.ticket, s.ticket_outdated));
        self.session = Some(Session {
            name: name.clone(),
            token: resume_token,
            ticket,
            ticket_outdated,
            pings: 0,
            heartbeats: Heartbeats::start(now, session, &heartbeat_key, heartbeat_interval_ms, udp),
        });
        Some((name, advertised))
    }

    /// The driver reports the connection gone.
    pub(crate) fn handle_closed(
        &mut self,
        now: Instant,
        link: LinkId,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if self.owns(link) {
            self.lost(now, config, rng, out, outcomes);
        }
    }

    /// Not logged in, and nothing but our own keepalive pings waits for an answer.
    fn is_idle_without_session(&self) -> bool {
        self.session.is_none() && self.pending.values().all(|r| matches!(r, Request::Ping))
    }

    /// Closes the connection ourselves, then handles it as lost.
    fn drop_link(
        &mut self,
        now: Instant,
        reason: CloseReason,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if let Conn::Connecting { link, .. }
        | Conn::ExpectWelcome { link, .. }
        | Conn::Ready { link, .. } = self.conn
        {
            warn!("closing the registry link: {reason}");
            out.push_back(Output::Close { link, reason });
        }
        self.lost(now, config, rng, out, outcomes);
    }

    /// The connection is gone: report, fail what waited for it, schedule a reconnect.
    fn lost(
        &mut self,
        now: Instant,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        // A login whose ticket did not come is still a login.
        if let Some(ev) = self.announce_login.take() {
            event(out, ev);
        }
        // Without a session and with nothing in flight, losing the link changes nothing the
        // user can see (the registry closes pre-login connections after a deadline): it is
        // re-opened quietly rather than announced as lost and found.
        let quiet = self.is_idle_without_session();
        self.parts.clear();
        if matches!(self.conn, Conn::Ready { .. }) && !self.announce_reconnect && !quiet {
            event(out, NodeEvent::RegistryDisconnected);
            self.announce_reconnect = true;
        } else if !self.ever_connected && !self.reported_unreachable {
            self.reported_unreachable = true;
            let addr = config.registry;
            event(
                out,
                NodeEvent::error(format!("cannot reach the registry at {addr}; retrying")),
            );
        }
        for (_, req) in std::mem::take(&mut self.pending) {
            match req {
                Request::Ping | Request::Resume => {}
                Request::Logout => event(out, NodeEvent::LoggedOut),
                Request::Search {
                    name,
                    for_chat: true,
                } => outcomes.push(Outcome::ChatSearch {
                    query: name,
                    result: Err("disconnected from registry".into()),
                }),
                _ => event(
                    out,
                    NodeEvent::error("disconnected from registry before it answered"),
                ),
            }
        }
        if let Some(s) = &mut self.session {
            s.heartbeats.stop();
        }
        self.reader = FrameReader::new(config.max_frame);
        let delay = self.backoff(config, rng);
        debug!("reconnecting to the registry in {delay:?}");
        self.conn = Conn::Backoff { until: now + delay };
    }

    /// The next reconnect delay: growing by half per failed attempt from `backoff_min` up to
    /// `backoff_max`, then a random point in its upper half ("equal jitter"), so that peers cut
    /// off together do not all come back in the same instant. Half, not double: when a
    /// registry restarts under thousands of peers (a second or two down), doubling had put the
    /// next attempts 2-4 s apart, so the last peers came back seconds after the registry was
    /// up; growing by 1.5 keeps the gap near the outage under ~1.3 s and still reaches the
    /// 10 s cap within seven failures (a refused connect costs the registry nothing).
    fn backoff(&mut self, config: &Config, rng: &mut StdRng) -> Duration {
        let factor = BACKOFF_GROWTH.powi(self.attempts.min(32) as i32);
        // Out of range (a huge configured minimum) means "as long as allowed".
        let grown = Duration::try_from_secs_f64(config.backoff_min.as_secs_f64() * factor)
            .unwrap_or(Duration::MAX);
        let base = grown.min(config.backoff_max);
        self.attempts = self.attempts.saturating_add(1);
        let half = base / 2;
        let jitter_ms = rng.random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Reconnects, pings, detects a dead link and sends heartbeats, as their times come.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        wall_ms: u64,
        link_for_dial: impl FnOnce() -> LinkId,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        match self.conn {
            Conn::Backoff { until } if until <= now => {
                let link = link_for_dial();
                debug!(
                    "connecting to the registry at {} ({link:?})",
                    config.registry
                );
                self.conn = Conn::Connecting {
                    link,
                    deadline: now + config.handshake_timeout,
                };
                out.push_back(Output::Connect {
                    link,
                    addr: config.registry,
                });
            }
            Conn::Backoff { .. } => {}
            Conn::Connecting { deadline, .. } | Conn::ExpectWelcome { deadline, .. } => {
                if deadline <= now {
                    let reason = CloseReason::HandshakeTimeout;
                    self.drop_link(now, reason, config, rng, out, outcomes);
                }
            }
            Conn::Ready {
                link,
                last_rx,
                next_ping,
                ..
            } => {
                if last_rx + config.ping_interval * 2 <= now {
                    self.drop_link(now, CloseReason::Silent, config, rng, out, outcomes);
                    return;
                }
                if self.reader.deadline(config).is_some_and(|t| t <= now) {
                    self.drop_link(now, CloseReason::FrameTimeout, config, rng, out, outcomes);
                    return;
                }
                if next_ping <= now {
                    if !self.pending.values().any(|r| *r == Request::Ping) {
                        self.send_request(link, Request::Ping, Msg::Ping, out);
                    }
                    let renew = self.session.as_mut().is_some_and(|s| {
                        s.pings += 1;
                        s.pings % TICKET_RENEW_PINGS == 0
                    });
                    if renew {
                        let _ = self.request_ticket(config, out);
                    }
                    if let Conn::Ready { next_ping, .. } = &mut self.conn {
                        *next_ping = now + config.ping_interval;
                    }
                }
                self.heartbeat(now, wall_ms, out);
            }
        }
    }

    fn heartbeat(&mut self, now: Instant, wall_ms: u64, out: &mut VecDeque<Output>) {
        if let Some(s) = &mut self.session {
            out.extend(s.heartbeats.handle_timeout(now, wall_ms));
        }
    }

    /// The earliest deadline of the registry link.
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        let conn = match self.conn {
            Conn::Backoff { until } => until,
            Conn::Connecting { deadline, .. } | Conn::ExpectWelcome { deadline, .. } => deadline,
            Conn::Ready {
                last_rx, next_ping, ..
            } => next_ping.min(last_rx + config.ping_interval * 2),
        };
        let heartbeat = self
            .session
            .as_ref()
            .and_then(|s| s.heartbeats.poll_timeout());
        [Some(conn), heartbeat, self.reader.deadline(config)]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The event for a `/search` answer.
fn search_event(name: String, presence: Presence) -> NodeEvent {
    match presence {
        Presence::Online(addr) => NodeEvent::UserOnline { name, addr },
        Presence::Offline => NodeEvent::UserOffline { name },
        Presence::NotFound => NodeEvent::UserNotFound { name },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn config() -> Config {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("a literal address");
        Config::new(addr, addr)
    }

    /// Each delay lies in the upper half of a base that grows by half per failure from
    /// `backoff_min` and stops at `backoff_max`; a success starts over.
    #[test]
    fn reconnect_delays_grow_by_half_up_to_the_cap_with_equal_jitter() {
        let config = config();
        // Any instant: the delays do not depend on it.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        for seed_round in 0..20 {
            let mut link = RegistryLink::new(now, &config);
            let mut base = config.backoff_min.as_secs_f64();
            for attempt in 0..12 {
                let delay = link.backoff(&config, &mut rng).as_secs_f64();
                let capped = base.min(config.backoff_max.as_secs_f64());
                assert!(
                    delay >= capped / 2.0 - 1e-3 && delay <= capped + 1e-3,
                    "round {seed_round} attempt {attempt}: {delay} s outside [{}, {capped}]",
                    capped / 2.0
                );
                base *= BACKOFF_GROWTH;
            }
            assert!(
                base > config.backoff_max.as_secs_f64(),
                "the cap was reached"
            );
        }
    }

    #[test]
    fn a_huge_minimum_means_the_cap_not_a_panic() {
        let config = Config {
            backoff_min: Duration::from_secs(u64::MAX / 4),
            ..config()
        };
        #[allow(clippy::disallowed_methods)]
        let mut link = RegistryLink::new(Instant::now(), &config);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..40 {
            assert!(link.backoff(&config, &mut rng) <= config.backoff_max);
        }
    }
}
