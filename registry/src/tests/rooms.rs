use p2pchat_protocol::{status, Frame, MemberInfo, Msg, PeerInfo, RoomEvent, RoomInfo};

use super::Harness;
use crate::io::{ConnId, Input};

fn room_events(h: &mut Harness, conn: ConnId) -> Vec<RoomEvent> {
    h.take(conn)
        .into_iter()
        .filter_map(|f| match f {
            Frame {
                id: 0,
                msg: Msg::Room { event, .. },
            } => Some(event),
            _ => None,
        })
        .collect()
}

fn members(h: &mut Harness, conn: ConnId, room: &str) -> Vec<(String, bool, bool)> {
    match h.request(conn, Msg::ListMembers { room: room.into() }) {
        Msg::MemberList { members, .. } => members
            .into_iter()
            .map(
                |MemberInfo {
                     name,
                     admin,
                     online,
                 }| (name, admin, online),
            )
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// Three users logged in on connections 1, 2, 3.
fn three() -> (Harness, ConnId, ConnId, ConnId) {
    let mut h = Harness::new(Harness::config());
    let conns: Vec<ConnId> = (1..=3).map(|i| h.connect(i)).collect();
    for (c, n) in conns.iter().zip(["alice", "bob", "carol"]) {
        h.register(*c, n);
        h.login(*c, n);
    }
    (h, conns[0], conns[1], conns[2])
}

fn join(h: &mut Harness, conn: ConnId, room: &str) -> Vec<PeerInfo> {
    match h.request(conn, Msg::JoinRoom { room: room.into() }) {
        Msg::RoomJoined { peers, .. } => peers,
        other => panic!("join: {other:?}"),
    }
}

#[test]
fn create_join_and_events_to_online_members() {
    let (mut h, a, b, c) = three();
    assert_eq!(
        h.request(
            a,
            Msg::CreateRoom {
                room: "lobby".into()
            }
        ),
        Msg::Ok
    );
    let r = h.request(
        a,
        Msg::CreateRoom {
            room: "lobby".into(),
        },
    );
    assert_eq!(Harness::error_code(&r), Some(status::ROOM_EXISTS));
    let r = h.request(
        a,
        Msg::CreateRoom {
            room: "bad room".into(),
        },
    );
    assert_eq!(Harness::error_code(&r), Some(status::INVALID_ROOM_NAME));
    let peers = join(&mut h, b, "lobby");
    assert_eq!(
        peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["alice"]
    );
    assert_eq!(
        room_events(&mut h, a),
        [RoomEvent::Joined {
            name: "bob".into(),
            addr: "10.0.0.3:4000".parse().unwrap()
        }]
    );
    let peers = join(&mut h, c, "lobby");
    assert_eq!(peers.len(), 2);
    // Re-joining is idempotent: the online list again, no event.
    assert_eq!(join(&mut h, c, "lobby").len(), 2);
    assert_eq!(room_events(&mut h, a).len(), 1);
    assert_eq!(room_events(&mut h, b).len(), 1);
    let r = h.request(
        a,
        Msg::ListRooms {
            after: String::new(),
            limit: 10,
        },
    );
    assert_eq!(
        r,
        Msg::RoomList {
            rooms: vec![RoomInfo {
                name: "lobby".into(),
                members: 3,
                online: 3
            }],
            more: false
        }
    );
    // Presence changes reach the room.
    h.input(Input::Closed { conn: c });
    assert_eq!(
        room_events(&mut h, a),
        [RoomEvent::Offline {
            name: "carol".into()
        }]
    );
    assert_eq!(
        members(&mut h, b, "lobby"),
        [
            ("alice".into(), true, true),
            ("bob".into(), false, true),
            ("carol".into(), false, false)
        ]
    );
    let c2 = h.connect(9);
    h.login(c2, "carol");
    assert!(matches!(
        room_events(&mut h, a).as_slice(),
        [RoomEvent::Online { name, .. }] if name == "carol"
    ));
    assert_eq!(
        h.request(
            b,
            Msg::Rename {
                name: "robert".into()
            }
        ),
        Msg::Ok
    );
    assert_eq!(
        room_events(&mut h, a),
        [RoomEvent::Renamed {
            old: "bob".into(),
            new: "robert".into()
        }]
    );
}

#[test]
fn kick_and_promote_are_for_admins_only() {
    let (mut h, a, b, c) = three();
    assert_eq!(h.request(a, Msg::CreateRoom { room: "r".into() }), Msg::Ok);
    join(&mut h, b, "r");
    join(&mut h, c, "r");
    h.take(a);
    h.take(b);
    let kick = |name: &str| Msg::Kick {
        room: "r".into(),
        name: name.into(),
    };
    let r = h.request(b, kick("carol"));
    assert_eq!(Harness::error_code(&r), Some(status::NOT_ADMIN));
    let r = h.request(
        b,
        Msg::Promote {
            room: "r".into(),
            name: "bob".into(),
        },
    );
    assert_eq!(Harness::error_code(&r), Some(status::NOT_ADMIN));
    let r = h.request(a, kick("nobody"));
    assert_eq!(Harness::error_code(&r), Some(status::USER_NOT_IN_ROOM));
    assert_eq!(h.request(a, kick("carol")), Msg::Ok);
    let kicked = RoomEvent::Kicked {
        name: "carol".into(),
        by: "alice".into(),
    };
    assert_eq!(room_events(&mut h, b), std::slice::from_ref(&kicked));
    assert_eq!(
        room_events(&mut h, c),
        [kicked],
        "the kicked member is told"
    );
    let r = h.request(c, Msg::LeaveRoom { room: "r".into() });
    assert_eq!(Harness::error_code(&r), Some(status::NOT_A_MEMBER));
    assert_eq!(
        h.request(
            a,
            Msg::Promote {
                room: "r".into(),
                name: "bob".into()
            }
        ),
        Msg::Ok
    );
    assert_eq!(
        room_events(&mut h, b),
        [RoomEvent::Promoted { name: "bob".into() }]
    );
    let r = h.request(b, kick("alice"));
    assert_eq!(
        Harness::error_code(&r),
        Some(status::NOT_ADMIN),
        "a co-admin cannot kick the creator (a more senior admin)"
    );
    assert_eq!(
        h.request(a, kick("bob")),
        Msg::Ok,
        "the creator can kick a co-admin"
    );
}

#[test]
fn the_oldest_member_succeeds_the_last_admin() {
    let (mut h, a, b, c) = three();
    assert_eq!(h.request(a, Msg::CreateRoom { room: "r".into() }), Msg::Ok);
    join(&mut h, c, "r"); // carol joins before bob
    join(&mut h, b, "r");
    h.take(b);
    h.take(c);
    assert_eq!(h.request(a, Msg::LeaveRoom { room: "r".into() }), Msg::Ok);
    assert_eq!(
        room_events(&mut h, b),
        [
            RoomEvent::Left {
                name: "alice".into()
            },
            RoomEvent::Promoted {
                name: "carol".into()
            }
        ]
    );
    assert_eq!(
        members(&mut h, b, "r"),
        [("carol".into(), true, true), ("bob".into(), false, true)]
    );
    // Succession after a kick of the last admin, too.
    assert_eq!(
        h.request(
            c,
            Msg::Kick {
                room: "r".into(),
                name: "carol".into()
            }
        ),
        Msg::Ok
    );
    assert_eq!(members(&mut h, b, "r"), [("bob".into(), true, true)]);
}

#[test]
fn rooms_and_roles_survive_a_restart_and_nobody_is_online() {
    let (mut h, a, b, _) = three();
    assert_eq!(h.request(a, Msg::CreateRoom { room: "r".into() }), Msg::Ok);
    join(&mut h, b, "r");
    h.restart();
    let a = h.connect(11);
    h.login(a, "alice");
    assert_eq!(
        members(&mut h, a, "r"),
        [("alice".into(), true, true), ("bob".into(), false, false)]
    );
    assert_eq!(h.reg.online_count(), 1);
    assert_eq!(h.reg.room_count(), 1);
}

#[test]
fn room_requests_need_a_login_and_a_room() {
    let (mut h, a, ..) = three();
    let r = h.request(
        a,
        Msg::JoinRoom {
            room: "nope".into(),
        },
    );
    assert_eq!(Harness::error_code(&r), Some(status::NO_SUCH_ROOM));
    let d = h.connect(20);
    let r = h.request(d, Msg::CreateRoom { room: "x".into() });
    assert_eq!(Harness::error_code(&r), Some(status::NOT_LOGGED_IN));
}

#[test]
fn login_and_resume_push_the_users_rooms() {
    let (mut h, a, b, _) = three();
    assert_eq!(h.request(a, Msg::CreateRoom { room: "r1".into() }), Msg::Ok);
    assert_eq!(h.request(a, Msg::CreateRoom { room: "r2".into() }), Msg::Ok);
    join(&mut h, b, "r1");
    h.restart();
    let b = h.connect(30);
    h.login(b, "bob"); // r1 is pushed to bob, nobody else online
    let a = h.connect(31);
    h.send(a, Frame::new(99, super::login("alice", "password1")));
    let frames = h.take(a);
    assert!(
        matches!(
            frames[0],
            Frame {
                id: 99,
                msg: Msg::LoggedIn { .. }
            }
        ),
        "{frames:?}"
    );
    let pushed: Vec<(String, Vec<String>)> = frames[1..]
        .iter()
        .map(|f| match f {
            Frame {
                id: 0,
                msg: Msg::RoomJoined { room, peers },
            } => (room.clone(), peers.iter().map(|p| p.name.clone()).collect()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        pushed,
        [
            ("r1".to_string(), vec!["bob".to_string()]),
            ("r2".to_string(), vec![])
        ]
    );
}
