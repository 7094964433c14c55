//! Reactor tunables ([`Config`]) and counters ([`Stats`]).

use std::time::Duration;

/// Tunables for a [`Reactor`](crate::Reactor). Start from `Config::default()` and override fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes read from one connection per turn before moving on to the others. A connection that
    /// hits this cap is read again on the next turn without waiting for a new readiness edge.
    /// Default 256 KiB.
    pub max_read_chunk: usize,
    /// When a connection's write queue grows above this, the reactor stops reading from it
    /// (backpressure) until the queue drains to half of it. Default 1 MiB.
    pub write_soft_cap: usize,
    /// A `send` that would grow a write queue above this closes the connection with
    /// `CloseReason::SlowConsumer`. Default 8 MiB.
    pub write_hard_cap: usize,
    /// How long an outgoing connect may take before `CloseReason::ConnectTimeout`. Default 5 s.
    pub connect_timeout: Duration,
    /// How long `close()` keeps trying to flush queued output before dropping it. Default 5 s.
    pub close_linger: Duration,
    /// Listen backlog passed to `listen(2)` (the kernel may clamp it to `somaxconn`).
    /// Default 1024.
    pub backlog: i32,
    /// Capacity of the `mio::Events` buffer: readiness events handled per `poll`. Default 1024.
    pub events_capacity: usize,
    /// Datagrams received per system call. 1 (the default): one `recv_from` each, any size.
    /// More (Linux): `recvmmsg` batches of up to this many, each at most `udp_slot_len` bytes;
    /// for sockets that receive many small datagrams (the registry's heartbeats).
    pub udp_batch: usize,
    /// Largest datagram the batched receive takes; a longer one is dropped and counted in
    /// `Stats::udp_truncated`. Only used when `udp_batch` > 1. Default 2048.
    pub udp_slot_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_read_chunk: 256 * 1024,
            write_soft_cap: 1024 * 1024,
            write_hard_cap: 8 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            close_linger: Duration::from_secs(5),
            backlog: 1024,
            events_capacity: 1024,
            udp_batch: 1,
            udp_slot_len: 2048,
        }
    }
}

/// Counters since the reactor was created. Cheap to copy; read with
/// [`Reactor::stats`](crate::Reactor::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls to `turn`.
    pub turns: u64,
    /// Connections accepted and reported as `Accepted`.
    pub accepted: u64,
    /// Outgoing connects started (`connect` returned `Ok`).
    pub connects: u64,
    /// Outgoing connects that completed.
    pub connected: u64,
    /// `Closed` events emitted.
    pub closed: u64,
    /// Connect attempts that ended with `ConnectTimeout`.
    pub connect_timeouts: u64,
    /// Connections closed with `SlowConsumer`.
    pub slow_consumers: u64,
    /// Times a connection's reading was paused because its write queue passed the soft cap.
    pub read_pauses: u64,
    /// Stream bytes read from TCP connections.
    pub bytes_in: u64,
    /// Stream bytes written to TCP connections.
    pub bytes_out: u64,
    /// `write` system calls on TCP connections, including those that returned `WouldBlock`.
    /// Replies sent in one loop iteration share one write per connection, so this grows much
    /// slower than the number of `send` calls under pipelining.
    pub writes: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent in full.
    pub datagrams_out: u64,
    /// Datagrams `send_to` dropped (socket buffer full, or an error).
    pub udp_dropped: u64,
    /// Receive system calls on UDP sockets (`recv_from`, or `recvmmsg` for a whole batch),
    /// including the last one that found nothing.
    pub udp_recv_calls: u64,
    /// Datagrams dropped because they were longer than `Config::udp_slot_len` (batched
    /// receive only).
    pub udp_truncated: u64,
    /// Errors from `accept`, including running out of file descriptors.
    pub accept_errors: u64,
    /// Connections accepted and closed at once, without an event: shed while out of file
    /// descriptors, or because the connection table was full.
    pub accept_dropped: u64,
}
