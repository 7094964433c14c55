//! The UDP heartbeat datagram: one datagram is one message, no framing.
//!
//! ```text
//! offset  size  field
//!      0     1  kind = 0x01 (heartbeat)
//!      1     8  session id (u64 BE)
//!      9     8  counter (u64 BE), strictly increasing per session
//!     17     8  sender's wall clock, unix ms (u64 BE), informational
//!     25    32  HMAC-SHA256(heartbeat key, bytes 0..25)
//! ```
//! The registry checks, in order: length, session, tag, counter (anti-replay window), and never
//! answers a datagram that fails any check. Heartbeats are keyed by session, not by source
//! address, so one socket can carry many peers' heartbeats (NAT rebinding is harmless).

use ring::hmac;

use crate::error::{DecodeError, DecodeErrorKind};
use crate::wire::Reader;

/// Kind byte of a heartbeat datagram.
pub const HEARTBEAT_KIND: u8 = 0x01;
/// Exact length of a heartbeat datagram.
pub const HEARTBEAT_LEN: usize = 57;
const SIGNED_LEN: usize = 25;

/// A heartbeat datagram, decoded but not yet authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Session the heartbeat claims.
    pub session: u64,
    /// Per-session counter.
    pub counter: u64,
    /// Sender's wall clock (unix ms).
    pub sent_ms: u64,
    /// HMAC-SHA256 tag over the first 25 bytes.
    pub tag: [u8; 32],
}

/// A per-session heartbeat key.
pub struct HeartbeatKey(hmac::Key);

impl HeartbeatKey {
    /// Builds the key from the 32 bytes the registry handed out at login.
    pub fn new(bytes: &[u8; 32]) -> HeartbeatKey {
        HeartbeatKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }
}

impl std::fmt::Debug for HeartbeatKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeartbeatKey(..)")
    }
}

impl Heartbeat {
    /// Builds and signs a heartbeat.
    pub fn sign(key: &HeartbeatKey, session: u64, counter: u64, sent_ms: u64) -> Heartbeat {
        let mut hb = Heartbeat {
            session,
            counter,
            sent_ms,
            tag: [0; 32],
        };
        let signed = hmac::sign(&key.0, &hb.signed_bytes());
        hb.tag.copy_from_slice(signed.as_ref());
        hb
    }

    fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut out = [0u8; SIGNED_LEN];
        out[0] = HEARTBEAT_KIND;
        out[1..9].copy_from_slice(&self.session.to_be_bytes());
        out[9..17].copy_from_slice(&self.counter.to_be_bytes());
        out[17..25].copy_from_slice(&self.sent_ms.to_be_bytes());
        out
    }

    /// Whether the tag is right for `key` (constant time).
    pub fn is_authentic(&self, key: &HeartbeatKey) -> bool {
        hmac::verify(&key.0, &self.signed_bytes(), &self.tag).is_ok()
    }

    /// The datagram bytes.
    pub fn encode(&self) -> [u8; HEARTBEAT_LEN] {
        let mut out = [0u8; HEARTBEAT_LEN];
        out[..SIGNED_LEN].copy_from_slice(&self.signed_bytes());
        out[SIGNED_LEN..].copy_from_slice(&self.tag);
        out
    }

    /// Decodes a datagram. Checks only its shape; authenticity is [`Heartbeat::is_authentic`].
    pub fn decode(datagram: &[u8]) -> Result<Heartbeat, DecodeError> {
        if datagram.len() > HEARTBEAT_LEN {
            return Err(DecodeError::new(
                HEARTBEAT_LEN,
                DecodeErrorKind::TrailingBytes,
            ));
        }
        let mut r = Reader::new(datagram);
        let kind = r.u8()?;
        if kind != HEARTBEAT_KIND {
            return Err(DecodeError::new(0, DecodeErrorKind::UnknownKind(kind)));
        }
        let hb = Heartbeat {
            session: r.u64()?,
            counter: r.u64()?,
            sent_ms: r.u64()?,
            tag: r.array::<32>()?,
        };
        r.finish()?;
        Ok(hb)
    }
}

/// Sliding anti-replay window over heartbeat counters (the IPsec/DTLS scheme): accepts a counter
/// once, accepts reordering within the last 64 counters, rejects everything older.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit i set: counter `highest - i` was seen.
    seen: u64,
    started: bool,
}

impl ReplayWindow {
    /// Width of the window in counters.
    pub const WIDTH: u64 = 64;

    /// Records `counter` and says whether it is fresh. A replayed or too-old counter returns
    /// false and changes nothing.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.started {
            self.started = true;
            self.highest = counter;
            self.seen = 1;
            return true;
        }
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= Self::WIDTH {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = counter;
            return true;
        }
        let age = self.highest - counter;
        if age >= Self::WIDTH {
            return false;
        }
        let bit = 1u64 << age;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_encode_decode_verify() {
        let key = HeartbeatKey::new(&[7; 32]);
        let hb = Heartbeat::sign(&key, 0xdead_beef, 3, 1_700_000_000_000);
        let bytes = hb.encode();
        assert_eq!(bytes.len(), HEARTBEAT_LEN);
        assert_eq!(bytes[0], HEARTBEAT_KIND);
        let back = Heartbeat::decode(&bytes).unwrap();
        assert_eq!(back, hb);
        assert!(back.is_authentic(&key));
        assert!(!back.is_authentic(&HeartbeatKey::new(&[8; 32])));
    }

    #[test]
    fn any_flipped_bit_fails_authentication() {
        let key = HeartbeatKey::new(&[1; 32]);
        let bytes = Heartbeat::sign(&key, 9, 1, 2).encode();
        for i in 0..HEARTBEAT_LEN {
            let mut forged = bytes;
            forged[i] ^= 0x10;
            match Heartbeat::decode(&forged) {
                Ok(hb) => assert!(!hb.is_authentic(&key), "byte {i}"),
                Err(e) => assert_eq!(e.kind, DecodeErrorKind::UnknownKind(0x11)),
            }
        }
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        let key = HeartbeatKey::new(&[1; 32]);
        let bytes = Heartbeat::sign(&key, 9, 1, 2).encode();
        assert_eq!(
            Heartbeat::decode(&bytes[..56]).unwrap_err().kind,
            DecodeErrorKind::Truncated
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            Heartbeat::decode(&long).unwrap_err().kind,
            DecodeErrorKind::TrailingBytes
        );
        assert!(Heartbeat::decode(&[]).is_err());
    }

    #[test]
    fn replay_window_accepts_each_counter_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(10));
        assert!(!w.accept(10));
        assert!(w.accept(12));
        assert!(w.accept(11), "reordered within the window");
        assert!(!w.accept(11));
        assert!(w.accept(100));
        assert!(!w.accept(100 - 64), "older than the window");
        assert!(w.accept(100 - 63));
        assert!(w.accept(1000));
        assert!(!w.accept(999 - 63));
    }
}
