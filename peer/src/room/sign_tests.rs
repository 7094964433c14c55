//! Layer 4 checks with real keys and real registry-signed tickets.

use super::*;
use p2pchat_protocol::secure::Identity;

/// Unix seconds inside every fixture ticket's window.
const NOW: u64 = 1_700_000_000;

struct Fixture {
    registry: Identity,
    alice: RoomSigner,
    alice_ticket: Vec<u8>,
    mallory: RoomSigner,
    mallory_ticket: Vec<u8>,
}

fn ticket(registry: &Identity, name: &str, key: PublicKey, not_after: u64) -> Vec<u8> {
    Ticket {
        key_id: registry.public_key().fingerprint().key_id(),
        name: name.into(),
        key,
        not_before: NOW - 60,
        not_after,
    }
    .sign(registry)
}

fn fixture() -> Fixture {
    let registry = Identity::generate_from_os().unwrap();
    let alice = RoomSigner::new(Arc::new(Identity::generate_from_os().unwrap()));
    let mallory = RoomSigner::new(Arc::new(Identity::generate_from_os().unwrap()));
    let alice_ticket = ticket(&registry, "alice", alice.public_key(), NOW + 600);
    let mallory_ticket = ticket(&registry, "mallory", mallory.public_key(), NOW + 600);
    Fixture {
        registry,
        alice,
        alice_ticket,
        mallory,
        mallory_ticket,
    }
}

/// One message's fields.
#[derive(Clone)]
struct M {
    room: String,
    origin: String,
    seq: u64,
    sent_ms: u64,
    text: String,
}

fn m() -> M {
    M {
        room: "lab".into(),
        origin: "alice".into(),
        seq: 42,
        sent_ms: NOW * 1000,
        text: "hello room".into(),
    }
}

impl Fixture {
    fn key(&self) -> [u8; 32] {
        self.registry.public_key().0
    }

    fn check(&self, v: &mut Verifier, m: &M, auth: Option<&RoomAuth>) -> Result<(), Refusal> {
        v.check(
            self.key(),
            NOW,
            &m.room,
            &m.origin,
            m.seq,
            m.sent_ms,
            &m.text,
            auth,
        )
    }
}

fn sign(by: &RoomSigner, ticket: &[u8], m: &M) -> RoomAuth {
    by.sign(ticket, &m.room, &m.origin, m.seq, m.sent_ms, &m.text)
}

#[test]
fn a_message_signed_by_its_origin_passes_and_any_altered_field_fails() {
    let f = fixture();
    let good = m();
    let auth = sign(&f.alice, &f.alice_ticket, &good);
    let mut v = Verifier::default();
    assert_eq!(f.check(&mut v, &good, Some(&auth)), Ok(()));
    // Again, from the ticket cache.
    assert_eq!(f.check(&mut v, &good, Some(&auth)), Ok(()));

    let mut altered = Vec::new();
    let mut t = good.clone();
    t.text = "hellp room".into();
    altered.push(("text", t));
    let mut t = good.clone();
    t.seq += 1;
    altered.push(("seq", t));
    let mut t = good.clone();
    t.sent_ms += 1;
    altered.push(("sent_ms", t));
    let mut t = good.clone();
    t.room = "lac".into();
    altered.push(("room", t));
    for (what, t) in &altered {
        assert_eq!(
            f.check(&mut v, t, Some(&auth)),
            Err(Refusal::BadSignature),
            "{what}"
        );
    }
    // Another origin: alice's ticket does not name it.
    let mut t = good.clone();
    t.origin = "alicf".into();
    assert_eq!(
        f.check(&mut Verifier::default(), &t, Some(&auth)),
        Err(Refusal::OtherName("alice".into()))
    );
    // Any flipped bit of the signature, and of the ticket.
    for i in 0..auth.sig.len() {
        let mut bad = auth.clone();
        bad.sig[i] ^= 0x01;
        assert_eq!(
            f.check(&mut v, &good, Some(&bad)),
            Err(Refusal::BadSignature),
            "sig byte {i}"
        );
    }
    for i in 0..auth.ticket.len() {
        let mut bad = auth.clone();
        bad.ticket[i] ^= 0x01;
        assert!(
            f.check(&mut Verifier::default(), &good, Some(&bad))
                .is_err(),
            "ticket byte {i}"
        );
    }
    // The untouched message still passes after all that.
    assert_eq!(f.check(&mut v, &good, Some(&auth)), Ok(()));
}

#[test]
fn a_member_cannot_sign_for_another() {
    let f = fixture();
    let claim = m(); // origin alice
    let mut v = Verifier::default();
    // Mallory signs "alice's" message with her own (valid) ticket.
    let own = sign(&f.mallory, &f.mallory_ticket, &claim);
    assert_eq!(
        f.check(&mut v, &claim, Some(&own)),
        Err(Refusal::OtherName("mallory".into()))
    );
    // With alice's ticket (public: every message of alice carries it) and her own key.
    let stolen = sign(&f.mallory, &f.alice_ticket, &claim);
    assert_eq!(
        f.check(&mut v, &claim, Some(&stolen)),
        Err(Refusal::BadSignature)
    );
    // And once alice's ticket is cached (a genuine message passed), still not.
    let genuine = sign(&f.alice, &f.alice_ticket, &claim);
    assert_eq!(f.check(&mut v, &claim, Some(&genuine)), Ok(()));
    assert_eq!(
        f.check(&mut v, &claim, Some(&stolen)),
        Err(Refusal::BadSignature)
    );
    // Unsigned.
    assert_eq!(f.check(&mut v, &claim, None), Err(Refusal::Unsigned));
    // A ticket alice signed herself, claiming the registry's key id.
    let self_made = Ticket {
        key_id: f.registry.public_key().fingerprint().key_id(),
        name: "alice".into(),
        key: f.mallory.public_key(),
        not_before: NOW - 60,
        not_after: NOW + 600,
    }
    .sign(&Identity::generate_from_os().unwrap());
    let forged = sign(&f.mallory, &self_made, &claim);
    assert_eq!(
        f.check(&mut Verifier::default(), &claim, Some(&forged)),
        Err(Refusal::Ticket(TicketError::BadSignature))
    );
}

#[test]
fn an_expired_ticket_is_refused_even_once_cached() {
    let f = fixture();
    let short = ticket(&f.registry, "alice", f.alice.public_key(), NOW + 10);
    let msg = m();
    let auth = sign(&f.alice, &short, &msg);
    let mut v = Verifier::default();
    assert_eq!(f.check(&mut v, &msg, Some(&auth)), Ok(()));
    let later = |v: &mut Verifier, at: u64| {
        v.check(
            f.key(),
            at,
            &msg.room,
            &msg.origin,
            msg.seq,
            msg.sent_ms,
            &msg.text,
            Some(&auth),
        )
    };
    assert_eq!(later(&mut v, NOW + 9), Ok(()));
    // Cached, and expired now.
    assert_eq!(
        later(&mut v, NOW + 10),
        Err(Refusal::Ticket(TicketError::Expired {
            not_after: NOW + 10,
            now: NOW + 10
        }))
    );
    // Not cached, and expired.
    assert!(matches!(
        later(&mut Verifier::default(), NOW + 11),
        Err(Refusal::Ticket(TicketError::Expired { .. }))
    ));
    // Not valid yet.
    assert!(matches!(
        later(&mut Verifier::default(), NOW - 61),
        Err(Refusal::Ticket(TicketError::NotYetValid { .. }))
    ));
}

#[test]
fn a_ticket_from_another_registry_is_refused() {
    let f = fixture();
    let msg = m();
    let auth = sign(&f.alice, &f.alice_ticket, &msg);
    let mut v = Verifier::default();
    assert_eq!(f.check(&mut v, &msg, Some(&auth)), Ok(()));
    let other = Identity::generate_from_os().unwrap().public_key().0;
    let r = v.check(
        other,
        NOW,
        &msg.room,
        &msg.origin,
        msg.seq,
        msg.sent_ms,
        &msg.text,
        Some(&auth),
    );
    assert_eq!(r, Err(Refusal::Ticket(TicketError::WrongRegistry)));
}

#[test]
fn the_ticket_cache_stays_bounded() {
    let f = fixture();
    let mut v = Verifier::default();
    for i in 0..MAX_TICKETS + 10 {
        let name = format!("u{i}");
        let t = ticket(&f.registry, &name, f.alice.public_key(), NOW + 600);
        let mut msg = m();
        msg.origin = name;
        let auth = sign(&f.alice, &t, &msg);
        assert_eq!(f.check(&mut v, &msg, Some(&auth)), Ok(()));
        assert!(v.tickets.len() <= MAX_TICKETS);
    }
}
