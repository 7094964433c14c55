//! A hand-written mio reactor for p2pchat: TCP listeners and connections, UDP sockets, capped
//! write queues, connect and close deadlines, a cross-thread waker and process signals.
//!
//! The engine knows bytes, sockets, ids and deadlines, and nothing about chat or framing: the
//! binaries turn its [`NetEvent`]s into inputs for the sans-IO state machines and carry their
//! outputs back as [`Reactor`] calls.
//!
//! # Brief overview
//!
//! - [`Reactor`] owns one `mio::Poll` and three tables: listeners, UDP sockets and connections
//!   (each a `Slab`). Commands ([`Reactor::connect`], [`Reactor::send`], [`Reactor::close`], ...)
//!   act at once; [`Reactor::turn`] waits for readiness and reports what happened.
//! - [`ConnId`] (slab index + generation), [`ListenerId`] and [`UdpId`] name the sockets.
//! - [`NetEvent`] is what a turn reports; [`CloseReason`] says why a connection ended; every
//!   connection gets exactly one [`NetEvent::Closed`], whatever the cause.
//! - [`Config`] holds the caps and timeouts; [`Stats`] the counters.
//! - [`Waker`] (mio's, shared as `Arc`) lets other threads (stdin reader, hashing and storage
//!   workers) interrupt a turn; it surfaces as [`NetEvent::Woken`].
//!
//! ```text
//!   other threads ── Waker ──┐
//!   SIGINT/TERM/HUP ─ pipe ──┤
//!   listeners, UDP, conns ───┴─> mio::Poll ─> Reactor::turn ─> Vec<NetEvent> ─> caller
//!   caller ─> connect / send / close / send_to ─> Reactor (append to the queue; flushed
//!             once per connection at the end of the iteration, before the next poll)
//! ```
//!
//! # Batched output
//!
//! [`Reactor::send`] appends to the connection's queue and does not write. The next
//! [`Reactor::turn`] first writes every connection that has output (one `write` for all the
//! replies the caller produced in its iteration), then polls. A turn reads each readable socket
//! to `WouldBlock` and hands over every chunk before the caller replies to any of it, so a
//! client that pipelines 16 requests gets its 16 replies in one write, as Redis does.
//! [`Stats::writes`] counts the write calls. A queue that passes the soft cap is written at
//! once; [`Reactor::close`] writes what is queued at once too; [`Reactor::flush`] does it for
//! all connections on demand. Output still queued when the `Reactor` is dropped is lost, so
//! keep turning until [`Reactor::is_quiescent`] before exiting.
//!
//! # Time
//!
//! [`Reactor::turn`] reads the monotonic clock once per call; nothing else in the engine does.
//! Commands that start a deadline (connect timeout, close linger) record a delay, armed from the
//! next turn's clock read. Internal deadlines live in a sorted index (`BTreeSet<(Instant,
//! ConnId)>`), so no turn ever scans all connections.
//!
//! # Token space
//!
//! | token                         | source                                                |
//! |-------------------------------|-------------------------------------------------------|
//! | `0`                           | the [`Waker`]                                         |
//! | `1`                           | signal-hook-mio's self-pipe                           |
//! | `0x100..0x200`                | listeners (`0x100 +` slab index)                      |
//! | `0x200..0x300`                | UDP sockets (`0x200 +` slab index)                    |
//! | low 32 bits `>= 0x1_0000`     | connections: generation in the high 32 bits           |
//!
//! An event fetched for a connection that closed in the same batch (its slot possibly reused)
//! carries the old generation and is dropped.
//!
//! # The loop
//!
//! 1. Create a [`Reactor`], [`listen`](Reactor::listen) / [`bind_udp`](Reactor::bind_udp) /
//!    [`connect`](Reactor::connect), and optionally [`enable_signals`](Reactor::enable_signals).
//! 2. Call [`turn`](Reactor::turn) with the state machine's next deadline (`poll_timeout()`).
//!    It blocks until readiness, a wake, a signal, an internal deadline or that deadline.
//! 3. Read the clock once; feed each returned event to the state machine, then its `Timeout`
//!    input (cheap and idempotent: an empty event list does not mean a timeout).
//! 4. Carry out its outputs: [`send`](Reactor::send), [`send_to`](Reactor::send_to),
//!    [`close`](Reactor::close), [`connect`](Reactor::connect). Their consequences (say a
//!    `Closed { reason: SlowConsumer }`) arrive from the next turn, which then does not block.
//! 5. To shut down: [`close_listeners`](Reactor::close_listeners) or
//!    [`shutdown`](Reactor::shutdown), keep turning until [`is_quiescent`](Reactor::is_quiescent)
//!    (or [`connection_count`](Reactor::connection_count) is zero), then exit. Go to 2.
//!
//! # mio rules obeyed
//!
//! - Edge-triggered readiness: reads, writes, accepts and `recv_from` loop until `WouldBlock`
//!   ("the source must be drained until it returns `WouldBlock`"); `Interrupted` is retried.
//!   A source deliberately left readable (per-turn caps for fairness: `max_read_chunk` per
//!   connection, a number of accepts and datagrams) is resumed on the next turn without waiting
//!   for an edge that will not come.
//! - Spurious events are expected: every handler tolerates a source that is not ready, and
//!   tokens that are unknown or carry a stale generation are ignored.
//! - WRITABLE interest is registered only while output is queued (or a connect is pending), so
//!   an idle connection causes no wake-ups; a short write is normal, not an error.
//! - A nonblocking connect is checked as mio documents: `take_error`, then `peer_addr`.
//! - One `Waker` per `Poll`. Sources are deregistered before they are dropped.
//! - A failure on one socket closes that connection ([`NetEvent::Closed`] with a reason);
//!   `turn` returns `Err` only when the poller itself fails.
//!
//! Caps: above `write_soft_cap` queued bytes (after writing what the kernel takes) a connection
//! is not read (backpressure) until its queue drains to half that; a `send` that would pass
//! `write_hard_cap` even after such a write closes it as a slow consumer. All TCP streams get `TCP_NODELAY`. Accept survives running out of descriptors
//! without spinning (a reserve descriptor, then a back-off).

#![warn(missing_docs, unreachable_pub)]

mod config;
mod conn;
mod event;
mod id_hash;
mod reactor;
mod timers;
mod token;

pub use config::{Config, Stats};
pub use event::{CloseReason, NetEvent, Signal};
pub use id_hash::IdHasher;
pub use mio::Waker;
pub use reactor::Reactor;
pub use token::{ConnId, ListenerId, UdpId};
