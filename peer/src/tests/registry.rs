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

/// Driven by hand, byte for byte, against the real registry: hello, welcome, a login typed
/// before the welcome, heartbeats on schedule with increasing counters and a tag the registry
/// accepts.
#[test]
fn handshake_login_and_heartbeat_schedule() {
    // The test's one clock read; everything after is t0 + Duration.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let config = registry_config().with_heartbeat_timeout(Duration::from_secs(15));
    let mut host = RegistryHost::new(config, t0);
    create_account(&mut host, at(0), "alice");

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

    let conn = ConnId(100);
    let remote: SocketAddr = "10.0.0.7:50000".parse().unwrap();
    host.handle(at(5), reg::Input::Connected { conn, remote });
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
    let to_node = to_registry(&mut host, at(5), conn, &out);
    assert!(matches!(
        frames_to(&to_node, conn).as_slice(),
        [Frame {
            msg: Msg::Welcome { .. },
            ..
        }]
    ));

    // Typed before the welcome: held until the registry is ready.
    let login = parse("/login alice password1").unwrap().unwrap();
    node.handle_input(at(6), Input::Command(login));
    assert!(sent_frames(&node_outputs(&mut node)).is_empty());

    let out = deliver(&mut node, at(10), link, &to_node);
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

    let to_node = to_registry(&mut host, at(20), conn, &out);
    let replies = frames_to(&to_node, conn);
    let Some(Msg::LoggedIn {
        session,
        heartbeat_key: key,
        ..
    }) = replies.iter().find(|f| f.id == sent[0].id).map(|f| &f.msg)
    else {
        panic!("no LoggedIn: {replies:?}");
    };
    let (session, key) = (*session, *key);
    let out = deliver(&mut node, at(20), link, &to_node);
    assert_eq!(
        events(&out),
        vec![NodeEvent::LoggedIn {
            name: "alice".into(),
            advertised: "10.0.0.7:4000".parse().unwrap()
        }],
        "the registry advertises the address it sees us at"
    );
    let hb = heartbeats(&out);
    assert_eq!(hb.len(), 1, "the first heartbeat goes at once");
    let (to, first) = hb[0];
    assert_eq!(
        to,
        "10.0.0.1:15500".parse().unwrap(),
        "registry host, announced port"
    );
    assert_eq!((first.session, first.counter), (session, 1));
    assert_eq!(first.sent_ms, WALL_MS + 20);
    assert!(first.is_authentic(&HeartbeatKey::new(&key)));
    to_registry(&mut host, at(20), conn, &out);
    let accepted = |host: &RegistryHost| host.registry.as_ref().unwrap().stats().heartbeats;
    assert_eq!(accepted(&host), 1, "the registry accepts it");
    assert_eq!(node.poll_timeout(), Some(at(5_020)));

    node.handle_input(at(5_019), Input::Timeout);
    assert!(
        heartbeats(&node_outputs(&mut node)).is_empty(),
        "not before the interval"
    );
    let mut counter = 1;
    for k in 1..=4u64 {
        node.handle_input(at(20 + 5_000 * k), Input::Timeout);
        let out = node_outputs(&mut node);
        let hb = heartbeats(&out);
        assert_eq!(hb.len(), 1);
        counter += 1;
        assert_eq!(hb[0].1.counter, counter, "strictly increasing");
        assert_eq!(hb[0].1.sent_ms, WALL_MS + 20 + 5_000 * k);
        assert!(hb[0].1.is_authentic(&HeartbeatKey::new(&key)));
        to_registry(&mut host, at(20 + 5_000 * k), conn, &out);
        assert_eq!(accepted(&host), counter);
    }
    let registry = host.registry.as_ref().unwrap();
    assert!(registry.is_online("alice"));
    assert_eq!(
        registry.stats().hb_bad_tag + registry.stats().hb_replayed,
        0
    );
}

/// Registers `name` at the registry from a connection of its own, then hangs up.
fn create_account(host: &mut RegistryHost, now: Instant, name: &str) {
    let conn = ConnId(1);
    let remote: SocketAddr = "10.0.0.200:50000".parse().unwrap();
    host.handle(now, reg::Input::Connected { conn, remote });
    let hello = bytes(
        0,
        Msg::Hello {
            version: VERSION,
            role: Role::Client,
            name: String::new(),
            ticket: vec![],
        },
    );
    host.handle(
        now,
        reg::Input::Received {
            conn,
            bytes: &hello,
        },
    );
    let register = bytes(
        1,
        Msg::Register {
            name: name.into(),
            password: PASSWORD.into(),
        },
    );
    let out = host.handle(
        now,
        reg::Input::Received {
            conn,
            bytes: &register,
        },
    );
    assert_eq!(frames_to(&out, conn), vec![Frame::new(1, Msg::Ok)]);
    host.handle(now, reg::Input::Closed { conn });
}

/// Carries what the node sent (frames on its registry link, heartbeat datagrams) to the
/// registry; returns what the registry sends back.
fn to_registry(
    host: &mut RegistryHost,
    now: Instant,
    conn: ConnId,
    out: &[Output],
) -> Vec<ToClient> {
    let mut back = Vec::new();
    for o in out {
        match o {
            Output::Send { bytes, .. } => {
                back.extend(host.handle(now, reg::Input::Received { conn, bytes }))
            }
            Output::SendTo { to, bytes } if *to == registry_udp() => {
                let from: SocketAddr = "10.0.0.7:40000".parse().unwrap();
                back.extend(host.handle(now, reg::Input::Datagram { from, bytes }));
            }
            _ => {}
        }
    }
    back
}

/// The frames the registry sent to `conn`.
fn frames_to(out: &[ToClient], conn: ConnId) -> Vec<Frame> {
    out.iter()
        .filter_map(|o| match o {
            ToClient::Send(c, bytes) if *c == conn => Some(frames(bytes)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Delivers the registry's bytes to the node on `link`; returns the node's outputs.
fn deliver(node: &mut Node, now: Instant, link: LinkId, from_registry: &[ToClient]) -> Vec<Output> {
    for o in from_registry {
        if let ToClient::Send(_, bytes) = o {
            let bytes = bytes.clone();
            node.handle_input(now, Input::Received { link, bytes });
        }
    }
    node_outputs(node)
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

/// The registry goes away: one `Disconnected`, reconnect attempts whose delays grow by 1.5
/// from 250 ms to 10 s with jitter in the upper half, then a resume with the stored token and
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
    let mut base = 0.25_f64;
    for (k, d) in delays.iter().enumerate() {
        // Whole milliseconds of jitter: allow the rounding below the exact half.
        let (low, high) = (base / 2.0 - 0.001, base);
        let secs = d.as_secs_f64();
        assert!(
            secs >= low && secs <= high,
            "attempt {k}: {d:?} not in [{low} s, {high} s]"
        );
        base = (base * 1.5).min(10.0);
    }
    assert!(
        delays.windows(2).any(|p| p[1] != p[0].mul_f64(1.5)),
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

    // The registry comes back over the same database: the token survived the restart.
    w.restart_registry();
    let next = w.peers[a].node.poll_timeout().unwrap();
    w.advance_to(next);
    assert_eq!(
        w.peers[a].last_resume,
        Some(Msg::Resume {
            name: "alice".into(),
            token: w.peers[a].logins[0].token.clone(),
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
    assert_eq!(w.peers[a].logins.len(), 2);
    let second = w.peers[a].logins[1].clone();
    assert_ne!(second.session, w.peers[a].logins[0].session);
    assert_eq!((hb.session, hb.counter), (second.session, 1));
    assert!(hb.is_authentic(&HeartbeatKey::new(&second.key)));
    let registry = w.registry.registry.as_ref().unwrap();
    assert!(registry.is_online("alice"));
    assert!(
        registry.stats().heartbeats >= 1,
        "and the registry takes them"
    );

    // A second outage resumes with the token of the second login.
    w.kill_registry();
    w.restart_registry();
    w.run_until(w.now + Duration::from_secs(1));
    let Some(Msg::Resume { token, .. }) = &w.peers[a].last_resume else {
        panic!("no resume");
    };
    assert_eq!(token, &second.token);
    assert_eq!(w.peers[a].logins.len(), 3);
}

#[test]
fn requests_wait_for_the_resume() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.kill_registry();
    w.restart_registry();
    // A slow disk: the resume waits for its new token to be written.
    w.registry.hold_stores = true;
    w.line(a, "/search bob");
    w.run_until(w.now + Duration::from_secs(1));
    let seen: Vec<&Msg> = w.registry_seen[a].iter().map(|f| &f.msg).collect();
    assert!(matches!(seen.last(), Some(Msg::Resume { .. })), "{seen:?}");
}

#[test]
fn refused_resume_logs_out() {
    // The token expires for real: the registry stays away longer than the resume window.
    let window = Duration::from_secs(60);
    let mut w = World::with_registry(|c| c.resume_window = window);
    let a = w.add_user("alice", |_| {});
    w.kill_registry();
    w.run_for(window + Duration::from_secs(1));
    w.restart_registry();
    w.run_for(Duration::from_secs(11));
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::RegistryDisconnected, NodeEvent::SessionLost],
        "logged out, and not claimed to be reconnected"
    );
    assert_eq!(w.peers[a].node.name(), None);
    w.line(a, "/search bob");
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::error("not logged in")]
    );
}

/// A password login from elsewhere replaces the resume token: the node that lost its
/// connection is refused when it tries the old one, and is logged out.
#[test]
fn a_login_elsewhere_invalidates_the_resume_token() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.drop_registry_conn(a);
    // Before alice's node reconnects, alice logs in on another machine.
    let other = w.add_user("alice", |_| {});
    assert_ne!(w.peers[other].logins[0].token, w.peers[a].logins[0].token);
    w.run_for(Duration::from_secs(1));
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::RegistryDisconnected, NodeEvent::SessionLost],
        "logged out, and not claimed to be reconnected"
    );
    assert_eq!(w.peers[a].node.name(), None);
    assert_eq!(w.peers[other].node.name(), Some("alice"));
    assert!(w.peers[other].take_events().is_empty(), "undisturbed");
}

/// The registry shuts down gracefully: its error line is shown, then the link is lost and
/// comes back (with the session) when a new registry runs.
#[test]
fn registry_shutdown_is_shown_and_survived() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.feed_registry(reg::Input::Shutdown);
    w.pump();
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            NodeEvent::error("server shutting down"),
            NodeEvent::RegistryDisconnected
        ]
    );
    w.kill_registry();
    w.restart_registry();
    w.run_for(Duration::from_secs(1));
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::RegistryReconnected]
    );
    assert_eq!(w.peers[a].node.name(), Some("alice"));
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
    w.register("frank");
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
    // Slow hashing: the registration is not answered yet.
    w.registry.hold_hashes = true;
    w.line(a, "/register alice password1");
    w.line(a, "/quit");
    assert!(!w.peers[a].exited);
    // The reply arrives: the node exits right after showing it.
    w.release_registry_jobs();
    assert!(w.peers[a].exited);
    assert!(w.peers[a].take_events().contains(&NodeEvent::Registered {
        name: "alice".into()
    }));
}
