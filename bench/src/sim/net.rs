//! The simulated network: TCP connections as pairs of ends with in-order byte delivery, UDP
//! datagrams with optional loss, and the one event queue every delivery waits in.
//!
//! Each connection has a latency drawn once when it is opened (`latency + [0, spread]`); each
//! chunk of bytes adds a jitter in `[0, jitter]`, but never arrives before the chunk sent before
//! it on the same connection and direction, so a connection's bytes stay in order the way TCP
//! keeps them. Datagrams get the same kind of delay and no ordering promise.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;

use super::Host;

/// Latency and loss of the simulated network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Smallest one-way latency of a connection or datagram.
    pub latency: Duration,
    /// Each connection adds a fixed extra latency drawn uniformly from `[0, spread]` when it opens.
    pub spread: Duration,
    /// Each chunk or datagram adds a delay drawn uniformly from `[0, jitter]` (never reordering
    /// one connection's bytes).
    pub jitter: Duration,
    /// Probability that any datagram is lost.
    pub udp_loss: f64,
    /// Probability that a chunk of room data between two peers is lost (see
    /// [`super::faults`]).
    pub frame_loss: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(5),
            spread: Duration::from_millis(20),
            jitter: Duration::from_millis(2),
            udp_loss: 0.0,
            frame_loss: 0.0,
        }
    }
}

/// Which end of a connection: the one that dialed, or the one whose listener accepted.
pub(crate) const DIALER: usize = 0;
pub(crate) const ACCEPTOR: usize = 1;

/// How a host names its end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Handle {
    /// A peer node's link.
    Link(p2pchat_peer::LinkId),
    /// The registry's connection.
    Conn(p2pchat_registry::ConnId),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct End {
    pub(crate) host: Host,
    /// `None` for the acceptor until the connect arrives.
    pub(crate) handle: Option<Handle>,
    pub(crate) open: bool,
    /// When the last thing sent *to* this end arrives (keeps a direction in order).
    last_arrival: Instant,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) ends: [End; 2],
    /// The dialer's source address (what the acceptor sees as `remote`).
    pub(crate) source: SocketAddr,
    latency: Duration,
}

/// One thing the network will deliver at a given instant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Delivery {
    /// A connect reaches the listener at `addr`.
    Syn { conn: u64, addr: SocketAddr },
    /// The connect completed: the dialer learns it.
    SynAck { conn: u64 },
    /// Bytes reach the end `to`.
    Bytes { conn: u64, to: usize, bytes: Bytes },
    /// The other end closed (FIN, or RST from a dead host or a refused connect).
    Fin { conn: u64, to: usize },
    /// A UDP datagram reaches `to`.
    Datagram {
        to: Host,
        from: SocketAddr,
        bytes: Bytes,
    },
    /// The registry's own `Close` comes back to it as `Closed`.
    LocalClosed { conn: u64 },
    /// The store commits what is queued (group commit).
    StoreCommit,
}

/// Counters of the network.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Connections opened (dials).
    pub connects: u64,
    /// Dials refused (no listener, or a dead host).
    pub refused: u64,
    /// Chunks of TCP bytes delivered.
    pub chunks: u64,
    /// TCP bytes delivered.
    pub bytes: u64,
    /// Chunks dropped because their end was already closed.
    pub dropped_chunks: u64,
    /// Datagrams delivered.
    pub datagrams: u64,
    /// Datagrams lost (random loss or a fault).
    pub datagrams_lost: u64,
}

/// Connections and the event queue.
pub(crate) struct Net {
    pub(crate) config: NetConfig,
    /// Due time, sequence (ties in send order) and slot: small entries, so the heap's moves
    /// are cheap; the deliveries themselves wait in `slots`.
    queue: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    slots: Vec<Option<Delivery>>,
    /// Empty entries of `slots`.
    free: Vec<u32>,
    seq: u64,
    conns: super::SeqMap<u64, Conn>,
    next_conn: u64,
    /// TCP deliveries (connects, bytes, closes) in the queue.
    tcp_in_flight: usize,
    pub(crate) stats: NetStats,
}

impl Net {
    pub(crate) fn new(config: NetConfig) -> Net {
        Net {
            config,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            conns: super::SeqMap::default(),
            next_conn: 1,
            tcp_in_flight: 0,
            stats: NetStats::default(),
        }
    }

    /// When the next delivery is due.
    pub(crate) fn next_time(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Takes the next delivery.
    pub(crate) fn pop(&mut self) -> Option<(Instant, Delivery)> {
        let Reverse((t, _, slot)) = self.queue.pop()?;
        let d = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        if is_tcp(&d) {
            self.tcp_in_flight -= 1;
        }
        Some((t, d))
    }

    /// Whether any connect, bytes or close is still on its way.
    pub(crate) fn tcp_idle(&self) -> bool {
        self.tcp_in_flight == 0
    }

    /// Deliveries waiting, of any kind.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn schedule(&mut self, at: Instant, d: Delivery) {
        if is_tcp(&d) {
            self.tcp_in_flight += 1;
        }
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(d);
                i
            }
            None => {
                self.slots.push(Some(d));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    fn jitter(&self, rng: &mut StdRng) -> Duration {
        random_up_to(rng, self.config.jitter)
    }

    /// When something sent now toward `to` of `conn` arrives, keeping the direction in order.
    fn arrival(&mut self, now: Instant, conn: u64, to: usize, rng: &mut StdRng) -> Instant {
        let jitter = self.jitter(rng);
        let Some(c) = self.conns.get_mut(&conn) else {
            return now;
        };
        let at = (now + c.latency + jitter).max(c.ends[to].last_arrival);
        c.ends[to].last_arrival = at;
        at
    }

    /// Opens a connection from `host` (its end named `handle`) to `addr`; the connect arrives
    /// at the listener after the connection's latency.
    pub(crate) fn dial(
        &mut self,
        now: Instant,
        host: Host,
        handle: Handle,
        source: SocketAddr,
        addr: SocketAddr,
        rng: &mut StdRng,
    ) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let latency = self.config.latency + random_up_to(rng, self.config.spread);
        let end = |host, handle| End {
            host,
            handle,
            open: true,
            last_arrival: now,
        };
        self.conns.insert(
            id,
            Conn {
                // The acceptor's host is filled in when the connect arrives.
                ends: [end(host, Some(handle)), end(host, None)],
                source,
                latency,
            },
        );
        self.stats.connects += 1;
        let at = self.arrival(now, id, ACCEPTOR, rng);
        self.schedule(at, Delivery::Syn { conn: id, addr });
        id
    }

    pub(crate) fn conn(&self, id: u64) -> Option<&Conn> {
        self.conns.get(&id)
    }

    /// The connect reached a listener on `host`, which names its end `handle`: the dialer
    /// learns it one latency later (before any byte the acceptor sends).
    pub(crate) fn accept(
        &mut self,
        now: Instant,
        id: u64,
        host: Host,
        handle: Handle,
        rng: &mut StdRng,
    ) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.ends[ACCEPTOR].host = host;
        c.ends[ACCEPTOR].handle = Some(handle);
        let at = self.arrival(now, id, DIALER, rng);
        self.schedule(at, Delivery::SynAck { conn: id });
    }

    /// The connect found no listener: the dialer gets a reset one latency later.
    pub(crate) fn refuse(&mut self, now: Instant, id: u64, rng: &mut StdRng) {
        self.stats.refused += 1;
        if let Some(c) = self.conns.get_mut(&id) {
            c.ends[ACCEPTOR].open = false;
        }
        let at = self.arrival(now, id, DIALER, rng);
        self.schedule(
            at,
            Delivery::Fin {
                conn: id,
                to: DIALER,
            },
        );
    }

    /// Bytes written by end `from`.
    pub(crate) fn send(
        &mut self,
        now: Instant,
        id: u64,
        from: usize,
        bytes: Bytes,
        rng: &mut StdRng,
    ) {
        let to = 1 - from;
        match self.conns.get(&id) {
            Some(c) if c.ends[from].open && c.ends[to].open => {}
            _ => {
                self.stats.dropped_chunks += 1;
                return;
            }
        }
        let at = self.arrival(now, id, to, rng);
        self.schedule(
            at,
            Delivery::Bytes {
                conn: id,
                to,
                bytes,
            },
        );
    }

    /// End `from` closes (or its host dies): the other end learns it after the bytes already
    /// sent to it.
    pub(crate) fn close(&mut self, now: Instant, id: u64, from: usize, rng: &mut StdRng) {
        let to = 1 - from;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.ends[from].open = false;
        if !c.ends[to].open {
            self.conns.remove(&id);
            return;
        }
        let at = self.arrival(now, id, to, rng);
        self.schedule(at, Delivery::Fin { conn: id, to });
    }

    /// A `Bytes` or `Fin` delivery arrives at end `to`: whether that end is still open to
    /// receive it (and, for a `Fin`, marks it closed and forgets the connection once both
    /// ends are).
    pub(crate) fn arrive(&mut self, id: u64, to: usize, fin: bool) -> Option<End> {
        let c = self.conns.get_mut(&id)?;
        let end = c.ends[to];
        if !end.open || end.handle.is_none() {
            if !fin {
                self.stats.dropped_chunks += 1;
            }
            return None;
        }
        if fin {
            c.ends[to].open = false;
            if !c.ends[1 - to].open {
                self.conns.remove(&id);
            }
        }
        Some(end)
    }

    /// Sends a datagram unless it is lost (`drop` is a fault for this sender).
    pub(crate) fn send_datagram(
        &mut self,
        now: Instant,
        to: Host,
        from: SocketAddr,
        bytes: Bytes,
        drop: bool,
        rng: &mut StdRng,
    ) {
        let lost = drop || (self.config.udp_loss > 0.0 && rng.random_bool(self.config.udp_loss));
        if lost {
            self.stats.datagrams_lost += 1;
            return;
        }
        let at = now + self.config.latency + self.jitter(rng);
        self.schedule(at, Delivery::Datagram { to, from, bytes });
    }
}

fn is_tcp(d: &Delivery) -> bool {
    matches!(
        d,
        Delivery::Syn { .. }
            | Delivery::SynAck { .. }
            | Delivery::Bytes { .. }
            | Delivery::Fin { .. }
    )
}

/// A duration drawn uniformly from `[0, max]` at microsecond resolution.
fn random_up_to(rng: &mut StdRng, max: Duration) -> Duration {
    let us = max.as_micros() as u64;
    if us == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(rng.random_range(0..=us))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::NodeId;
    use p2pchat_peer::LinkId;
    use rand::SeedableRng;

    #[test]
    fn one_connections_bytes_never_reorder() {
        #[allow(clippy::disallowed_methods)] // the test's one clock anchor
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let mut net = Net::new(NetConfig {
            latency: Duration::from_millis(1),
            spread: Duration::from_millis(5),
            jitter: Duration::from_millis(50),
            udp_loss: 0.0,
            frame_loss: 0.0,
        });
        let a = Host::Node(NodeId(0));
        let addr: SocketAddr = "10.0.0.9:4000".parse().unwrap();
        let id = net.dial(t0, a, Handle::Link(LinkId::Dialed(1)), addr, addr, &mut rng);
        net.accept(
            t0,
            id,
            Host::Node(NodeId(1)),
            Handle::Link(LinkId::Accepted(1)),
            &mut rng,
        );
        for i in 0..200u8 {
            let at = t0 + Duration::from_micros(u64::from(i) * 100);
            net.send(at, id, DIALER, Bytes::from(vec![i]), &mut rng);
        }
        net.close(t0 + Duration::from_millis(30), id, DIALER, &mut rng);
        let mut got = Vec::new();
        let mut last = t0;
        let mut fin = false;
        while let Some((t, d)) = net.pop() {
            assert!(t >= last);
            last = t;
            match d {
                Delivery::Bytes { bytes, .. } => {
                    assert!(!fin, "bytes after the close");
                    got.push(bytes[0]);
                }
                Delivery::Fin { .. } => fin = true,
                _ => {}
            }
        }
        assert!(fin);
        assert_eq!(got, (0..200u8).collect::<Vec<_>>());
        assert!(net.tcp_idle());
    }
}
