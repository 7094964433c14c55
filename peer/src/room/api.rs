//! The rooms' interface: the modes and counters the crate exports, and what a call into the
//! rooms' state machine ([`super::Rooms`]) gets from the node ([`Cx`], [`RoomIo`]) and leaves
//! for it ([`RoomOut`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use p2pchat_protocol::Msg;
use rand::rngs::StdRng;

use crate::io::NodeEvent;

/// How a room message spreads over the room overlay (`--room-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RoomMode {
    /// Every peer forwards a new message to every neighbour but the sender: `n(d'-1)+1` frames
    /// per message, robust without any repair.
    #[default]
    Flood,
    /// An epidemic broadcast tree (Plumtree): full messages go along a spanning tree of the
    /// overlay, the other links only carry batched announcements of message ids and repair the
    /// tree when a message is missed. Links to peers that only speak flooding still flood.
    Tree,
}

impl RoomMode {
    /// The name on the command line: `flood` or `tree`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomMode::Flood => "flood",
            RoomMode::Tree => "tree",
        }
    }
}

impl std::str::FromStr for RoomMode {
    type Err = String;

    fn from_str(s: &str) -> Result<RoomMode, String> {
        match s {
            "flood" => Ok(RoomMode::Flood),
            "tree" => Ok(RoomMode::Tree),
            other => Err(format!("unknown room mode {other:?} (flood or tree)")),
        }
    }
}

/// Flooding counters of one room (for tests, the simulator and the cost measurement).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoomStats {
    /// Messages this peer originated.
    pub originated: u64,
    /// Room-message frames sent (originated and forwarded, one per neighbour).
    pub frames_sent: u64,
    /// Messages from others received for the first time.
    pub delivered: u64,
    /// Copies received again and dropped.
    pub duplicates: u64,
    /// Tree mode: `room-ihave` frames sent.
    pub ihaves_sent: u64,
    /// Tree mode: message ids announced in them.
    pub ids_announced: u64,
    /// Tree mode: `room-graft` frames sent.
    pub grafts_sent: u64,
    /// Tree mode: `room-prune` frames sent.
    pub prunes_sent: u64,
    /// New messages dropped unshown and unforwarded: unsigned, or not signed by their origin
    /// (docs/security.md, layer 4).
    pub refused: u64,
}

/// What the rooms need of the peer links and the user interface, provided by the node.
pub(crate) trait RoomIo {
    /// Whether `name` has a ready peer link.
    fn is_ready(&self, name: &str) -> bool;
    /// Whether a dial to `name` is in progress.
    fn is_dialing(&self, name: &str) -> bool;
    /// The peer version the ready link to `name` runs at (0: no link).
    fn version(&self, name: &str) -> u16;
    /// Opens a peer link to `name` at `addr`.
    fn dial(&mut self, now: Instant, name: &str, addr: SocketAddr);
    /// Sends `msg` on the ready link to `name`; false when there is none.
    fn send(&mut self, name: &str, msg: Msg) -> bool;
    /// Sends an encoded frame on the ready link to `name`; false when there is none.
    fn send_bytes(&mut self, name: &str, bytes: &Bytes) -> bool;
    /// A room uses the link to `name`: it must not be closed as idle.
    fn hold(&mut self, name: &str);
    /// Shows the user something.
    fn event(&mut self, event: NodeEvent);
}

/// What the rooms leave to the node once a call returns (they touch state the node owns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomOut {
    /// No room needs the link to this peer any more (the node closes it when idle, unless a
    /// chat or another room uses it).
    Release(String),
    /// Plain lines go to this room now.
    Focus(String),
    /// Plain lines go to this room now, unless a private chat has the focus.
    FocusUnlessChat(String),
    /// This room is gone: the focus falls back if it had it.
    Unfocus(String),
    /// The room's member view ran short: ask the registry for the online members again.
    Refill(String),
}

/// One call's context: who we are, the links, randomness, and what is left for the node.
pub(crate) struct Cx<'a> {
    /// Our name, while logged in.
    pub(crate) me: Option<&'a str>,
    pub(crate) io: &'a mut dyn RoomIo,
    pub(crate) rng: &'a mut StdRng,
    /// Muted users and `#rooms`.
    pub(crate) muted: &'a BTreeSet<String>,
    /// Unix time in milliseconds now.
    pub(crate) wall_ms: u64,
    /// The node's clock now (for the trace; calls that act on time still take it as an
    /// argument).
    pub(crate) now: Instant,
    /// Our identity key, to sign our room messages with.
    pub(crate) signer: Option<&'a super::RoomSigner>,
    /// Our identity ticket and the registry key that signed it: with it, room messages are
    /// signed and others' are checked.
    pub(crate) ticket: Option<(&'a [u8], [u8; 32])>,
    pub(crate) out: Vec<RoomOut>,
}

impl Cx<'_> {
    pub(crate) fn error(&mut self, message: impl Into<String>) {
        self.io.event(NodeEvent::error(message));
    }
}
