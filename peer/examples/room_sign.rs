//! The cost of signed room messages (docs/security.md, layer 4), for callgrind: `MODE N` does N
//! of one operation on a 100-byte message, so the difference between two runs (N=1 and N=201)
//! divided by 200 is the instructions of one, without the set-up (key generation, ticket).
//!
//! Modes: `sign` (what the origin does per message), `verify` (a receiver, the origin's ticket
//! already verified: one Ed25519 verification), `verify-first` (a receiver meeting the origin's
//! ticket for the first time: the registry's signature on the ticket too), `bytes` (prints the
//! bytes a signature adds to a room-message frame).
//!
//! ```text
//! cargo build -p p2pchat-peer --example room_sign --locked
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/debug/examples/room_sign sign 1
//! ```

use std::sync::Arc;

use p2pchat_peer::room::sign::Verifier;
use p2pchat_peer::RoomSigner;
use p2pchat_protocol::secure::{Identity, Ticket};
use p2pchat_protocol::{Frame, Msg};

const NOW: u64 = 1_700_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "sign".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);

    let registry = Identity::generate_from_os().expect("key");
    let alice = Identity::generate_from_os().expect("key");
    let ticket = Ticket {
        key_id: registry.public_key().fingerprint().key_id(),
        name: "alice".into(),
        key: alice.public_key(),
        not_before: NOW - 60,
        not_after: NOW + 600,
    }
    .sign(&registry);
    let signer = RoomSigner::new(Arc::new(alice));
    let text = "x".repeat(100);
    let sent_ms = NOW * 1000;
    let key = registry.public_key().0;

    let mut ok = 0u64;
    match mode.as_str() {
        "sign" => {
            for seq in 0..n {
                let a = signer.sign(&ticket, "lobby", "alice", seq, sent_ms, &text);
                ok += u64::from(a.sig[0] & 1);
            }
        }
        "verify" | "verify-first" => {
            // One signed message, checked n times (the verifier keeps no dedup state), so the
            // difference between two runs is verification only.
            let a = signer.sign(&ticket, "lobby", "alice", 7, sent_ms, &text);
            let mut v = Verifier::default();
            for _ in 0..n {
                if mode == "verify-first" {
                    v = Verifier::default();
                }
                let r = v.check(key, NOW, "lobby", "alice", 7, sent_ms, &text, Some(&a));
                ok += u64::from(r.is_ok());
            }
        }
        "bytes" => {
            let frame = |auth| {
                Frame::event(Msg::RoomMessage {
                    room: "lobby".into(),
                    origin: "alice".into(),
                    seq: 1,
                    hops: 32,
                    sent_ms,
                    text: text.clone(),
                    auth,
                })
                .to_bytes()
                .len()
            };
            let plain = frame(None);
            let signed = frame(Some(
                signer.sign(&ticket, "lobby", "alice", 1, sent_ms, &text),
            ));
            println!(
                "room-message, 100-byte text, origin 'alice': {plain} bytes unsigned, {signed} \
                 signed (+{}; ticket {} bytes)",
                signed - plain,
                ticket.len()
            );
            return;
        }
        other => panic!("unknown mode {other}"),
    }
    println!("{mode} x{n}: {ok}");
}
