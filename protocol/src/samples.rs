//! One sample of every message kind, with non-trivial field values. Used by this crate's tests,
//! the benches and as fuzz seeds, so every kind is exercised everywhere.

use std::net::SocketAddr;

use crate::msg::{MemberInfo, Msg, PeerInfo, Presence, Role, RoomEvent, RoomInfo};

fn v4() -> SocketAddr {
    SocketAddr::from(([192, 168, 1, 20], 40_001))
}

fn v6() -> SocketAddr {
    SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, 1], 15_600))
}

/// Every message kind once (room events once per event kind).
pub fn all_messages() -> Vec<Msg> {
    let mut out = vec![
        Msg::Hello {
            version: 1,
            role: Role::Peer,
            name: "alice".into(),
            ticket: vec![1, 2, 3],
        },
        Msg::Welcome {
            version: 1,
            name: "p2pchat-registry".into(),
        },
        Msg::Register {
            name: "alice".into(),
            password: "correct horse".into(),
        },
        Msg::Login {
            name: "alice".into(),
            password: "correct horse".into(),
            listen: v4(),
        },
        Msg::Resume {
            name: "alice".into(),
            token: vec![9; 32],
            listen: v6(),
        },
        Msg::Logout,
        Msg::Search { name: "bob".into() },
        Msg::ListOnline {
            after: "bob".into(),
            limit: 100,
        },
        Msg::Rename {
            name: "alice2".into(),
        },
        Msg::Ping,
        Msg::CreateRoom {
            room: "lobby".into(),
        },
        Msg::ListRooms {
            after: String::new(),
            limit: 50,
        },
        Msg::JoinRoom {
            room: "lobby".into(),
        },
        Msg::LeaveRoom {
            room: "lobby".into(),
        },
        Msg::ListMembers {
            room: "lobby".into(),
        },
        Msg::Kick {
            room: "lobby".into(),
            name: "mallory".into(),
        },
        Msg::Promote {
            room: "lobby".into(),
            name: "bob".into(),
        },
        Msg::Ok,
        Msg::Error {
            code: 104,
            message: "invalid username or password".into(),
        },
        Msg::LoggedIn {
            name: "alice".into(),
            session: 0x0123_4567_89ab_cdef,
            heartbeat_key: [0x5a; 32],
            heartbeat_interval_ms: 6_666,
            heartbeat_timeout_ms: 20_000,
            resume_token: vec![0xaa; 32],
            udp_port: 15_500,
            advertised: v4(),
        },
        Msg::SearchResult {
            name: "bob".into(),
            presence: Presence::Online(v6()),
        },
        Msg::SearchResult {
            name: "carol".into(),
            presence: Presence::Offline,
        },
        Msg::SearchResult {
            name: "nobody".into(),
            presence: Presence::NotFound,
        },
        Msg::OnlineList {
            names: vec!["alice".into(), "bob".into()],
            more: true,
        },
        Msg::RoomList {
            rooms: vec![RoomInfo {
                name: "lobby".into(),
                members: 12,
                online: 3,
            }],
            more: false,
        },
        Msg::RoomJoined {
            room: "lobby".into(),
            peers: vec![PeerInfo {
                name: "bob".into(),
                addr: v4(),
            }],
        },
        Msg::MemberList {
            room: "lobby".into(),
            members: vec![
                MemberInfo {
                    name: "alice".into(),
                    admin: true,
                    online: true,
                },
                MemberInfo {
                    name: "bob".into(),
                    admin: false,
                    online: false,
                },
            ],
        },
        Msg::Pong,
        Msg::ChatRequest,
        Msg::ChatAccept,
        Msg::ChatReject,
        Msg::ChatBusy,
        Msg::ChatMessage {
            text: "héllo *there* _you_ https://example.org".into(),
        },
        Msg::ChatEnd,
        Msg::RoomLink {
            room: "lobby".into(),
        },
        Msg::RoomUnlink {
            room: "lobby".into(),
        },
        Msg::RoomMessage {
            room: "lobby".into(),
            origin: "alice".into(),
            seq: 77,
            hops: 16,
            sent_ms: 1_763_700_000_000,
            text: "hi all".into(),
        },
        Msg::RoomIhave {
            room: "lobby".into(),
            ids: vec![
                crate::RoomMsgId {
                    origin: "alice".into(),
                    seq: 77,
                },
                crate::RoomMsgId {
                    origin: "bob".into(),
                    seq: 3,
                },
            ],
        },
        Msg::RoomGraft {
            room: "lobby".into(),
            ids: vec![crate::RoomMsgId {
                origin: "alice".into(),
                seq: 77,
            }],
        },
        Msg::RoomPrune {
            room: "lobby".into(),
        },
    ];
    let events = [
        RoomEvent::Joined {
            name: "bob".into(),
            addr: v4(),
        },
        RoomEvent::Left { name: "bob".into() },
        RoomEvent::Kicked {
            name: "mallory".into(),
            by: "alice".into(),
        },
        RoomEvent::Promoted { name: "bob".into() },
        RoomEvent::Online {
            name: "bob".into(),
            addr: v6(),
        },
        RoomEvent::Offline { name: "bob".into() },
        RoomEvent::Renamed {
            old: "bob".into(),
            new: "robert".into(),
        },
    ];
    out.extend(events.into_iter().map(|event| Msg::Room {
        room: "lobby".into(),
        event,
    }));
    out
}
