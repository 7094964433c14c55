//! The p2pchat wire format: TCP frames, the UDP heartbeat datagram, status codes and name rules.
//!
//! # Brief overview
//!
//! - [`Frame`] is one message on a TCP connection: a request id and a [`Msg`]. Every kind of
//!   message is one variant of `Msg`; [`Frame::encode`] writes it (never fails) and
//!   [`Frame::decode`] reads one exact body (never panics, rejects trailing bytes).
//! - [`FrameDecoder`] splits a byte stream into frames, checking each length prefix against the
//!   maximum before reserving memory.
//! - [`Heartbeat`] is the authenticated UDP presence datagram; [`ReplayWindow`] is its
//!   anti-replay check.
//! - [`status`] holds the error codes and their human messages; [`names`] the rules for
//!   usernames, room names, passwords and text.
//!
//! This crate does no I/O and reads no clock: bytes in, values out, and back. The byte-level
//! specification, one table row per frame kind, is `docs/protocol.md`.
//!
//! ```text
//!  socket bytes ──push──▶ FrameDecoder ──next_frame──▶ Frame { id, msg: Msg }
//!  Frame ──encode──▶ BytesMut ──▶ socket
//!  UDP datagram ──Heartbeat::decode──▶ is_authentic(key) ──▶ ReplayWindow::accept(counter)
//! ```
#![warn(missing_docs, unreachable_pub)]

mod datagram;
mod duration;
mod error;
mod frame;
mod framing;
mod msg;
pub mod names;
#[doc(hidden)]
pub mod samples;
pub mod status;
mod wire;

pub use datagram::{Heartbeat, HeartbeatKey, ReplayWindow, HEARTBEAT_KIND, HEARTBEAT_LEN};
pub use duration::parse_duration;
pub use error::{DecodeError, DecodeErrorKind};
pub use frame::{
    Frame, BODY_HEADER, DEFAULT_MAX_FRAME, LEN_PREFIX, MAGIC, OLDEST_PEER_VERSION, PEER_VERSION,
    VERSION,
};
pub use framing::FrameDecoder;
pub use msg::{
    kind, kind_name, MemberInfo, Msg, PeerInfo, Presence, Role, RoomEvent, RoomInfo, RoomMsgId,
};
pub use wire::MAX_FIELD_LEN;
