//! Status codes carried by `Error` frames, in families as the course protocols had them:
//! 1xx accounts and login, 2xx rooms, 3xx private chat, 4xx messages and protocol, 5xx server.
//! Every code has a default human message; senders may give a more specific one.

#![allow(missing_docs)]

pub const NAME_TAKEN: u16 = 101;
pub const INVALID_NAME: u16 = 102;
pub const INVALID_PASSWORD: u16 = 103;
pub const BAD_CREDENTIALS: u16 = 104;
pub const ALREADY_ONLINE: u16 = 105;
pub const NOT_LOGGED_IN: u16 = 106;
pub const ALREADY_LOGGED_IN: u16 = 107;
pub const LOCKED_OUT: u16 = 108;
pub const BAD_RESUME_TOKEN: u16 = 109;

pub const ROOM_EXISTS: u16 = 201;
pub const NO_SUCH_ROOM: u16 = 202;
pub const NOT_A_MEMBER: u16 = 203;
pub const NOT_ADMIN: u16 = 204;
pub const ALREADY_MEMBER: u16 = 205;
pub const INVALID_ROOM_NAME: u16 = 206;
pub const USER_NOT_IN_ROOM: u16 = 207;

pub const CHAT_BUSY: u16 = 301;
pub const CHAT_REJECTED: u16 = 302;
pub const NO_CHAT: u16 = 303;
pub const USER_OFFLINE: u16 = 304;

pub const MALFORMED: u16 = 400;
pub const UNEXPECTED: u16 = 401;
pub const BAD_VERSION: u16 = 402;
pub const TOO_LARGE: u16 = 403;
pub const TEXT_TOO_LONG: u16 = 405;
pub const TIMEOUT: u16 = 408;

pub const INTERNAL: u16 = 500;
pub const BUSY: u16 = 503;
pub const SERVER_FULL: u16 = 504;
pub const RATE_LIMITED: u16 = 505;
pub const SHUTTING_DOWN: u16 = 506;
pub const DISK_FULL: u16 = 507;

/// The default human message of a code.
pub fn message(code: u16) -> &'static str {
    match code {
        NAME_TAKEN => "username already taken",
        INVALID_NAME => "invalid username: use 1-32 characters of A-Z a-z 0-9 _ . -",
        INVALID_PASSWORD => "invalid password: use 8-128 bytes",
        BAD_CREDENTIALS => "invalid username or password",
        ALREADY_ONLINE => "user is already online",
        NOT_LOGGED_IN => "not logged in",
        ALREADY_LOGGED_IN => "already logged in",
        LOCKED_OUT => "too many failed attempts, try again later",
        BAD_RESUME_TOKEN => "resume token invalid or expired, log in with the password",
        ROOM_EXISTS => "room already exists",
        NO_SUCH_ROOM => "no such room",
        NOT_A_MEMBER => "not a member of that room",
        NOT_ADMIN => "only an admin of the room can do that",
        ALREADY_MEMBER => "already a member of that room",
        INVALID_ROOM_NAME => "invalid room name: use 1-32 characters of A-Z a-z 0-9 _ . -",
        USER_NOT_IN_ROOM => "that user is not a member of the room",
        CHAT_BUSY => "user is busy",
        CHAT_REJECTED => "chat request rejected",
        NO_CHAT => "no chat with that user",
        USER_OFFLINE => "user is offline",
        MALFORMED => "malformed frame",
        UNEXPECTED => "unexpected frame",
        BAD_VERSION => "unsupported protocol version",
        TOO_LARGE => "frame too large",
        TEXT_TOO_LONG => "message too long",
        TIMEOUT => "timed out",
        INTERNAL => "internal server error",
        BUSY => "server busy, try again",
        SERVER_FULL => "server full",
        RATE_LIMITED => "too many requests, slow down",
        SHUTTING_DOWN => "server shutting down",
        DISK_FULL => "disk full: the server cannot store anything new, try again later",
        _ => "error",
    }
}
