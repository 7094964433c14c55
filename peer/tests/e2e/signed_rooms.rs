//! Signed room messages (docs/security.md, layer 4) with the real binaries: a member of the room
//! that relays (mallory, a raw client holding a real ticket of its own) cannot make another
//! member show a message it forged in someone else's name, or one it altered.

use super::*;

use p2pchat_peer::RoomSigner;
use p2pchat_protocol::secure::{Credential, Expect, Identity, PublicKey, SecureStream};
use p2pchat_protocol::{Frame, FrameDecoder, Msg, Role, RoomAuth, PEER_VERSION};

/// One secure link (to the registry or a peer), spoken frame by frame.
struct Raw {
    sock: TcpStream,
    link: SecureStream,
    decoder: FrameDecoder,
}

impl Raw {
    fn send(&mut self, frame: Frame) {
        self.link.send(&frame.to_bytes()).unwrap();
        self.sock.write_all(&self.link.take_outgoing()).unwrap();
    }

    /// The next frame; panics if the other side closes or says nothing within [`WAIT`].
    fn next(&mut self) -> Frame {
        loop {
            if let Some(f) = self.decoder.next_frame().unwrap() {
                return f;
            }
            let mut buf = [0u8; 4096];
            let n = self.sock.read(&mut buf).expect("a frame within WAIT");
            assert!(n > 0, "the other side closed the link");
            self.link.receive(&buf[..n]).unwrap();
            self.decoder.push(&self.link.take_plaintext());
        }
    }

    /// Sends a request and returns its answer (pushed events in between are skipped).
    fn request(&mut self, id: u32, msg: Msg) -> Msg {
        self.send(Frame::new(id, msg));
        loop {
            let f = self.next();
            if f.id == id {
                return f.msg;
            }
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A raw client that registers and logs in `name`, gets a ticket for `identity` and joins
/// `room`; the returned link keeps the session (and the membership) alive.
fn raw_member(
    reg: &Registry,
    name: &str,
    identity: &Identity,
    room: &str,
) -> (Raw, Vec<u8>, PublicKey) {
    let mut sock = TcpStream::connect(reg.tcp).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let hello = Frame::event(Msg::Hello {
        version: p2pchat_protocol::VERSION,
        role: Role::Client,
        name: String::new(),
        ticket: vec![],
    });
    let link = p2pchat_registry::secure::client_handshake(&mut sock, None, &hello.to_bytes(), WAIT)
        .unwrap();
    let mut r = Raw {
        sock,
        link,
        decoder: FrameDecoder::new(1 << 20),
    };
    assert!(matches!(r.next().msg, Msg::Welcome { .. }));
    let register = Msg::Register {
        name: name.into(),
        password: PASSWORD.into(),
    };
    assert_eq!(r.request(1, register), Msg::Ok);
    let login = Msg::Login {
        name: name.into(),
        password: PASSWORD.into(),
        listen: "127.0.0.1:9".parse().unwrap(),
    };
    assert!(matches!(r.request(2, login), Msg::LoggedIn { .. }));
    let get = Msg::GetTicket {
        key: identity.public_key().0,
    };
    let (ticket, registry) = match r.request(3, get) {
        Msg::TicketIssued {
            ticket,
            registry_key,
        } => (ticket, PublicKey(registry_key)),
        other => panic!("no ticket: {other:?}"),
    };
    let join = r.request(4, Msg::JoinRoom { room: room.into() });
    assert!(matches!(join, Msg::RoomJoined { .. }), "{join:?}");
    (r, ticket, registry)
}

/// Dials the peer at `addr` with a ticket, says hello as `name`, and links with it in `room`
/// (waits for its confirming `room-link`).
fn link_in_room(
    addr: SocketAddr,
    cred: Credential,
    registry: PublicKey,
    name: &str,
    room: &str,
) -> Raw {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let expect = Expect::Ticket {
        registry,
        now: unix_now(),
    };
    let mut link = SecureStream::initiator(Role::Peer, cred, expect).unwrap();
    sock.write_all(&link.take_outgoing()).unwrap();
    let mut buf = [0u8; 4096];
    while !link.is_open() {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "the peer refused the handshake");
        link.receive(&buf[..n]).unwrap();
    }
    sock.write_all(&link.take_outgoing()).unwrap();
    let mut r = Raw {
        sock,
        link,
        decoder: FrameDecoder::new(1 << 20),
    };
    r.send(Frame::event(Msg::Hello {
        version: PEER_VERSION,
        role: Role::Peer,
        name: name.into(),
        ticket: vec![],
    }));
    r.send(Frame::event(Msg::RoomLink { room: room.into() }));
    loop {
        match r.next().msg {
            Msg::RoomLink { room: r2 } if r2 == room => return r,
            Msg::RoomUnlink { .. } => panic!("the peer refused the room link"),
            _ => {}
        }
    }
}

/// Both attacks' stage: alice creates `lab`, bob joins it, and mallory, a raw member of the room
/// with a real ticket of its own (for "mallory"), has a room link to bob. A test binds every
/// field (`..` would drop the rest, the registry with it, at once); the registry and the
/// session are bound first, so they drop last.
struct Lab {
    to_bob: Raw,
    _session: Raw,
    mallory: Arc<Identity>,
    ticket: Vec<u8>,
    bob: Proc,
    alice: Proc,
    _reg: Registry,
}

fn lab_with_mallory_linked_to_bob() -> Lab {
    let reg = Registry::start();
    let mut alice = reg.user_logging("alice", &[], Some("warn"));
    let mut bob = reg.user_logging("bob", &[], Some("warn"));
    alice.send("/create lab");
    alice.expect("Created room lab");
    bob.send("/join lab");
    bob.expect("Joined room lab");
    let bob_at = address_of(&mut alice, "bob");

    let mallory = Arc::new(Identity::generate_from_os().unwrap());
    let (session, ticket, registry) = raw_member(&reg, "mallory", &mallory, "lab");
    bob.expect("mallory joined lab");
    let cred = Credential::Ticket {
        identity: Arc::clone(&mallory),
        ticket: ticket.clone(),
    };
    let to_bob = link_in_room(bob_at, cred, registry, "mallory", "lab");
    Lab {
        to_bob,
        _session: session,
        mallory,
        ticket,
        bob,
        alice,
        _reg: reg,
    }
}

#[test]
fn a_relaying_member_cannot_forge_or_alter_a_room_message() {
    let Lab {
        _reg,
        _session,
        mut to_bob,
        mallory,
        ticket,
        mut bob,
        mut alice,
    } = lab_with_mallory_linked_to_bob();

    let signer = RoomSigner::new(Arc::clone(&mallory));
    let sent_ms = unix_now() * 1000;
    let seq0 = sent_ms * 1000;
    let message = |origin: &str, seq: u64, text: &str, auth: Option<RoomAuth>| {
        Frame::event(Msg::RoomMessage {
            room: "lab".into(),
            origin: origin.into(),
            seq,
            hops: 10,
            sent_ms,
            text: text.into(),
            auth,
        })
    };
    let sign = |origin: &str, seq: u64, text: &str| {
        Some(signer.sign(&ticket, "lab", origin, seq, sent_ms, text))
    };
    // 1. In alice's name, unsigned.
    to_bob.send(message("alice", seq0, "forged unsigned", None));
    // 2. In alice's name, signed by mallory with her own valid ticket.
    let own = sign("alice", seq0 + 1, "forged signed");
    to_bob.send(message("alice", seq0 + 1, "forged signed", own));
    // 3. Mallory's own message with its text altered after signing, sent before the genuine
    //    copy of the same id: the altered one must not hide the genuine one.
    let genuine = sign("mallory", seq0 + 2, "genuine");
    to_bob.send(message("mallory", seq0 + 2, "altered", genuine.clone()));
    // 4. The genuine message, twice.
    to_bob.send(message("mallory", seq0 + 2, "genuine", genuine.clone()));
    to_bob.send(message("mallory", seq0 + 2, "genuine", genuine));
    // 5. A last genuine one: once it shows, everything before it was handled (one link, in
    //    order).
    let last = sign("mallory", seq0 + 3, "last");
    to_bob.send(message("mallory", seq0 + 3, "last", last));

    bob.expect("Message from mallory at lab: genuine");
    bob.expect("Message from mallory at lab: last");
    // Bob relays the genuine messages, signature included: alice (who checks) shows them.
    alice.expect("Message from mallory at lab: genuine");
    alice.expect("Message from mallory at lab: last");

    let shown_by = |p: &Proc| -> Vec<String> {
        p.seen
            .iter()
            .filter(|l| l.starts_with("Message from "))
            .cloned()
            .collect()
    };
    bob.assert_no_line(|l| l.starts_with("Message from "));
    alice.assert_no_line(|l| l.starts_with("Message from "));
    let want = [
        "Message from mallory at lab: genuine".to_string(),
        "Message from mallory at lab: last".to_string(),
    ];
    assert_eq!(shown_by(&bob), want, "bob shows the genuine ones once each");
    assert_eq!(
        shown_by(&alice),
        want,
        "nothing forged was relayed to alice"
    );
    // The three forgeries reached bob and were refused (not lost on the way).
    let refused = bob.wait_stderr_lines("message claiming to be from", 3, WAIT);
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(refused[0].contains("unsigned"), "{refused:#?}");
    assert!(refused[1].contains("mallory's"), "{refused:#?}");
    assert!(refused[2].contains("does not verify"), "{refused:#?}");
}

/// The flood variant: a member that keeps relaying forged messages (each one costs the
/// receiver an Ed25519 check) is unlinked from the room after a few and its next room link is
/// refused; genuine messages between the others still flow.
#[test]
fn a_member_flooding_forged_messages_is_unlinked() {
    let Lab {
        _reg,
        _session,
        mut to_bob,
        mut bob,
        mut alice,
        ..
    } = lab_with_mallory_linked_to_bob();
    let seq0 = unix_now() * 1_000_000;
    for k in 0..50u64 {
        to_bob.send(Frame::event(Msg::RoomMessage {
            room: "lab".into(),
            origin: "alice".into(),
            seq: seq0 + k,
            hops: 10,
            sent_ms: unix_now() * 1000,
            text: format!("forged {k}"),
            auth: None,
        }));
    }
    // Bob unlinks mallory from the room; the peer link itself may stay (or be released).
    loop {
        match to_bob.next().msg {
            Msg::RoomUnlink { room } if room == "lab" => break,
            _ => {}
        }
    }
    to_bob.send(Frame::event(Msg::RoomLink { room: "lab".into() }));
    loop {
        match to_bob.next().msg {
            Msg::RoomUnlink { room } if room == "lab" => break,
            Msg::RoomLink { .. } => panic!("bob linked mallory again"),
            _ => {}
        }
    }
    alice.send("/say lab after the flood");
    bob.expect("Message from alice at lab: after the flood");
    bob.assert_no_line(|l| l.contains("forged"));
    assert_eq!(
        bob.wait_stderr_lines("unlinking mallory", 1, WAIT).len(),
        1,
        "one unlink, logged"
    );
}
