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
use p2pchat_protocol::{Frame, FrameDecoder, Heartbeat, HeartbeatKey, Msg, Role, VERSION};

/// The kinds of request the scenario sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Search` for a logged-in user.
    Search,
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
}

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
            reactor.send(id, &b);
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

    /// Queues a request on connection `i`, its latency counting from `from`. Written at the
    /// next [`RawPool::flush`].
    pub fn request(&mut self, i: usize, kind: Kind, target: &str, from: Instant) {
        let c = &mut self.conns[i];
        let id = c.next_id;
        c.next_id = c.next_id.wrapping_add(1).max(10);
        let msg = match kind {
            Kind::Search => Msg::Search {
                name: target.into(),
            },
            Kind::List => Msg::ListOnline {
                after: String::new(),
                limit: 10,
            },
            Kind::Ping => Msg::Ping,
        };
        Frame::new(id, msg).encode(&mut c.out);
        c.inflight.push_back((id, from));
    }

    /// Writes every connection's queued requests (one `send` per connection).
    pub fn flush(&mut self) {
        for c in &mut self.conns {
            if !c.out.is_empty() {
                let b = c.out.split();
                self.reactor.send(c.id, &b);
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
                    self.conns[i].dec.push(&bytes);
                    while let Some(f) = self.conns[i]
                        .dec
                        .next_frame()
                        .context("undecodable reply from the registry")?
                    {
                        self.on_frame(i, f, now, answers)?;
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

    fn on_frame(
        &mut self,
        i: usize,
        f: Frame,
        now: Instant,
        answers: &mut Vec<Answer>,
    ) -> anyhow::Result<()> {
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
                        listen: "127.0.0.1:9".parse().expect("literal address"),
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
            (St::Ready, id, _) => {
                let pos = if c.inflight.front().map(|x| x.0) == Some(id) {
                    Some(0)
                } else {
                    c.inflight.iter().position(|x| x.0 == id)
                };
                if let Some(p) = pos {
                    if let Some((_, from)) = c.inflight.remove(p) {
                        answers.push(Answer { conn: i, from });
                    }
                }
                let _ = now;
            }
            _ => {}
        }
        Ok(())
    }
}
