//! Every message of the protocol as a type: [`Msg`] and the values inside it, with the kind
//! byte of each. How they are laid out on the wire is in `frame.rs` and docs/protocol.md.

use std::net::SocketAddr;

/// Who opens a connection, told in the hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A peer's session with the registry.
    Client = 1,
    /// A peer-to-peer link.
    Peer = 2,
}

/// Where a searched user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// No account by that name.
    NotFound,
    /// Registered, not online.
    Offline,
    /// Online; the address its peer listener accepts chats on.
    Online(SocketAddr),
}

/// A room in a room listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Room name.
    pub name: String,
    /// Members, online or not.
    pub members: u32,
    /// Members online now.
    pub online: u32,
}

/// An online user and the address its peer listener accepts links on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Username.
    pub name: String,
    /// Peer listener address.
    pub addr: SocketAddr,
}

/// A room member in a member listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Username.
    pub name: String,
    /// Whether the member is an admin of the room.
    pub admin: bool,
    /// Whether the member is online now.
    pub online: bool,
}

/// The id of a room message, `(origin, seq)`, as room announcements and grafts carry it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomMsgId {
    /// Original sender.
    pub origin: String,
    /// Per-origin sequence number.
    pub seq: u64,
}

/// Something that happened in a room, pushed to its online members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// A user joined the room (and is online at `addr`).
    Joined {
        /// Who.
        name: String,
        /// Their peer listener.
        addr: SocketAddr,
    },
    /// A member left.
    Left {
        /// Who.
        name: String,
    },
    /// A member was removed by an admin.
    Kicked {
        /// Who was kicked.
        name: String,
        /// The admin who kicked.
        by: String,
    },
    /// A member became admin (by promotion or by succession).
    Promoted {
        /// Who.
        name: String,
    },
    /// A member came online.
    Online {
        /// Who.
        name: String,
        /// Their peer listener.
        addr: SocketAddr,
    },
    /// A member went offline.
    Offline {
        /// Who.
        name: String,
    },
    /// A member changed username.
    Renamed {
        /// Old name.
        old: String,
        /// New name.
        new: String,
    },
}

/// Every message of the protocol. The kind byte of each is in [`Msg::kind`] and in
/// docs/protocol.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    // --- handshake (both link types) ---
    /// First frame on every connection.
    Hello {
        /// Protocol version of the sender.
        version: u16,
        /// Registry session or peer link.
        role: Role,
        /// Peer links: the sender's username. Registry sessions: empty.
        name: String,
        /// Peer links: a registry-signed identity ticket (empty until secure links exist).
        ticket: Vec<u8>,
    },
    /// Answer to a hello.
    Welcome {
        /// Protocol version of the answering side.
        version: u16,
        /// Peer links: the acceptor's username. Registry: a server description.
        name: String,
    },
    // --- accounts (client -> registry) ---
    /// Create an account.
    Register {
        /// Username.
        name: String,
        /// Password.
        password: String,
    },
    /// Log in with a password.
    Login {
        /// Username.
        name: String,
        /// Password.
        password: String,
        /// The peer's listener address; an unspecified IP means "the address you see me at".
        listen: SocketAddr,
    },
    /// Log back in with a resume token instead of the password.
    Resume {
        /// Username.
        name: String,
        /// The resume token from the last `LoggedIn`.
        token: Vec<u8>,
        /// As in `Login`.
        listen: SocketAddr,
    },
    /// End the session (the connection stays open).
    Logout,
    /// Where is a user?
    Search {
        /// Username.
        name: String,
    },
    /// One page of the online users, sorted by name.
    ListOnline {
        /// Names greater than this (empty for the first page).
        after: String,
        /// Page size wanted.
        limit: u16,
    },
    /// Change the logged-in user's name.
    Rename {
        /// New username.
        name: String,
    },
    /// Liveness probe of the registry connection.
    Ping,
    // --- rooms (client -> registry) ---
    /// Create a room; the creator becomes admin.
    CreateRoom {
        /// Room name.
        room: String,
    },
    /// One page of the rooms, sorted by name.
    ListRooms {
        /// Names greater than this (empty for the first page).
        after: String,
        /// Page size wanted.
        limit: u16,
    },
    /// Join a room.
    JoinRoom {
        /// Room name.
        room: String,
    },
    /// Leave a room.
    LeaveRoom {
        /// Room name.
        room: String,
    },
    /// List a room's members.
    ListMembers {
        /// Room name.
        room: String,
    },
    /// Remove a member (admins only).
    Kick {
        /// Room name.
        room: String,
        /// Member to remove.
        name: String,
    },
    /// Make a member admin (admins only).
    Promote {
        /// Room name.
        room: String,
        /// Member to promote.
        name: String,
    },
    // --- replies (registry -> client) ---
    /// The request succeeded and has nothing more to say.
    Ok,
    /// The request failed, or (id 0) the connection is being closed for this reason.
    Error {
        /// Status code (see [`crate::status`]).
        code: u16,
        /// Human-readable message, shown to the user as is.
        message: String,
    },
    /// A successful login or resume.
    LoggedIn {
        /// The canonical username.
        name: String,
        /// Session id heartbeats carry.
        session: u64,
        /// HMAC-SHA256 key heartbeats are signed with.
        heartbeat_key: [u8; 32],
        /// How often to heartbeat (ms).
        heartbeat_interval_ms: u32,
        /// Silence after which the session expires (ms).
        heartbeat_timeout_ms: u32,
        /// Credential for `Resume`; replaced at each use.
        resume_token: Vec<u8>,
        /// The registry's heartbeat UDP port (on the registry's host).
        udp_port: u16,
        /// The peer address the registry will hand out for this user.
        advertised: SocketAddr,
    },
    /// Answer to `Search`.
    SearchResult {
        /// Username searched.
        name: String,
        /// Where it is.
        presence: Presence,
    },
    /// Answer to `ListOnline`.
    OnlineList {
        /// Names, sorted.
        names: Vec<String>,
        /// Whether another page follows.
        more: bool,
    },
    /// Answer to `ListRooms`.
    RoomList {
        /// Rooms, sorted by name.
        rooms: Vec<RoomInfo>,
        /// Whether another page follows.
        more: bool,
    },
    /// Answer to `JoinRoom` (and to `CreateRoom` of a room one is now in).
    RoomJoined {
        /// Room name.
        room: String,
        /// The other online members and their peer addresses.
        peers: Vec<PeerInfo>,
    },
    /// Answer to `ListMembers`.
    MemberList {
        /// Room name.
        room: String,
        /// Members sorted by join order.
        members: Vec<MemberInfo>,
    },
    /// Answer to `Ping`.
    Pong,
    // --- events (registry -> client, id 0) ---
    /// Something happened in a room the receiver is in.
    Room {
        /// Room name.
        room: String,
        /// What happened.
        event: RoomEvent,
    },
    // --- peer to peer ---
    /// Ask to open a private chat.
    ChatRequest,
    /// Accept a private chat.
    ChatAccept,
    /// Refuse a private chat.
    ChatReject,
    /// Refuse a private chat: at the limit of concurrent chats.
    ChatBusy,
    /// A private message.
    ChatMessage {
        /// Text.
        text: String,
    },
    /// End a private chat.
    ChatEnd,
    /// Become neighbours in a room's overlay.
    RoomLink {
        /// Room name.
        room: String,
    },
    /// Stop being neighbours in a room's overlay.
    RoomUnlink {
        /// Room name.
        room: String,
    },
    /// A flooded room message.
    RoomMessage {
        /// Room name.
        room: String,
        /// Original sender.
        origin: String,
        /// Per-origin sequence number.
        seq: u64,
        /// Remaining hops.
        hops: u8,
        /// Origin's send time (unix ms).
        sent_ms: u64,
        /// Text.
        text: String,
    },
    /// Broadcast tree (peer version 2): "I have these room messages" on a lazy link.
    RoomIhave {
        /// Room name.
        room: String,
        /// The ids announced.
        ids: Vec<RoomMsgId>,
    },
    /// Broadcast tree (peer version 2): "send me these messages, and make this link eager".
    RoomGraft {
        /// Room name.
        room: String,
        /// The ids asked for (may be empty: just make the link eager).
        ids: Vec<RoomMsgId>,
    },
    /// Broadcast tree (peer version 2): "stop sending me full messages on this link; announce
    /// ids instead".
    RoomPrune {
        /// Room name.
        room: String,
    },
}

/// Kind bytes, in hex as in docs/protocol.md.
#[allow(missing_docs)]
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const REGISTER: u8 = 0x10;
    pub const LOGIN: u8 = 0x11;
    pub const RESUME: u8 = 0x12;
    pub const LOGOUT: u8 = 0x13;
    pub const SEARCH: u8 = 0x14;
    pub const LIST_ONLINE: u8 = 0x15;
    pub const RENAME: u8 = 0x16;
    pub const PING: u8 = 0x17;
    pub const CREATE_ROOM: u8 = 0x20;
    pub const LIST_ROOMS: u8 = 0x21;
    pub const JOIN_ROOM: u8 = 0x22;
    pub const LEAVE_ROOM: u8 = 0x23;
    pub const LIST_MEMBERS: u8 = 0x24;
    pub const KICK: u8 = 0x25;
    pub const PROMOTE: u8 = 0x26;
    pub const CHAT_REQUEST: u8 = 0x30;
    pub const CHAT_ACCEPT: u8 = 0x31;
    pub const CHAT_REJECT: u8 = 0x32;
    pub const CHAT_BUSY: u8 = 0x33;
    pub const CHAT_MESSAGE: u8 = 0x34;
    pub const CHAT_END: u8 = 0x35;
    pub const ROOM_LINK: u8 = 0x40;
    pub const ROOM_UNLINK: u8 = 0x41;
    pub const ROOM_MESSAGE: u8 = 0x42;
    pub const ROOM_IHAVE: u8 = 0x43;
    pub const ROOM_GRAFT: u8 = 0x44;
    pub const ROOM_PRUNE: u8 = 0x45;
    pub const OK: u8 = 0x80;
    pub const ERROR: u8 = 0x81;
    pub const LOGGED_IN: u8 = 0x82;
    pub const SEARCH_RESULT: u8 = 0x83;
    pub const ONLINE_LIST: u8 = 0x84;
    pub const ROOM_LIST: u8 = 0x85;
    pub const ROOM_JOINED: u8 = 0x86;
    pub const MEMBER_LIST: u8 = 0x87;
    pub const PONG: u8 = 0x88;
    pub const ROOM_EVENT: u8 = 0xa0;
}

impl Msg {
    /// The kind byte of this message.
    pub fn kind(&self) -> u8 {
        use kind::*;
        match self {
            Msg::Hello { .. } => HELLO,
            Msg::Welcome { .. } => WELCOME,
            Msg::Register { .. } => REGISTER,
            Msg::Login { .. } => LOGIN,
            Msg::Resume { .. } => RESUME,
            Msg::Logout => LOGOUT,
            Msg::Search { .. } => SEARCH,
            Msg::ListOnline { .. } => LIST_ONLINE,
            Msg::Rename { .. } => RENAME,
            Msg::Ping => PING,
            Msg::CreateRoom { .. } => CREATE_ROOM,
            Msg::ListRooms { .. } => LIST_ROOMS,
            Msg::JoinRoom { .. } => JOIN_ROOM,
            Msg::LeaveRoom { .. } => LEAVE_ROOM,
            Msg::ListMembers { .. } => LIST_MEMBERS,
            Msg::Kick { .. } => KICK,
            Msg::Promote { .. } => PROMOTE,
            Msg::Ok => OK,
            Msg::Error { .. } => ERROR,
            Msg::LoggedIn { .. } => LOGGED_IN,
            Msg::SearchResult { .. } => SEARCH_RESULT,
            Msg::OnlineList { .. } => ONLINE_LIST,
            Msg::RoomList { .. } => ROOM_LIST,
            Msg::RoomJoined { .. } => ROOM_JOINED,
            Msg::MemberList { .. } => MEMBER_LIST,
            Msg::Pong => PONG,
            Msg::Room { .. } => ROOM_EVENT,
            Msg::ChatRequest => CHAT_REQUEST,
            Msg::ChatAccept => CHAT_ACCEPT,
            Msg::ChatReject => CHAT_REJECT,
            Msg::ChatBusy => CHAT_BUSY,
            Msg::ChatMessage { .. } => CHAT_MESSAGE,
            Msg::ChatEnd => CHAT_END,
            Msg::RoomLink { .. } => ROOM_LINK,
            Msg::RoomUnlink { .. } => ROOM_UNLINK,
            Msg::RoomMessage { .. } => ROOM_MESSAGE,
            Msg::RoomIhave { .. } => ROOM_IHAVE,
            Msg::RoomGraft { .. } => ROOM_GRAFT,
            Msg::RoomPrune { .. } => ROOM_PRUNE,
        }
    }

    /// A short name of the kind, for logs and close reasons.
    pub fn kind_name(&self) -> &'static str {
        kind_name(self.kind())
    }
}

/// The name of a kind byte, for logs and error messages ("unknown" for bytes we do not know).
pub fn kind_name(kind: u8) -> &'static str {
    use kind::*;
    match kind {
        HELLO => "hello",
        WELCOME => "welcome",
        REGISTER => "register",
        LOGIN => "login",
        RESUME => "resume",
        LOGOUT => "logout",
        SEARCH => "search",
        LIST_ONLINE => "list-online",
        RENAME => "rename",
        PING => "ping",
        CREATE_ROOM => "create-room",
        LIST_ROOMS => "list-rooms",
        JOIN_ROOM => "join-room",
        LEAVE_ROOM => "leave-room",
        LIST_MEMBERS => "list-members",
        KICK => "kick",
        PROMOTE => "promote",
        OK => "ok",
        ERROR => "error",
        LOGGED_IN => "logged-in",
        SEARCH_RESULT => "search-result",
        ONLINE_LIST => "online-list",
        ROOM_LIST => "room-list",
        ROOM_JOINED => "room-joined",
        MEMBER_LIST => "member-list",
        PONG => "pong",
        ROOM_EVENT => "room-event",
        CHAT_REQUEST => "chat-request",
        CHAT_ACCEPT => "chat-accept",
        CHAT_REJECT => "chat-reject",
        CHAT_BUSY => "chat-busy",
        CHAT_MESSAGE => "chat-message",
        CHAT_END => "chat-end",
        ROOM_LINK => "room-link",
        ROOM_UNLINK => "room-unlink",
        ROOM_MESSAGE => "room-message",
        ROOM_IHAVE => "room-ihave",
        ROOM_GRAFT => "room-graft",
        ROOM_PRUNE => "room-prune",
        _ => "unknown",
    }
}
