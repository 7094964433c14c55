//! What secure links cost: handshake CPU (each side) and bytes, and CPU and bytes per chat
//! message with and without sealing. `cargo run -p p2pchat-protocol --example secure_cost
//! --release [N]` (figures in docs/performance.md, "Secure links").
//!
//! `secure_cost N handshake|registry|plain|sealed` does only that work N times (N messages
//! for plain and sealed), for instruction counts under callgrind: the difference between two
//! N is the cost of the extra operations, free of start-up.

// A measuring tool: it reads the clock by design.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2pchat_protocol::secure::{Credential, Expect, Identity, SecureStream};
use p2pchat_protocol::{Frame, FrameDecoder, Msg, Role};
use ring::rand::SystemRandom;

fn per_op(total: Duration, n: usize) -> String {
    let ns = total.as_nanos() as f64 / n as f64;
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let registry = Arc::new(Identity::generate(&SystemRandom::new()).unwrap());
    if let Some(mode) = std::env::args().nth(2) {
        only(&mode, n, &registry);
        return;
    }

    // Handshakes: the client's work and the registry's work timed apart.
    let (mut client_t, mut registry_t) = (Duration::ZERO, Duration::ZERO);
    let mut bytes = [0usize; 3];
    for _ in 0..n {
        let t = Instant::now();
        let mut c = SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(None))
            .unwrap();
        let m1 = c.take_outgoing();
        client_t += t.elapsed();
        let t = Instant::now();
        let mut r = SecureStream::responder(
            Role::Client,
            Credential::Key(Arc::clone(&registry)),
            Expect::Anonymous,
        );
        r.receive(&m1).unwrap();
        let m2 = r.take_outgoing();
        registry_t += t.elapsed();
        let t = Instant::now();
        c.receive(&m2).unwrap();
        let m3 = c.take_outgoing();
        client_t += t.elapsed();
        let t = Instant::now();
        r.receive(&m3).unwrap();
        registry_t += t.elapsed();
        assert!(c.is_open() && r.is_open());
        bytes = [m1.len(), m2.len(), m3.len()];
    }
    println!(
        "handshake (registry link, n={n}): registry side {} , client side {}, bytes {} + {} + {}",
        per_op(registry_t, n),
        per_op(client_t, n),
        bytes[0],
        bytes[1],
        bytes[2]
    );

    // One chat message of 100 characters: encode + decode, plain and sealed.
    let frame = Frame::event(Msg::ChatMessage {
        text: "x".repeat(100),
    });
    let m = n * 50;
    let mut dec = FrameDecoder::new(1 << 16);
    let t = Instant::now();
    let mut plain_len = 0;
    for _ in 0..m {
        let b = frame.to_bytes();
        plain_len = b.len();
        dec.push(&b);
        assert!(dec.next_frame().unwrap().is_some());
    }
    let plain_t = t.elapsed();

    let mut c =
        SecureStream::initiator(Role::Peer, Credential::Anonymous, Expect::Key(None)).unwrap();
    let mut r = SecureStream::responder(
        Role::Peer,
        Credential::Key(Arc::clone(&registry)),
        Expect::Anonymous,
    );
    r.receive(&c.take_outgoing()).unwrap();
    c.receive(&r.take_outgoing()).unwrap();
    r.receive(&c.take_outgoing()).unwrap();
    let mut dec = FrameDecoder::new(1 << 16);
    let t = Instant::now();
    let mut sealed_len = 0;
    let mut wire = BytesMut::new();
    for _ in 0..m {
        let b = frame.to_bytes();
        c.send(&b).unwrap();
        wire = c.take_outgoing();
        sealed_len = wire.len();
        r.receive(&wire).unwrap();
        dec.push(&r.take_plaintext());
        assert!(dec.next_frame().unwrap().is_some());
    }
    let sealed_t = t.elapsed();
    drop(wire);
    println!(
        "chat message, 100 characters (n={m}): plain {} and {plain_len} bytes; sealed {} and \
         {sealed_len} bytes ({:.1}x CPU, +{} bytes)",
        per_op(plain_t, m),
        per_op(sealed_t, m),
        sealed_t.as_secs_f64() / plain_t.as_secs_f64(),
        sealed_len - plain_len
    );
}

/// One kind of work, `n` times, no clock: for callgrind.
fn only(mode: &str, n: usize, registry: &Arc<Identity>) {
    let frame = Frame::event(Msg::ChatMessage {
        text: "x".repeat(100),
    });
    let link = || {
        let mut c = SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(None))
            .unwrap();
        let mut r = SecureStream::responder(
            Role::Client,
            Credential::Key(Arc::clone(registry)),
            Expect::Anonymous,
        );
        r.receive(&c.take_outgoing()).unwrap();
        c.receive(&r.take_outgoing()).unwrap();
        r.receive(&c.take_outgoing()).unwrap();
        (c, r)
    };
    match mode {
        "handshake" => {
            for _ in 0..n {
                let (c, r) = link();
                assert!(c.is_open() && r.is_open());
            }
        }
        "registry" => {
            // The registry answering N hellos, plus making them: subtract `initiator`.
            let mut clients: Vec<_> = (0..n)
                .map(|_| {
                    SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(None))
                        .unwrap()
                })
                .collect();
            let hellos: Vec<_> = clients.iter_mut().map(|c| c.take_outgoing()).collect();
            for h in hellos {
                let mut r = SecureStream::responder(
                    Role::Client,
                    Credential::Key(Arc::clone(registry)),
                    Expect::Anonymous,
                );
                r.receive(&h).unwrap();
                assert!(!r.take_outgoing().is_empty());
            }
        }
        "peer" => {
            // Two peers with tickets: each signs once and checks two signatures.
            let id = |_| Arc::new(Identity::generate_from_os().unwrap());
            let (a, b) = (id(0), id(1));
            let ticket = |who: &Arc<Identity>, name: &str| {
                p2pchat_protocol::secure::Ticket {
                    key_id: registry.public_key().fingerprint().key_id(),
                    name: name.into(),
                    key: who.public_key(),
                    not_before: 0,
                    not_after: u64::MAX,
                }
                .sign(registry)
            };
            let (ta, tb) = (ticket(&a, "alice"), ticket(&b, "bob"));
            let expect = || Expect::Ticket {
                registry: registry.public_key(),
                now: 1,
            };
            for _ in 0..n {
                let mut c = SecureStream::initiator(
                    Role::Peer,
                    Credential::Ticket {
                        identity: Arc::clone(&a),
                        ticket: ta.clone(),
                    },
                    expect(),
                )
                .unwrap();
                let mut r = SecureStream::responder(
                    Role::Peer,
                    Credential::Ticket {
                        identity: Arc::clone(&b),
                        ticket: tb.clone(),
                    },
                    expect(),
                );
                r.receive(&c.take_outgoing()).unwrap();
                c.receive(&r.take_outgoing()).unwrap();
                r.receive(&c.take_outgoing()).unwrap();
                assert!(c.is_open() && r.is_open());
            }
        }
        "initiator" => {
            for _ in 0..n {
                let mut c =
                    SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(None))
                        .unwrap();
                assert!(!c.take_outgoing().is_empty());
            }
        }
        "plain" => {
            let mut dec = FrameDecoder::new(1 << 16);
            for _ in 0..n {
                dec.push(&frame.to_bytes());
                assert!(dec.next_frame().unwrap().is_some());
            }
        }
        "sealed" => {
            let (mut c, mut r) = link();
            let mut dec = FrameDecoder::new(1 << 16);
            for _ in 0..n {
                c.send(&frame.to_bytes()).unwrap();
                r.receive(&c.take_outgoing()).unwrap();
                dec.push(&r.take_plaintext());
                assert!(dec.next_frame().unwrap().is_some());
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
