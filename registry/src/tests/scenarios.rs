use std::time::Duration;

use p2pchat_protocol::{status, Frame, Msg, Presence};

use super::{login, Harness};
use crate::io::{CloseReason, ConnId, Event, Input, OfflineReason};
use crate::Config;

const TIMEOUT_MS: u64 = 20_000;

#[test]
fn session_expires_exactly_at_the_deadline_and_not_a_tick_before() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    h.register(a, "alice");
    h.login(a, "alice");
    assert!(h.reg.is_online("alice"));
    let deadline = h.at(TIMEOUT_MS);
    assert_eq!(h.reg.poll_timeout(), Some(deadline));
    h.advance_to(deadline - Duration::from_nanos(1));
    assert!(h.reg.is_online("alice"), "a tick before the deadline");
    h.advance_to(deadline);
    assert!(!h.reg.is_online("alice"), "at the deadline");
    assert_eq!(h.closed.get(&a), Some(&CloseReason::Expired));
    let frames = h.take(a);
    assert!(
        matches!(
            frames.as_slice(),
            [Frame {
                id: 0,
                msg: Msg::Error {
                    code: status::TIMEOUT,
                    ..
                }
            }]
        ),
        "{frames:?}"
    );
    assert!(h.events.contains(&Event::Offline {
        name: "alice".into(),
        why: OfflineReason::Expired
    }));
    assert_eq!(h.reg.stats().expired, 1);
}

#[test]
fn a_heartbeat_moves_the_deadline() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    h.register(a, "alice");
    let s = h.login(a, "alice");
    h.advance_to(h.at(10_000));
    h.heartbeat(&s, 1);
    assert_eq!(h.reg.stats().heartbeats, 1);
    // A heartbeat only moves the session's deadline (O(1), presence.rs): the wake-up at the
    // original deadline finds it moved and looks again at the new one.
    assert_eq!(h.reg.poll_timeout(), Some(h.at(TIMEOUT_MS)));
    h.advance_to(h.at(TIMEOUT_MS)); // the original deadline passes harmlessly
    assert!(h.reg.is_online("alice"));
    assert_eq!(h.reg.poll_timeout(), Some(h.at(10_000 + TIMEOUT_MS)));
    h.advance_to(h.at(10_000 + TIMEOUT_MS) - Duration::from_nanos(1));
    assert!(h.reg.is_online("alice"));
    h.advance_to(h.at(10_000 + TIMEOUT_MS));
    assert!(!h.reg.is_online("alice"));
}

#[test]
fn forged_and_replayed_heartbeats_change_nothing() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    h.register(a, "alice");
    let s = h.login(a, "alice");
    h.advance_to(h.at(5_000));
    h.heartbeat(&s, 1);
    let deadline = h.reg.poll_timeout();
    h.advance_to(h.at(15_000));
    h.heartbeat(&s, 1); // replay
    let forged = super::LoggedIn {
        session: s.session,
        key: [0xee; 32],
        token: vec![],
    };
    h.heartbeat(&forged, 2);
    let garbage = [0u8; 57];
    h.input(Input::Datagram {
        from: "10.9.9.9:1".parse().unwrap(),
        bytes: &garbage,
    });
    assert_eq!(h.reg.poll_timeout(), deadline, "deadline unchanged");
    let st = h.reg.stats();
    assert_eq!((st.heartbeats, st.hb_replayed, st.hb_bad_tag), (1, 1, 1));
    assert_eq!(st.hb_malformed + st.hb_unknown_session, 1);
    h.advance_to(h.at(5_000 + TIMEOUT_MS));
    assert!(!h.reg.is_online("alice"));
    assert!(
        h.take(a).iter().all(|f| f.id == 0),
        "datagrams are never answered"
    );
}

#[test]
fn expiry_sweep_takes_only_the_silent_sessions() {
    let mut h = Harness::new(Harness::config());
    let mut sessions = Vec::new();
    for i in 0..50u64 {
        let c = h.connect(i + 1);
        let name = format!("user{i}");
        h.register(c, &name);
        sessions.push((name.clone(), h.login(c, &name)));
    }
    h.advance_to(h.at(19_000));
    for (i, (_, s)) in sessions.iter().enumerate() {
        if i % 2 == 0 {
            h.heartbeat(s, 1);
        }
    }
    h.advance_to(h.at(TIMEOUT_MS));
    for (i, (name, _)) in sessions.iter().enumerate() {
        assert_eq!(h.reg.is_online(name), i % 2 == 0, "{name}");
    }
    assert_eq!(h.reg.online_count(), 25);
}

#[test]
fn auth_rate_limit_per_source_refills_over_time() {
    let config = Config {
        auth_rate_per_min: 60,
        auth_burst: 3,
        ..Harness::config()
    };
    let mut h = Harness::new(config);
    let a = h.connect(1);
    for i in 0..3 {
        h.register(a, &format!("user{i}"));
    }
    let reply = h.request(a, login("user0", "password1"));
    assert_eq!(
        Harness::error_code(&reply),
        Some(status::RATE_LIMITED),
        "{reply:?}"
    );
    // Another source address is not limited.
    let b = h.connect(2);
    h.login(b, "user1");
    // One token per second comes back.
    h.advance_to(h.at(1_000));
    h.login(a, "user0");
    let reply = h.request(a, Msg::Logout);
    assert_eq!(reply, Msg::Ok);
    let reply = h.request(a, login("user0", "password1"));
    assert_eq!(Harness::error_code(&reply), Some(status::RATE_LIMITED));
    assert_eq!(h.reg.stats().rate_limited, 2);
}

#[test]
fn repeated_failures_back_off_per_account_with_the_same_error_for_unknown_users() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    h.register(a, "alice");
    let wrong = h.request(a, login("alice", "wrongpass"));
    let unknown = h.request(a, login("nobody", "wrongpass"));
    assert_eq!(
        wrong, unknown,
        "same answer for unknown user and wrong password"
    );
    assert_eq!(Harness::error_code(&wrong), Some(status::BAD_CREDENTIALS));
    for _ in 0..4 {
        let r = h.request(a, login("alice", "wrongpass"));
        assert_eq!(Harness::error_code(&r), Some(status::BAD_CREDENTIALS));
    }
    // Five failures: the sixth attempt waits, even with the right password.
    let r = h.request(a, login("alice", "password1"));
    assert_eq!(Harness::error_code(&r), Some(status::LOCKED_OUT), "{r:?}");
    let other = h.request(a, login("nobody", "wrongpass"));
    assert_eq!(Harness::error_code(&other), Some(status::BAD_CREDENTIALS));
    h.advance_to(h.at(1_000));
    h.login(a, "alice");
}

#[test]
fn a_full_hash_queue_answers_busy() {
    let config = Config {
        max_pending_hashes: 2,
        ..Harness::config()
    };
    let mut h = Harness::new(config);
    let a = h.connect(1);
    h.hold_hashes = true;
    for (i, name) in ["a1", "a2", "a3"].iter().enumerate() {
        h.send(
            a,
            Frame::new(
                i as u32 + 1,
                Msg::Register {
                    name: name.to_string(),
                    password: "password1".into(),
                },
            ),
        );
    }
    let frames = h.take(a);
    assert_eq!(
        frames.len(),
        1,
        "only the third is answered now: {frames:?}"
    );
    assert_eq!(frames[0].id, 3);
    assert_eq!(Harness::error_code(&frames[0].msg), Some(status::BUSY));
    h.release_hashes();
    let mut ids: Vec<u32> = h.take(a).iter().map(|f| f.id).collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert_eq!(h.reg.account_count(), 2);
}

#[test]
fn handshake_frame_and_idle_deadlines_close_only_that_connection() {
    let config = Config {
        handshake_timeout: Duration::from_secs(10),
        frame_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(120),
        ..Harness::config()
    };
    let mut h = Harness::new(config);
    let good = h.connect(1);
    h.register(good, "alice");
    h.login(good, "alice");
    let silent = ConnId(2);
    h.input(Input::Connected {
        conn: silent,
        remote: "10.0.0.2:1".parse().unwrap(),
    });
    let slow = h.connect(3);
    let idle = h.connect(4);
    // The slow client starts a frame and trickles bytes: the deadline holds from the start.
    let frame = Frame::new(
        9,
        Msg::Search {
            name: "alice".into(),
        },
    )
    .to_bytes();
    h.advance_to(h.at(1_000));
    h.input(Input::Received {
        conn: slow,
        bytes: &frame[..3],
    });
    h.advance_to(h.at(9_000));
    h.input(Input::Received {
        conn: slow,
        bytes: &frame[3..5],
    });
    h.advance_to(h.at(10_000));
    assert_eq!(h.closed.get(&silent), Some(&CloseReason::HandshakeTimeout));
    h.advance_to(h.at(10_999));
    assert!(!h.closed.contains_key(&slow));
    h.advance_to(h.at(11_000));
    assert_eq!(h.closed.get(&slow), Some(&CloseReason::FrameTimeout));
    h.advance_to(h.at(120_000));
    assert_eq!(h.closed.get(&idle), Some(&CloseReason::Idle));
    // The logged-in session sent no heartbeats: it expired at 20 s, and was never "idle".
    assert_eq!(h.closed.get(&good), Some(&CloseReason::Expired));
    assert_eq!(h.closed.len(), 4);
}

#[test]
fn a_full_table_evicts_the_oldest_prelogin_connection_and_never_a_logged_in_one() {
    let config = Config {
        max_clients: 2,
        ..Harness::config()
    };
    let mut h = Harness::new(config);
    let a = h.connect(1);
    h.connect(2);
    // Full of pre-login connections: the oldest makes room.
    let c = h.connect(3);
    assert_eq!(h.closed.get(&ConnId(1)), Some(&CloseReason::Evicted));
    let frames = h.take(ConnId(1));
    assert_eq!(
        Harness::error_code(&frames.last().unwrap().msg),
        Some(status::SERVER_FULL)
    );
    assert_eq!(h.reg.connection_count(), 2);
    assert_eq!(h.reg.unauthenticated_count(), 2);
    // Full of logged-in users: the newcomer is refused.
    let _ = a;
    h.register(c, "carol");
    h.login(c, "carol");
    let d = h.connect(4);
    h.register(d, "dave");
    h.login(d, "dave");
    assert_eq!(h.closed.get(&ConnId(2)), Some(&CloseReason::Evicted));
    h.input(Input::Connected {
        conn: ConnId(5),
        remote: "10.0.0.5:1".parse().unwrap(),
    });
    let frames = h.take(ConnId(5));
    assert_eq!(
        Harness::error_code(&frames[0].msg),
        Some(status::SERVER_FULL)
    );
    assert_eq!(h.closed.get(&ConnId(5)), Some(&CloseReason::ServerFull));
    assert_eq!(h.reg.connection_count(), 2);
    assert_eq!(h.reg.unauthenticated_count(), 0);
}

#[test]
fn a_second_login_is_refused_and_a_resume_replaces_the_old_session() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    h.register(a, "alice");
    let s = h.login(a, "alice");
    let b = h.connect(2);
    let r = h.request(b, login("alice", "password1"));
    assert_eq!(Harness::error_code(&r), Some(status::ALREADY_ONLINE));
    let r = h.request(
        b,
        Msg::Resume {
            name: "alice".into(),
            token: s.token.clone(),
            listen: "0.0.0.0:4001".parse().unwrap(),
        },
    );
    let Msg::LoggedIn { resume_token, .. } = r else {
        panic!("resume: {r:?}");
    };
    assert_ne!(resume_token, s.token, "a new token at each use");
    assert_eq!(h.closed.get(&a), Some(&CloseReason::Replaced));
    assert!(h.reg.is_online("alice"));
    // The old token is spent.
    let c = h.connect(3);
    let r = h.request(
        c,
        Msg::Resume {
            name: "alice".into(),
            token: s.token,
            listen: "0.0.0.0:4001".parse().unwrap(),
        },
    );
    assert_eq!(Harness::error_code(&r), Some(status::BAD_RESUME_TOKEN));
}

#[test]
fn resume_tokens_expire_after_the_window() {
    let config = Config {
        resume_window: Duration::from_secs(3600),
        ..Harness::config()
    };
    let mut h = Harness::new(config);
    let a = h.connect(1);
    h.register(a, "alice");
    let s = h.login(a, "alice");
    h.input(Input::Closed { conn: a });
    assert!(!h.reg.is_online("alice"), "TCP close means offline");
    h.advance_to(h.at(3_600_000));
    let b = h.connect(2);
    let r = h.request(
        b,
        Msg::Resume {
            name: "alice".into(),
            token: s.token,
            listen: "0.0.0.0:4001".parse().unwrap(),
        },
    );
    assert_eq!(Harness::error_code(&r), Some(status::BAD_RESUME_TOKEN));
}

#[test]
fn search_online_list_and_rename() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    let before = h.request(a, Msg::Search { name: "x".into() });
    assert_eq!(Harness::error_code(&before), Some(status::NOT_LOGGED_IN));
    for n in ["carol", "alice", "bob"] {
        h.register(a, n);
    }
    h.login(a, "carol");
    let b = h.connect(2);
    h.login(b, "alice");
    let r = h.request(
        a,
        Msg::Search {
            name: "alice".into(),
        },
    );
    assert_eq!(
        r,
        Msg::SearchResult {
            name: "alice".into(),
            presence: Presence::Online("10.0.0.3:4000".parse().unwrap())
        }
    );
    let r = h.request(a, Msg::Search { name: "bob".into() });
    assert!(matches!(
        r,
        Msg::SearchResult {
            presence: Presence::Offline,
            ..
        }
    ));
    let r = h.request(a, Msg::Search { name: "zed".into() });
    assert!(matches!(
        r,
        Msg::SearchResult {
            presence: Presence::NotFound,
            ..
        }
    ));
    let r = h.request(
        a,
        Msg::ListOnline {
            after: String::new(),
            limit: 1,
        },
    );
    assert_eq!(
        r,
        Msg::OnlineList {
            names: vec!["alice".into()],
            more: true
        }
    );
    let r = h.request(b, Msg::Rename { name: "bob".into() });
    assert_eq!(Harness::error_code(&r), Some(status::NAME_TAKEN));
    assert_eq!(
        h.request(
            b,
            Msg::Rename {
                name: "alicia".into()
            }
        ),
        Msg::Ok
    );
    let r = h.request(
        a,
        Msg::ListOnline {
            after: String::new(),
            limit: 10,
        },
    );
    assert_eq!(
        r,
        Msg::OnlineList {
            names: vec!["alicia".into(), "carol".into()],
            more: false
        }
    );
    let r = h.request(
        a,
        Msg::Search {
            name: "alice".into(),
        },
    );
    assert!(matches!(
        r,
        Msg::SearchResult {
            presence: Presence::NotFound,
            ..
        }
    ));
}

#[test]
fn protocol_violations_close_with_a_reason() {
    let mut h = Harness::new(Harness::config());
    let good = h.connect(1);
    // Garbage before the handshake.
    let c = ConnId(2);
    h.input(Input::Connected {
        conn: c,
        remote: "10.0.0.2:1".parse().unwrap(),
    });
    h.input(Input::Received {
        conn: c,
        bytes: b"GET / HTTP/1.1\r\n\r\n",
    });
    assert!(matches!(h.closed.get(&c), Some(CloseReason::Malformed(_))));
    // A server-to-client frame from a client.
    let d = h.connect(3);
    h.send(d, Frame::new(1, Msg::Pong));
    assert_eq!(h.closed.get(&d), Some(&CloseReason::Unexpected("pong")));
    // Wrong version.
    let e = ConnId(4);
    h.input(Input::Connected {
        conn: e,
        remote: "10.0.0.4:1".parse().unwrap(),
    });
    h.send(
        e,
        Frame::event(Msg::Hello {
            version: 99,
            role: p2pchat_protocol::Role::Client,
            name: String::new(),
            ticket: vec![],
        }),
    );
    assert_eq!(h.closed.get(&e), Some(&CloseReason::BadVersion(99)));
    let frames = h.take(e);
    assert_eq!(
        Harness::error_code(&frames[0].msg),
        Some(status::BAD_VERSION)
    );
    assert!(!h.closed.contains_key(&good));
    assert_eq!(h.request(good, Msg::Ping), Msg::Pong);
}

#[test]
fn shutdown_tells_every_client_and_refuses_new_ones() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    h.register(a, "alice");
    h.login(a, "alice");
    let b = h.connect(2);
    h.input(Input::Shutdown);
    for c in [a, b] {
        let frames = h.take(c);
        assert_eq!(
            Harness::error_code(&frames[0].msg),
            Some(status::SHUTTING_DOWN)
        );
        assert_eq!(h.closed.get(&c), Some(&CloseReason::Shutdown));
    }
    assert_eq!(h.reg.online_count(), 0);
    h.input(Input::Connected {
        conn: ConnId(3),
        remote: "10.0.0.3:1".parse().unwrap(),
    });
    assert_eq!(h.closed.get(&ConnId(3)), Some(&CloseReason::Shutdown));
}
