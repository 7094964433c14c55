//! The registry session: handshake, requests and replies, heartbeats, pings, reconnect.

use std::net::SocketAddr;
use std::time::Duration;

use p2pchat_protocol::{Heartbeat, HeartbeatKey, Msg, Presence, Role, VERSION};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

fn node_outputs(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn sent_frames(outputs: &[Output]) -> Vec<Frame> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } => Some(frames(bytes)),
            _ => None,
        })
        .flatten()
        .collect()
}

fn heartbeats(outputs: &[Output]) -> Vec<(SocketAddr, Heartbeat)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::SendTo { to, bytes } => Some((*to, Heartbeat::decode(bytes).unwrap())),
            _ => None,
        })
        .collect()
}

fn events(outputs: &[Output]) -> Vec<NodeEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Driven by hand, byte for byte: hello, welcome, a login typed before the welcome, heartbeats
/// on schedule with increasing counters and a valid tag.
#[test]
fn handshake_login_and_heartbeat_schedule() {
    // The test's one clock read; everything after is t0 + Duration.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let listen: SocketAddr = "0.0.0.0:4000".parse().unwrap();
    let config = Config::new(registry_addr(), listen);
    let mut node = Node::new(config, t0, WALL_MS, StdRng::seed_from_u64(1));

    node.handle_input(at(0), Input::Timeout);
    let out = node_outputs(&mut node);
    let link = LinkId::Dialed(1);
    assert_eq!(
        out,
        vec![Output::Connect {
            link,
            addr: registry_addr()
        }]
    );

    node.handle_input(at(5), Input::Connected { link });
    let out = node_outputs(&mut node);
    assert_eq!(
        sent_frames(&out),
        vec![Frame::event(Msg::Hello {
            version: VERSION,
            role: Role::Client,
            name: String::new(),
            ticket: vec![]
        })]
    );

    // Typed before the welcome: held until the registry is ready.
    let login = parse("/login alice password1").unwrap().unwrap();
    node.handle_input(at(6), Input::Command(login));
    assert!(sent_frames(&node_outputs(&mut node)).is_empty());

    let welcome = Msg::Welcome {
        version: VERSION,
        name: "registry".into(),
    };
    node.handle_input(
        at(10),
        Input::Received {
            link,
            bytes: bytes(0, welcome),
        },
    );
    let out = node_outputs(&mut node);
    assert_eq!(
        events(&out),
        vec![NodeEvent::RegistryConnected {
            addr: registry_addr()
        }]
    );
    let sent = sent_frames(&out);
    assert_eq!(sent.len(), 1);
    assert_ne!(sent[0].id, 0, "requests use non-zero ids");
    assert_eq!(
        sent[0].msg,
        Msg::Login {
            name: "alice".into(),
            password: "password1".into(),
            listen
        }
    );

    let key = [7u8; 32];
    let logged_in = Msg::LoggedIn {
        name: "alice".into(),
        session: 42,
        heartbeat_key: key,
        heartbeat_interval_ms: 5_000,
        heartbeat_timeout_ms: 15_000,
        resume_token: vec![9, 9],
        udp_port: 15_500,
        advertised: "10.0.0.7:4000".parse().unwrap(),
    };
    node.handle_input(
        at(20),
        Input::Received {
            link,
            bytes: bytes(sent[0].id, logged_in),
        },
    );
    let out = node_outputs(&mut node);
    assert_eq!(
        events(&out),
        vec![NodeEvent::LoggedIn {
            name: "alice".into(),
            advertised: "10.0.0.7:4000".parse().unwrap()
        }]
    );
    let hb = heartbeats(&out);
    assert_eq!(hb.len(), 1, "the first heartbeat goes at once");
    let (to, first) = hb[0];
    assert_eq!(
        to,
        "10.0.0.1:15500".parse().unwrap(),
        "registry host, announced port"
    );
    assert_eq!((first.session, first.counter), (42, 1));
    assert_eq!(first.sent_ms, WALL_MS + 20);
    assert!(first.is_authentic(&HeartbeatKey::new(&key)));
    assert_eq!(node.poll_timeout(), Some(at(5_020)));

    node.handle_input(at(5_019), Input::Timeout);
    assert!(
        heartbeats(&node_outputs(&mut node)).is_empty(),
        "not before the interval"
    );
    let mut counter = 1;
    for k in 1..=4u64 {
        node.handle_input(at(20 + 5_000 * k), Input::Timeout);
        let hb = heartbeats(&node_outputs(&mut node));
        assert_eq!(hb.len(), 1);
        counter += 1;
        assert_eq!(hb[0].1.counter, counter, "strictly increasing");
        assert_eq!(hb[0].1.sent_ms, WALL_MS + 20 + 5_000 * k);
        assert!(hb[0].1.is_authentic(&HeartbeatKey::new(&key)));
    }
}

#[test]
fn registry_udp_flag_overrides_the_announced_port() {
    let mut w = World::new();
    let udp: SocketAddr = "10.0.0.99:7777".parse().unwrap();
    let a = w.add_user("alice", |c| c.registry_udp = Some(udp));
    assert!(w.peers[a].datagrams.iter().all(|(_, to, _)| *to == udp));
    assert!(!w.peers[a].datagrams.is_empty());
}

#[test]
fn ping_every_interval_and_silence_means_dead() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.run_until(w.at(30_000));
    let pings = |w: &World| {
        w.registry_seen[a]
            .iter()
            .filter(|f| f.msg == Msg::Ping)
            .count()
    };
    assert_eq!(pings(&w), 1);
    w.run_until(w.at(90_000));
    assert_eq!(pings(&w), 3);
    assert!(
        w.peers[a].take_events().is_empty(),
        "pongs keep the link alive"
    );

    // The registry stops answering (a dead host): two intervals of silence drop the link.
    w.registry_silent = true;
    w.run_until(w.at(149_999));
    assert!(w.peers[a].take_events().is_empty());
    w.run_until(w.at(150_000));
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::RegistryDisconnected]
    );
}

/// The registry goes away: one `Disconnected`, reconnect attempts whose delays double from
/// 250 ms to 10 s with jitter in the upper half, then a resume with the stored token and
/// heartbeats with the new session.
#[test]
fn reconnect_backs_off_with_jitter_and_resumes_with_the_token() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.run_until(w.at(1_000));
    w.kill_registry();
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::RegistryDisconnected]
    );

    let mut delays = Vec::new();
    for _ in 0..9 {
        let before = w.now;
        let next = w.peers[a].node.poll_timeout().unwrap();
        delays.push(next - before);
        w.advance_to(next);
    }
    let mut base = Duration::from_millis(250);
    for (k, d) in delays.iter().enumerate() {
        assert!(
            *d >= base / 2 && *d <= base,
            "attempt {k}: {d:?} not in [{:?}, {base:?}]",
            base / 2
        );
        base = (base * 2).min(Duration::from_secs(10));
    }
    assert!(
        delays.windows(2).any(|p| p[0] != p[1] / 2),
        "jitter varies the delays"
    );
    assert!(
        w.peers[a].take_events().is_empty(),
        "failed attempts are quiet"
    );
    assert!(
        w.peers[a].node.name() == Some("alice"),
        "still logged in, to resume"
    );

    w.registry_up = true;
    let next = w.peers[a].node.poll_timeout().unwrap();
    w.advance_to(next);
    assert_eq!(
        w.peers[a].last_resume,
        Some(Msg::Resume {
            name: "alice".into(),
            token: vec![a as u8, 1],
            listen: w.peers[a].listen,
        })
    );
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::RegistryReconnected]
    );
    // Heartbeats restart with the new session, key and counter.
    let last = w.peers[a].datagrams.last().unwrap().clone();
    let hb = Heartbeat::decode(&last.2).unwrap();
    assert_eq!((hb.session, hb.counter), ((a as u64) << 8 | 2, 1));
    assert!(hb.is_authentic(&HeartbeatKey::new(&key_of(a, 2))));

    // A second outage resumes with the token of the second login.
    w.kill_registry();
    w.registry_up = true;
    w.run_until(w.now + Duration::from_secs(1));
    let Some(Msg::Resume { token, .. }) = &w.peers[a].last_resume else {
        panic!("no resume");
    };
    assert_eq!(token, &vec![a as u8, 2]);
}

#[test]
fn requests_wait_for_the_resume() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.kill_registry();
    w.registry_up = true;
    w.hold_resume = true;
    w.line(a, "/search bob");
    w.run_until(w.now + Duration::from_secs(1));
    let seen: Vec<&Msg> = w.registry_seen[a].iter().map(|f| &f.msg).collect();
    assert!(matches!(seen.last(), Some(Msg::Resume { .. })), "{seen:?}");
}

#[test]
fn refused_resume_logs_out() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.kill_registry();
    w.registry_up = true;
    w.refuse_resume = true;
    w.run_until(w.now + Duration::from_secs(1));
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            NodeEvent::RegistryDisconnected,
            NodeEvent::error("resume token invalid or expired"),
            NodeEvent::RegistryReconnected,
        ]
    );
    assert_eq!(w.peers[a].node.name(), None);
    w.line(a, "/search bob");
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::error("not logged in")]
    );
}

#[test]
fn account_replies_and_errors() {
    let mut w = World::new();
    let a = w.add(|_| {});
    w.line(a, "/register alice password1");
    w.line(a, "/register alice password1");
    w.line(a, "/login alice wrongpass");
    w.line(a, "/login alice password1");
    w.line(a, "/login alice password1");
    w.line(a, "/register bob");
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            NodeEvent::RegistryConnected {
                addr: registry_addr()
            },
            NodeEvent::Registered {
                name: "alice".into()
            },
            NodeEvent::error("username already taken"),
            NodeEvent::error("invalid username or password"),
            NodeEvent::LoggedIn {
                name: "alice".into(),
                advertised: w.peers[a].listen
            },
            NodeEvent::error("already logged in as alice"),
            NodeEvent::error("usage: /register NAME PASSWORD"),
        ]
    );
    w.line(a, "/logout");
    assert_eq!(w.peers[a].take_events(), vec![NodeEvent::LoggedOut]);
    w.line(a, "/logout");
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::error("not logged in")]
    );
}

#[test]
fn commands_that_need_a_login() {
    let mut w = World::new();
    let a = w.add(|_| {});
    w.peers[a].take_events();
    for line in [
        "/users",
        "/search bob",
        "/chat bob",
        "/logout",
        "/rename al",
    ] {
        w.line(a, line);
        assert_eq!(
            w.peers[a].take_events(),
            vec![NodeEvent::error("not logged in")],
            "{line}"
        );
    }
    assert!(w.registry_seen[a]
        .iter()
        .all(|f| matches!(f.msg, Msg::Hello { .. })));
}

#[test]
fn search_and_users() {
    let mut w = World::new();
    let names = ["erin", "carol", "alice", "dave", "bob"];
    let ids: Vec<usize> = names.iter().map(|n| w.add_user(n, |_| {})).collect();
    let a = ids[2];
    w.registered.insert("frank".into());
    w.line(a, "/search bob");
    w.line(a, "/search frank");
    w.line(a, "/search nobody");
    w.line(a, "/users");
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            NodeEvent::UserOnline {
                name: "bob".into(),
                addr: w.peers[ids[4]].listen
            },
            NodeEvent::UserOffline {
                name: "frank".into()
            },
            NodeEvent::UserNotFound {
                name: "nobody".into()
            },
            NodeEvent::OnlineUsers {
                names: vec![
                    "alice".into(),
                    "bob".into(),
                    "carol".into(),
                    "dave".into(),
                    "erin".into()
                ]
            },
        ]
    );
    let afters: Vec<String> = w.registry_seen[a]
        .iter()
        .filter_map(|f| match &f.msg {
            Msg::ListOnline { after, limit } => {
                assert_eq!(*limit, 1000);
                Some(after.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(afters, vec!["", "bob", "dave"], "every page fetched");
    let _ = Presence::NotFound;
}

#[test]
fn error_with_id_zero_is_shown() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    let link = w.peers[a].registry_link.unwrap();
    let msg = Msg::Error {
        code: 506,
        message: "server shutting down".into(),
    };
    w.input(
        a,
        Input::Received {
            link,
            bytes: bytes(0, msg),
        },
    );
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::error("server shutting down")]
    );
}

#[test]
fn garbage_from_the_registry_reconnects() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    let link = w.peers[a].registry_link.unwrap();
    w.input(
        a,
        Input::Received {
            link,
            bytes: Bytes::from_static(b"\xff\xff\xff\xffjunk"),
        },
    );
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::RegistryDisconnected]
    );
    w.run_until(w.now + Duration::from_secs(1));
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::RegistryReconnected]
    );
}

#[test]
fn quit_logs_out_then_exits() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.line(a, "/quit");
    assert_eq!(w.peers[a].take_events(), vec![NodeEvent::LoggedOut]);
    assert!(w.peers[a].exited);
    assert!(w.registry_seen[a].iter().any(|f| f.msg == Msg::Logout));
    assert_eq!(w.peers[a].node.poll_timeout(), None);
}

#[test]
fn quit_gives_up_after_the_grace_period() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.registry_silent = true;
    w.line(a, "/quit");
    assert!(!w.peers[a].exited, "waits for the logout reply");
    w.run_until(w.now + Duration::from_millis(1_999));
    assert!(!w.peers[a].exited);
    w.run_until(w.now + Duration::from_millis(1));
    assert!(w.peers[a].exited);
}

#[test]
fn quit_waits_for_a_reply_in_flight() {
    let mut w = World::new();
    let a = w.add(|_| {});
    w.registry_silent = true;
    w.line(a, "/register alice password1");
    w.line(a, "/quit");
    assert!(!w.peers[a].exited);
    // The reply arrives: the node exits right after showing it.
    w.registry_silent = false;
    let link = w.peers[a].registry_link.unwrap();
    let id = w.registry_seen[a]
        .iter()
        .find(|f| matches!(f.msg, Msg::Register { .. }))
        .unwrap()
        .id;
    w.input(
        a,
        Input::Received {
            link,
            bytes: bytes(id, Msg::Ok),
        },
    );
    assert!(w.peers[a].exited);
    assert!(w.peers[a].take_events().contains(&NodeEvent::Registered {
        name: "alice".into()
    }));
}
