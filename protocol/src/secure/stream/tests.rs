use std::sync::Arc;

use proptest::prelude::*;
use ring::rand::SystemRandom;

use super::*;
use crate::secure::{Fingerprint, Identity, Ticket, TicketError};
use crate::{status, Frame, FrameDecoder, Msg};

struct World {
    registry: Arc<Identity>,
}

impl World {
    fn new() -> World {
        World {
            registry: Arc::new(Identity::generate(&SystemRandom::new()).unwrap()),
        }
    }

    /// A user's identity and the ticket the registry would issue for it, valid 1000..2000.
    fn user(&self, name: &str) -> (Arc<Identity>, Vec<u8>) {
        let id = Arc::new(Identity::generate(&SystemRandom::new()).unwrap());
        let ticket = Ticket {
            key_id: self.registry.public_key().fingerprint().key_id(),
            name: name.into(),
            key: id.public_key(),
            not_before: 1000,
            not_after: 2000,
        }
        .sign(&self.registry);
        (id, ticket)
    }

    fn ticket_cred(&self, name: &str) -> Credential {
        let (identity, ticket) = self.user(name);
        Credential::Ticket { identity, ticket }
    }

    fn expect_ticket(&self, now: u64) -> Expect {
        Expect::Ticket {
            registry: self.registry.public_key(),
            now,
        }
    }

    /// A client (anonymous, pinning `pin`) and the registry.
    fn registry_link(&self, pin: Option<Fingerprint>) -> (SecureStream, SecureStream) {
        let client =
            SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(pin)).unwrap();
        let registry = SecureStream::responder(
            Role::Client,
            Credential::Key(self.registry.clone()),
            Expect::Anonymous,
        );
        (client, registry)
    }
}

/// Moves bytes both ways until nothing moves; returns each side's error, if any.
fn pump(a: &mut SecureStream, b: &mut SecureStream) -> (Option<SecureError>, Option<SecureError>) {
    let (mut ea, mut eb) = (None, None);
    loop {
        let ab = a.take_outgoing();
        let ba = b.take_outgoing();
        if ab.is_empty() && ba.is_empty() {
            return (ea, eb);
        }
        if !ab.is_empty() && eb.is_none() {
            eb = b.receive(&ab).err();
        }
        if !ba.is_empty() && ea.is_none() {
            ea = a.receive(&ba).err();
        }
    }
}

/// Sends `msg` from `from` and returns what `to` opened.
fn deliver(
    from: &mut SecureStream,
    to: &mut SecureStream,
    msg: &[u8],
) -> Result<Vec<u8>, SecureError> {
    from.send(msg).unwrap();
    to.receive(&from.take_outgoing())?;
    Ok(to.take_plaintext().to_vec())
}

#[test]
fn client_and_registry_agree_and_the_client_learns_the_registry_key() {
    let w = World::new();
    let (mut c, mut r) = w.registry_link(None);
    // The client may queue its first frames before the handshake is done.
    c.send(b"early hello").unwrap();
    assert_eq!(pump(&mut c, &mut r), (None, None));
    assert!(c.is_open() && r.is_open());
    assert_eq!(c.session_hash(), r.session_hash());
    assert_eq!(c.remote(), Some(&Remote::Key(w.registry.public_key())));
    assert_eq!(r.remote(), Some(&Remote::Anonymous));
    assert_eq!(&r.take_plaintext()[..], b"early hello");
    assert_eq!(deliver(&mut r, &mut c, b"welcome").unwrap(), b"welcome");
    assert_eq!(deliver(&mut c, &mut r, b"login").unwrap(), b"login");
}

#[test]
fn two_links_never_share_keys() {
    let w = World::new();
    let (mut c1, mut r1) = w.registry_link(None);
    let (mut c2, mut r2) = w.registry_link(None);
    pump(&mut c1, &mut r1);
    pump(&mut c2, &mut r2);
    assert_ne!(c1.session_hash(), c2.session_hash());
    c1.send(b"for link 1").unwrap();
    assert_eq!(r2.receive(&c1.take_outgoing()), Err(SecureError::Open));
}

#[test]
fn peers_with_tickets_learn_each_others_names() {
    let w = World::new();
    let mut alice =
        SecureStream::initiator(Role::Peer, w.ticket_cred("alice"), w.expect_ticket(1500)).unwrap();
    let mut bob = SecureStream::responder(Role::Peer, w.ticket_cred("bob"), w.expect_ticket(1500));
    assert_eq!(pump(&mut alice, &mut bob), (None, None));
    let name = |s: &SecureStream| match s.remote() {
        Some(Remote::User(t)) => t.name.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(name(&alice), "bob");
    assert_eq!(name(&bob), "alice");
    assert_eq!(deliver(&mut alice, &mut bob, b"hi bob").unwrap(), b"hi bob");
}

#[test]
fn a_byte_at_a_time_works() {
    let w = World::new();
    let (mut c, mut r) = w.registry_link(Some(w.registry.public_key().fingerprint()));
    c.send(&[9u8; 40_000]).unwrap();
    let mut got = Vec::new();
    loop {
        let (cr, rc) = (c.take_outgoing(), r.take_outgoing());
        if cr.is_empty() && rc.is_empty() {
            break;
        }
        for b in cr.iter() {
            r.receive(std::slice::from_ref(b)).unwrap();
            got.extend_from_slice(&r.take_plaintext());
        }
        for b in rc.iter() {
            c.receive(std::slice::from_ref(b)).unwrap();
        }
    }
    assert_eq!(got, vec![9u8; 40_000]);
    assert!(!r.has_partial());
}

#[test]
fn a_changed_registry_key_is_refused() {
    let w = World::new();
    let pinned = Identity::generate(&SystemRandom::new())
        .unwrap()
        .public_key()
        .fingerprint();
    let (mut c, mut r) = w.registry_link(Some(pinned));
    c.send(b"login alice password").unwrap();
    let (ec, _) = pump(&mut c, &mut r);
    assert_eq!(
        ec,
        Some(SecureError::KeyMismatch {
            expected: pinned.to_string(),
            got: w.registry.public_key().fingerprint().to_string(),
        })
    );
    assert!(!c.is_open() && !r.is_open());
    assert!(
        r.take_plaintext().is_empty(),
        "nothing the client queued left it"
    );
}

#[test]
fn a_peer_cannot_sign_as_another_user() {
    let w = World::new();
    // Mallory holds alice's ticket (it crossed the wire encrypted, but suppose she got it) and
    // her own key: her signature does not verify under the key alice's ticket names.
    let (_, alice_ticket) = w.user("alice");
    let (mallory, _) = w.user("mallory");
    let mut fake = SecureStream::initiator(
        Role::Peer,
        Credential::Ticket {
            identity: mallory,
            ticket: alice_ticket,
        },
        w.expect_ticket(1500),
    )
    .unwrap();
    let mut bob = SecureStream::responder(Role::Peer, w.ticket_cred("bob"), w.expect_ticket(1500));
    fake.send(b"Message from alice").unwrap();
    let (_, eb) = pump(&mut fake, &mut bob);
    assert_eq!(eb, Some(SecureError::BadSignature));
    assert!(bob.take_plaintext().is_empty());
}

#[test]
fn a_self_made_ticket_is_refused() {
    let w = World::new();
    let mallory = Arc::new(Identity::generate(&SystemRandom::new()).unwrap());
    let ticket = Ticket {
        key_id: w.registry.public_key().fingerprint().key_id(),
        name: "alice".into(),
        key: mallory.public_key(),
        not_before: 0,
        not_after: u64::MAX,
    }
    .sign(&mallory);
    let mut fake = SecureStream::initiator(
        Role::Peer,
        Credential::Ticket {
            identity: mallory,
            ticket,
        },
        w.expect_ticket(1500),
    )
    .unwrap();
    let mut bob = SecureStream::responder(Role::Peer, w.ticket_cred("bob"), w.expect_ticket(1500));
    let (_, eb) = pump(&mut fake, &mut bob);
    assert_eq!(eb, Some(SecureError::Ticket(TicketError::BadSignature)));
}

#[test]
fn a_stranger_without_a_ticket_is_refused() {
    let w = World::new();
    // The stranger checks bob's ticket like any peer would, then proves nothing itself.
    let mut stranger =
        SecureStream::initiator(Role::Peer, Credential::Anonymous, w.expect_ticket(1500)).unwrap();
    let mut bob = SecureStream::responder(Role::Peer, w.ticket_cred("bob"), w.expect_ticket(1500));
    stranger.send(b"Message from alice").unwrap();
    let (_, eb) = pump(&mut stranger, &mut bob);
    assert!(matches!(eb, Some(SecureError::WrongIdentity(_))), "{eb:?}");
    assert!(!bob.is_open());
    assert!(bob.take_plaintext().is_empty());
    // A stranger holding some other key (not a ticket) fares no better.
    let rogue = Arc::new(Identity::generate(&SystemRandom::new()).unwrap());
    let mut stranger =
        SecureStream::initiator(Role::Peer, Credential::Key(rogue), w.expect_ticket(1500)).unwrap();
    let mut bob = SecureStream::responder(Role::Peer, w.ticket_cred("bob"), w.expect_ticket(1500));
    let (_, eb) = pump(&mut stranger, &mut bob);
    assert!(matches!(eb, Some(SecureError::WrongIdentity(_))), "{eb:?}");
}

#[test]
fn an_expired_ticket_is_refused_both_ways() {
    let w = World::new();
    // Bob's clock says 2000: alice's ticket (valid until 2000, exclusive) has expired.
    let mut alice =
        SecureStream::initiator(Role::Peer, w.ticket_cred("alice"), w.expect_ticket(1500)).unwrap();
    let mut bob = SecureStream::responder(Role::Peer, w.ticket_cred("bob"), w.expect_ticket(2000));
    let (_, eb) = pump(&mut alice, &mut bob);
    assert_eq!(
        eb,
        Some(SecureError::Ticket(TicketError::Expired {
            not_after: 2000,
            now: 2000
        }))
    );
    // And the dialer refuses an expired ticket from the acceptor before saying who it is.
    let mut alice =
        SecureStream::initiator(Role::Peer, w.ticket_cred("alice"), w.expect_ticket(2500)).unwrap();
    let mut bob = SecureStream::responder(Role::Peer, w.ticket_cred("bob"), w.expect_ticket(1500));
    let (ea, _) = pump(&mut alice, &mut bob);
    assert!(matches!(
        ea,
        Some(SecureError::Ticket(TicketError::Expired { .. }))
    ));
    assert!(!bob.is_open());
}

#[test]
fn an_old_client_is_refused_in_the_clear_with_the_reason() {
    let w = World::new();
    let (_, mut r) = w.registry_link(None);
    let old_hello = Frame::event(Msg::Hello {
        version: 1,
        role: Role::Client,
        name: String::new(),
        ticket: vec![],
    });
    let err = r.receive(&old_hello.to_bytes()).unwrap_err();
    assert_eq!(err, SecureError::BadVersion { theirs: 1, ours: 2 });
    assert!(!r.awaiting_hello());
    // What an old client reads: a plain error frame it understands.
    let mut d = FrameDecoder::new(1 << 16);
    d.push(&r.take_outgoing());
    match d.next_frame().unwrap().unwrap().msg {
        Msg::Error { code, message } => {
            assert_eq!(code, status::BAD_VERSION);
            assert!(
                message.contains("version 1") && message.contains("speaks 2"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Anything after is refused with the same error: no second chance in the clear.
    assert_eq!(r.receive(b"more").unwrap_err(), err);
}

#[test]
fn an_old_registrys_refusal_reaches_the_new_client() {
    let (mut c, _) = World::new().registry_link(None);
    let msg1 = c.take_outgoing();
    assert_eq!(msg1[4], crate::kind::HELLO);
    let refusal = Frame::event(Msg::Error {
        code: status::BAD_VERSION,
        message: "unsupported protocol version 2; this registry speaks 1".into(),
    });
    assert_eq!(
        c.receive(&refusal.to_bytes()),
        Err(SecureError::Refused {
            code: status::BAD_VERSION,
            message: "unsupported protocol version 2; this registry speaks 1".into()
        })
    );
    // A clear welcome (a downgrade) is not accepted either.
    let (mut c, _) = World::new().registry_link(None);
    let welcome = Frame::event(Msg::Welcome {
        version: 1,
        name: "p2pchat-registry".into(),
    });
    assert!(matches!(
        c.receive(&welcome.to_bytes()),
        Err(SecureError::Unexpected(_))
    ));
    assert!(c.take_plaintext().is_empty() && !c.is_open());
}

#[test]
fn a_first_frame_that_is_not_a_hello_is_refused_in_the_clear() {
    let w = World::new();
    let (_, mut r) = w.registry_link(None);
    let login = Frame::new(
        1,
        Msg::Login {
            name: "alice".into(),
            password: "secret123".into(),
            listen: "0.0.0.0:1".parse().unwrap(),
        },
    );
    assert!(r.receive(&login.to_bytes()).is_err());
    let mut d = FrameDecoder::new(1 << 16);
    d.push(&r.take_outgoing());
    assert!(matches!(
        d.next_frame().unwrap().unwrap().msg,
        Msg::Error {
            code: status::UNEXPECTED,
            ..
        }
    ));
}

#[test]
fn pre_hello_refusals_are_clear_error_frames() {
    let w = World::new();
    let first_error = |bytes: &[u8]| {
        let (_, mut r) = w.registry_link(None);
        assert!(r.awaiting_hello());
        assert!(r.receive(bytes).is_err());
        let mut d = FrameDecoder::new(1 << 16);
        d.push(&r.take_outgoing());
        match d.next_frame().unwrap().unwrap().msg {
            Msg::Error { code, .. } => code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(first_error(b"GET / HTTP/1.1\r\n\r\n"), status::TOO_LARGE);
    let peer_hello = Frame::event(Msg::Hello {
        version: 2,
        role: Role::Peer,
        name: String::new(),
        ticket: vec![],
    });
    assert_eq!(first_error(&peer_hello.to_bytes()), status::UNEXPECTED);
    let keyless_hello = Frame::event(Msg::Hello {
        version: 2,
        role: Role::Client,
        name: String::new(),
        ticket: vec![],
    });
    assert_eq!(first_error(&keyless_hello.to_bytes()), status::MALFORMED);
}

/// An open client-registry pair and two records the client sealed, in order.
fn two_records(w: &World) -> (SecureStream, BytesMut, BytesMut) {
    let (mut c, mut r) = w.registry_link(None);
    pump(&mut c, &mut r);
    c.send(b"one").unwrap();
    let one = c.take_outgoing();
    c.send(b"two").unwrap();
    (r, one, c.take_outgoing())
}

#[test]
fn replayed_and_reordered_records_close_the_link() {
    let w = World::new();
    let (mut r, one, two) = two_records(&w);
    r.receive(&one).unwrap();
    assert_eq!(r.receive(&one), Err(SecureError::Open), "replay");
    assert!(r.receive(&two).is_err(), "a failed link stays failed");

    let (mut r, _, two) = two_records(&w);
    assert_eq!(r.receive(&two), Err(SecureError::Open), "reorder");
    assert!(r.take_plaintext().is_empty());
}

/// Runs a full handshake and one message, flipping `xor` into byte `at` of everything the
/// initiator sends (handshake and data alike); returns what the responder opened.
/// Also says whether the altered byte was a length prefix of a data record after the
/// handshake (then the responder is open and waits for a record that never completes).
fn run_with_tamper(flight: usize, at: usize, xor: u8) -> (Vec<u8>, bool, bool) {
    let w = World::new();
    let mut a =
        SecureStream::initiator(Role::Peer, w.ticket_cred("alice"), w.expect_ticket(1500)).unwrap();
    let mut b = SecureStream::responder(Role::Peer, w.ticket_cred("bob"), w.expect_ticket(1500));
    a.send(b"secret chat text").unwrap();
    let mut opened = Vec::new();
    let mut in_data_prefix = false;
    for step in 0..4 {
        let mut ab = a.take_outgoing().to_vec();
        if step == flight && !ab.is_empty() {
            let i = at % ab.len();
            let first = 4 + u32::from_be_bytes([ab[0], ab[1], ab[2], ab[3]]) as usize;
            in_data_prefix = flight == 1 && (first..first + 4).contains(&i);
            ab[i] ^= xor;
        }
        if !ab.is_empty() && b.receive(&ab).is_ok() {
            opened.extend_from_slice(&b.take_plaintext());
        }
        let ba = b.take_outgoing();
        if !ba.is_empty() {
            let _ = a.receive(&ba);
        }
    }
    (opened, b.is_open(), in_data_prefix)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Flight 0 is message 1, flight 1 is message 3 with the sealed text: whichever byte is
    /// altered, the responder never shows the text, and it completes the handshake only when
    /// the altered byte was the data record's length (the handshake itself was intact).
    #[test]
    fn any_altered_handshake_byte_fails(flight in 0usize..2, at in any::<usize>(), xor in 1u8..) {
        let (opened, b_open, in_data_prefix) = run_with_tamper(flight, at, xor);
        prop_assert!(opened.is_empty());
        prop_assert!(!b_open || in_data_prefix);
    }

    #[test]
    fn any_altered_record_byte_fails(at in any::<usize>(), xor in 1u8.., len in 1usize..2000) {
        let w = World::new();
        let (mut c, mut r) = w.registry_link(None);
        pump(&mut c, &mut r);
        c.send(&vec![b'x'; len]).unwrap();
        let mut sealed = c.take_outgoing().to_vec();
        let i = at % sealed.len();
        sealed[i] ^= xor;
        let res = r.receive(&sealed);
        let opened = r.take_plaintext();
        // A changed length may leave the record incomplete (then nothing opens yet); any
        // other change fails to open. Nothing altered is ever shown.
        prop_assert!(opened.is_empty());
        if i >= 4 {
            prop_assert!(res.is_err());
        }
    }

    /// Bytes from the network are data: whatever arrives, in whatever pieces, neither side
    /// panics, and nothing is opened from bytes that did not come from the other side's keys.
    #[test]
    fn arbitrary_bytes_never_panic_or_open(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8),
        hello_first in any::<bool>(),
    ) {
        let w = World::new();
        let (mut c, mut r) = w.registry_link(None);
        if hello_first {
            r.receive(&c.take_outgoing()).unwrap();
        }
        for chunk in &chunks {
            let _ = r.receive(chunk);
            let _ = c.receive(chunk);
            prop_assert!(r.take_plaintext().is_empty());
            prop_assert!(c.take_plaintext().is_empty());
        }
        prop_assert!(!c.is_open());
    }

    #[test]
    fn altered_server_reply_is_detected(at in any::<usize>(), xor in 1u8..) {
        let w = World::new();
        let (mut c, mut r) = w.registry_link(None);
        r.receive(&c.take_outgoing()).unwrap();
        let mut msg2 = r.take_outgoing().to_vec();
        let i = at % msg2.len();
        msg2[i] ^= xor;
        let res = c.receive(&msg2);
        prop_assert!(!c.is_open());
        if i >= 4 {
            prop_assert!(res.is_err());
        }
    }
}

#[test]
fn halves_carry_on_where_the_stream_left_off() {
    let w = World::new();
    let (mut c, mut r) = w.registry_link(None);
    pump(&mut c, &mut r);
    assert_eq!(deliver(&mut c, &mut r, b"one").unwrap(), b"one");
    let (mut sealer, mut open) = r.into_halves().unwrap();
    c.send(b"two").unwrap();
    assert_eq!(&open.receive(&c.take_outgoing()).unwrap()[..], b"two");
    let mut out = bytes::BytesMut::new();
    sealer.seal(b"three", &mut out).unwrap();
    c.receive(&out).unwrap();
    assert_eq!(&c.take_plaintext()[..], b"three");
    assert!(
        SecureStream::responder(Role::Client, Credential::Anonymous, Expect::Anonymous)
            .into_halves()
            .is_err()
    );
}

#[test]
fn fingerprints_round_trip_through_text() {
    let w = World::new();
    let fp = w.registry.public_key().fingerprint();
    assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
}

/// A registry-side stream opened by a handshake with a client, turned into its `OpenLink`.
fn open_link(w: &World) -> (SecureStream, OpenLink) {
    let (mut c, mut r) = w.registry_link(None);
    assert_eq!(pump(&mut c, &mut r), (None, None));
    (c, r.into_link().unwrap())
}

#[test]
fn an_open_link_is_a_fraction_of_a_stream() {
    // Memory per online peer at the registry (docs/performance.md): two raw keys, two
    // counters and an empty buffer.
    assert!(std::mem::size_of::<OpenLink>() <= 104);
    assert!(std::mem::size_of::<OpenLink>() * 3 < std::mem::size_of::<SecureStream>());
}

#[test]
fn an_open_link_opens_records_whatever_the_cuts_and_seals_replies() {
    let w = World::new();
    let want: Vec<u8> = [&b"onetwo"[..], &[b'x'; 40_000][..]].concat();
    // A first read cut at every point of the first 100 bytes (records of 24, 24 and 16 KiB), then the rest
    // in 1000-byte reads: the plaintext comes out whole and in order.
    for cut in 1..100 {
        let (mut c, mut link) = open_link(&w);
        for m in [&b"one"[..], b"two", &[b'x'; 40_000][..]] {
            c.send(m).unwrap();
        }
        let sent = c.take_outgoing();
        let mut plain = BytesMut::new();
        link.receive(&sent[..cut], &mut plain).unwrap();
        assert_eq!(link.has_partial(), ![24, 48].contains(&cut), "cut at {cut}");
        for chunk in sent[cut..].chunks(1000) {
            link.receive(chunk, &mut plain).unwrap();
        }
        assert_eq!(&plain[..], &want[..], "cut at {cut}");
        assert!(!link.has_partial(), "a drained link keeps no buffer");
        let mut out = BytesMut::new();
        link.seal(b"reply", &mut out).unwrap();
        c.receive(&out).unwrap();
        assert_eq!(&c.take_plaintext()[..], b"reply");
        assert_eq!(link.counts(), (1, 5));
    }
}

#[test]
fn a_link_carries_on_with_a_record_the_stream_had_started() {
    let w = World::new();
    for cut in 1..30 {
        let (mut c, mut r) = w.registry_link(None);
        pump(&mut c, &mut r);
        c.send(b"cut across the change").unwrap();
        let rec = c.take_outgoing();
        r.receive(&rec[..cut]).unwrap();
        let mut link = r.into_link().unwrap();
        let mut plain = BytesMut::new();
        link.receive(&rec[cut..], &mut plain).unwrap();
        assert_eq!(&plain[..], b"cut across the change", "cut at {cut}");
    }
    let (_, r) = w.registry_link(None);
    assert!(r.into_link().is_err(), "no link before the handshake");
}

#[test]
fn a_link_refuses_bad_lengths_before_buffering_and_replays() {
    let w = World::new();
    for prefix in [[0u8, 0, 0, 0], [0xff, 0xff, 0xff, 0xff]] {
        let (_, mut link) = open_link(&w);
        let mut plain = BytesMut::new();
        let err = link.receive(&prefix, &mut plain).unwrap_err();
        assert!(matches!(err, SecureError::BadLength { .. }), "{err}");
        assert!(!link.has_partial());
    }
    let (mut c, mut link) = open_link(&w);
    c.send(b"once").unwrap();
    let rec = c.take_outgoing();
    let mut plain = BytesMut::new();
    link.receive(&rec, &mut plain).unwrap();
    assert_eq!(link.receive(&rec, &mut plain), Err(SecureError::Open));
    assert_eq!(&plain[..], b"once", "nothing of the replay is shown");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Bytes from the network are data: whatever arrives after the handshake, in whatever
    /// pieces, an open link neither panics nor opens anything.
    #[test]
    fn arbitrary_bytes_never_panic_or_open_on_a_link(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
    ) {
        let w = World::new();
        let (_, mut link) = open_link(&w);
        let mut plain = BytesMut::new();
        for chunk in &chunks {
            if link.receive(chunk, &mut plain).is_err() {
                break;
            }
            prop_assert!(plain.is_empty());
        }
        prop_assert!(plain.is_empty());
    }

    #[test]
    fn any_altered_byte_fails_on_an_open_link(at in any::<usize>(), xor in 1u8.., len in 1usize..2000) {
        let w = World::new();
        let (mut c, mut link) = open_link(&w);
        c.send(&vec![b'x'; len]).unwrap();
        let mut sealed = c.take_outgoing().to_vec();
        let i = at % sealed.len();
        sealed[i] ^= xor;
        let mut plain = BytesMut::new();
        let res = link.receive(&sealed, &mut plain);
        prop_assert!(plain.is_empty());
        if i >= 4 {
            prop_assert!(res.is_err());
        }
    }
}
