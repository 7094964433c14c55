//! Secure links as a user meets them (docs/security.md): the client pins the registry's key
//! on first contact, refuses a registry that proves another key with a message saying how to
//! accept it, and accepts it when given `--registry-key`.

use super::*;

use p2pchat_protocol::secure::{
    Credential, Expect, Identity, PublicKey, SecureError, SecureStream,
};
use p2pchat_protocol::{Frame, FrameDecoder, Msg, Role};

#[test]
fn a_changed_registry_key_is_refused_and_accepted_only_when_given() {
    let mut reg = Registry::start();
    let mut alice = reg.user("alice", &["--registry-timeout", "2s"]);
    let pins = std::fs::read_to_string(reg.dir.path().join("config/p2pchat/known_registries"))
        .expect("the registry key was pinned");
    assert!(pins.starts_with(&format!("{} sha256:", reg.tcp)), "{pins}");

    // The registry comes back with a new key (its key file lost), on the same address.
    reg.kill9();
    std::fs::remove_file(reg.dir.path().join("db.key")).unwrap();
    reg.restart();
    let refusal = alice.expect_with("the refusal", Duration::from_secs(20), |l| {
        l.contains("refused") || l == "Reconnected to registry"
    });
    assert!(refusal.starts_with("error: registry "), "{refusal}");
    assert!(refusal.contains("--registry-key sha256:"), "{refusal}");
    let new_key = refusal
        .split("--registry-key ")
        .nth(1)
        .map(str::trim)
        .expect("the new key in the message")
        .to_string();
    alice.send("/users");
    alice.expect_with("no session", Duration::from_secs(15), |l| {
        l.starts_with("error:") && !l.contains("refused")
    });
    alice.assert_no_line(|l| l == "Reconnected to registry");

    // Told the new key, a client uses the registry again (and the pin follows).
    let mut bob = reg.peer("bob", &["--registry-key", &new_key]);
    bob.send(&format!("/register bob {PASSWORD}"));
    bob.expect("Registered bob");
    let pins =
        std::fs::read_to_string(reg.dir.path().join("config/p2pchat/known_registries")).unwrap();
    assert!(pins.contains(&new_key), "{pins}");
}

/// The registry key the peers of this fixture pinned.
fn registry_key(reg: &Registry) -> PublicKeyOf {
    let pins =
        std::fs::read_to_string(reg.dir.path().join("config/p2pchat/known_registries")).unwrap();
    let fp = pins.split_whitespace().nth(1).unwrap().to_string();
    PublicKeyOf(fp)
}

/// A registry key known by its fingerprint only (what the pin file holds).
struct PublicKeyOf(String);

/// A raw client of the registry over its secure link: registers and logs in `name`, then
/// asks for a ticket for `identity`. Returns the ticket and the registry's key.
fn ticket_for(reg: &Registry, name: &str, identity: &Identity) -> (Vec<u8>, PublicKey) {
    let mut sock = TcpStream::connect(reg.tcp).unwrap();
    let hello = Frame::event(Msg::Hello {
        version: p2pchat_protocol::VERSION,
        role: Role::Client,
        name: String::new(),
        ticket: vec![],
    });
    let mut link =
        p2pchat_registry::secure::client_handshake(&mut sock, None, &hello.to_bytes(), WAIT)
            .unwrap();
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut next = |link: &mut SecureStream, sock: &mut TcpStream, send: Option<Frame>| -> Msg {
        if let Some(f) = send {
            link.send(&f.to_bytes()).unwrap();
            sock.write_all(&link.take_outgoing()).unwrap();
        }
        loop {
            if let Some(f) = decoder.next_frame().unwrap() {
                return f.msg;
            }
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).unwrap();
            assert!(n > 0, "the registry closed the link");
            link.receive(&buf[..n]).unwrap();
            decoder.push(&link.take_plaintext());
        }
    };
    assert!(matches!(
        next(&mut link, &mut sock, None),
        Msg::Welcome { .. }
    ));
    let register = Frame::new(
        1,
        Msg::Register {
            name: name.into(),
            password: PASSWORD.into(),
        },
    );
    assert_eq!(next(&mut link, &mut sock, Some(register)), Msg::Ok);
    let login = Frame::new(
        2,
        Msg::Login {
            name: name.into(),
            password: PASSWORD.into(),
            listen: "127.0.0.1:9".parse().unwrap(),
        },
    );
    assert!(matches!(
        next(&mut link, &mut sock, Some(login)),
        Msg::LoggedIn { .. }
    ));
    let get = Frame::new(
        3,
        Msg::GetTicket {
            key: identity.public_key().0,
        },
    );
    match next(&mut link, &mut sock, Some(get)) {
        Msg::TicketIssued {
            ticket,
            registry_key,
        } => (ticket, PublicKey(registry_key)),
        other => panic!("no ticket: {other:?}"),
    }
}

/// Dials `addr` as a peer with `cred`, checking the other side's ticket against `registry`;
/// returns the socket and stream once open, or the handshake's error.
fn dial_peer(
    addr: SocketAddr,
    cred: Credential,
    registry: PublicKey,
) -> Result<(TcpStream, SecureStream), SecureError> {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut link = SecureStream::initiator(Role::Peer, cred, Expect::Ticket { registry, now })?;
    sock.write_all(&link.take_outgoing()).unwrap();
    let mut buf = [0u8; 4096];
    while !link.is_open() {
        let n = sock.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return Err(SecureError::Unexpected("closed".into()));
        }
        link.receive(&buf[..n])?;
    }
    sock.write_all(&link.take_outgoing()).unwrap();
    Ok((sock, link))
}

/// Sends a peer hello claiming `name`, a chat request and a message on an open link.
fn claim(sock: &mut TcpStream, link: &mut SecureStream, name: &str) {
    let mut plain = Frame::event(Msg::Hello {
        version: p2pchat_protocol::VERSION,
        role: Role::Peer,
        name: name.into(),
        ticket: vec![],
    })
    .to_bytes()
    .to_vec();
    plain.extend_from_slice(&Frame::event(Msg::ChatRequest).to_bytes());
    plain.extend_from_slice(
        &Frame::event(Msg::ChatMessage {
            text: "I am who I say".into(),
        })
        .to_bytes(),
    );
    link.send(&plain).unwrap();
    let _ = sock.write_all(&link.take_outgoing());
}

#[test]
fn a_peer_must_prove_the_name_it_claims() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    let bob_at = address_of(&mut alice, "bob");
    let pinned = registry_key(&reg);

    // Mallory holds a real ticket, for "mallory".
    let mallory = Arc::new(Identity::generate_from_os().unwrap());
    let (ticket, registry) = ticket_for(&reg, "mallory", &mallory);
    assert_eq!(registry.fingerprint().to_string(), pinned.0);
    let mallory_cred = || Credential::Ticket {
        identity: Arc::clone(&mallory),
        ticket: ticket.clone(),
    };

    // Claiming her own name works: bob sees her request.
    let (mut sock, mut link) = dial_peer(bob_at, mallory_cred(), registry).unwrap();
    claim(&mut sock, &mut link, "mallory");
    bob.expect("Chat request from mallory");

    // Claiming alice's name with mallory's ticket: bob closes the link, shows nothing.
    let (mut sock, mut link) = dial_peer(bob_at, mallory_cred(), registry).unwrap();
    claim(&mut sock, &mut link, "alice");
    assert_closed(&mut sock, WAIT);
    // Alice's own ticket is no use to mallory either: she cannot sign for alice's key.
    let stranger = Arc::new(Identity::generate_from_os().unwrap());
    let (alice_ticket, _) = ticket_for(&reg, "alice2", &Identity::generate_from_os().unwrap());
    let stolen = Credential::Ticket {
        identity: stranger,
        ticket: alice_ticket,
    };
    let (mut sock, mut link) = match dial_peer(bob_at, stolen, registry) {
        // The dialer learns nothing: bob refuses after its last message.
        Ok(open) => open,
        Err(e) => panic!("bob answered before checking: {e}"),
    };
    claim(&mut sock, &mut link, "alice2");
    assert_closed(&mut sock, WAIT);

    // A stranger with no ticket at all is refused too.
    let (mut sock, mut link) = dial_peer(bob_at, Credential::Anonymous, registry).unwrap();
    claim(&mut sock, &mut link, "alice");
    assert_closed(&mut sock, WAIT);

    // None of it reached bob's screen; the real alice still can.
    bob.assert_no_line(|l| l.contains("alice"));
    start_chat(&mut alice, &mut bob);
}

/// A TCP relay that records every byte both ways. Its target can be set after it started
/// (a peer's port is known only once the peer runs).
struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(target: Option<SocketAddr>) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (to, record) = (Arc::clone(&target), Arc::clone(&seen));
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Some(dest) = *to.lock().unwrap() else {
                    continue;
                };
                let Ok(server) = TcpStream::connect(dest) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let record = Arc::clone(&record);
                    thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            record.lock().unwrap().extend_from_slice(&buf[..n]);
                            if into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = into.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Relay { addr, target, seen }
    }

    fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

/// A logged-in `p2pchat` with these flags (not through the fixture: the registry address and
/// the advertised one differ from the fixture's), logging at info level.
fn raw_peer(reg: &Registry, name: &str, registry: SocketAddr, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pchat"));
    cmd.args([
        "--registry",
        &registry.to_string(),
        "--listen",
        "127.0.0.1:0",
    ])
    .args(extra)
    .env("XDG_CONFIG_HOME", reg.dir.path().join("config"))
    .env("RUST_LOG", "info")
    .env_remove("NO_COLOR");
    let mut p = Proc::spawn(name, &mut cmd);
    p.expect_with("connected to the registry", WAIT, |l| {
        l.contains("Connected to registry at ")
    });
    p
}

#[test]
fn a_capture_of_a_whole_session_shows_no_password_text_or_name() {
    let reg = Registry::start();
    let to_registry = Relay::start(Some(reg.tcp));
    let to_bob = Relay::start(None);
    let advertise = to_bob.addr.to_string();
    let mut bob = raw_peer(&reg, "bob", reg.tcp, &["--advertise", &advertise]);
    // Bob's real port, from his log: the relay forwards there.
    let listening = bob.wait_stderr_lines("listening for peers on ", 1, WAIT)[0]
        .split("listening for peers on ")
        .nth(1)
        .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        .expect("bob's listening address");
    *to_bob.target.lock().unwrap() = Some(listening);
    bob.send(&format!("/register bob {PASSWORD}"));
    bob.expect("Registered bob");
    bob.send(&format!("/login bob {PASSWORD}"));
    bob.expect("Logged in as bob");

    // Alice reaches the registry through one relay and bob through the other.
    let secret_password = "my very secret password";
    let mut alice = raw_peer(&reg, "alice", to_registry.addr, &[]);
    alice.send(&format!("/register alice {secret_password}"));
    alice.expect("Registered alice");
    alice.send(&format!("/login alice {secret_password}"));
    alice.expect("Logged in as alice");
    alice.send("/search bob");
    alice.expect(&format!("bob is online at {advertise}"));
    start_chat(&mut alice, &mut bob);
    alice.send("private words about the plan");
    bob.expect("Message from alice: private words about the plan");
    alice.send("/create hideout");
    alice.expect("Created room hideout");
    bob.send("/join hideout");
    // "Joined room" means bob's neighbour (alice) is linked: what he says now reaches her.
    bob.expect("Joined room hideout");
    bob.send("/say hideout words for the room only");
    alice.expect("Message from bob at hideout: words for the room only");

    let (registry_wire, peer_wire) = (to_registry.seen(), to_bob.seen());
    assert!(registry_wire.len() > 500, "{} bytes", registry_wire.len());
    assert!(peer_wire.len() > 500, "{} bytes", peer_wire.len());
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    for secret in [
        secret_password,
        "private words",
        "words for the room",
        "hideout",
        "alice",
        "bob",
    ] {
        assert!(
            !contains(&registry_wire, secret),
            "registry link shows {secret:?}"
        );
        assert!(!contains(&peer_wire, secret), "peer link shows {secret:?}");
    }
}

#[test]
fn after_a_rename_new_peer_links_carry_the_new_name() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    alice.send("/rename alicia");
    alice.expect_with("the rename", WAIT, |l| l.contains("alicia"));
    // Bob dials her under her new name: her ticket must say it, or he would refuse her.
    bob.send("/chat alicia");
    alice.expect("Chat request from bob");
    alice.send("/accept bob");
    bob.expect("Chat with alicia started");
}
