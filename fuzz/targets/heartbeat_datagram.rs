//! `heartbeat_datagram`: [`Heartbeat::decode`] on arbitrary datagrams, and the
//! [`ReplayWindow`] against a plain model.
//!
//! Properties: decoding never panics; a datagram that decodes re-encodes to the same bytes; it
//! is not authentic under a key that did not sign it, and re-signing its fields with a key gives
//! a datagram that decodes and verifies under that key only. Then the same bytes, read as a
//! walk of heartbeat counters, go through a `ReplayWindow` and a model (the set of counters
//! seen and the highest one): the window accepts a counter exactly when it was never accepted
//! and is less than 64 below the highest accepted so far.

use std::collections::BTreeSet;

use p2pchat_protocol::{Heartbeat, HeartbeatKey, ReplayWindow, HEARTBEAT_LEN};

/// The target body.
pub fn run(data: &[u8]) {
    let key = HeartbeatKey::new(&[0x42; 32]);
    let other = HeartbeatKey::new(&[0x24; 32]);
    match Heartbeat::decode(data) {
        Ok(hb) => {
            assert_eq!(data.len(), HEARTBEAT_LEN);
            assert_eq!(&hb.encode()[..], data);
            // Authentic under at most one of two different keys.
            assert!(!(hb.is_authentic(&key) && hb.is_authentic(&other)));
            let signed = Heartbeat::sign(&key, hb.session, hb.counter, hb.sent_ms);
            let back = Heartbeat::decode(&signed.encode()).expect("a signed heartbeat decodes");
            assert_eq!(back, signed);
            assert!(back.is_authentic(&key));
            assert!(!back.is_authentic(&other));
        }
        Err(err) => assert!(err.offset <= HEARTBEAT_LEN.max(data.len())),
    }
    replay_window(data);
}

/// Each byte moves a counter: small steps either way (reordering within and around the
/// window), or a jump of up to 2^(b & 63) (far ahead, past the window), so both the bitmap
/// shifts and the "too old" edge are reached.
fn replay_window(data: &[u8]) {
    let mut window = ReplayWindow::default();
    let mut seen = BTreeSet::new();
    let mut highest: Option<u64> = None;
    let mut counter: u64 = 1 << 40;
    for &b in data {
        if b & 0x80 == 0 {
            // A step in -64..=63.
            counter = counter.wrapping_add(u64::from(b)).wrapping_sub(64);
        } else {
            counter = counter.saturating_add(1u64 << (b & 63));
        }
        let in_window = match highest {
            None => true,
            Some(h) => counter > h || h - counter < ReplayWindow::WIDTH,
        };
        let expected = in_window && !seen.contains(&counter);
        assert_eq!(window.accept(counter), expected, "counter {counter}");
        if expected {
            seen.insert(counter);
            highest = Some(highest.map_or(counter, |h| h.max(counter)));
        }
    }
}

/// Seeds: a signed heartbeat, one cut short, one too long, and one with another kind byte.
pub fn seeds() -> Vec<Vec<u8>> {
    let key = HeartbeatKey::new(&[0x42; 32]);
    let hb = Heartbeat::sign(&key, 0x0123_4567_89ab_cdef, 7, 1_700_000_000_000).encode();
    let mut long = hb.to_vec();
    long.push(0);
    let mut other = hb.to_vec();
    other[0] = 0x02;
    vec![hb.to_vec(), hb[..30].to_vec(), long, other]
}
