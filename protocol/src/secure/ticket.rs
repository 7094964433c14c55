//! Identity tickets: the registry's signed statement "user NAME holds key K from T0 to T1".
//!
//! ```text
//! version u8 (1) | key id [8] | name str | key [32] | not_before u64 | not_after u64 | sig [64]
//! ```
//! Times are Unix seconds. The key id is the first 8 bytes of the signing registry key's
//! fingerprint, so a peer holding several registry keys (during a rotation) knows which one to
//! check, and a ticket from another registry is refused by name before any signature work. The
//! signature is the registry's Ed25519 signature of [`TICKET_CONTEXT`] followed by every byte
//! before it.

use bytes::BufMut;

use crate::error::DecodeErrorKind;
use crate::secure::identity::{Identity, PublicKey, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::wire::{put_str, Reader};

/// The ticket layout version.
pub const TICKET_VERSION: u8 = 1;

/// Domain separation: what a registry signature over a ticket is for. Nothing else the
/// registry signs starts with these bytes.
const TICKET_CONTEXT: &[u8] = b"p2pchat v2 identity ticket\0";

/// The statement a ticket makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The signing registry key's id ([`Fingerprint::key_id`](super::Fingerprint::key_id)).
    pub key_id: [u8; 8],
    /// The username.
    pub name: String,
    /// The user's long-term public key.
    pub key: PublicKey,
    /// Valid from (Unix seconds, inclusive).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
}

/// Why a ticket is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// It does not parse.
    #[error("malformed ticket: {0}")]
    Malformed(crate::DecodeError),
    /// It names another registry key.
    #[error("signed by another registry key")]
    WrongRegistry,
    /// The registry's signature does not verify.
    #[error("the registry's signature does not verify")]
    BadSignature,
    /// Not valid yet (or the clocks disagree).
    #[error("not valid until {not_before} (now {now})")]
    NotYetValid {
        /// Start of validity.
        not_before: u64,
        /// The checker's clock.
        now: u64,
    },
    /// Expired.
    #[error("expired at {not_after} (now {now})")]
    Expired {
        /// End of validity.
        not_after: u64,
        /// The checker's clock.
        now: u64,
    },
}

impl Ticket {
    fn put_body(&self, out: &mut Vec<u8>) {
        out.put_u8(TICKET_VERSION);
        out.put_slice(&self.key_id);
        put_str(out, &self.name);
        out.put_slice(&self.key.0);
        out.put_u64(self.not_before);
        out.put_u64(self.not_after);
    }

    /// The signed ticket bytes. `registry` must be the key `key_id` names.
    pub fn sign(&self, registry: &Identity) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + self.name.len() + SIGNATURE_LEN);
        self.put_body(&mut body);
        let sig = registry.sign(&signed_message(&body));
        body.extend_from_slice(&sig);
        body
    }

    /// Parses a signed ticket without checking it (for display and for tests).
    pub fn decode(bytes: &[u8]) -> Result<(Ticket, usize), TicketError> {
        let mut r = Reader::new(bytes);
        let parsed = (|| {
            let at = r.offset();
            if r.u8()? != TICKET_VERSION {
                return Err(crate::DecodeError::new(
                    at,
                    DecodeErrorKind::InvalidValue("ticket version"),
                ));
            }
            let key_id = r.array::<8>()?;
            let name = r.string()?;
            let key = PublicKey(r.array::<PUBLIC_KEY_LEN>()?);
            let not_before = r.u64()?;
            let not_after = r.u64()?;
            let body_len = r.offset();
            r.take(SIGNATURE_LEN)?;
            r.finish()?;
            Ok((
                Ticket {
                    key_id,
                    name,
                    key,
                    not_before,
                    not_after,
                },
                body_len,
            ))
        })();
        parsed.map_err(TicketError::Malformed)
    }

    /// Parses and checks a signed ticket: signed by `registry`, valid at `now` (Unix seconds).
    pub fn verify(bytes: &[u8], registry: &PublicKey, now: u64) -> Result<Ticket, TicketError> {
        let (ticket, body_len) = Ticket::decode(bytes)?;
        if ticket.key_id != registry.fingerprint().key_id() {
            return Err(TicketError::WrongRegistry);
        }
        let (body, sig) = bytes.split_at(body_len);
        if !registry.verify(&signed_message(body), sig) {
            return Err(TicketError::BadSignature);
        }
        if now < ticket.not_before {
            return Err(TicketError::NotYetValid {
                not_before: ticket.not_before,
                now,
            });
        }
        if now >= ticket.not_after {
            return Err(TicketError::Expired {
                not_after: ticket.not_after,
                now,
            });
        }
        Ok(ticket)
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(TICKET_CONTEXT.len() + body.len());
    msg.extend_from_slice(TICKET_CONTEXT);
    msg.extend_from_slice(body);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn fixture() -> (Identity, Identity, Ticket) {
        let rng = SystemRandom::new();
        let registry = Identity::generate(&rng).unwrap();
        let alice = Identity::generate(&rng).unwrap();
        let ticket = Ticket {
            key_id: registry.public_key().fingerprint().key_id(),
            name: "alice".into(),
            key: alice.public_key(),
            not_before: 1000,
            not_after: 2000,
        };
        (registry, alice, ticket)
    }

    #[test]
    fn a_signed_ticket_verifies_inside_its_window_only() {
        let (registry, _, ticket) = fixture();
        let bytes = ticket.sign(&registry);
        let rk = registry.public_key();
        assert_eq!(Ticket::verify(&bytes, &rk, 1000).unwrap(), ticket);
        assert_eq!(Ticket::verify(&bytes, &rk, 1999).unwrap(), ticket);
        assert_eq!(
            Ticket::verify(&bytes, &rk, 2000),
            Err(TicketError::Expired {
                not_after: 2000,
                now: 2000
            })
        );
        assert_eq!(
            Ticket::verify(&bytes, &rk, 999),
            Err(TicketError::NotYetValid {
                not_before: 1000,
                now: 999
            })
        );
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let (registry, _, ticket) = fixture();
        let bytes = ticket.sign(&registry);
        let rk = registry.public_key();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(Ticket::verify(&bad, &rk, 1500).is_err(), "byte {i}");
        }
        assert!(Ticket::verify(&bytes[..bytes.len() - 1], &rk, 1500).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Ticket::verify(&longer, &rk, 1500).is_err());
    }

    #[test]
    fn a_ticket_signed_by_anyone_else_is_refused() {
        let (registry, alice, ticket) = fixture();
        // Alice signs a ticket for herself, claiming the registry's key id.
        let forged = ticket.sign(&alice);
        assert_eq!(
            Ticket::verify(&forged, &registry.public_key(), 1500),
            Err(TicketError::BadSignature)
        );
        // Another registry's honest ticket names another key id.
        let other = Identity::generate(&SystemRandom::new()).unwrap();
        let mut theirs = ticket.clone();
        theirs.key_id = other.public_key().fingerprint().key_id();
        assert_eq!(
            Ticket::verify(&theirs.sign(&other), &registry.public_key(), 1500),
            Err(TicketError::WrongRegistry)
        );
    }
}
