//! Synthetic peers: many real `p2pchat_peer::Node`s multiplexed on one engine [`Reactor`],
//! driven by the run loop in the peer crate's docs, without a UI.
//!
//! Each peer has its own registry connection and session, sends its own UDP heartbeats and has
//! its own listener address. Descriptors are the limit at scale, so heartbeats of all peers of a
//! pool leave through one UDP socket (the registry identifies heartbeats by session, not by
//! source address) and, unless a scenario needs peer links, peers share one listener that
//! nobody dials (`Listen::Shared`). Scenarios with peer links (`room-flood`) give each peer a
//! listener of its own (`Listen::Own`; the engine allows 255 listeners per reactor).
//!
//! One timer index (`BTreeSet<(deadline, peer)>`) holds every node's `poll_timeout`, so a turn
//! never scans all peers.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use p2pchat_engine::{ConnId, ListenerId, NetEvent, Reactor, UdpId};
use p2pchat_peer::{Command, Config, Input, LinkId, Node, NodeEvent, Output, RoomSigner};
use p2pchat_protocol::secure::Identity;

use crate::load::secure::SecureLinks;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// How a synthetic peer listens for other peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// The pool's one listener (no peer links expected).
    Shared,
    /// A listener of its own on 127.0.0.1.
    Own,
}

struct Slot {
    node: Node,
    /// The registry's address: connections to it run over a secure link.
    registry: SocketAddr,
    links: HashMap<LinkId, ConnId>,
    next_accepted: u64,
    deadline: Option<Instant>,
    alive: bool,
}

/// Counters of a pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    /// Heartbeat datagrams sent.
    pub datagrams: u64,
    /// Datagrams the socket refused (buffer full).
    pub datagrams_dropped: u64,
    /// Connections accepted on the shared listener (unexpected) and closed.
    pub stray_accepts: u64,
}

/// Many nodes on one reactor.
pub struct Pool {
    reactor: Reactor,
    udp: UdpId,
    shared_listen: SocketAddr,
    slots: Vec<Slot>,
    owner: HashMap<ConnId, (usize, LinkId)>,
    listener_owner: HashMap<ListenerId, usize>,
    timers: BTreeSet<(Instant, usize)>,
    feedback: Vec<(usize, Input)>,
    scratch: Vec<NetEvent>,
    /// The secure links of the registry connections (the nodes speak plain frames).
    secure: SecureLinks,
    /// Events the nodes showed, with the peer index, in order, until the caller drains them.
    pub events: Vec<(usize, NodeEvent)>,
    /// Counters.
    pub stats: PoolStats,
    /// Room mode of the peers added from now on.
    pub room_mode: p2pchat_peer::RoomMode,
    /// Whether peers added from now on sign their room messages and check others'.
    pub sign: bool,
    /// Room trace events kept by peers added from now on (`Config::room_trace`).
    pub room_trace: usize,
}

impl Pool {
    /// A pool with its reactor, UDP socket and shared listener on 127.0.0.1.
    pub fn new() -> anyhow::Result<Pool> {
        let mut reactor = Reactor::new(p2pchat_engine::Config::default())?;
        let l = reactor.listen("127.0.0.1:0".parse()?)?;
        let shared_listen = reactor.listener_addr(l).context("listener address")?;
        let udp = reactor.bind_udp("127.0.0.1:0".parse()?)?;
        Ok(Pool {
            reactor,
            udp,
            shared_listen,
            slots: Vec::new(),
            owner: HashMap::new(),
            listener_owner: HashMap::new(),
            timers: BTreeSet::new(),
            feedback: Vec::new(),
            scratch: Vec::new(),
            secure: SecureLinks::default(),
            events: Vec::new(),
            stats: PoolStats::default(),
            room_mode: p2pchat_peer::RoomMode::default(),
            sign: false,
            room_trace: 0,
        })
    }

    /// Adds a peer using the registry at `registry`; it dials at once. Returns its index.
    pub fn add(
        &mut self,
        now: Instant,
        registry: SocketAddr,
        registry_udp: Option<SocketAddr>,
        listen: Listen,
        degree: usize,
        seed: u64,
    ) -> anyhow::Result<usize> {
        let i = self.slots.len();
        let addr = match listen {
            Listen::Shared => self.shared_listen,
            Listen::Own => {
                let l = self.reactor.listen("127.0.0.1:0".parse()?)?;
                self.listener_owner.insert(l, i);
                self.reactor.listener_addr(l).context("listener address")?
            }
        };
        let mut config = Config::new(registry, addr);
        config.registry_udp = registry_udp;
        config.degree = degree;
        config.room_mode = self.room_mode;
        config.room_trace = self.room_trace;
        if self.sign {
            let identity = Arc::new(Identity::generate_from_os()?);
            config.identity_key = Some(identity.public_key().0);
            config.identity = Some(RoomSigner::new(identity));
        }
        // The heartbeat timestamp only needs a wall-clock anchor.
        #[allow(clippy::disallowed_methods)]
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let node = Node::new(config, now, wall_ms, StdRng::seed_from_u64(seed));
        self.slots.push(Slot {
            node,
            registry,
            links: HashMap::new(),
            next_accepted: 0,
            deadline: None,
            alive: true,
        });
        self.feed(i, now, Input::Timeout);
        Ok(i)
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the pool has no peers.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The node of peer `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.slots[i].node
    }

    /// Gives peer `i` a command, as if typed.
    pub fn command(&mut self, i: usize, now: Instant, c: Command) {
        self.feed(i, now, Input::Command(c));
    }

    /// Peer `i` vanishes without logout: its node is never fed again, so its heartbeats stop.
    /// With `close` its sockets are dropped (a crashed process: the kernel closes them);
    /// without, they stay open and silent (a machine that lost power or network), so only the
    /// heartbeat expiry can find it.
    pub fn kill(&mut self, i: usize, close: bool) {
        let slot = &mut self.slots[i];
        slot.alive = false;
        if let Some(d) = slot.deadline.take() {
            self.timers.remove(&(d, i));
        }
        if close {
            for (_, conn) in slot.links.drain() {
                self.reactor.abort(conn);
            }
        }
    }

    /// The reactor's counters.
    pub fn engine_stats(&self) -> p2pchat_engine::Stats {
        self.reactor.stats()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.reactor.connection_count()
    }

    fn feed(&mut self, i: usize, now: Instant, input: Input) {
        if !self.slots[i].alive {
            return;
        }
        self.slots[i].node.handle_input(now, input);
        self.drain(i);
        while let Some((j, input)) = self.feedback.pop() {
            self.slots[j].node.handle_input(now, input);
            self.drain(j);
        }
        self.rearm(i);
    }

    fn rearm(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let next = slot.node.poll_timeout();
        if next != slot.deadline {
            if let Some(d) = slot.deadline {
                self.timers.remove(&(d, i));
            }
            if let Some(d) = next {
                self.timers.insert((d, i));
            }
            slot.deadline = next;
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.slots[i].node.poll_output() {
            match out {
                Output::Connect { link, addr } => match self.reactor.connect(addr) {
                    Ok(conn) => {
                        let hello = if addr == self.slots[i].registry {
                            self.secure.dial(conn)
                        } else {
                            self.secure.dial_peer(conn)
                        };
                        match hello {
                            Ok(hello) => {
                                self.reactor.send(conn, &hello);
                            }
                            Err(_) => self.reactor.abort(conn),
                        }
                        self.slots[i].links.insert(link, conn);
                        self.owner.insert(conn, (i, link));
                    }
                    Err(_) => self.feedback.push((i, Input::Closed { link })),
                },
                Output::Send { link, bytes } => {
                    if let Some(&conn) = self.slots[i].links.get(&link) {
                        if !self.secure.is_secure(conn) {
                            self.reactor.send(conn, &bytes);
                        } else if let Ok(sealed) = self.secure.seal(conn, &bytes) {
                            if !sealed.is_empty() {
                                self.reactor.send(conn, &sealed);
                            }
                        }
                    }
                }
                Output::Close { link, .. } => {
                    if let Some(conn) = self.slots[i].links.remove(&link) {
                        self.reactor.close(conn);
                    }
                }
                Output::SendTo { to, bytes } => {
                    self.stats.datagrams += 1;
                    if !self.reactor.send_to(self.udp, to, &bytes) {
                        self.stats.datagrams_dropped += 1;
                    }
                }
                Output::Event(e) => self.events.push((i, e)),
                Output::Exit => {}
            }
        }
    }

    /// The earliest node deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(d, _)| *d)
    }

    /// One loop iteration: waits for readiness or the earliest deadline (at most until `cap`),
    /// feeds every event to its node, then fires due timers. Returns the time read after the
    /// wait.
    pub fn turn(&mut self, cap: Instant) -> anyhow::Result<Instant> {
        let deadline = self.next_deadline().map_or(cap, |d| d.min(cap));
        let mut events = std::mem::take(&mut self.scratch);
        self.reactor.turn(Some(deadline), &mut events)?;
        // The driver's one clock read per turn, as the run loop prescribes.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        for e in events.drain(..) {
            self.handle_net(now, e);
        }
        self.scratch = events;
        while let Some(&(d, i)) = self.timers.first() {
            if d > now {
                break;
            }
            self.timers.remove(&(d, i));
            self.slots[i].deadline = None;
            self.feed(i, now, Input::Timeout);
        }
        Ok(now)
    }

    fn handle_net(&mut self, now: Instant, e: NetEvent) {
        match e {
            NetEvent::Accepted {
                listener,
                conn,
                remote,
            } => {
                let Some(&i) = self.listener_owner.get(&listener) else {
                    self.stats.stray_accepts += 1;
                    self.reactor.close(conn);
                    return;
                };
                let slot = &mut self.slots[i];
                if !slot.alive {
                    self.reactor.abort(conn);
                    return;
                }
                slot.next_accepted += 1;
                let link = LinkId::Accepted(slot.next_accepted);
                slot.links.insert(link, conn);
                self.owner.insert(conn, (i, link));
                self.secure.accept(conn);
                self.feed(i, now, Input::Accepted { link, remote });
            }
            NetEvent::Connected { conn } => {
                if let Some(&(i, link)) = self.owner.get(&conn) {
                    self.feed(i, now, Input::Connected { link });
                }
            }
            NetEvent::Received { conn, bytes } => {
                if let Some(&(i, link)) = self.owner.get(&conn) {
                    if !self.secure.is_secure(conn) {
                        self.feed(i, now, Input::Received { link, bytes });
                        return;
                    }
                    match self.secure.received(conn, &bytes) {
                        Ok((reply, plain)) => {
                            if !reply.is_empty() {
                                self.reactor.send(conn, &reply);
                            }
                            if !plain.is_empty() {
                                let bytes = plain.freeze();
                                self.feed(i, now, Input::Received { link, bytes });
                            }
                        }
                        // Its `Closed` tells the node, which reconnects.
                        Err(_) => self.reactor.close(conn),
                    }
                }
            }
            NetEvent::Closed { conn, .. } => {
                self.secure.closed(conn);
                if let Some((i, link)) = self.owner.remove(&conn) {
                    let slot = &mut self.slots[i];
                    if slot.links.get(&link) == Some(&conn) {
                        slot.links.remove(&link);
                    }
                    self.feed(i, now, Input::Closed { link });
                }
            }
            NetEvent::Datagram { .. } | NetEvent::Woken | NetEvent::Signal(_) => {}
        }
    }

    /// Turns until `until`.
    pub fn run_until(&mut self, until: Instant) -> anyhow::Result<()> {
        loop {
            if self.turn(until)? >= until {
                return Ok(());
            }
        }
    }
}

/// The time until `t` from `now`, zero when past.
pub fn until(now: Instant, t: Instant) -> Duration {
    t.saturating_duration_since(now)
}
