//! A deterministic discrete-event simulator: one real registry and many real peer nodes, wired
//! by a simulated network, on a virtual clock.
//!
//! # Brief overview
//!
//! - [`World`] owns everything: the seeded RNG, the virtual clock, the registry (the real
//!   [`p2pchat_registry::Registry`] over a real SQLite store in a temp dir), the peer
//!   [`p2pchat_peer::Node`]s, and the network ([`NetConfig`]: per-connection latency, jitter that
//!   never reorders one connection's bytes, UDP loss).
//! - Time is data. One real `Instant` is read when a world is made, as the anchor `t0`; every
//!   later instant is `t0 + offset`. [`World::step`] jumps straight to the earliest of the next
//!   network delivery and the earliest deadline of any node or of the registry. Deadlines live
//!   in a `BTreeSet<(Instant, Host)>` that is updated only for the host an input touched, so a
//!   step costs O(log n), never an O(n) scan.
//! - Everything random comes from one `u64` seed ([`seed_from_env`]: `SIM_SEED`, or the
//!   caller's): the network's draws, the registry's seed, and each node's `StdRng`. The same seed
//!   gives the same run, event for event ([`World::trace_hash`]). A world that is dropped while
//!   a test panics prints its seed.
//!
//! Addresses are virtual: the registry is `10.0.0.1:15600` (TCP) and `10.0.0.1:15500` (UDP);
//! node `i` listens on `10.a.b.c:4000`, where `a.b.c` is `i + 65536` in base 256, and sends its
//! heartbeats from port 4001 of the same address.
//!
//! # Driving a world
//!
//! ```no_run
//! use std::time::Duration;
//! use p2pchat_bench::sim::{SimConfig, World};
//!
//! let mut w = World::new(SimConfig::new(42));
//! let a = w.add_node(|_| {});
//! w.command(a, "/register alice password1");
//! w.command(a, "/login alice password1");
//! assert!(w.run_until(|w| w.registry().is_online("alice"), Duration::from_secs(5)));
//! ```

mod deliver;
pub mod faults;
pub mod flood_cmd;
pub mod measure;
mod net;
mod registry_host;
pub mod scenario;
mod trace;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use p2pchat_peer::{Input, LinkId, Node, NodeEvent, Output};
use p2pchat_registry::Registry;
use rand::rngs::StdRng;
use rand::SeedableRng;

pub use faults::{KindCount, WireStats};
pub use net::{NetConfig, NetStats};
pub use registry_host::{RegistryEvent, Tapped};

use net::{Delivery, Handle, Net, ACCEPTOR, DIALER};
use registry_host::RegistryHost;
use trace::Trace;

/// Hashes the simulator's own numeric keys (connection ids, drawn in sequence): one multiply
/// (Fibonacci hashing) spreads them over all bits, where SipHash in the registry's output
/// routing cost about 4 % of a 1,000-peer run's instructions. Not for anything a peer chooses.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by the simulator's sequential ids.
pub(crate) type SeqMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<SeqHasher>>;

/// The registry's TCP address in every simulation.
pub const REGISTRY_TCP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 15600);
/// The registry's UDP (heartbeat) address in every simulation.
pub const REGISTRY_UDP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 15500);
/// Unix time in milliseconds at `t0`.
pub const WALL0_MS: u64 = 1_700_000_000_000;
/// Steps at one virtual instant after which the world calls itself stuck (a host whose
/// deadline never moves past `now`).
const SPIN_LIMIT: u64 = 5_000_000;

/// The seed in `SIM_SEED`, or `default` when it is unset. Panics on a malformed value.
pub fn seed_from_env(default: u64) -> u64 {
    match std::env::var("SIM_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SIM_SEED must be a u64, got {s:?}")),
        Err(_) => default,
    }
}

/// A peer node of a world, by index in the order added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Something that takes inputs and has deadlines: the registry or a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// The registry.
    Registry,
    /// A peer node.
    Node(NodeId),
}

/// How to build a [`World`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The one seed everything random derives from.
    pub seed: u64,
    /// Latency and loss.
    pub net: NetConfig,
    /// The registry's configuration (default: [`crate::bench_config`], cheap hashing, no
    /// source limits).
    pub registry: p2pchat_registry::Config,
    /// Store writes wait this long for the group commit that makes them durable.
    pub store_delay: Duration,
    /// Keep the trace as text lines too (for determinism tests; costly for big worlds).
    pub trace_lines: bool,
    /// Which node events to keep for [`World::events`] (all, by default; big worlds keep
    /// fewer to save memory).
    pub keep_event: fn(&NodeEvent) -> bool,
    /// How often (in virtual time) [`World::run_until`] checks its predicate.
    pub check_every: Duration,
}

impl SimConfig {
    /// Defaults with `seed`.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            net: NetConfig::default(),
            registry: p2pchat_registry::Config {
                // Every simulated peer dials at the same virtual instant: a join storm, not
                // an attack; the connection admission limits would turn some away.
                max_unauthenticated: usize::MAX,
                max_per_source: usize::MAX,
                ..crate::bench_config()
            },
            store_delay: Duration::from_millis(2),
            trace_lines: false,
            keep_event: |_| true,
            check_every: Duration::from_millis(1),
        }
    }
}

struct SimNode {
    node: Node,
    /// The configuration it was made with (a restart reuses it).
    config: p2pchat_peer::Config,
    /// Restarts so far.
    incarnation: u32,
    /// Indices into `events` where each restart began.
    restarts: Vec<usize>,
    ip: Ipv4Addr,
    listen: SocketAddr,
    alive: bool,
    wake: Option<Instant>,
    /// Link -> (network connection, which end is ours).
    links: BTreeMap<LinkId, (u64, usize)>,
    next_accept: u64,
    events: Vec<(Duration, NodeEvent)>,
}

/// Counts, per number of hops travelled, the first copies of room messages delivered.
struct HopTracker {
    room: String,
    hist: Vec<u64>,
    /// Full-message frames sent in the room, by message text (see [`World::frames_of`]).
    frames: HashMap<String, u64>,
}

/// The simulated world: registry, nodes, network, clock. See the [module docs](self).
pub struct World {
    seed: u64,
    store_delay: Duration,
    keep_event: fn(&NodeEvent) -> bool,
    check_every: Duration,
    t0: Instant,
    now: Instant,
    rng: StdRng,
    net: Net,
    reg: RegistryHost,
    nodes: Vec<SimNode>,
    listeners: HashMap<SocketAddr, Host>,
    wakeups: BTreeSet<(Instant, Host)>,
    drop_udp: BTreeSet<NodeId>,
    /// The nodes on one side of a partition (see [`World::partition`]).
    partition: Option<BTreeSet<NodeId>>,
    /// Draws for frame loss (its own stream: turning loss on leaves the network's draws as
    /// they were).
    fault_rng: StdRng,
    wire: WireStats,
    next_port: u16,
    trace: Trace,
    hops: Option<HopTracker>,
    steps: u64,
    spin: u64,
}

/// Mixes a seed with a stream number (splitmix64), so nearby seeds give unrelated streams.
pub(crate) fn derive(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl World {
    /// An empty world (the registry only) at virtual time zero.
    pub fn new(config: SimConfig) -> World {
        // The simulator's one real clock read: the anchor of the virtual clock. Every later
        // instant is `t0 + offset`, moved only by the event loop.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let seed = config.seed;
        let reg = RegistryHost::new(config.registry, derive(seed, u64::MAX), t0, WALL0_MS as i64);
        let mut listeners = HashMap::new();
        listeners.insert(REGISTRY_TCP, Host::Registry);
        let mut w = World {
            seed,
            store_delay: config.store_delay,
            keep_event: config.keep_event,
            check_every: config.check_every.max(Duration::from_micros(1)),
            t0,
            now: t0,
            rng: StdRng::seed_from_u64(derive(seed, u64::MAX - 1)),
            net: Net::new(config.net),
            reg,
            nodes: Vec::new(),
            listeners,
            wakeups: BTreeSet::new(),
            drop_udp: BTreeSet::new(),
            partition: None,
            fault_rng: StdRng::seed_from_u64(derive(seed, u64::MAX - 2)),
            wire: WireStats::default(),
            next_port: 0,
            trace: Trace::new(config.trace_lines),
            hops: None,
            steps: 0,
            spin: 0,
        };
        w.reindex(Host::Registry);
        w
    }

    // ----- getters -----

    /// The seed of this world.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the world was made.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// The instant `offset` after the world was made.
    pub fn at(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }

    /// Steps taken so far (deliveries and wake-ups).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The registry state machine.
    pub fn registry(&self) -> &Registry {
        &self.reg.registry
    }

    /// Everything the registry reported (online, offline, ...), in order.
    pub fn registry_events(&self) -> &[RegistryEvent] {
        &self.reg.events
    }

    /// Group commits the store made.
    pub fn store_commits(&self) -> u64 {
        self.reg.commits
    }

    /// Deliveries waiting in the network's queue (of any kind).
    pub fn pending_deliveries(&self) -> usize {
        self.net.queued()
    }

    /// Network counters.
    pub fn net_stats(&self) -> NetStats {
        self.net.stats
    }

    /// Number of nodes ever added (dead ones included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every node ever added, in order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.nodes.len()).map(NodeId)
    }

    /// A node's state machine (also after it died: its last state).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0].node
    }

    /// Whether the node runs (not killed, not exited).
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.nodes[id.0].alive
    }

    /// The address the node listens on.
    pub fn listen_addr(&self, id: NodeId) -> SocketAddr {
        self.nodes[id.0].listen
    }

    /// The node's events kept so far (see [`SimConfig::keep_event`]).
    pub fn events(&self, id: NodeId) -> impl Iterator<Item = &NodeEvent> {
        self.nodes[id.0].events.iter().map(|(_, e)| e)
    }

    /// The node's events kept so far, with the virtual time of each.
    pub fn timed_events(&self, id: NodeId) -> &[(Duration, NodeEvent)] {
        &self.nodes[id.0].events
    }

    /// Forgets the node's events kept so far.
    pub fn clear_events(&mut self, id: NodeId) {
        self.nodes[id.0].events.clear();
    }

    /// A hash of everything that happened so far: equal for two runs with the same seed.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The trace as text (empty unless [`SimConfig::trace_lines`]).
    pub fn trace_lines(&self) -> &[String] {
        self.trace.lines()
    }

    /// Frames the registry sent, decoded (empty unless [`World::tap_registry`] is on).
    pub fn tapped(&self) -> &[Tapped] {
        self.reg.tap.as_deref().unwrap_or(&[])
    }

    /// First deliveries of room messages in the tracked room, by hops travelled (index 1 is a
    /// direct neighbour of the origin). Empty unless [`World::track_hops`] was called.
    pub fn hop_histogram(&self) -> &[u64] {
        self.hops.as_ref().map_or(&[], |h| &h.hist)
    }

    // ----- building and faults -----

    /// Adds a node (with `tweak` applied to its default config) and starts it: it dials the
    /// registry at once.
    pub fn add_node(&mut self, tweak: impl FnOnce(&mut p2pchat_peer::Config)) -> NodeId {
        let i = self.nodes.len();
        let id = NodeId(i);
        let host = i + 65_536;
        let ip = Ipv4Addr::new(10, (host >> 16) as u8, (host >> 8) as u8, host as u8);
        let listen = SocketAddr::new(IpAddr::V4(ip), 4000);
        let mut config = p2pchat_peer::Config::new(REGISTRY_TCP, listen);
        tweak(&mut config);
        let wall = WALL0_MS + (self.now - self.t0).as_millis() as u64;
        let rng = StdRng::seed_from_u64(derive(self.seed, i as u64));
        self.nodes.push(SimNode {
            node: Node::new(config.clone(), self.now, wall, rng),
            config,
            incarnation: 0,
            restarts: Vec::new(),
            ip,
            listen,
            alive: true,
            wake: None,
            links: BTreeMap::new(),
            next_accept: 0,
            events: Vec::new(),
        });
        self.listeners.insert(listen, Host::Node(id));
        self.feed_node(id, Input::Timeout);
        id
    }

    /// Types `line` on node `id` now. Panics if the line does not parse (a test bug).
    pub fn command(&mut self, id: NodeId, line: &str) {
        let command = match p2pchat_peer::command::parse(line) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => panic!("{id}: cannot parse {line:?}: {e}"),
        };
        let elapsed = self.elapsed();
        self.trace
            .record(elapsed, Host::Node(id), "command", 0, || line.to_string());
        self.feed_node(id, Input::Command(command));
    }

    /// Kills a node like `kill -9`: it stops, and the other end of every connection it had sees
    /// it close (after the bytes already on their way), as when the OS resets its sockets.
    /// Connects to its address are refused from now on.
    pub fn kill(&mut self, id: NodeId) {
        let elapsed = self.elapsed();
        self.trace
            .record(elapsed, Host::Node(id), "kill", 0, String::new);
        self.stop(id);
    }

    fn stop(&mut self, id: NodeId) {
        let n = &mut self.nodes[id.0];
        if !n.alive {
            return;
        }
        n.alive = false;
        let links = std::mem::take(&mut n.links);
        let listen = n.listen;
        for (_, (conn, side)) in links {
            self.net.close(self.now, conn, side, &mut self.rng);
        }
        self.listeners.remove(&listen);
        self.reindex(Host::Node(id));
    }

    /// Drops (`true`) or stops dropping every datagram the node sends.
    pub fn drop_udp_from(&mut self, id: NodeId, drop: bool) {
        if drop {
            self.drop_udp.insert(id);
        } else {
            self.drop_udp.remove(&id);
        }
    }

    /// Sets the probability that any datagram is lost.
    pub fn set_udp_loss(&mut self, p: f64) {
        self.net.config.udp_loss = p;
    }

    /// Records (`true`) every frame the registry sends, decoded, for [`World::tapped`].
    pub fn tap_registry(&mut self, on: bool) {
        self.reg.tap = if on { Some(Vec::new()) } else { None };
    }

    /// Starts counting how many hops the first copy of each message in `room` travelled.
    pub fn track_hops(&mut self, room: &str) {
        self.hops = Some(HopTracker {
            room: room.to_string(),
            hist: Vec::new(),
            frames: HashMap::new(),
        });
    }

    /// Full-message frames peers have sent so far carrying a message with this text in the
    /// tracked room (dropped ones included), so that a run can tell the cost of each message
    /// and see whether the tree settles. Zero unless [`World::track_hops`] was called.
    pub fn frames_of(&self, text: &str) -> u64 {
        self.hops
            .as_ref()
            .and_then(|h| h.frames.get(text).copied())
            .unwrap_or(0)
    }

    // ----- running -----

    /// When the next step happens, if anything is left to happen.
    pub fn next_event_time(&self) -> Option<Instant> {
        let net = self.net.next_time();
        let wake = self.wakeups.first().map(|(t, _)| *t);
        match (net, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Jumps to the earliest pending thing (a delivery, or a host's deadline; deliveries first
    /// on a tie) and carries it out. False when nothing is left.
    pub fn step(&mut self) -> bool {
        let net = self.net.next_time();
        let wake = self.wakeups.first().map(|(t, _)| *t);
        let net_first = match (net, wake) {
            (None, None) => return false,
            (Some(a), Some(b)) => a <= b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        self.steps += 1;
        if net_first {
            if let Some((t, d)) = self.net.pop() {
                self.advance_clock(t);
                self.deliver(d);
            }
        } else if let Some((t, host)) = self.wakeups.pop_first() {
            self.advance_clock(t);
            match host {
                Host::Registry => {
                    self.reg.wake = None;
                    self.feed_registry(p2pchat_registry::Input::Timeout);
                }
                Host::Node(id) => {
                    self.nodes[id.0].wake = None;
                    self.feed_node(id, Input::Timeout);
                }
            }
        }
        true
    }

    fn advance_clock(&mut self, t: Instant) {
        if t > self.now {
            self.now = t;
            self.spin = 0;
        } else {
            self.spin += 1;
            assert!(
                self.spin < SPIN_LIMIT,
                "simulation stuck at {:?}: {SPIN_LIMIT} steps without time passing (SIM_SEED={})",
                self.elapsed(),
                self.seed
            );
        }
    }

    /// Carries out everything due up to `end`, then sets the clock to `end`.
    fn run_through(&mut self, end: Instant) {
        while self.next_event_time().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_through(end);
    }

    /// Runs until `pred` holds (checked every [`SimConfig::check_every`] of virtual time) or
    /// `limit` of virtual time has passed. Returns whether `pred` held.
    pub fn run_until(&mut self, mut pred: impl FnMut(&World) -> bool, limit: Duration) -> bool {
        let end = self.now + limit;
        loop {
            if pred(self) {
                return true;
            }
            if self.now >= end {
                return false;
            }
            let next = match self.next_event_time() {
                // Nothing will happen before the next check: jump to the next event.
                Some(t) if t > self.now + self.check_every => t.min(end),
                Some(_) => (self.now + self.check_every).min(end),
                None => end,
            };
            self.run_through(next);
        }
    }

    /// Whether no TCP connect, bytes or close is on its way and no store write waits (timers
    /// may still be armed, and datagrams in flight).
    pub fn is_idle(&self) -> bool {
        self.net.tcp_idle() && self.reg.queued.is_empty()
    }

    /// Runs until [`World::is_idle`] or `limit` of virtual time has passed; returns whether
    /// the world is idle.
    pub fn run_until_idle(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        loop {
            if self.is_idle() {
                return true;
            }
            match self.next_event_time() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(end);
                    return self.is_idle();
                }
            }
        }
    }

    // ----- hosts -----

    fn feed_node(&mut self, id: NodeId, input: Input) {
        let n = &mut self.nodes[id.0];
        if !n.alive {
            return;
        }
        n.node.handle_input(self.now, input);
        let mut exit = false;
        while let Some(out) = self.nodes[id.0].node.poll_output() {
            if out == Output::Exit {
                exit = true;
            } else {
                self.node_output(id, out);
            }
        }
        if exit {
            self.stop(id);
        } else {
            self.reindex(Host::Node(id));
        }
    }

    fn node_output(&mut self, id: NodeId, out: Output) {
        let now = self.now;
        match out {
            Output::Connect { link, addr } => {
                self.next_port = self.next_port.wrapping_add(1);
                let port = 40_000 + self.next_port % 20_000;
                let source = SocketAddr::new(IpAddr::V4(self.nodes[id.0].ip), port);
                let conn = self.net.dial(
                    now,
                    Host::Node(id),
                    Handle::Link(link),
                    source,
                    addr,
                    &mut self.rng,
                );
                self.nodes[id.0].links.insert(link, (conn, DIALER));
            }
            Output::Send { link, bytes } => {
                if let Some(&(conn, side)) = self.nodes[id.0].links.get(&link) {
                    let to = self.net.conn(conn).map(|c| c.ends[1 - side].host);
                    if let Some(to @ Host::Node(_)) = to {
                        if self.peer_chunk_dropped(Host::Node(id), to, &bytes) {
                            self.net.stats.dropped_chunks += 1;
                            return;
                        }
                    }
                    self.net.send(now, conn, side, bytes, &mut self.rng);
                }
            }
            Output::Close { link, .. } => {
                if let Some((conn, side)) = self.nodes[id.0].links.remove(&link) {
                    self.net.close(now, conn, side, &mut self.rng);
                }
            }
            Output::SendTo { to, bytes } => {
                if to == REGISTRY_UDP {
                    let from = SocketAddr::new(IpAddr::V4(self.nodes[id.0].ip), 4001);
                    let drop = self.drop_udp.contains(&id);
                    self.net
                        .send_datagram(now, Host::Registry, from, bytes, drop, &mut self.rng);
                } else {
                    self.net.stats.datagrams_lost += 1;
                }
            }
            Output::Event(event) => {
                let elapsed = self.elapsed();
                self.trace
                    .record(elapsed, Host::Node(id), "event", 0, || format!("{event:?}"));
                if (self.keep_event)(&event) {
                    self.nodes[id.0].events.push((elapsed, event));
                }
            }
            Output::Exit => {}
        }
    }

    fn feed_registry(&mut self, input: p2pchat_registry::Input<'_>) {
        self.reg.registry.handle_input(self.now, input);
        self.drain_registry();
    }

    /// Carries out what the registry produced. The frames for one connection go out as one
    /// chunk, as the engine writes a connection's whole output buffer once per loop turn: a
    /// group commit of k joins reaches each member as one delivery, not k.
    fn drain_registry(&mut self) {
        use p2pchat_registry::Output as R;
        let now = self.now;
        // Network connection -> the frames for it (shared with the registry, not copied), in
        // the order first written; each connection's frames are joined once, at the end.
        let mut chunks: Vec<(u64, Vec<Bytes>)> = Vec::new();
        let mut slot: SeqMap<u64, usize> = SeqMap::default();
        while let Some(out) = self.reg.registry.poll_output() {
            match out {
                R::Send { conn, bytes } => {
                    let Some(&c) = self.reg.conns.get(&conn) else {
                        continue;
                    };
                    let i = *slot.entry(c).or_insert_with(|| {
                        chunks.push((c, Vec::new()));
                        chunks.len() - 1
                    });
                    chunks[i].1.push(bytes);
                }
                R::Close { conn, .. } => {
                    if let Some(c) = self.reg.conns.remove(&conn) {
                        if let Some(i) = slot.remove(&c) {
                            let bytes = join(std::mem::take(&mut chunks[i].1));
                            self.registry_send(c, bytes);
                        }
                        self.net.close(now, c, ACCEPTOR, &mut self.rng);
                        self.net
                            .schedule(now, Delivery::LocalClosed { conn: conn.0 });
                    }
                }
                R::Store(job) => {
                    self.reg.queued.push(job);
                    if !self.reg.commit_scheduled {
                        self.reg.commit_scheduled = true;
                        self.net
                            .schedule(now + self.store_delay, Delivery::StoreCommit);
                    }
                }
                R::Hash(job) => self.reg.hash(now, job),
                R::Event(event) => {
                    let at = self.elapsed();
                    self.trace
                        .record(at, Host::Registry, "event", 0, || format!("{event:?}"));
                    self.reg.events.push(RegistryEvent { at, event });
                }
            }
        }
        for (c, frames) in chunks {
            if !frames.is_empty() {
                self.registry_send(c, join(frames));
            }
        }
        self.reindex(Host::Registry);
    }

    fn registry_send(&mut self, c: u64, bytes: Bytes) {
        if self.reg.tap.is_some() {
            self.tap(c, &bytes);
        }
        self.net.send(self.now, c, ACCEPTOR, bytes, &mut self.rng);
    }

    /// Re-reads one host's deadline into the wake-up index.
    fn reindex(&mut self, host: Host) {
        let (slot, new) = match host {
            Host::Registry => (&mut self.reg.wake, self.reg.registry.poll_timeout()),
            Host::Node(id) => {
                let n = &mut self.nodes[id.0];
                let new = if n.alive { n.node.poll_timeout() } else { None };
                (&mut n.wake, new)
            }
        };
        if *slot == new {
            return;
        }
        if let Some(old) = slot.take() {
            self.wakeups.remove(&(old, host));
        }
        *slot = new;
        if let Some(t) = new {
            self.wakeups.insert((t, host));
        }
    }
}

/// One chunk of the frames, in order: the frame itself when there is one (no copy), else one
/// exact-size allocation.
fn join(mut frames: Vec<Bytes>) -> Bytes {
    if frames.len() == 1 {
        return frames.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
    for f in &frames {
        out.extend_from_slice(f);
    }
    out.freeze()
}

/// The frames of a chunk the simulator looked at (its observers read what a node sent or got),
/// decoded where they lie; a chunk holds whole frames, and decoding stops at the first bad one.
fn chunk_frames(bytes: &[u8]) -> Vec<p2pchat_protocol::Frame> {
    let mut frames = Vec::new();
    let _ = p2pchat_protocol::FrameDecoder::new(u32::MAX).push_frames(bytes, &mut frames);
    frames
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation failed at virtual time {:?} after {} steps; rerun with SIM_SEED={}",
                self.elapsed(),
                self.steps,
                self.seed
            );
        }
    }
}
