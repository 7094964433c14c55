//! Private chats between real nodes wired to each other in memory.

use std::time::Duration;

use p2pchat_protocol::{Msg, Role, VERSION};

use super::*;

fn ev_started(name: &str) -> NodeEvent {
    NodeEvent::ChatStarted { with: name.into() }
}

fn ev_message(from: &str, text: &str) -> NodeEvent {
    NodeEvent::Message {
        from: from.into(),
        text: text.into(),
    }
}

fn sent(to: &str, text: &str) -> NodeEvent {
    NodeEvent::MessageSent {
        to: to.into(),
        text: text.into(),
    }
}

fn req_sent(to: &str) -> NodeEvent {
    NodeEvent::ChatRequestSent { to: to.into() }
}

/// alice and bob, logged in, chatting.
fn chatting() -> (World, usize, usize) {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    let b = w.add_user("bob", |_| {});
    w.line(a, "/chat bob");
    assert_eq!(
        w.peers[b].take_events(),
        vec![NodeEvent::ChatRequest {
            from: "alice".into()
        }]
    );
    w.line(b, "/accept alice");
    assert_eq!(
        w.peers[a].take_events(),
        vec![req_sent("bob"), ev_started("bob")]
    );
    assert_eq!(w.peers[b].take_events(), vec![ev_started("alice")]);
    (w, a, b)
}

#[test]
fn request_accept_messages_and_end() {
    let (mut w, a, b) = chatting();
    assert_eq!(w.pipe_count(), 1, "one link per pair of peers");

    w.line(a, "hello *bob*");
    w.line(b, "/msg alice hi alice");
    w.line(b, "and more");
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            sent("bob", "hello *bob*"),
            ev_message("bob", "hi alice"),
            ev_message("bob", "and more")
        ]
    );
    assert_eq!(
        w.peers[b].take_events(),
        vec![
            ev_message("alice", "hello *bob*"),
            sent("alice", "hi alice"),
            sent("alice", "and more")
        ]
    );
    assert_eq!(w.peers[a].node.chats(), vec!["bob"]);
    assert_eq!(w.peers[a].node.focus(), Some("bob"));

    w.line(a, "/end bob");
    let ended = |n: &str| NodeEvent::ChatEnded { with: n.into() };
    assert_eq!(w.peers[a].take_events(), vec![ended("bob")]);
    assert_eq!(w.peers[b].take_events(), vec![ended("alice")]);
    assert_eq!(
        w.pipe_count(),
        0,
        "the receiver of the end closes the unused link"
    );
    assert!(w.peers[a].node.chats().is_empty());

    // Nothing is lost or shown twice afterwards, and the link is gone on both sides.
    w.run_until(w.now + Duration::from_secs(30));
    assert!(w.peers[a].take_events().is_empty());
    assert!(w.peers[b].take_events().is_empty());
    assert_eq!(w.peers[a].node.link_count(), 0);
    assert_eq!(w.peers[b].node.link_count(), 0);

    w.line(a, "still there?");
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::error(
            "no current chat or room: use /chat NAME, /join ROOM or /focus"
        )]
    );
}

#[test]
fn peer_link_handshake_is_hello_then_welcome() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    let b = w.add_user("bob", |_| {});
    w.line(a, "/chat bob");
    let link = w.pipe(a, b).unwrap();
    assert!(matches!(link, LinkId::Dialed(_)));
    let back = w.pipe(b, a).unwrap();
    assert!(matches!(back, LinkId::Accepted(_)));
    let _ = (Role::Peer, VERSION);
}

#[test]
fn reject() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    let b = w.add_user("bob", |_| {});
    w.line(a, "/chat bob");
    w.line(b, "/reject alice");
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            req_sent("bob"),
            NodeEvent::ChatRejected { by: "bob".into() }
        ]
    );
    assert_eq!(
        w.peers[b].take_events(),
        vec![
            NodeEvent::ChatRequest {
                from: "alice".into()
            },
            NodeEvent::ChatRequestDeclined {
                from: "alice".into()
            }
        ]
    );
    assert_eq!(w.pipe_count(), 0);
    w.line(b, "/accept alice");
    assert_eq!(
        w.peers[b].take_events(),
        vec![NodeEvent::error("no chat request from alice")]
    );
}

#[test]
fn busy_at_the_limit() {
    let mut w = World::new();
    let a = w.add_user("alice", |c| c.max_chats = 1);
    let b = w.add_user("bob", |_| {});
    let c = w.add_user("carol", |_| {});
    w.line(b, "/chat alice");
    w.line(a, "/accept bob");
    w.peers[a].take_events();
    w.peers[b].take_events();

    w.line(c, "/chat alice");
    assert_eq!(
        w.peers[c].take_events(),
        vec![
            req_sent("alice"),
            NodeEvent::ChatBusy { by: "alice".into() }
        ]
    );
    assert!(
        w.peers[a].take_events().is_empty(),
        "answered without asking alice"
    );
    assert_eq!(w.pipe_count(), 1, "only the alice-bob link is left");

    // alice at her limit cannot open another chat either.
    w.line(a, "/chat carol");
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::error(
            "too many chats (at most 1); /end one first"
        )]
    );
    // The chat in progress is undisturbed.
    w.line(b, "still here");
    assert_eq!(
        w.peers[a].take_events(),
        vec![ev_message("bob", "still here")]
    );
}

#[test]
fn killed_peer_is_lost() {
    let (mut w, a, b) = chatting();
    w.kill(b);
    assert_eq!(
        w.peers[a].take_events(),
        vec![NodeEvent::ChatLost { with: "bob".into() }]
    );
    assert_eq!(w.peers[a].node.focus(), None);
    assert_eq!(w.peers[a].node.link_count(), 0);
}

#[test]
fn chats_survive_a_registry_outage() {
    let (mut w, a, b) = chatting();
    w.kill_registry();
    w.line(a, "during the outage");
    assert_eq!(
        w.peers[b].take_events(),
        vec![
            NodeEvent::RegistryDisconnected,
            ev_message("alice", "during the outage")
        ]
    );
    w.restart_registry();
    w.run_until(w.now + Duration::from_secs(1));
    w.line(b, "after");
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            NodeEvent::RegistryDisconnected,
            sent("bob", "during the outage"),
            NodeEvent::RegistryReconnected,
            ev_message("bob", "after")
        ]
    );
}

#[test]
fn chat_with_missing_users() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    w.register("frank");
    w.line(a, "/chat frank");
    w.line(a, "/chat nobody");
    w.line(a, "/chat alice");
    w.line(a, "/msg bob hi");
    w.line(a, "/end bob");
    w.line(a, "/focus bob");
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            NodeEvent::error("frank is offline"),
            NodeEvent::error("nobody not found"),
            NodeEvent::error("you cannot chat with yourself"),
            NodeEvent::error("no chat with bob"),
            NodeEvent::error("no chat with bob"),
            NodeEvent::error("no chat with bob"),
        ]
    );
}

#[test]
fn both_ask_at_once() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    let b = w.add_user("bob", |_| {});
    // Both commands are in flight before either side hears from the other.
    w.queue
        .push_back((a, Input::Command(parse("/chat bob").unwrap().unwrap())));
    w.queue
        .push_back((b, Input::Command(parse("/chat alice").unwrap().unwrap())));
    w.pump();
    assert_eq!(
        w.peers[a].take_events(),
        vec![req_sent("bob"), ev_started("bob")]
    );
    assert_eq!(
        w.peers[b].take_events(),
        vec![req_sent("alice"), ev_started("alice")]
    );
    assert_eq!(w.pipe_count(), 1, "the duplicate link is closed");
    w.line(a, "hi");
    w.line(b, "hi too");
    assert_eq!(
        w.peers[a].take_events(),
        vec![sent("bob", "hi"), ev_message("bob", "hi too")]
    );
    w.run_until(w.now + Duration::from_secs(30));
    assert_eq!(w.pipe_count(), 1, "the chat's link is not idle");
}

#[test]
fn muted_users_are_not_shown() {
    let (mut w, a, b) = chatting();
    w.line(a, "/mute bob");
    w.line(b, "psst");
    w.line(a, "/unmute bob");
    w.line(b, "hello");
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            NodeEvent::Muted {
                target: "bob".into()
            },
            NodeEvent::Unmuted {
                target: "bob".into()
            },
            ev_message("bob", "hello")
        ]
    );
}

#[test]
fn stranger_garbage_closes_only_that_link() {
    let (mut w, a, b) = chatting();
    let stranger = w.stranger_connects(a);
    w.input(
        a,
        Input::Received {
            link: stranger,
            bytes: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
        },
    );
    let closes = &w.peers[a].closes;
    assert!(
        matches!(closes.last(), Some((l, CloseReason::Decode(_))) if *l == stranger),
        "{closes:?}"
    );
    // An unknown first frame (a valid frame, but not a hello) also closes.
    let other = w.stranger_connects(a);
    w.input(
        a,
        Input::Received {
            link: other,
            bytes: bytes(0, Msg::ChatRequest),
        },
    );
    assert!(matches!(
        w.peers[a].closes.last(),
        Some((l, CloseReason::Unexpected { .. })) if *l == other
    ));
    w.line(b, "unbothered");
    assert_eq!(
        w.peers[a].take_events(),
        vec![ev_message("bob", "unbothered")]
    );
    assert_eq!(w.peers[a].node.chats(), vec!["bob"]);
}

#[test]
fn handshake_deadline_closes_a_silent_link() {
    let (mut w, a, b) = chatting();
    let start = w.now;
    let silent = w.stranger_connects(a);
    w.run_until(start + Duration::from_millis(9_999));
    assert!(w.peers[a].closes.iter().all(|(l, _)| *l != silent));
    w.run_until(start + Duration::from_secs(10));
    assert!(w.peers[a]
        .closes
        .contains(&(silent, CloseReason::HandshakeTimeout)));
    w.line(b, "still fine");
    assert!(w.peers[a]
        .take_events()
        .contains(&ev_message("bob", "still fine")));
}

#[test]
fn a_started_frame_must_complete() {
    let (mut w, a, _b) = chatting();
    let start = w.now;
    let link = w.stranger_connects(a);
    let hello = bytes(
        0,
        Msg::Hello {
            version: VERSION,
            role: Role::Peer,
            name: "mallory".into(),
            ticket: vec![],
        },
    );
    // A complete hello, then the first bytes of a frame that never completes.
    let mut chunk = hello.to_vec();
    chunk.extend_from_slice(&[0, 0, 0, 9, 0x34]);
    w.input(
        a,
        Input::Received {
            link,
            bytes: Bytes::from(chunk),
        },
    );
    w.advance(Duration::from_secs(5));
    assert!(w.peers[a].closes.iter().all(|(l, _)| *l != link));
    w.run_until(start + Duration::from_secs(10));
    assert!(w.peers[a]
        .closes
        .contains(&(link, CloseReason::FrameTimeout)));
}

#[test]
fn a_hello_without_a_request_goes_idle() {
    let mut w = World::new();
    let a = w.add_user("alice", |_| {});
    let start = w.now;
    let link = w.stranger_connects(a);
    let hello = bytes(
        0,
        Msg::Hello {
            version: VERSION,
            role: Role::Peer,
            name: "mallory".into(),
            ticket: vec![],
        },
    );
    w.input(a, Input::Received { link, bytes: hello });
    w.run_until(start + Duration::from_secs(10));
    assert!(w.peers[a].closes.contains(&(link, CloseReason::Idle)));
}

#[test]
fn quit_ends_chats() {
    let (mut w, a, b) = chatting();
    w.line(a, "/quit");
    assert!(w.peers[a].exited);
    assert_eq!(
        w.peers[a].take_events(),
        vec![
            NodeEvent::ChatEnded { with: "bob".into() },
            NodeEvent::LoggedOut
        ]
    );
    assert_eq!(
        w.peers[b].take_events(),
        vec![NodeEvent::ChatEnded {
            with: "alice".into()
        }]
    );
}
