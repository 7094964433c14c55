//! The p2pchat registry: accounts, login sessions, presence and the room directory, as a
//! sans-IO state machine, plus the storage and hashing workers the binary runs beside it.
//!
//! # Brief overview
//!
//! - [`Registry`] is the state machine. It owns the connections' protocol state, an in-memory
//!   copy of every account (loaded from a [`store::Snapshot`] at start), the online sessions and
//!   their heartbeat deadlines, and the abuse limits.
//! - [`Input`] and [`Output`] are everything that goes in and comes out. Slow work leaves as
//!   [`Output::Hash`] / [`Output::Store`] and comes back as [`Input::HashDone`] /
//!   [`Input::StoreDone`]; the binary runs it on [`hasher::HashPool`] and
//!   [`store::StoreHandle`] threads, tests and the simulator complete it in memory.
//! - [`store::SqliteStore`] is the durable source of truth (WAL, synchronous=FULL, group
//!   commit); [`hasher`] is PBKDF2-HMAC-SHA256 via ring.
//!
//! The state machine does no I/O and reads no clock: time comes in as `now`, wall-clock time is
//! derived from an anchor given at construction, randomness from a seed.
//!
//! # Run loop
//!
//! 1. Feed one input with the current `now` ([`Registry::handle_input`]). Time never goes
//!    backwards.
//! 2. Drain [`Registry::poll_output`] until `None`, carrying out each output.
//! 3. Read [`Registry::poll_timeout`]: the latest moment to feed [`Input::Timeout`] (feeding it
//!    early is harmless).
//! 4. Wait for the earliest of that deadline, socket readiness, a worker's wake-up or a signal;
//!    go to 1.
//!
//! ```text
//!  sockets ──Connected/Received/Closed/Datagram──▶ ┌──────────┐ ──Send/Close──▶ sockets
//!  workers ──HashDone/StoreDone─────────────────▶ │ Registry │ ──Hash/Store──▶ workers
//!  clock   ──Timeout (at poll_timeout)──────────▶ └──────────┘ ──Event──────▶ logs
//! ```
#![warn(missing_docs, unreachable_pub)]

mod accounts;
mod admission;
mod auth;
mod config;
mod dense;
pub mod hasher;
mod io;
mod limits;
mod memory;
mod presence;
mod registry;
mod rooms;
pub mod secure;
pub mod store;
mod tickets;
mod timers;
mod turns;

#[cfg(test)]
mod tests;

pub use config::Config;
pub use io::{CloseReason, ConnId, Event, Input, OfflineReason, Output};
pub use presence::HeartbeatRejection;
pub use registry::{Registry, Stats};
