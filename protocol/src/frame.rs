//! TCP frames: one enum of every message, with an infallible encoder and a decoder for one
//! exact body.
//!
//! ```text
//! +----------------+--------+----------------+------------------------+
//! | length: u32 BE | kind   | request id: u32| fields (per kind)      |
//! +----------------+--------+----------------+------------------------+
//!                  |<-------------- length bytes (the body) --------->|
//! ```
//! Requests carry a non-zero request id chosen by the client; the reply echoes it. Unsolicited
//! events and peer-to-peer frames use id 0.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, DecodeErrorKind};
use crate::msg::{kind, MemberInfo, Msg, PeerInfo, Presence, Role, RoomEvent, RoomInfo, RoomMsgId};
use crate::wire::{addr_len, bytes_len, put_addr, put_bool, put_bytes, put_str, str_len, Reader};

/// The first four bytes of every hello: "P2PC".
pub const MAGIC: [u8; 4] = *b"P2PC";
/// The protocol version this crate speaks on registry sessions (and the oldest peer-link
/// version).
pub const VERSION: u16 = 1;
/// The newest peer-link version: 2 adds the broadcast-tree frames `room-ihave`, `room-graft`
/// and `room-prune`. A link runs at the lower of the two peers' versions (docs/protocol.md §9).
pub const PEER_VERSION: u16 = 2;
/// The oldest peer-link version (flooding only), independent of the registry's [`VERSION`]:
/// a hello offering less is refused; a peer refusing our newest is dialed again with this.
pub const OLDEST_PEER_VERSION: u16 = 1;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Bytes every body has before its fields: the kind and the request id.
pub const BODY_HEADER: usize = 5;
/// The default largest body accepted (64 KiB).
pub const DEFAULT_MAX_FRAME: u32 = 64 * 1024;

/// One frame: a request id and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Request id; 0 for events and peer-to-peer traffic.
    pub id: u32,
    /// The message.
    pub msg: Msg,
}

impl Msg {
    /// Bytes the fields take on the wire (after kind and request id).
    pub(crate) fn fields_len(&self) -> usize {
        match self {
            Msg::Hello { name, ticket, .. } => 4 + 2 + 1 + str_len(name) + bytes_len(ticket),
            Msg::Welcome { name, .. } => 2 + str_len(name),
            Msg::Register { name, password } => str_len(name) + str_len(password),
            Msg::Login {
                name,
                password,
                listen,
            } => str_len(name) + str_len(password) + addr_len(listen),
            Msg::Resume {
                name,
                token,
                listen,
            } => str_len(name) + bytes_len(token) + addr_len(listen),
            Msg::Logout
            | Msg::Ping
            | Msg::Ok
            | Msg::Pong
            | Msg::ChatRequest
            | Msg::ChatAccept
            | Msg::ChatReject
            | Msg::ChatBusy
            | Msg::ChatEnd => 0,
            Msg::Search { name } | Msg::Rename { name } => str_len(name),
            Msg::ListOnline { after, .. } | Msg::ListRooms { after, .. } => str_len(after) + 2,
            Msg::CreateRoom { room }
            | Msg::JoinRoom { room }
            | Msg::LeaveRoom { room }
            | Msg::ListMembers { room }
            | Msg::RoomLink { room }
            | Msg::RoomUnlink { room }
            | Msg::RoomPrune { room } => str_len(room),
            Msg::RoomIhave { room, ids } | Msg::RoomGraft { room, ids } => {
                str_len(room)
                    + 2
                    + ids
                        .iter()
                        .take(u16::MAX as usize)
                        .map(|i| str_len(&i.origin) + 8)
                        .sum::<usize>()
            }
            Msg::Kick { room, name } | Msg::Promote { room, name } => str_len(room) + str_len(name),
            Msg::Error { message, .. } => 2 + str_len(message),
            Msg::LoggedIn {
                name,
                resume_token,
                advertised,
                ..
            } => {
                str_len(name) + 8 + 32 + 4 + 4 + bytes_len(resume_token) + 2 + addr_len(advertised)
            }
            Msg::SearchResult { name, presence } => {
                str_len(name)
                    + 1
                    + match presence {
                        Presence::Online(a) => addr_len(a),
                        _ => 0,
                    }
            }
            Msg::OnlineList { names, .. } => {
                2 + names.iter().map(|n| str_len(n)).sum::<usize>() + 1
            }
            Msg::RoomList { rooms, .. } => {
                2 + rooms.iter().map(|r| str_len(&r.name) + 8).sum::<usize>() + 1
            }
            Msg::RoomJoined { room, peers } => {
                str_len(room)
                    + 2
                    + peers
                        .iter()
                        .map(|p| str_len(&p.name) + addr_len(&p.addr))
                        .sum::<usize>()
            }
            Msg::MemberList { room, members } => {
                str_len(room) + 2 + members.iter().map(|m| str_len(&m.name) + 2).sum::<usize>()
            }
            Msg::Room { room, event } => str_len(room) + 1 + room_event_len(event),
            Msg::ChatMessage { text } => str_len(text),
            Msg::RoomMessage {
                room, origin, text, ..
            } => str_len(room) + str_len(origin) + 8 + 1 + 8 + str_len(text),
        }
    }

    pub(crate) fn encode_fields(&self, out: &mut impl BufMut) {
        match self {
            Msg::Hello {
                version,
                role,
                name,
                ticket,
            } => {
                out.put_slice(&MAGIC);
                out.put_u16(*version);
                out.put_u8(*role as u8);
                put_str(out, name);
                put_bytes(out, ticket);
            }
            Msg::Welcome { version, name } => {
                out.put_u16(*version);
                put_str(out, name);
            }
            Msg::Register { name, password } => {
                put_str(out, name);
                put_str(out, password);
            }
            Msg::Login {
                name,
                password,
                listen,
            } => {
                put_str(out, name);
                put_str(out, password);
                put_addr(out, listen);
            }
            Msg::Resume {
                name,
                token,
                listen,
            } => {
                put_str(out, name);
                put_bytes(out, token);
                put_addr(out, listen);
            }
            Msg::Logout
            | Msg::Ping
            | Msg::Ok
            | Msg::Pong
            | Msg::ChatRequest
            | Msg::ChatAccept
            | Msg::ChatReject
            | Msg::ChatBusy
            | Msg::ChatEnd => {}
            Msg::Search { name } | Msg::Rename { name } => put_str(out, name),
            Msg::ListOnline { after, limit } | Msg::ListRooms { after, limit } => {
                put_str(out, after);
                out.put_u16(*limit);
            }
            Msg::CreateRoom { room }
            | Msg::JoinRoom { room }
            | Msg::LeaveRoom { room }
            | Msg::ListMembers { room }
            | Msg::RoomLink { room }
            | Msg::RoomUnlink { room }
            | Msg::RoomPrune { room } => put_str(out, room),
            Msg::RoomIhave { room, ids } | Msg::RoomGraft { room, ids } => {
                put_str(out, room);
                put_count(out, ids.len());
                for i in ids.iter().take(u16::MAX as usize) {
                    put_str(out, &i.origin);
                    out.put_u64(i.seq);
                }
            }
            Msg::Kick { room, name } | Msg::Promote { room, name } => {
                put_str(out, room);
                put_str(out, name);
            }
            Msg::Error { code, message } => {
                out.put_u16(*code);
                put_str(out, message);
            }
            Msg::LoggedIn {
                name,
                session,
                heartbeat_key,
                heartbeat_interval_ms,
                heartbeat_timeout_ms,
                resume_token,
                udp_port,
                advertised,
            } => {
                put_str(out, name);
                out.put_u64(*session);
                out.put_slice(heartbeat_key);
                out.put_u32(*heartbeat_interval_ms);
                out.put_u32(*heartbeat_timeout_ms);
                put_bytes(out, resume_token);
                out.put_u16(*udp_port);
                put_addr(out, advertised);
            }
            Msg::SearchResult { name, presence } => {
                put_str(out, name);
                match presence {
                    Presence::NotFound => out.put_u8(0),
                    Presence::Offline => out.put_u8(1),
                    Presence::Online(addr) => {
                        out.put_u8(2);
                        put_addr(out, addr);
                    }
                }
            }
            Msg::OnlineList { names, more } => {
                put_count(out, names.len());
                for n in names.iter().take(u16::MAX as usize) {
                    put_str(out, n);
                }
                put_bool(out, *more);
            }
            Msg::RoomList { rooms, more } => {
                put_count(out, rooms.len());
                for r in rooms.iter().take(u16::MAX as usize) {
                    put_str(out, &r.name);
                    out.put_u32(r.members);
                    out.put_u32(r.online);
                }
                put_bool(out, *more);
            }
            Msg::RoomJoined { room, peers } => {
                put_str(out, room);
                put_count(out, peers.len());
                for p in peers.iter().take(u16::MAX as usize) {
                    put_str(out, &p.name);
                    put_addr(out, &p.addr);
                }
            }
            Msg::MemberList { room, members } => {
                put_str(out, room);
                put_count(out, members.len());
                for m in members.iter().take(u16::MAX as usize) {
                    put_str(out, &m.name);
                    put_bool(out, m.admin);
                    put_bool(out, m.online);
                }
            }
            Msg::Room { room, event } => {
                put_str(out, room);
                encode_room_event(out, event);
            }
            Msg::ChatMessage { text } => put_str(out, text),
            Msg::RoomMessage {
                room,
                origin,
                seq,
                hops,
                sent_ms,
                text,
            } => {
                put_str(out, room);
                put_str(out, origin);
                out.put_u64(*seq);
                out.put_u8(*hops);
                out.put_u64(*sent_ms);
                put_str(out, text);
            }
        }
    }

    pub(crate) fn decode_fields(kind: u8, r: &mut Reader<'_>) -> Result<Msg, DecodeError> {
        use kind::*;
        let msg = match kind {
            HELLO => {
                let at = r.offset();
                if r.array::<4>()? != MAGIC {
                    return Err(DecodeError::new(at, DecodeErrorKind::BadMagic));
                }
                let version = r.u16()?;
                let at = r.offset();
                let role = match r.u8()? {
                    1 => Role::Client,
                    2 => Role::Peer,
                    _ => return Err(DecodeError::new(at, DecodeErrorKind::InvalidValue("role"))),
                };
                Msg::Hello {
                    version,
                    role,
                    name: r.string()?,
                    ticket: r.bytes()?,
                }
            }
            WELCOME => Msg::Welcome {
                version: r.u16()?,
                name: r.string()?,
            },
            REGISTER => Msg::Register {
                name: r.string()?,
                password: r.string()?,
            },
            LOGIN => Msg::Login {
                name: r.string()?,
                password: r.string()?,
                listen: r.addr()?,
            },
            RESUME => Msg::Resume {
                name: r.string()?,
                token: r.bytes()?,
                listen: r.addr()?,
            },
            LOGOUT => Msg::Logout,
            SEARCH => Msg::Search { name: r.string()? },
            LIST_ONLINE => Msg::ListOnline {
                after: r.string()?,
                limit: r.u16()?,
            },
            RENAME => Msg::Rename { name: r.string()? },
            PING => Msg::Ping,
            CREATE_ROOM => Msg::CreateRoom { room: r.string()? },
            LIST_ROOMS => Msg::ListRooms {
                after: r.string()?,
                limit: r.u16()?,
            },
            JOIN_ROOM => Msg::JoinRoom { room: r.string()? },
            LEAVE_ROOM => Msg::LeaveRoom { room: r.string()? },
            LIST_MEMBERS => Msg::ListMembers { room: r.string()? },
            KICK => Msg::Kick {
                room: r.string()?,
                name: r.string()?,
            },
            PROMOTE => Msg::Promote {
                room: r.string()?,
                name: r.string()?,
            },
            OK => Msg::Ok,
            ERROR => Msg::Error {
                code: r.u16()?,
                message: r.string()?,
            },
            LOGGED_IN => Msg::LoggedIn {
                name: r.string()?,
                session: r.u64()?,
                heartbeat_key: r.array::<32>()?,
                heartbeat_interval_ms: r.u32()?,
                heartbeat_timeout_ms: r.u32()?,
                resume_token: r.bytes()?,
                udp_port: r.u16()?,
                advertised: r.addr()?,
            },
            SEARCH_RESULT => {
                let name = r.string()?;
                let at = r.offset();
                let presence = match r.u8()? {
                    0 => Presence::NotFound,
                    1 => Presence::Offline,
                    2 => Presence::Online(r.addr()?),
                    _ => {
                        return Err(DecodeError::new(
                            at,
                            DecodeErrorKind::InvalidValue("presence"),
                        ))
                    }
                };
                Msg::SearchResult { name, presence }
            }
            ONLINE_LIST => Msg::OnlineList {
                names: r.list(|r| r.string())?,
                more: r.bool()?,
            },
            ROOM_LIST => Msg::RoomList {
                rooms: r.list(|r| {
                    Ok(RoomInfo {
                        name: r.string()?,
                        members: r.u32()?,
                        online: r.u32()?,
                    })
                })?,
                more: r.bool()?,
            },
            ROOM_JOINED => Msg::RoomJoined {
                room: r.string()?,
                peers: r.list(|r| {
                    Ok(PeerInfo {
                        name: r.string()?,
                        addr: r.addr()?,
                    })
                })?,
            },
            MEMBER_LIST => Msg::MemberList {
                room: r.string()?,
                members: r.list(|r| {
                    Ok(MemberInfo {
                        name: r.string()?,
                        admin: r.bool()?,
                        online: r.bool()?,
                    })
                })?,
            },
            PONG => Msg::Pong,
            ROOM_EVENT => Msg::Room {
                room: r.string()?,
                event: decode_room_event(r)?,
            },
            CHAT_REQUEST => Msg::ChatRequest,
            CHAT_ACCEPT => Msg::ChatAccept,
            CHAT_REJECT => Msg::ChatReject,
            CHAT_BUSY => Msg::ChatBusy,
            CHAT_MESSAGE => Msg::ChatMessage { text: r.string()? },
            CHAT_END => Msg::ChatEnd,
            ROOM_LINK => Msg::RoomLink { room: r.string()? },
            ROOM_UNLINK => Msg::RoomUnlink { room: r.string()? },
            ROOM_MESSAGE => Msg::RoomMessage {
                room: r.string()?,
                origin: r.string()?,
                seq: r.u64()?,
                hops: r.u8()?,
                sent_ms: r.u64()?,
                text: r.string()?,
            },
            ROOM_IHAVE => Msg::RoomIhave {
                room: r.string()?,
                ids: r.list(read_msg_id)?,
            },
            ROOM_GRAFT => Msg::RoomGraft {
                room: r.string()?,
                ids: r.list(read_msg_id)?,
            },
            ROOM_PRUNE => Msg::RoomPrune { room: r.string()? },
            other => return Err(DecodeError::new(0, DecodeErrorKind::UnknownKind(other))),
        };
        Ok(msg)
    }
}

fn read_msg_id(r: &mut Reader<'_>) -> Result<RoomMsgId, DecodeError> {
    Ok(RoomMsgId {
        origin: r.string()?,
        seq: r.u64()?,
    })
}

fn put_count(out: &mut impl BufMut, n: usize) {
    out.put_u16(n.min(u16::MAX as usize) as u16);
}

fn room_event_len(event: &RoomEvent) -> usize {
    match event {
        RoomEvent::Joined { name, addr } | RoomEvent::Online { name, addr } => {
            str_len(name) + addr_len(addr)
        }
        RoomEvent::Left { name } | RoomEvent::Promoted { name } | RoomEvent::Offline { name } => {
            str_len(name)
        }
        RoomEvent::Kicked { name, by } => str_len(name) + str_len(by),
        RoomEvent::Renamed { old, new } => str_len(old) + str_len(new),
    }
}

fn encode_room_event(out: &mut impl BufMut, event: &RoomEvent) {
    match event {
        RoomEvent::Joined { name, addr } => {
            out.put_u8(1);
            put_str(out, name);
            put_addr(out, addr);
        }
        RoomEvent::Left { name } => {
            out.put_u8(2);
            put_str(out, name);
        }
        RoomEvent::Kicked { name, by } => {
            out.put_u8(3);
            put_str(out, name);
            put_str(out, by);
        }
        RoomEvent::Promoted { name } => {
            out.put_u8(4);
            put_str(out, name);
        }
        RoomEvent::Online { name, addr } => {
            out.put_u8(5);
            put_str(out, name);
            put_addr(out, addr);
        }
        RoomEvent::Offline { name } => {
            out.put_u8(6);
            put_str(out, name);
        }
        RoomEvent::Renamed { old, new } => {
            out.put_u8(7);
            put_str(out, old);
            put_str(out, new);
        }
    }
}

fn decode_room_event(r: &mut Reader<'_>) -> Result<RoomEvent, DecodeError> {
    let at = r.offset();
    Ok(match r.u8()? {
        1 => RoomEvent::Joined {
            name: r.string()?,
            addr: r.addr()?,
        },
        2 => RoomEvent::Left { name: r.string()? },
        3 => RoomEvent::Kicked {
            name: r.string()?,
            by: r.string()?,
        },
        4 => RoomEvent::Promoted { name: r.string()? },
        5 => RoomEvent::Online {
            name: r.string()?,
            addr: r.addr()?,
        },
        6 => RoomEvent::Offline { name: r.string()? },
        7 => RoomEvent::Renamed {
            old: r.string()?,
            new: r.string()?,
        },
        _ => {
            return Err(DecodeError::new(
                at,
                DecodeErrorKind::InvalidValue("room event"),
            ))
        }
    })
}

impl Frame {
    /// A frame with request id `id`.
    pub fn new(id: u32, msg: Msg) -> Frame {
        Frame { id, msg }
    }

    /// An event or peer-to-peer frame (request id 0).
    pub fn event(msg: Msg) -> Frame {
        Frame { id: 0, msg }
    }

    /// The body length: what the length prefix says.
    pub fn body_len(&self) -> usize {
        BODY_HEADER + self.msg.fields_len()
    }

    /// Total bytes on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        LEN_PREFIX + self.body_len()
    }

    /// Appends the whole frame, length prefix included. Never fails.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u32(self.body_len() as u32);
        out.put_u8(self.msg.kind());
        out.put_u32(self.id);
        self.msg.encode_fields(out);
    }

    /// The whole frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes one exact body (the bytes after the length prefix). Rejects trailing bytes.
    pub fn decode(body: &[u8]) -> Result<Frame, DecodeError> {
        let mut r = Reader::new(body);
        let kind = r.u8()?;
        let id = r.u32()?;
        let msg = Msg::decode_fields(kind, &mut r)?;
        r.finish()?;
        Ok(Frame { id, msg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn addr() -> SocketAddr {
        "10.1.2.3:4567".parse().unwrap()
    }

    #[test]
    fn hello_layout_is_byte_exact() {
        let f = Frame::event(Msg::Hello {
            version: 1,
            role: Role::Client,
            name: String::new(),
            ticket: vec![],
        });
        let bytes = f.to_bytes();
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 16, 0x01, 0, 0, 0, 0, b'P', b'2', b'P', b'C', 0, 1, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn search_result_layout_is_byte_exact() {
        let f = Frame::new(
            7,
            Msg::SearchResult {
                name: "bo".into(),
                presence: Presence::Online(addr()),
            },
        );
        let bytes = f.to_bytes();
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 17, 0x83, 0, 0, 0, 7, 0, 2, b'b', b'o', 2, 4, 10, 1, 2, 3, 0x11, 0xd7]
        );
    }

    /// The example of docs/protocol.md §9 (broadcast tree).
    #[test]
    fn room_ihave_layout_is_byte_exact() {
        let f = Frame::event(Msg::RoomIhave {
            room: "lab".into(),
            ids: vec![RoomMsgId {
                origin: "al".into(),
                seq: 5,
            }],
        });
        let bytes = f.to_bytes();
        assert_eq!(
            &bytes[..],
            &[
                0, 0, 0, 24, 0x43, 0, 0, 0, 0, 0, 3, b'l', b'a', b'b', 0, 1, 0, 2, b'a', b'l', 0,
                0, 0, 0, 0, 0, 0, 5
            ]
        );
        let prune = Frame::event(Msg::RoomPrune { room: "lab".into() }).to_bytes();
        assert_eq!(
            &prune[..],
            &[0, 0, 0, 10, 0x45, 0, 0, 0, 0, 0, 3, b'l', b'a', b'b']
        );
    }

    #[test]
    fn every_kind_round_trips_and_rejects_trailing_bytes() {
        for msg in crate::samples::all_messages() {
            let f = Frame::new(42, msg);
            let bytes = f.to_bytes();
            assert_eq!(bytes.len(), f.encoded_len(), "{f:?}");
            let body = &bytes[LEN_PREFIX..];
            assert_eq!(Frame::decode(body).unwrap(), f);
            let mut longer = body.to_vec();
            longer.push(0);
            assert_eq!(
                Frame::decode(&longer).unwrap_err().kind,
                DecodeErrorKind::TrailingBytes
            );
            // Every strict prefix of the body is truncated, never a panic or a success.
            for cut in 0..body.len() {
                let err = Frame::decode(&body[..cut]).unwrap_err();
                assert_eq!(err.kind, DecodeErrorKind::Truncated, "{f:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn kind_names_cover_every_message() {
        for msg in crate::samples::all_messages() {
            assert_ne!(msg.kind_name(), "unknown", "{msg:?}");
        }
    }

    #[test]
    fn unknown_kind_and_bad_magic_are_reported() {
        assert_eq!(
            Frame::decode(&[0x7f, 0, 0, 0, 0]).unwrap_err().kind,
            DecodeErrorKind::UnknownKind(0x7f)
        );
        let err = Frame::decode(&[0x01, 0, 0, 0, 0, b'H', b'T', b'T', b'P']).unwrap_err();
        assert_eq!(err, DecodeError::new(5, DecodeErrorKind::BadMagic));
    }
}
