//! What goes into a [`Node`](crate::Node) and what comes out of it: [`Input`], [`Output`],
//! [`LinkId`], [`NodeEvent`] and the tunables in [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::command::Command;

/// Names one TCP connection of the node: the registry session or a peer link.
///
/// The node names the connections it opens itself ([`Output::Connect`] carries a
/// `LinkId::Dialed`); the driver names the connections its listener accepts
/// ([`Input::Accepted`] carries a `LinkId::Accepted` of the driver's choosing, unique among the
/// driver's accepted ids). The two spaces never collide, so the driver only keeps a map from
/// `LinkId` to its own connection handle and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkId {
    /// A connection the node asked for with [`Output::Connect`].
    Dialed(u64),
    /// A connection the driver's listener accepted.
    Accepted(u64),
}

/// One input to [`Node::handle_input`](crate::Node::handle_input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A command from the user (see [`crate::command::parse`]).
    Command(Command),
    /// The listener accepted a connection from another peer.
    Accepted {
        /// The id the driver chose for it (a `LinkId::Accepted`).
        link: LinkId,
        /// Remote address.
        remote: SocketAddr,
    },
    /// An [`Output::Connect`] completed.
    Connected {
        /// The link.
        link: LinkId,
    },
    /// Bytes arrived on a link, in stream order. Chunk boundaries mean nothing.
    Received {
        /// The link.
        link: LinkId,
        /// The bytes.
        bytes: Bytes,
    },
    /// A link is gone (remote close, I/O error, failed connect, or after [`Output::Close`]).
    Closed {
        /// The link.
        link: LinkId,
    },
    /// Time passed; see [`Node::poll_timeout`](crate::Node::poll_timeout). Harmless when early.
    Timeout,
}

/// One thing for the driver to do, from [`Node::poll_output`](crate::Node::poll_output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection; answer with [`Input::Connected`] or [`Input::Closed`].
    Connect {
        /// The id the node gave it.
        link: LinkId,
        /// Where to.
        addr: SocketAddr,
    },
    /// Write these bytes (whole frames) to a link.
    Send {
        /// The link.
        link: LinkId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Flush what was queued for the link, then close it. The node has forgotten the link; an
    /// [`Input::Closed`] for it later is ignored.
    Close {
        /// The link.
        link: LinkId,
        /// Why, for logs.
        reason: CloseReason,
    },
    /// Send one UDP datagram (the registry heartbeat).
    SendTo {
        /// Destination.
        to: SocketAddr,
        /// The datagram.
        bytes: Bytes,
    },
    /// Something to show the user.
    Event(NodeEvent),
    /// The node is done (after `/quit`): flush and close everything, then exit.
    Exit,
}

/// Why the node closes a link. Data for logs, not an error that unwinds anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The peer sent bytes that are not a valid frame.
    #[error("undecodable bytes: {0}")]
    Decode(#[from] p2pchat_protocol::DecodeError),
    /// The peer sent a frame at the wrong time.
    #[error("unexpected {got} frame (expected {expected})")]
    Unexpected {
        /// What was expected, in words.
        expected: &'static str,
        /// The kind that came.
        got: &'static str,
    },
    /// The peer broke a rule of the protocol.
    #[error("misbehaved: {0}")]
    Misbehaved(&'static str),
    /// The handshake did not complete in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// A started frame did not complete in time.
    #[error("frame timed out")]
    FrameTimeout,
    /// The registry link carried nothing for too long.
    #[error("registry link silent")]
    Silent,
    /// The link carries nothing any more (no chat uses it).
    #[error("idle")]
    Idle,
    /// Another link to the same peer won (one link per pair of peers).
    #[error("duplicate link")]
    Duplicate,
    /// The node is quitting.
    #[error("quitting")]
    Quit,
}

/// What the user sees, one value per line of output; rendered by [`crate::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// `Registered USER`
    Registered {
        /// Username.
        name: String,
    },
    /// `Logged in as USER`
    LoggedIn {
        /// Canonical username.
        name: String,
        /// The address the registry gives other peers for us.
        advertised: SocketAddr,
    },
    /// `Logged out`
    LoggedOut,
    /// `Logged out: log in again`: the registry came back without our session (it restarted
    /// without its database, or the session expired while we were away).
    SessionLost,
    /// `Renamed to USER`
    Renamed {
        /// The new name.
        name: String,
    },
    /// `USER is online at IP:PORT`
    UserOnline {
        /// Username.
        name: String,
        /// Peer listener address.
        addr: SocketAddr,
    },
    /// `USER is offline`
    UserOffline {
        /// Username.
        name: String,
    },
    /// `USER not found`
    UserNotFound {
        /// Username.
        name: String,
    },
    /// `Online: NAME NAME ...`
    OnlineUsers {
        /// Names, sorted.
        names: Vec<String>,
    },
    /// The first connection to the registry succeeded (a free-form notice).
    RegistryConnected {
        /// Registry address.
        addr: SocketAddr,
    },
    /// `Disconnected from registry`
    RegistryDisconnected,
    /// `Reconnected to registry`
    RegistryReconnected,
    /// `Chat request from USER`
    ChatRequest {
        /// Who asks.
        from: String,
    },
    /// `Chat request sent to USER, waiting...`
    ChatRequestSent {
        /// To whom.
        to: String,
    },
    /// A chat request nobody answered in time (ours or theirs).
    ChatRequestExpired {
        /// The other user.
        with: String,
        /// True when we had asked, false when they had.
        outgoing: bool,
    },
    /// `/chats`: open chats, pending requests both ways and joined rooms.
    Windows {
        /// Chats started.
        chats: Vec<String>,
        /// Requests we sent, not answered yet.
        sent: Vec<String>,
        /// Requests we received and did not answer yet.
        received: Vec<String>,
        /// Rooms we are in.
        rooms: Vec<String>,
        /// Where plain lines go (`@NAME` for a chat), if anywhere.
        focus: Option<String>,
    },
    /// `OLD is now known as NEW`: a chat partner or room member renamed.
    UserRenamed {
        /// The old name.
        old: String,
        /// The new name.
        new: String,
    },
    /// `Chat with USER started`
    ChatStarted {
        /// With whom.
        with: String,
    },
    /// `USER rejected the chat request`
    ChatRejected {
        /// Who rejected.
        by: String,
    },
    /// We rejected a request (free-form notice).
    ChatRequestDeclined {
        /// Whose request.
        from: String,
    },
    /// `USER is busy`
    ChatBusy {
        /// Who is busy.
        by: String,
    },
    /// `Message from USER: TEXT`
    Message {
        /// Sender.
        from: String,
        /// Text as sent.
        text: String,
    },
    /// Our own message, sent (shown in interactive mode only).
    MessageSent {
        /// Recipient.
        to: String,
        /// Text.
        text: String,
    },
    /// `Chat with USER ended`
    ChatEnded {
        /// With whom.
        with: String,
    },
    /// `Chat with USER lost`
    ChatLost {
        /// With whom.
        with: String,
    },
    /// The current target changed (free-form notice).
    Focus {
        /// The new target.
        target: String,
    },
    /// A user or room was muted (free-form notice).
    Muted {
        /// User or room.
        target: String,
    },
    /// A user or room was unmuted (free-form notice).
    Unmuted {
        /// User or room.
        target: String,
    },
    /// The command list, answer to `/help`, or one command's help.
    Help {
        /// The command asked about (its canonical name), or `None` for the list.
        command: Option<String>,
    },
    /// `/away`: marked away with this message, or back (`None`).
    Away {
        /// The away message.
        message: Option<String>,
    },
    /// `/create` succeeded: we are the room's admin.
    RoomCreated {
        /// The room.
        room: String,
    },
    /// We are in the room and linked to its overlay (or alone in it).
    RoomJoined {
        /// The room.
        room: String,
    },
    /// `/leave` succeeded.
    RoomLeft {
        /// The room.
        room: String,
    },
    /// A room message, shown once.
    RoomMessage {
        /// The room.
        room: String,
        /// Its origin.
        from: String,
        /// Text.
        text: String,
    },
    /// Our own room message (shown only interactively).
    RoomMessageSent {
        /// The room.
        room: String,
        /// Text.
        text: String,
    },
    /// Someone joined a room we are in.
    MemberJoined {
        /// The room.
        room: String,
        /// The member.
        name: String,
    },
    /// Someone left a room we are in.
    MemberLeft {
        /// The room.
        room: String,
        /// The member.
        name: String,
    },
    /// Someone (maybe us) was kicked from a room we are in.
    MemberKicked {
        /// The room.
        room: String,
        /// The member.
        name: String,
    },
    /// Someone became admin of a room we are in.
    MemberPromoted {
        /// The room.
        room: String,
        /// The member.
        name: String,
    },
    /// `/rooms`: every room.
    RoomList {
        /// Rooms, sorted by name.
        rooms: Vec<p2pchat_protocol::RoomInfo>,
    },
    /// `/members ROOM`.
    MemberList {
        /// The room.
        room: String,
        /// Members in join order.
        members: Vec<p2pchat_protocol::MemberInfo>,
    },
    /// `error: MESSAGE`
    Error {
        /// The message (the registry's text for registry errors).
        message: String,
    },
}

impl NodeEvent {
    /// An [`NodeEvent::Error`] with this message.
    pub fn error(message: impl Into<String>) -> NodeEvent {
        NodeEvent::Error {
            message: message.into(),
        }
    }
}

/// Tunables of a [`Node`](crate::Node). Build with [`Config::new`] and override fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Registry TCP address.
    pub registry: SocketAddr,
    /// Registry UDP (heartbeat) address; `None`: the registry's host and the port it announces
    /// at login.
    pub registry_udp: Option<SocketAddr>,
    /// The address our peer listener is bound to, sent at login (an unspecified IP lets the
    /// registry substitute the address it sees us at).
    pub listen: SocketAddr,
    /// Concurrent private chats (pending ones included) before requests are answered busy.
    pub max_chats: usize,
    /// Room overlay degree (used by rooms).
    pub degree: usize,
    /// How room messages spread over the overlay: flooding, or the broadcast tree.
    pub room_mode: crate::room::RoomMode,
    /// A link's handshake (connect, hello, welcome) must complete within this.
    pub handshake_timeout: Duration,
    /// A started frame must complete within this.
    pub frame_timeout: Duration,
    /// A peer link no chat uses is closed after this.
    pub idle_timeout: Duration,
    /// Ping the registry this often; no traffic for twice this means the link is dead.
    pub ping_interval: Duration,
    /// First reconnect delay; grows by half per failed attempt up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A registry request unanswered for this long (while nothing else is answered either)
    /// is given up with `the registry did not answer`.
    pub registry_timeout: Duration,
    /// `/quit` waits at most this for in-flight replies and the logout.
    pub quit_grace: Duration,
    /// A chat request unanswered for this long is withdrawn (ours) or dropped (theirs).
    pub chat_request_timeout: Duration,
    /// Largest frame body accepted.
    pub max_frame: u32,
    /// Requests held while the registry is unreachable, before new ones are refused.
    pub max_queued: usize,
    /// Our long-term Ed25519 public key: with it, the node asks the registry for an identity
    /// ticket after each login and resume (docs/security.md). `None`: no ticket.
    pub identity_key: Option<[u8; 32]>,
    /// Our identity key pair (the private half of `identity_key`): signs our room messages
    /// once we hold a ticket (docs/security.md, layer 4). `None`: they go unsigned.
    pub identity: Option<crate::room::RoomSigner>,
    /// Room overlay and message events kept for [`crate::Node::room_trace`] (the newest this
    /// many; 0, the default: none). For finding lost deliveries in load runs.
    pub room_trace: usize,
}

impl Config {
    /// Defaults for a node using the registry at `registry`, listening on `listen`.
    pub fn new(registry: SocketAddr, listen: SocketAddr) -> Config {
        Config {
            registry,
            registry_udp: None,
            listen,
            max_chats: 8,
            degree: 4,
            room_mode: crate::room::RoomMode::Flood,
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            quit_grace: Duration::from_secs(2),
            registry_timeout: Duration::from_secs(10),
            chat_request_timeout: Duration::from_secs(60),
            max_frame: p2pchat_protocol::DEFAULT_MAX_FRAME,
            max_queued: 64,
            identity_key: None,
            identity: None,
            room_trace: 0,
        }
    }
}
