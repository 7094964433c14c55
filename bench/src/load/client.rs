//! A lean registry client for the `requests` scenario: many logged-in connections on one
//! engine reactor, speaking frames directly (no peer node), so that the generator costs far
//! less than the registry per request and can find the registry's ceiling. Each connection
//! registers and logs in its own account and heartbeats like a peer, so its session stays up.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use p2pchat_engine::{ConnId, NetEvent, Reactor, UdpId};
use p2pchat_protocol::secure::SecureStream;
use p2pchat_protocol::{Frame, FrameDecoder, Heartbeat, HeartbeatKey, Msg, Role, VERSION};

use crate::load::secure::client_stream;

/// The kinds of request the scenario sends (the discriminant indexes the templates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Search` for a logged-in user.
    Search = 0,
    /// `ListOnline`, first page of 10.
    List,
    /// `Ping`.
    Ping,
}

impl Kind {
    /// Parses `search`, `list`, `ping`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "search" => Some(Kind::Search),
            "list" | "online" => Some(Kind::List),
            "ping" => Some(Kind::Ping),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Connecting,
    Registering,
    LoggingIn,
    Ready,
}

struct Conn {
    id: ConnId,
    name: String,
    state: St,
    dec: FrameDecoder,
    next_id: u32,
    /// Requests in flight: (id, when it counts from).
    inflight: VecDeque<(u32, Instant)>,
    session: u64,
    key: Option<HeartbeatKey>,
    hb_counter: u64,
    out: BytesMut,
    /// Once ready: unparsed reply bytes (replies are split by hand, not decoded).
    raw: BytesMut,
    /// Encoded request per kind (search, list, ping), id bytes patched per request.
    templates: [Vec<u8>; 3],
    /// The secure link: requests are sealed at flush, replies opened as they arrive.
    secure: SecureStream,
}

/// Offset of the request id in an encoded frame: length prefix (4), kind (1).
const ID_AT: usize = 5;
/// Largest reply accepted (a page of the online list is far smaller).
const MAX_REPLY: usize = 1 << 20;

/// Many raw connections on one reactor.
pub struct RawPool {
    reactor: Reactor,
    udp: UdpId,
    registry_udp: Option<SocketAddr>,
    conns: Vec<Conn>,
    index: std::collections::HashMap<ConnId, usize>,
    hb_interval: Duration,
    next_hb: Instant,
    events: Vec<NetEvent>,
    /// Connections ready (logged in).
    pub ready: usize,
    /// Requests answered with an error frame.
    pub request_errors: u64,
    error_kind: u8,
}

/// One answered request.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Connection index.
    pub conn: usize,
    /// When its latency counts from.
    pub from: Instant,
}

impl RawPool {
    /// Opens `names.len()` connections to `registry`; each registers and logs in its name.
    pub fn connect(
        registry: SocketAddr,
        registry_udp: Option<SocketAddr>,
        names: Vec<String>,
    ) -> anyhow::Result<RawPool> {
        let mut reactor = Reactor::new(p2pchat_engine::Config::default())?;
        let udp = reactor.bind_udp("127.0.0.1:0".parse()?)?;
        let mut conns = Vec::new();
        let mut index = std::collections::HashMap::new();
        for (i, name) in names.into_iter().enumerate() {
            let id = reactor.connect(registry)?;
            index.insert(id, i);
            let hello = Frame::event(Msg::Hello {
                version: VERSION,
                role: Role::Client,
                name: String::new(),
                ticket: vec![],
            });
            let reg = Frame::new(
                1,
                Msg::Register {
                    name: name.clone(),
                    password: super::scenarios::logins::PASSWORD.into(),
                },
            );
            let mut b = BytesMut::new();
            hello.encode(&mut b);
            reg.encode(&mut b);
            let mut secure = client_stream()?;
            secure.send(&b)?;
            reactor.send(id, &secure.take_outgoing());
            conns.push(Conn {
                id,
                name,
                state: St::Connecting,
                dec: FrameDecoder::new(1 << 20),
                next_id: 10,
                inflight: VecDeque::new(),
                session: 0,
                key: None,
                hb_counter: 0,
                out: BytesMut::new(),
                raw: BytesMut::new(),
                templates: Default::default(),
                secure,
            });
        }
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Ok(RawPool {
            reactor,
            udp,
            registry_udp,
            conns,
            index,
            hb_interval: Duration::from_secs(5),
            next_hb: now,
            events: Vec::new(),
            ready: 0,
            request_errors: 0,
            error_kind: Msg::Error {
                code: 0,
                message: String::new(),
            }
            .kind(),
        })
    }

    /// Connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// A logged-in name (searches look for these).
    pub fn name(&self, i: usize) -> &str {
        &self.conns[i].name
    }

    /// Requests in flight on connection `i`.
    pub fn inflight(&self, i: usize) -> usize {
        self.conns[i].inflight.len()
    }

    /// Sets the user connection `i` searches for (its search template).
    pub fn set_search_target(&mut self, i: usize, target: &str) {
        let mut b = BytesMut::new();
        Frame::new(
            0,
            Msg::Search {
                name: target.into(),
            },
        )
        .encode(&mut b);
        self.conns[i].templates[0] = b.to_vec();
    }

    /// Queues a request on connection `i`, its latency counting from `from`. Written at the
    /// next [`RawPool::flush`]. Each kind is encoded once per connection and only its id is
    /// patched, so the generator spends little per request.
    pub fn request(&mut self, i: usize, kind: Kind, from: Instant) {
        let c = &mut self.conns[i];
        let id = c.next_id;
        c.next_id = c.next_id.wrapping_add(1).max(10);
        let slot = kind as usize;
        if c.templates[slot].is_empty() {
            let msg = match kind {
                Kind::Search => Msg::Search {
                    name: c.name.clone(),
                },
                Kind::List => Msg::ListOnline {
                    after: String::new(),
                    limit: 10,
                },
                Kind::Ping => Msg::Ping,
            };
            let mut b = BytesMut::new();
            Frame::new(0, msg).encode(&mut b);
            c.templates[slot] = b.to_vec();
        }
        let at = c.out.len();
        c.out.extend_from_slice(&c.templates[slot]);
        c.out[at + ID_AT..at + ID_AT + 4].copy_from_slice(&id.to_be_bytes());
        c.inflight.push_back((id, from));
    }

    /// Splits ready connection `i`'s raw bytes into replies by their length prefix and matches
    /// each to its request by id (no decoding: the generator must stay cheap).
    fn on_raw(&mut self, i: usize, answers: &mut Vec<Answer>) -> anyhow::Result<()> {
        let c = &mut self.conns[i];
        loop {
            if c.raw.len() < ID_AT + 4 {
                return Ok(());
            }
            let len = u32::from_be_bytes([c.raw[0], c.raw[1], c.raw[2], c.raw[3]]) as usize;
            if !(ID_AT..=MAX_REPLY).contains(&len) {
                bail!("{}: bad reply length {len}", c.name);
            }
            if c.raw.len() < 4 + len {
                return Ok(());
            }
            let kind = c.raw[4];
            let id = u32::from_be_bytes([c.raw[5], c.raw[6], c.raw[7], c.raw[8]]);
            let _ = c.raw.split_to(4 + len);
            if id == 0 {
                continue; // a pushed event
            }
            if kind == self.error_kind {
                self.request_errors += 1;
            }
            let pos = if c.inflight.front().map(|x| x.0) == Some(id) {
                Some(0)
            } else {
                c.inflight.iter().position(|x| x.0 == id)
            };
            if let Some((_, from)) = pos.and_then(|p| c.inflight.remove(p)) {
                answers.push(Answer { conn: i, from });
            }
        }
    }

    /// Writes every connection's queued requests (one `send` per connection).
    pub fn flush(&mut self) {
        for c in &mut self.conns {
            if !c.out.is_empty() {
                let b = c.out.split();
                // A failed link shows as its close on the next turn.
                if c.secure.send(&b).is_ok() {
                    let sealed = c.secure.take_outgoing();
                    if !sealed.is_empty() {
                        self.reactor.send(c.id, &sealed);
                    }
                }
            }
        }
    }

    /// One turn: reads replies (pushing answered requests to `answers`), sends due heartbeats.
    pub fn turn(
        &mut self,
        deadline: Instant,
        answers: &mut Vec<Answer>,
    ) -> anyhow::Result<Instant> {
        self.flush();
        let mut events = std::mem::take(&mut self.events);
        self.reactor
            .turn(Some(deadline.min(self.next_hb)), &mut events)?;
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        for e in events.drain(..) {
            match e {
                NetEvent::Connected { conn } => {
                    if let Some(&i) = self.index.get(&conn) {
                        self.conns[i].state = St::Registering;
                    }
                }
                NetEvent::Received { conn, bytes } => {
                    let Some(&i) = self.index.get(&conn) else {
                        continue;
                    };
                    let c = &mut self.conns[i];
                    c.secure
                        .receive(&bytes)
                        .with_context(|| format!("{}: secure link", c.name))?;
                    let reply = c.secure.take_outgoing();
                    if !reply.is_empty() {
                        self.reactor.send(c.id, &reply);
                    }
                    let bytes = c.secure.take_plaintext();
                    if c.state == St::Ready && c.dec.buffered() == 0 {
                        c.raw.extend_from_slice(&bytes);
                        self.on_raw(i, answers)?;
                        continue;
                    }
                    self.conns[i].dec.push(&bytes);
                    while let Some(f) = self.conns[i]
                        .dec
                        .next_frame()
                        .context("undecodable reply from the registry")?
                    {
                        self.on_frame(i, f, answers)?;
                    }
                }
                NetEvent::Closed { conn, reason } => {
                    if let Some(&i) = self.index.get(&conn) {
                        bail!(
                            "registry connection {} closed: {reason}",
                            self.conns[i].name
                        );
                    }
                }
                _ => {}
            }
        }
        self.events = events;
        if now >= self.next_hb {
            self.next_hb = now + self.hb_interval;
            self.heartbeat();
        }
        self.flush();
        Ok(now)
    }

    fn heartbeat(&mut self) {
        let Some(to) = self.registry_udp else { return };
        for c in &mut self.conns {
            if let Some(key) = &c.key {
                c.hb_counter += 1;
                let hb = Heartbeat::sign(key, c.session, c.hb_counter, 0).encode();
                self.reactor.send_to(self.udp, to, &hb);
            }
        }
    }

    fn on_frame(&mut self, i: usize, f: Frame, answers: &mut Vec<Answer>) -> anyhow::Result<()> {
        let c = &mut self.conns[i];
        match (c.state, f.id, f.msg) {
            (_, 0, _) => {} // welcome and pushed events
            (St::Connecting | St::Registering, 1, Msg::Ok) => {
                c.state = St::LoggingIn;
                let login = Frame::new(
                    2,
                    Msg::Login {
                        name: c.name.clone(),
                        password: super::scenarios::logins::PASSWORD.into(),
                        listen: SocketAddr::from(([127, 0, 0, 1], 9)),
                    },
                );
                login.encode(&mut c.out);
            }
            (
                St::LoggingIn,
                2,
                Msg::LoggedIn {
                    session,
                    heartbeat_key,
                    heartbeat_interval_ms,
                    udp_port,
                    ..
                },
            ) => {
                c.state = St::Ready;
                c.session = session;
                c.key = Some(HeartbeatKey::new(&heartbeat_key));
                self.hb_interval = self
                    .hb_interval
                    .min(Duration::from_millis(u64::from(heartbeat_interval_ms)));
                if self.registry_udp.is_none() {
                    self.registry_udp = Some(SocketAddr::from(([127, 0, 0, 1], udp_port)));
                }
                self.ready += 1;
            }
            (_, id, msg @ Msg::Error { .. }) if id < 10 => {
                bail!("{}: login failed: {msg:?}", c.name);
            }
            (St::Ready, id, msg) => {
                if matches!(msg, Msg::Error { .. }) {
                    self.request_errors += 1;
                }
                let pos = if c.inflight.front().map(|x| x.0) == Some(id) {
                    Some(0)
                } else {
                    c.inflight.iter().position(|x| x.0 == id)
                };
                if let Some((_, from)) = pos.and_then(|p| c.inflight.remove(p)) {
                    answers.push(Answer { conn: i, from });
                }
            }
            _ => {}
        }
        Ok(())
    }
}
