//! Scenario tests of [`Node`] with a virtual clock (quinn's `src/tests` style).
//!
//! [`World`] wires real `Node`s and the real registry together in memory:
//!
//! - Peer links: a `Connect` to another node's listen address becomes an `Accepted` there and a
//!   `Connected` here, `Send` on one end becomes `Received` on the other, `Close` becomes
//!   `Closed` on both.
//! - The registry is the real [`p2pchat_registry::Registry`] over the real SQLite store in a
//!   temporary directory ([`RegistryHost`]), driven like `bench`'s `RegistryDriver` and the
//!   registry's own scenario harness: hash jobs run the real PBKDF2 (with few iterations),
//!   store jobs are applied to SQLite at once, `Send`/`Close` reach the node's registry link,
//!   heartbeat datagrams sent to the registry's UDP address reach it as `Datagram`s, and it gets
//!   `Timeout` whenever the virtual clock passes its `poll_timeout`.
//! - Faults are played on the wires and the workers, never by answering in the registry's
//!   place: the registry can die and restart over the same store, go silent (a dead host:
//!   nothing arrives either way), or be slow (hash or store jobs parked until released).
//!
//! Time is `t0 + offset` throughout and only moves when a test moves it; nothing sleeps.

mod chat;
mod registry;
mod rooms;
mod signed;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2pchat_protocol::{Frame, FrameDecoder, Msg};
use p2pchat_registry as reg;
use p2pchat_registry::hasher::{run_hash, HashDone, HashJob};
use p2pchat_registry::store::{SqliteStore, StoreJob};
use p2pchat_registry::{ConnId, Registry};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tempfile::TempDir;

use crate::command::{parse, Command};
use crate::{CloseReason, Config, Input, LinkId, Node, NodeEvent, Output};

pub(crate) const REGISTRY: &str = "10.0.0.1:15600";
/// Where the registry receives heartbeats: its host and the port it announces at login.
pub(crate) const REGISTRY_UDP: &str = "10.0.0.1:15500";
pub(crate) const WALL_MS: u64 = 1_700_000_000_000;
/// The password of every account the tests create.
pub(crate) const PASSWORD: &str = "password1";

pub(crate) fn registry_addr() -> SocketAddr {
    REGISTRY.parse().unwrap()
}

pub(crate) fn registry_udp() -> SocketAddr {
    REGISTRY_UDP.parse().unwrap()
}

/// The bytes of one frame.
pub(crate) fn bytes(id: u32, msg: Msg) -> Bytes {
    Frame::new(id, msg).to_bytes()
}

/// Decodes every whole frame in a chunk of stream bytes.
pub(crate) fn frames(chunk: &[u8]) -> Vec<Frame> {
    let mut d = FrameDecoder::new(1 << 20);
    d.push(chunk);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame().unwrap() {
        out.push(f);
    }
    out
}

/// The registry configuration of the tests: the production defaults, with cheap hashing and
/// pages of two names (so that paging is exercised with a handful of users).
pub(crate) fn registry_config() -> reg::Config {
    reg::Config {
        pbkdf2_iterations: 10,
        max_page: 2,
        ..reg::Config::default()
    }
}

/// What one `LoggedIn` reply of the registry gave a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) session: u64,
    pub(crate) key: [u8; 32],
    pub(crate) token: Vec<u8>,
}

/// What the registry asks its driver to deliver to a client connection.
#[derive(Debug)]
pub(crate) enum ToClient {
    Send(ConnId, Bytes),
    Close(ConnId),
}

/// The real registry with its real store, run in memory. Hash and store jobs are completed
/// inline (or parked while `hold_*` is set); what is meant for clients is handed back.
pub(crate) struct RegistryHost {
    /// `None` while the registry is down.
    pub(crate) registry: Option<Registry>,
    config: reg::Config,
    store: SqliteStore,
    _dir: TempDir,
    t0: Instant,
    boots: u64,
    /// While set, hash jobs are parked (a slow hashing worker).
    pub(crate) hold_hashes: bool,
    held_hashes: Vec<HashJob>,
    /// While set, store jobs are parked (a slow disk).
    pub(crate) hold_stores: bool,
    held_stores: Vec<StoreJob>,
    /// What the registry logged.
    pub(crate) events: Vec<reg::Event>,
}

impl RegistryHost {
    /// A registry over an empty database, its clock anchored at `t0` (wall time `WALL_MS`).
    pub(crate) fn new(config: reg::Config, t0: Instant) -> RegistryHost {
        let dir = TempDir::new().unwrap();
        let (store, snapshot) = SqliteStore::open(&dir.path().join("registry.db")).unwrap();
        let registry = Registry::new(config.clone(), &snapshot, 1, t0, WALL_MS as i64);
        RegistryHost {
            registry: Some(registry),
            config,
            store,
            _dir: dir,
            t0,
            boots: 1,
            hold_hashes: false,
            held_hashes: Vec::new(),
            hold_stores: false,
            held_stores: Vec::new(),
            events: Vec::new(),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.registry.is_some()
    }

    /// The registry process dies: its state is gone, what the store committed stays.
    pub(crate) fn kill(&mut self) {
        self.registry = None;
        self.held_hashes.clear();
        self.held_stores.clear();
    }

    /// A new registry process over what the store has durably (as the binary starts).
    pub(crate) fn restart(&mut self, now: Instant) {
        let snapshot = self.store.read_snapshot().unwrap();
        self.boots += 1;
        let wall = WALL_MS + (now - self.t0).as_millis() as u64;
        self.registry = Some(Registry::new(
            self.config.clone(),
            &snapshot,
            self.boots,
            now,
            wall as i64,
        ));
    }

    /// The registry's next deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.registry.as_ref().and_then(|r| r.poll_timeout())
    }

    /// Feeds one input, completes the jobs it starts, and returns what goes to clients.
    pub(crate) fn handle(&mut self, now: Instant, input: reg::Input<'_>) -> Vec<ToClient> {
        let Some(r) = self.registry.as_mut() else {
            return Vec::new();
        };
        r.handle_input(now, input);
        self.drain(now)
    }

    /// Runs the parked hash and store jobs.
    pub(crate) fn release(&mut self, now: Instant) -> Vec<ToClient> {
        self.hold_hashes = false;
        self.hold_stores = false;
        let mut out = Vec::new();
        for job in std::mem::take(&mut self.held_hashes) {
            let result = run_hash(&job.request);
            out.extend(self.handle(now, reg::Input::HashDone(HashDone { id: job.id, result })));
        }
        let jobs = std::mem::take(&mut self.held_stores);
        if !jobs.is_empty() {
            for done in self.store.apply(jobs) {
                out.extend(self.handle(now, reg::Input::StoreDone(done)));
            }
        }
        out
    }

    fn drain(&mut self, now: Instant) -> Vec<ToClient> {
        let mut to_clients = Vec::new();
        loop {
            let Some(r) = self.registry.as_mut() else {
                return to_clients;
            };
            let Some(out) = r.poll_output() else {
                return to_clients;
            };
            match out {
                reg::Output::Send { conn, bytes } => to_clients.push(ToClient::Send(conn, bytes)),
                reg::Output::Close { conn, .. } => {
                    to_clients.push(ToClient::Close(conn));
                    // The driver reports every close, our own included.
                    r.handle_input(now, reg::Input::Closed { conn });
                }
                reg::Output::Hash(job) => {
                    if self.hold_hashes {
                        self.held_hashes.push(job);
                    } else {
                        let result = run_hash(&job.request);
                        r.handle_input(now, reg::Input::HashDone(HashDone { id: job.id, result }));
                    }
                }
                reg::Output::Store(job) => {
                    if self.hold_stores {
                        self.held_stores.push(job);
                    } else {
                        for done in self.store.apply(vec![job]) {
                            r.handle_input(now, reg::Input::StoreDone(done));
                        }
                    }
                }
                reg::Output::Event(e) => self.events.push(e),
            }
        }
    }
}

/// One node and what it produced.
pub(crate) struct Peer {
    pub(crate) node: Node,
    pub(crate) listen: SocketAddr,
    pub(crate) events: Vec<NodeEvent>,
    pub(crate) datagrams: Vec<(Instant, SocketAddr, Bytes)>,
    pub(crate) closes: Vec<(LinkId, CloseReason)>,
    /// The node's registry connection, while the World knows it open.
    pub(crate) registry_link: Option<LinkId>,
    /// Every `LoggedIn` the registry delivered to this node, in order.
    pub(crate) logins: Vec<Login>,
    /// The last `Resume` this node sent to the registry.
    pub(crate) last_resume: Option<Msg>,
    /// Every frame the registry delivered to this node, in order.
    pub(crate) from_registry: Vec<Frame>,
    pub(crate) exited: bool,
    pub(crate) dead: bool,
}

impl Peer {
    /// Takes the events seen so far.
    pub(crate) fn take_events(&mut self) -> Vec<NodeEvent> {
        std::mem::take(&mut self.events)
    }
}

/// Real nodes, the real registry, an in-memory network between them, and a virtual clock.
pub(crate) struct World {
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    pub(crate) peers: Vec<Peer>,
    /// (node, link) -> (node, link) for every open peer link, both directions.
    pipes: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    next_accept: u64,
    pub(crate) queue: VecDeque<(usize, Input)>,
    pub(crate) registry: RegistryHost,
    /// Registry connections: the registry's id <-> the node and its link.
    reg_conns: BTreeMap<ConnId, (usize, LinkId)>,
    reg_links: BTreeMap<(usize, LinkId), ConnId>,
    next_conn: u64,
    /// While set, the registry's host is dead to the network: connects hang, and nothing
    /// (frames, closes, datagrams) gets through in either direction.
    pub(crate) registry_silent: bool,
    /// Frames each node sent towards the registry (delivered or not).
    pub(crate) registry_seen: Vec<Vec<Frame>>,
    /// Every peer-to-peer message sent, in order: (from node, to node, message).
    pub(crate) wire: Vec<(usize, usize, Msg)>,
}

impl World {
    pub(crate) fn new() -> World {
        World::with_registry(|_| {})
    }

    /// A world whose registry runs with [`registry_config`] changed by `tweak`.
    pub(crate) fn with_registry(tweak: impl FnOnce(&mut reg::Config)) -> World {
        // The test's one clock read; everything after is t0 + Duration.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut config = registry_config();
        tweak(&mut config);
        World {
            t0,
            now: t0,
            peers: Vec::new(),
            pipes: BTreeMap::new(),
            next_accept: 0,
            queue: VecDeque::new(),
            registry: RegistryHost::new(config, t0),
            reg_conns: BTreeMap::new(),
            reg_links: BTreeMap::new(),
            next_conn: 1,
            registry_silent: false,
            registry_seen: Vec::new(),
            wire: Vec::new(),
        }
    }

    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Adds a node (listening on 10.0.0.(i+2):4000) and lets it reach the registry.
    pub(crate) fn add(&mut self, tweak: impl FnOnce(&mut Config)) -> usize {
        let i = self.peers.len();
        assert!(i < 250, "addresses run out");
        let listen: SocketAddr = format!("10.0.0.{}:4000", i + 2).parse().unwrap();
        let mut config = Config::new(registry_addr(), listen);
        tweak(&mut config);
        let rng = StdRng::seed_from_u64(i as u64);
        let node = Node::new(config, self.now, self.wall_ms(), rng);
        self.peers.push(Peer {
            node,
            listen,
            events: Vec::new(),
            datagrams: Vec::new(),
            closes: Vec::new(),
            registry_link: None,
            logins: Vec::new(),
            last_resume: None,
            from_registry: Vec::new(),
            exited: false,
            dead: false,
        });
        self.registry_seen.push(Vec::new());
        self.input(i, Input::Timeout);
        i
    }

    /// Adds a node, registers `name` at the registry (unless it exists) and logs in.
    pub(crate) fn add_user(&mut self, name: &str, tweak: impl FnOnce(&mut Config)) -> usize {
        let i = self.add(tweak);
        self.line(i, &format!("/register {name} {PASSWORD}"));
        self.line(i, &format!("/login {name} {PASSWORD}"));
        let events = self.peers[i].take_events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, NodeEvent::LoggedIn { .. })),
            "{events:?}"
        );
        i
    }

    /// Creates the account `name` without logging it in: a node registers it and quits.
    pub(crate) fn register(&mut self, name: &str) {
        let i = self.add(|_| {});
        self.line(i, &format!("/register {name} {PASSWORD}"));
        let events = self.peers[i].take_events();
        assert!(
            events.contains(&NodeEvent::Registered { name: name.into() }),
            "{events:?}"
        );
        self.line(i, "/quit");
        assert!(self.peers[i].exited);
    }

    /// Takes node `i`'s events; returns the messages of `room` among them as (from, text).
    pub(crate) fn shown_in(&mut self, i: usize, room: &str) -> Vec<(String, String)> {
        self.peers[i]
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                NodeEvent::RoomMessage {
                    room: r,
                    from,
                    text,
                    ..
                } if r == room => Some((from, text)),
                _ => None,
            })
            .collect()
    }

    /// Types a line on node `i`.
    pub(crate) fn line(&mut self, i: usize, line: &str) {
        let command: Command = parse(line).unwrap().unwrap();
        self.input(i, Input::Command(command));
    }

    /// Feeds one input to node `i`, then runs the network until it is quiet.
    pub(crate) fn input(&mut self, i: usize, input: Input) {
        self.queue.push_back((i, input));
        self.pump();
    }

    /// Unix time in milliseconds now.
    pub(crate) fn wall_ms(&self) -> u64 {
        WALL_MS + (self.now - self.t0).as_millis() as u64
    }

    /// Moves the clock to `t` and fires every timer: the nodes' first (their heartbeats due
    /// now reach the registry before it judges expiries), then the registry's.
    pub(crate) fn advance_to(&mut self, t: Instant) {
        assert!(t >= self.now);
        self.now = t;
        for i in 0..self.peers.len() {
            self.queue.push_back((i, Input::Timeout));
        }
        self.pump();
        self.feed_registry(reg::Input::Timeout);
        self.pump();
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.advance_to(self.now + d);
    }

    /// Steps from deadline to deadline of all nodes and the registry until `limit`.
    pub(crate) fn run_until(&mut self, limit: Instant) {
        let mut stuck = 0;
        loop {
            let next = self
                .peers
                .iter()
                .filter(|p| !p.dead)
                .filter_map(|p| p.node.poll_timeout())
                .chain(self.registry.poll_timeout())
                .min();
            match next {
                Some(t) if t <= limit => {
                    if t <= self.now {
                        stuck += 1;
                        assert!(stuck < 1_000, "a deadline at {t:?} never clears");
                    } else {
                        stuck = 0;
                    }
                    self.advance_to(t.max(self.now));
                }
                _ => break,
            }
        }
        self.advance_to(limit);
    }

    /// Runs the clock `d` forward, deadline by deadline.
    pub(crate) fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    pub(crate) fn pump(&mut self) {
        let mut guard = 0;
        while let Some((i, input)) = self.queue.pop_front() {
            guard += 1;
            assert!(guard < 1_000_000, "network never quiets down");
            if self.peers[i].dead {
                continue;
            }
            let now = self.now;
            self.peers[i].node.handle_input(now, input);
            while let Some(out) = self.peers[i].node.poll_output() {
                self.carry_out(i, out);
            }
        }
    }

    fn carry_out(&mut self, i: usize, out: Output) {
        match out {
            Output::Connect { link, addr } if addr == registry_addr() => {
                self.connect_registry(i, link)
            }
            Output::Connect { link, addr } => {
                let target = self.peers.iter().position(|p| p.listen == addr && !p.dead);
                let Some(j) = target else {
                    self.queue.push_back((i, Input::Closed { link }));
                    return;
                };
                self.next_accept += 1;
                let acc = LinkId::Accepted(self.next_accept);
                self.pipes.insert((i, link), (j, acc));
                self.pipes.insert((j, acc), (i, link));
                let remote = self.peers[i].listen;
                self.queue
                    .push_back((j, Input::Accepted { link: acc, remote }));
                self.queue.push_back((i, Input::Connected { link }));
            }
            Output::Send { link, bytes } => {
                if Some(link) == self.peers[i].registry_link {
                    for f in frames(&bytes) {
                        if matches!(f.msg, Msg::Resume { .. }) {
                            self.peers[i].last_resume = Some(f.msg.clone());
                        }
                        self.registry_seen[i].push(f);
                    }
                }
                if let Some(&conn) = self.reg_links.get(&(i, link)) {
                    if !self.registry_silent {
                        self.feed_registry(reg::Input::Received {
                            conn,
                            bytes: &bytes,
                        });
                    }
                } else if let Some(&(j, other)) = self.pipes.get(&(i, link)) {
                    for f in frames(&bytes) {
                        self.wire.push((i, j, f.msg));
                    }
                    self.queue
                        .push_back((j, Input::Received { link: other, bytes }));
                }
            }
            Output::Close { link, reason } => {
                self.peers[i].closes.push((link, reason));
                if Some(link) == self.peers[i].registry_link {
                    self.peers[i].registry_link = None;
                }
                if let Some(conn) = self.reg_links.remove(&(i, link)) {
                    self.reg_conns.remove(&conn);
                    if !self.registry_silent {
                        self.feed_registry(reg::Input::Closed { conn });
                    }
                } else if let Some((j, other)) = self.pipes.remove(&(i, link)) {
                    self.pipes.remove(&(j, other));
                    self.queue.push_back((j, Input::Closed { link: other }));
                }
                self.queue.push_back((i, Input::Closed { link }));
            }
            Output::SendTo { to, bytes } => {
                self.peers[i].datagrams.push((self.now, to, bytes.clone()));
                if to == registry_udp() && !self.registry_silent {
                    let from = SocketAddr::new(self.peers[i].listen.ip(), 40_000);
                    self.feed_registry(reg::Input::Datagram {
                        from,
                        bytes: &bytes,
                    });
                }
            }
            Output::Event(e) => self.peers[i].events.push(e),
            Output::Exit => self.peers[i].exited = true,
        }
    }

    /// Node `i` dials the registry on `link`.
    fn connect_registry(&mut self, i: usize, link: LinkId) {
        if self.registry_silent {
            // A dead host: the connect hangs until the node's own deadline.
            return;
        }
        if !self.registry.is_up() {
            self.queue.push_back((i, Input::Closed { link }));
            return;
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.reg_conns.insert(conn, (i, link));
        self.reg_links.insert((i, link), conn);
        self.peers[i].registry_link = Some(link);
        // Each node has its own address, so per-source limits apply per node.
        let remote = SocketAddr::new(self.peers[i].listen.ip(), 50_000);
        self.feed_registry(reg::Input::Connected { conn, remote });
        self.queue.push_back((i, Input::Connected { link }));
    }

    /// Feeds the registry one input and delivers what it sends to the nodes.
    fn feed_registry(&mut self, input: reg::Input<'_>) {
        let now = self.now;
        let out = self.registry.handle(now, input);
        self.deliver(out);
    }

    fn deliver(&mut self, out: Vec<ToClient>) {
        for o in out {
            match o {
                ToClient::Send(conn, bytes) => {
                    let Some(&(i, link)) = self.reg_conns.get(&conn) else {
                        continue;
                    };
                    if self.registry_silent {
                        continue;
                    }
                    for f in frames(&bytes) {
                        if let Msg::LoggedIn {
                            session,
                            heartbeat_key,
                            resume_token,
                            ..
                        } = &f.msg
                        {
                            self.peers[i].logins.push(Login {
                                session: *session,
                                key: *heartbeat_key,
                                token: resume_token.clone(),
                            });
                        }
                        self.peers[i].from_registry.push(f);
                    }
                    self.queue.push_back((i, Input::Received { link, bytes }));
                }
                ToClient::Close(conn) => {
                    let Some((i, link)) = self.reg_conns.remove(&conn) else {
                        continue;
                    };
                    self.reg_links.remove(&(i, link));
                    if self.registry_silent {
                        continue;
                    }
                    if self.peers[i].registry_link == Some(link) {
                        self.peers[i].registry_link = None;
                    }
                    self.queue.push_back((i, Input::Closed { link }));
                }
            }
        }
    }

    /// Runs the registry's parked hash and store jobs.
    pub(crate) fn release_registry_jobs(&mut self) {
        let now = self.now;
        let out = self.registry.release(now);
        self.deliver(out);
        self.pump();
    }

    /// Connects a stranger to node `i`'s listener; returns the link as node `i` knows it.
    pub(crate) fn stranger_connects(&mut self, i: usize) -> LinkId {
        self.next_accept += 1;
        let link = LinkId::Accepted(self.next_accept);
        let remote: SocketAddr = "10.9.9.9:5555".parse().unwrap();
        self.input(i, Input::Accepted { link, remote });
        link
    }

    /// The peer link node `i` has open to node `j`, if any.
    pub(crate) fn pipe(&self, i: usize, j: usize) -> Option<LinkId> {
        self.pipes
            .iter()
            .find(|((a, _), (b, _))| *a == i && *b == j)
            .map(|((_, l), _)| *l)
    }

    pub(crate) fn pipe_count(&self) -> usize {
        self.pipes.len() / 2
    }

    /// Node `i` dies without a word (kill -9): its connections close under the others, the
    /// registry's included (the OS closes a dead process's sockets).
    pub(crate) fn kill(&mut self, i: usize) {
        self.peers[i].dead = true;
        let gone: Vec<_> = self
            .pipes
            .iter()
            .filter(|((a, _), _)| *a == i)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, (j, other)) in gone {
            self.pipes.remove(&k);
            self.pipes.remove(&(j, other));
            self.queue.push_back((j, Input::Closed { link: other }));
        }
        let conns: Vec<ConnId> = self
            .reg_links
            .iter()
            .filter(|((a, _), _)| *a == i)
            .map(|(_, c)| *c)
            .collect();
        for conn in conns {
            if let Some(key) = self.reg_conns.remove(&conn) {
                self.reg_links.remove(&key);
            }
            self.feed_registry(reg::Input::Closed { conn });
        }
        self.peers[i].registry_link = None;
        self.pump();
    }

    /// The connection between node `i` and the registry breaks (both ends see it close).
    /// Nothing happens while there is none (the node is reconnecting).
    pub(crate) fn drop_registry_conn(&mut self, i: usize) {
        let conns: Vec<((usize, LinkId), ConnId)> = self
            .reg_links
            .iter()
            .filter(|((a, _), _)| *a == i)
            .map(|(k, c)| (*k, *c))
            .collect();
        for ((_, link), conn) in conns {
            self.reg_links.remove(&(i, link));
            self.reg_conns.remove(&conn);
            self.peers[i].registry_link = None;
            self.feed_registry(reg::Input::Closed { conn });
            self.queue.push_back((i, Input::Closed { link }));
        }
        self.pump();
    }

    /// The registry process dies: every registry connection closes under its node, and
    /// connects are refused until [`World::restart_registry`].
    pub(crate) fn kill_registry(&mut self) {
        self.registry.kill();
        for (_, (i, link)) in std::mem::take(&mut self.reg_conns) {
            self.peers[i].registry_link = None;
            self.queue.push_back((i, Input::Closed { link }));
        }
        self.reg_links.clear();
        self.pump();
    }

    /// A new registry process starts over the same database, with nobody online.
    pub(crate) fn restart_registry(&mut self) {
        assert!(!self.registry.is_up(), "kill it first");
        let now = self.now;
        self.registry.restart(now);
    }
}
