//! The p2pchat peer: the node state machine behind the `p2pchat` terminal client.
//!
//! # Brief overview
//!
//! - [`Node`] is one peer. It owns the registry session (login, heartbeats, reconnect with a
//!   resume token), the peer links (one TCP connection per pair of peers, carrying any
//!   peer-to-peer message kind) and the private chats that run over them.
//! - [`Input`] is everything that can happen to a node: a user [`Command`], a connection
//!   accepted, connected, receiving bytes or closed, or time passing. [`Output`] is everything a
//!   node asks its driver to do: connect, send bytes, send a heartbeat datagram, close, show a
//!   [`NodeEvent`] to the user, or exit.
//! - [`LinkId`] names connections: the node names those it dials, the driver those it accepts.
//! - [`command::parse`] turns a typed line into a `Command`; [`render`] turns a `NodeEvent` into
//!   the exact line-mode text of the user contract, a JSON object, or coloured terminal text.
//!
//! This crate does no I/O and reads no clock: bytes, commands and `now: Instant` come in; bytes,
//! datagrams, deadlines and events go out. Wall-clock time (the heartbeat timestamp) is derived
//! from one reading handed to [`Node::new`], and randomness (reconnect jitter) from a seeded
//! `StdRng`. The same `Node` runs under the `p2pchat` binary (a mio reactor from
//! `p2pchat-engine`), in the in-crate scenario tests, and in a simulator with a virtual clock.
//!
//! # Driving a node
//!
//! 1. Feed **one** input with [`Node::handle_input`]`(now, input)`. Time must not go backwards.
//!    Start with [`Input::Timeout`] right after [`Node::new`]: that dials the registry.
//! 2. Call [`Node::poll_output`] until it returns `None`, and carry out each [`Output`]:
//!    `Connect` (answer later with `Connected` or `Closed`), `Send`, `SendTo`, `Close`, show
//!    `Event`, and on `Exit` flush and stop.
//! 3. Read [`Node::poll_timeout`]: the latest moment to feed [`Input::Timeout`]. Feeding it
//!    earlier is harmless.
//! 4. Wait for the earliest of that deadline, socket readiness, a user line or a signal. Then go
//!    to 1.
//!
//! ```text
//!   user line ──command::parse──▶ Input::Command ─┐
//!   socket events ──▶ Input::{Accepted,Connected, ├─▶ Node ──▶ Output::{Connect,Send,SendTo,Close}
//!                             Received,Closed}    │     │  └─▶ Output::Event ──render──▶ terminal
//!   deadline ──▶ Input::Timeout ──────────────────┘     └─ poll_timeout() ──▶ next deadline
//!
//!   Node ─┬─ RegistryLink (session, requests, heartbeats, reconnect)
//!         ├─ Links        (peer links: handshake, deadlines, one per peer)
//!         ├─ chats        (private chats keyed by peer name)
//!         └─ rooms        (room views, overlay links, flooding or broadcast tree, dedup)
//! ```
#![warn(missing_docs, unreachable_pub)]

mod chat;
pub mod command;
mod heartbeat;
mod io;
mod link;
mod node;
mod registry_link;
pub mod render;
pub mod room;

pub use command::{Command, FocusCommand, ParseError, Password};
pub use io::{CloseReason, Config, Input, LinkId, NodeEvent, Output};
pub use node::{Node, Target};
pub use room::{RoomMode, RoomStats};

#[cfg(test)]
mod tests;
