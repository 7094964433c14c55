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
use std::time::Instant;

use log::debug;
use p2pchat_protocol::{Frame, Msg, Presence, Role, VERSION};

use crate::heartbeat::Heartbeats;
use crate::io::{CloseReason, Config, LinkId, NodeEvent, Output};
use crate::link::{send, FrameReader};

/// Giving up on requests the registry does not answer.
mod abandon;
/// Reassembling answers the registry sent in parts.
mod parts;
/// Bytes from the registry, decoded and dispatched.
mod receive;
/// Losing and regaining the connection; pings, heartbeats and deadlines.
mod reconnect;
/// The registry's answers to our requests.
mod replies;

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
}
