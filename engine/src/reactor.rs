//! The [`Reactor`]: one `mio::Poll`, the socket tables, and the turn loop.
//!
//! Listener and UDP code lives in the `listen` and `udp` submodules; this file holds the
//! connection lifecycle, the timers and [`Reactor::turn`].

mod listen;
#[cfg(target_os = "linux")]
mod mmsg;
mod udp;

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, trace};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Waker};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::{Config, Stats};
use crate::conn::{Conn, ConnState, ConnectCheck, ReadEnd};
use crate::event::{CloseReason, NetEvent, Signal};
use crate::timers::Timers;
use crate::token::{self, ConnId, ListenerId, Source, UdpId, MAX_CONN_INDEX};

/// Size of the shared read buffer: one TCP read, or one whole UDP datagram (64 KiB covers the
/// largest IPv4 and IPv6 payloads).
const SCRATCH_LEN: usize = 64 * 1024;

/// Most empty write buffers kept for reuse (each at most 16 KiB): enough for the connections
/// one iteration typically answers, bounded so a past burst does not pin memory.
const MAX_SPARE_BUFFERS: usize = 256;

/// Work carried to the next turn because a source was left readable on purpose (a per-turn cap
/// was hit, or reading was just unpaused). Edge-triggered readiness will not report it again,
/// so without this list the data already buffered would sit there until new data arrived.
#[derive(Clone, Copy, Debug)]
enum Resume {
    Read(ConnId),
    Accept(ListenerId),
    Recv(UdpId),
}

/// A bound UDP socket and what the kernel last said about it.
struct UdpEntry {
    sock: UdpSocket,
    /// Cumulative datagrams the kernel dropped on it (`SO_RXQ_OVFL`), as last reported.
    kernel_drops: u32,
}

/// A single-threaded mio event loop over TCP listeners, TCP connections and UDP sockets.
///
/// Method groups:
/// - **setup**: [`new`](Self::new), [`listen`](Self::listen), [`bind_udp`](Self::bind_udp),
///   [`enable_signals`](Self::enable_signals), [`waker`](Self::waker);
/// - **commands** (take effect at once, their events arrive on the next `turn`):
///   [`connect`](Self::connect), [`send`](Self::send), [`send_to`](Self::send_to),
///   [`close`](Self::close), [`abort`](Self::abort), [`close_listeners`](Self::close_listeners),
///   [`shutdown`](Self::shutdown);
/// - **the loop**: [`turn`](Self::turn);
/// - **getters**: [`is_open`](Self::is_open), [`peer_addr`](Self::peer_addr),
///   [`connection_count`](Self::connection_count), [`is_quiescent`](Self::is_quiescent),
///   [`stats`](Self::stats), ...
pub struct Reactor {
    config: Config,
    poll: Poll,
    events: Events,
    conns: Slab<Conn>,
    listeners: Slab<TcpListener>,
    udp: Slab<UdpEntry>,
    /// `recvmmsg` buffers, made on first use when `Config::udp_batch` > 1.
    #[cfg(target_os = "linux")]
    mmsg: Option<Box<mmsg::MmsgBuffers>>,
    timers: Timers,
    /// Deadlines requested by commands between turns, as delays. Commands do not read the clock;
    /// the next turn arms them from its own clock read.
    to_arm: Vec<(ConnId, Duration)>,
    resume: Vec<Resume>,
    /// Events produced by commands and by the current turn, in order; moved to the caller's
    /// vector at the end of `turn`.
    pending: Vec<NetEvent>,
    waker: Arc<Waker>,
    signals: Option<Signals>,
    /// A descriptor held in reserve for `EMFILE` on accept (see `listen.rs`).
    reserve_fd: Option<File>,
    /// When accepting stopped on an error that retrying at once would not fix.
    accept_retry_at: Option<Instant>,
    /// Whether the last accept failed for lack of descriptors, to log once per episode.
    fd_exhausted: bool,
    scratch: Box<[u8]>,
    next_generation: u32,
    turn_no: u64,
    /// Sum of all write queues, so `is_quiescent` is O(1).
    queued_total: usize,
    /// Connections `send` queued output on since the last flush: written before the next poll.
    dirty: Vec<ConnId>,
    /// Empty write buffers from connections whose queue drained, for the next connection that
    /// sends: idle connections hold no output memory, busy ones do not allocate per reply.
    spare: Vec<bytes::BytesMut>,
    stats: Stats,
}

impl Reactor {
    /// Creates the poller and the waker. Nothing is bound yet.
    pub fn new(mut config: Config) -> io::Result<Reactor> {
        // Zero would make reading and polling impossible; clamp instead of failing.
        config.max_read_chunk = config.max_read_chunk.max(1);
        config.events_capacity = config.events_capacity.max(1);
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), token::WAKER)?);
        Ok(Reactor {
            events: Events::with_capacity(config.events_capacity),
            config,
            poll,
            conns: Slab::new(),
            listeners: Slab::new(),
            udp: Slab::new(),
            #[cfg(target_os = "linux")]
            mmsg: None,
            timers: Timers::default(),
            to_arm: Vec::new(),
            resume: Vec::new(),
            pending: Vec::new(),
            waker,
            signals: None,
            reserve_fd: listen::open_reserve(),
            accept_retry_at: None,
            fd_exhausted: false,
            scratch: vec![0; SCRATCH_LEN].into_boxed_slice(),
            next_generation: 0,
            turn_no: 0,
            queued_total: 0,
            dirty: Vec::new(),
            spare: Vec::new(),
            stats: Stats::default(),
        })
    }

    /// Reports `SIGINT`, `SIGTERM` and `SIGHUP` as [`NetEvent::Signal`] instead of their
    /// default action. Idempotent. Handlers stay installed for the life of the process, so a
    /// binary that wants "a second signal exits at once" does so itself on the second event.
    pub fn enable_signals(&mut self) -> io::Result<()> {
        if self.signals.is_some() {
            return Ok(());
        }
        let mut signals = Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])?;
        self.poll
            .registry()
            .register(&mut signals, token::SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Starts a nonblocking connect. The outcome arrives later as `Connected`, or as `Closed`
    /// with `ConnectFailed` or `ConnectTimeout` (after `Config::connect_timeout`, counted from
    /// the next `turn`). Bytes sent before `Connected` are queued. Errors the OS reports at
    /// once (no route, no descriptors) are returned here instead.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let slot = self.conns.vacant_key();
        if slot > MAX_CONN_INDEX {
            return Err(io::Error::other("connection table full"));
        }
        let mut stream = TcpStream::connect(addr)?;
        let id = ConnId::new(slot, self.bump_generation());
        // A connect completes (or fails) as a writable event.
        self.poll
            .registry()
            .register(&mut stream, id.token(), Interest::WRITABLE)?;
        self.conns.insert(Conn::new(
            id,
            stream,
            ConnState::ExpectConnect,
            Interest::WRITABLE,
        ));
        self.to_arm.push((id, self.config.connect_timeout));
        self.stats.connects += 1;
        debug!("{id} connecting to {addr}");
        Ok(id)
    }

    /// Appends `bytes` to the connection's write queue. The queue is written at the end of the
    /// loop iteration, before the next `turn` polls (or on [`flush`](Self::flush)), with one
    /// `write` per connection however many replies were sent: 16 pipelined requests answered in
    /// one iteration cost one system call, not 16. A queue that grows past
    /// `Config::write_soft_cap` is written at once instead of waiting.
    ///
    /// Returns `false` if the bytes will not be delivered: the id is unknown or stale, the
    /// connection is closing, or this call closed it (a write error, or the queue would pass
    /// `Config::write_hard_cap` even after writing what the kernel takes: `SlowConsumer`); a
    /// `Closed` event follows in the last two cases. When the queue stays above
    /// `Config::write_soft_cap` the connection stops being read until it drains.
    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) -> bool {
        let (soft_cap, hard_cap) = (self.config.write_soft_cap, self.config.write_hard_cap);
        let Some(c) = live_mut(&mut self.conns, conn) else {
            return false;
        };
        if !c.is_open() {
            return false;
        }
        if bytes.is_empty() {
            return true;
        }
        if c.queued() + bytes.len() > hard_cap {
            // Only a queue the kernel will not take counts against the consumer.
            self.flush_conn(conn);
            let Some(c) = live(&self.conns, conn) else {
                return false;
            };
            if c.queued() + bytes.len() > hard_cap {
                debug!("{conn} slow consumer: {} bytes queued", c.queued());
                self.stats.slow_consumers += 1;
                self.remove_conn(conn, CloseReason::SlowConsumer);
                return false;
            }
        }
        let Some(c) = live_mut(&mut self.conns, conn) else {
            return false;
        };
        c.enqueue(bytes, &mut self.spare);
        self.queued_total += bytes.len();
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(conn);
        }
        if c.queued() > soft_cap {
            if c.is_established() {
                // Write now rather than hold a large burst; this also settles backpressure.
                self.flush_conn(conn);
                return live(&self.conns, conn).is_some();
            }
            if !c.read_paused {
                // Still connecting: nothing to write to yet, so only pause.
                c.read_paused = true;
                self.stats.read_pauses += 1;
            }
        }
        true
    }

    /// Writes every connection's pending output now (one `write` each, more only for a queue
    /// larger than the kernel takes at once). `turn` does this itself before it polls; call it
    /// when output must leave before something other than the next `turn` (say, before
    /// blocking elsewhere). Consequences (a `Closed` after a write error) arrive on the next
    /// `turn`.
    pub fn flush(&mut self) {
        // Swap the list out so `flush_conn` may push to a fresh one (it does not today, but
        // an entry added during the walk must not be lost).
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            if let Some(c) = live_mut(&mut self.conns, id) {
                c.dirty = false;
                self.flush_conn(id);
            }
        }
        // Keep the allocation for the next iteration.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Stops reading, flushes what is queued (for at most `Config::close_linger`), then closes.
    /// `Closed { reason: Local }` follows. No-op for an unknown id or one already closing.
    pub fn close(&mut self, conn: ConnId) {
        self.begin_close(conn, CloseReason::Local);
    }

    /// Drops the connection now, discarding queued output. `Closed { reason: Local }` follows,
    /// even if a `close()` was already under way. No-op for an unknown id.
    pub fn abort(&mut self, conn: ConnId) {
        self.remove_conn(conn, CloseReason::Local);
    }

    /// Graceful shutdown: closes the listeners and starts closing every connection as `close()`
    /// does; each reports `Closed { reason: Shutdown }` once flushed or after the linger.
    /// Wait for [`connection_count`](Self::connection_count) to reach zero.
    pub fn shutdown(&mut self) {
        self.close_listeners();
        // One pass over all connections is fine here: it happens once per process.
        let ids: Vec<ConnId> = self.conns.iter().map(|(_, c)| c.id).collect();
        for id in ids {
            self.begin_close(id, CloseReason::Shutdown);
        }
    }

    /// Waits for readiness, a wake, a signal, an internal deadline or `deadline` (`None`: no
    /// caller deadline), handles what is ready, and appends the resulting events to `out`.
    ///
    /// Returns at once if commands since the last turn produced events or work was carried
    /// over. May return with no events (spurious wake-ups, a deadline). Per-connection failures
    /// become `Closed` events; `Err` means the poller itself failed.
    pub fn turn(&mut self, deadline: Option<Instant>, out: &mut Vec<NetEvent>) -> io::Result<()> {
        // The reactor's one clock read per turn (clippy.toml bans it elsewhere): every deadline
        // decision in this turn uses it.
        #[allow(clippy::disallowed_methods)]
        let mut now = Instant::now();
        self.turn_no += 1;
        self.stats.turns += 1;
        // End of the caller's iteration: everything it sent since the last turn leaves now,
        // one write per connection, before we sleep.
        self.flush();
        self.arm_requested(now);

        let resume = std::mem::take(&mut self.resume);
        let timeout = if !self.pending.is_empty() || !resume.is_empty() {
            Some(Duration::ZERO)
        } else {
            [deadline, self.timers.next_deadline(), self.accept_retry_at]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(now))
        };

        // `events` is moved out so the handlers below can take `&mut self`.
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let mut wait = timeout;
        let mut interrupted = false;
        loop {
            match self.poll.poll(&mut events, wait) {
                Ok(()) => break,
                // A signal handler ran; look again without blocking (its pipe may be ready).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    interrupted = true;
                    wait = Some(Duration::ZERO);
                }
                Err(e) => {
                    self.events = events;
                    self.resume.extend(resume);
                    return Err(e);
                }
            }
        }
        // Without a second clock read: a poll that returned nothing after an uninterrupted
        // finite wait has slept at least that long, so deadlines up to then are due now.
        if events.is_empty() && !interrupted {
            if let Some(waited) = timeout {
                now += waited;
            }
        }

        let mut woken = false;
        for event in events.iter() {
            match Source::from_token(event.token()) {
                Source::Waker => {
                    if !woken {
                        woken = true;
                        self.pending.push(NetEvent::Woken);
                    }
                }
                Source::Signals => self.drain_signals(),
                Source::Listener(id) => self.accept_ready(id, now),
                Source::Udp(id) => self.recv_ready(id),
                Source::Conn(id) => {
                    // Errors and hang-ups are reported through the read or write that fails.
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    let writable =
                        event.is_writable() || event.is_write_closed() || event.is_error();
                    // A plain edge (no hang-up, no error) from Linux epoll: a short read
                    // means the socket is drained (see `Conn::read_ready`).
                    let short_read_drains = cfg!(target_os = "linux")
                        && event.is_readable()
                        && !event.is_read_closed()
                        && !event.is_error();
                    self.conn_ready(id, readable, writable, short_read_drains);
                }
                Source::Unknown => trace!("ignoring event for unknown {:?}", event.token()),
            }
        }
        self.events = events;

        for work in resume {
            match work {
                Resume::Read(id) => self.read_conn(id, false),
                Resume::Accept(id) => self.accept_ready(id, now),
                Resume::Recv(id) => self.recv_ready(id),
            }
        }
        self.fire_timers(now);
        if self.accept_retry_at.is_some_and(|at| at <= now) {
            self.retry_accept(now);
        }
        out.append(&mut self.pending);
        Ok(())
    }

    /// A handle other threads use to wake the reactor ([`NetEvent::Woken`]).
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// The id names a live connection that has not been closed or aborted (it may still be
    /// connecting). `false` for stale ids.
    pub fn is_open(&self, conn: ConnId) -> bool {
        live(&self.conns, conn).is_some_and(Conn::is_open)
    }

    /// Bytes of one connection's entry in the reactor's table: what an open connection costs
    /// the engine besides its socket (kernel memory) and any queued output.
    pub fn connection_entry_bytes() -> usize {
        std::mem::size_of::<Conn>()
    }

    /// The remote address as the socket reports it (`getpeername`): `None` before an outgoing
    /// connect completes or once the socket has failed. Not kept per connection (32 bytes
    /// each, memory per online peer in docs/performance.md): the caller has it from
    /// `Accepted`, or gave it to `connect`.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        live(&self.conns, conn).and_then(|c| c.stream.peer_addr().ok())
    }

    /// The local address of the connection's socket.
    pub fn local_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        live(&self.conns, conn).and_then(|c| c.stream.local_addr().ok())
    }

    /// Bytes queued for the connection and not yet taken by the kernel (0 for unknown ids).
    /// Senders of bulk data use it to stay under the caps.
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        live(&self.conns, conn).map_or(0, Conn::queued)
    }

    /// Connections not yet reported `Closed`: connecting, open and closing ones.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// No connection has output waiting in the engine (what the kernel holds is not counted).
    pub fn is_quiescent(&self) -> bool {
        self.queued_total == 0
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn bump_generation(&mut self) -> u32 {
        // One counter for all slots: a stale id would need 2^32 connections in between to
        // alias a live one.
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    fn arm_requested(&mut self, now: Instant) {
        for (id, after) in self.to_arm.drain(..) {
            let Some(c) = live_mut(&mut self.conns, id) else {
                continue; // closed before the turn
            };
            if let Some(old) = c.deadline.take() {
                self.timers.remove(old, id);
            }
            // A delay too large to represent means "never".
            if let Some(at) = now.checked_add(after) {
                c.deadline = Some(at);
                self.timers.insert(at, id);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(id) = self.timers.pop_expired(now) {
            let Some(c) = live_mut(&mut self.conns, id) else {
                continue;
            };
            c.deadline = None;
            match c.state {
                ConnState::ExpectConnect => {
                    self.stats.connect_timeouts += 1;
                    self.remove_conn(id, CloseReason::ConnectTimeout);
                }
                ConnState::Closing { reason, .. } => {
                    debug!("{id} linger expired with {} bytes unsent", c.queued());
                    self.remove_conn(id, reason);
                }
                ConnState::Open => {} // open connections have no engine deadline
            }
        }
    }

    fn drain_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        for raw in signals.pending() {
            if let Some(signal) = Signal::from_raw(raw) {
                self.pending.push(NetEvent::Signal(signal));
            }
        }
    }

    fn conn_ready(&mut self, id: ConnId, readable: bool, writable: bool, short_read_drains: bool) {
        // A stale generation means the slot was reused after this event was fetched.
        let Some(c) = live(&self.conns, id) else {
            return;
        };
        match c.state {
            ConnState::ExpectConnect
            | ConnState::Closing {
                connected: false, ..
            } => self.finish_connect(id),
            ConnState::Open => {
                // Write first: a read that hits EOF or an error closes the connection.
                if writable {
                    self.flush_conn(id);
                }
                if readable {
                    self.read_conn(id, short_read_drains);
                }
            }
            ConnState::Closing { .. } => {
                if writable {
                    self.flush_conn(id);
                }
            }
        }
    }

    fn finish_connect(&mut self, id: ConnId) {
        let Some(c) = live_mut(&mut self.conns, id) else {
            return;
        };
        match c.check_connect() {
            ConnectCheck::Pending => {}
            ConnectCheck::Failed(kind) => {
                let reason = match c.state {
                    ConnState::Closing { reason, .. } => reason,
                    _ => CloseReason::ConnectFailed(kind),
                };
                // The address was logged when the connect started.
                debug!("{id} connect failed: {kind}");
                self.remove_conn(id, reason);
            }
            ConnectCheck::Connected => {
                if let Err(e) = c.stream.set_nodelay(true) {
                    debug!("{id} TCP_NODELAY: {e}");
                }
                self.stats.connected += 1;
                match c.state {
                    ConnState::Closing { reason, .. } => {
                        // Keep the linger deadline: it bounds the whole close.
                        c.state = ConnState::Closing {
                            reason,
                            connected: true,
                        };
                    }
                    _ => {
                        c.state = ConnState::Open;
                        if let Some(at) = c.deadline.take() {
                            self.timers.remove(at, id);
                        }
                        self.pending.push(NetEvent::Connected { conn: id });
                        // Data may already be waiting; its edge may have come with this event.
                        self.resume.push(Resume::Read(id));
                    }
                }
                self.flush_conn(id);
            }
        }
    }

    /// Reads a connection. `short_read_drains`: this read answers a fresh edge-triggered
    /// readiness event without hang-up or error, so a short read may end it (see
    /// `Conn::read_ready`).
    fn read_conn(&mut self, id: ConnId, short_read_drains: bool) {
        let turn = self.turn_no;
        let Some(c) = live_mut(&mut self.conns, id) else {
            return;
        };
        if c.state != ConnState::Open || c.read_paused || c.read_turn == turn {
            return;
        }
        c.read_turn = turn;
        let (n, end) = c.read_ready(
            &mut self.scratch,
            self.config.max_read_chunk,
            short_read_drains,
            &mut self.pending,
        );
        self.stats.bytes_in += n as u64;
        match end {
            ReadEnd::WouldBlock => {}
            ReadEnd::Budget => self.resume.push(Resume::Read(id)),
            ReadEnd::Eof => self.remove_conn(id, CloseReason::Remote),
            ReadEnd::Failed(kind) => self.remove_conn(id, CloseReason::Io(kind)),
        }
    }

    /// Writes queued output, then settles the state the new queue length implies: finish a
    /// close, lift backpressure, drop WRITABLE interest.
    fn flush_conn(&mut self, id: ConnId) {
        let soft_cap = self.config.write_soft_cap;
        let Some(c) = live_mut(&mut self.conns, id) else {
            return;
        };
        if !c.is_established() {
            return;
        }
        let done = c.flush();
        self.stats.bytes_out += done.written as u64;
        self.stats.writes += done.calls;
        self.queued_total -= done.written;
        if let Some(buf) = c.take_drained_buffer() {
            if self.spare.len() < MAX_SPARE_BUFFERS {
                self.spare.push(buf);
            }
        }
        if let Some(kind) = done.failure {
            let reason = match c.state {
                ConnState::Closing { reason, .. } => reason,
                _ => CloseReason::Io(kind),
            };
            self.remove_conn(id, reason);
            return;
        }
        if let ConnState::Closing { reason, .. } = c.state {
            if c.queued() == 0 {
                c.discard_input(&mut self.scratch);
                self.remove_conn(id, reason);
            }
            return;
        }
        if !c.read_paused && c.queued() > soft_cap {
            c.read_paused = true;
            self.stats.read_pauses += 1;
            trace!("{id} paused reading: {} bytes queued", c.queued());
        }
        // Resume at half the soft cap, so a queue hovering at the cap does not flip the
        // registration on every write.
        if c.read_paused && c.queued() <= soft_cap / 2 {
            c.read_paused = false;
            trace!("{id} resumed reading");
            self.resume.push(Resume::Read(id));
        }
        if let Err(e) = c.sync_interest(self.poll.registry()) {
            self.remove_conn(id, CloseReason::Io(e.kind()));
        }
    }

    fn begin_close(&mut self, id: ConnId, reason: CloseReason) {
        let linger = self.config.close_linger;
        let Some(c) = live_mut(&mut self.conns, id) else {
            return;
        };
        let connected = match c.state {
            ConnState::Closing { .. } => return,
            ConnState::ExpectConnect => false,
            ConnState::Open => true,
        };
        if connected && c.queued() > 0 {
            // Replies sent just before the close usually fit the socket: write them now and
            // close at once rather than arm a linger for them.
            self.flush_conn(id);
        }
        let Some(c) = live_mut(&mut self.conns, id) else {
            return; // the write failed and closed it
        };
        if c.queued() == 0 {
            if connected {
                c.discard_input(&mut self.scratch);
            }
            self.remove_conn(id, reason);
            return;
        }
        c.state = ConnState::Closing { reason, connected };
        if let Err(e) = c.sync_interest(self.poll.registry()) {
            debug!("{id} reregister while closing: {e}");
            self.remove_conn(id, reason);
            return;
        }
        self.to_arm.push((id, linger));
    }

    /// The only way a connection leaves the slab, so `Closed` is emitted exactly once.
    fn remove_conn(&mut self, id: ConnId, reason: CloseReason) {
        if live(&self.conns, id).is_none() {
            return;
        }
        let mut c = self.conns.remove(id.slot());
        if let Some(at) = c.deadline {
            self.timers.remove(at, id);
        }
        self.queued_total -= c.clear_queue();
        // Explicit, so no later poll reports this token (mio's guarantee for deregister).
        if let Err(e) = self.poll.registry().deregister(&mut c.stream) {
            trace!("{id} deregister: {e}");
        }
        self.stats.closed += 1;
        debug!("{id} closed: {reason}");
        self.pending.push(NetEvent::Closed { conn: id, reason });
    }
}

/// The connection behind `id`, if its slot still holds that generation.
fn live(conns: &Slab<Conn>, id: ConnId) -> Option<&Conn> {
    conns.get(id.slot()).filter(|c| c.id == id)
}

fn live_mut(conns: &mut Slab<Conn>, id: ConnId) -> Option<&mut Conn> {
    conns.get_mut(id.slot()).filter(|c| c.id == id)
}
