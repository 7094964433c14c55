//! The registry's answers: the welcome, each reply to the request it answers, and the login
//! session they start.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, info, warn};
use p2pchat_protocol::{status, Msg, Presence};
use rand::rngs::StdRng;

use super::{event, Conn, Outcome, RegistryLink, Request, Session, PAGE};
use crate::heartbeat::Heartbeats;
use crate::io::{CloseReason, Config, NodeEvent, Output};

impl RegistryLink {
    pub(super) fn handle_welcome(
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
    pub(super) fn handle_reply(
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
    pub(super) fn resumed(&mut self, out: &mut VecDeque<Output>) {
        if let Conn::Ready { resuming, .. } = &mut self.conn {
            *resuming = false;
        }
        if std::mem::take(&mut self.announce_reconnect) {
            event(out, NodeEvent::RegistryReconnected);
        }
        self.flush_queue(out);
    }

    /// Stores a new session from `LoggedIn` and schedules its first heartbeat now.
    pub(super) fn start_session(
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
}

/// The event for a `/search` answer.
fn search_event(name: String, presence: Presence) -> NodeEvent {
    match presence {
        Presence::Online(addr) => NodeEvent::UserOnline { name, addr },
        Presence::Offline => NodeEvent::UserOffline { name },
        Presence::NotFound => NodeEvent::UserNotFound { name },
    }
}
