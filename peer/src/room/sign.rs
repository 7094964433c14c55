//! Signed room messages (docs/security.md, layer 4): a room message carries its origin's
//! identity ticket and the origin's Ed25519 signature over what the origin wrote, so a member
//! that relays it cannot forge or alter it.
//!
//! The signature covers [`ROOM_CONTEXT`] then `room`, `origin`, `seq`, `sent_ms` and `text`
//! (strings with a `u32` length prefix, numbers big-endian), never `hops`, which every relay
//! lowers. The context keeps a room signature from ever being taken for a handshake or ticket
//! signature made with the same key.
//!
//! A receiver that holds a ticket of its own (so knows the registry key) requires every new
//! message to be signed ([`Verifier::check`]); a node without one (the simulator, fuzz targets,
//! synthetic load peers) can check nothing and takes messages as they come.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use p2pchat_protocol::secure::{Identity, PublicKey, Ticket, TicketError, SIGNATURE_LEN};
use p2pchat_protocol::RoomAuth;

/// Domain separation for room-message signatures.
pub const ROOM_CONTEXT: &[u8] = b"p2pchat v2 room message\0";

/// Verified tickets kept, one per origin (a full cache is emptied: a ticket is re-checked the
/// next time its origin speaks).
pub const MAX_TICKETS: usize = 4096;

/// The bytes an origin signs for a room message.
pub fn signed_bytes(room: &str, origin: &str, seq: u64, sent_ms: u64, text: &str) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(ROOM_CONTEXT.len() + 12 + room.len() + origin.len() + 16 + text.len());
    out.extend_from_slice(ROOM_CONTEXT);
    for s in [room, origin] {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&sent_ms.to_be_bytes());
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Our identity key pair, which signs our room messages ([`Config::identity`]). Compared by
/// public key, and never printed beyond its fingerprint.
///
/// [`Config::identity`]: crate::Config::identity
#[derive(Clone)]
pub struct RoomSigner(Arc<Identity>);

impl RoomSigner {
    /// Signs with `identity`.
    pub fn new(identity: Arc<Identity>) -> RoomSigner {
        RoomSigner(identity)
    }

    /// The proof for a message of ours, with our current `ticket`.
    pub fn sign(
        &self,
        ticket: &[u8],
        room: &str,
        origin: &str,
        seq: u64,
        sent_ms: u64,
        text: &str,
    ) -> RoomAuth {
        RoomAuth {
            ticket: ticket.to_vec(),
            sig: self.0.sign(&signed_bytes(room, origin, seq, sent_ms, text)),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }
}

impl PartialEq for RoomSigner {
    fn eq(&self, other: &RoomSigner) -> bool {
        self.0.public_key() == other.0.public_key()
    }
}

impl Eq for RoomSigner {}

impl fmt::Debug for RoomSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomSigner({:?})", self.0)
    }
}

/// Why a room message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No ticket and signature.
    #[error("unsigned")]
    Unsigned,
    /// The ticket is not the registry's, or not valid now.
    #[error("bad ticket: {0}")]
    Ticket(TicketError),
    /// The ticket is someone else's.
    #[error("the ticket is {0}'s")]
    OtherName(String),
    /// The signature does not verify with the ticket's key.
    #[error("the signature does not verify")]
    BadSignature,
}

/// Checks room messages against the registry key; remembers verified tickets per origin.
#[derive(Debug, Default)]
pub struct Verifier {
    registry: Option<[u8; 32]>,
    tickets: HashMap<String, (Vec<u8>, Ticket)>,
}

impl Verifier {
    /// Whether `auth` proves that `origin` wrote this message: a ticket signed by `registry`,
    /// naming `origin`, valid at `now_secs` (Unix), and `origin`'s signature.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        registry: [u8; 32],
        now_secs: u64,
        room: &str,
        origin: &str,
        seq: u64,
        sent_ms: u64,
        text: &str,
        auth: Option<&RoomAuth>,
    ) -> Result<(), Refusal> {
        let auth = auth.ok_or(Refusal::Unsigned)?;
        if self.registry != Some(registry) {
            // Another registry key (a rotation): nothing verified under the old one counts.
            self.tickets.clear();
            self.registry = Some(registry);
        }
        let ticket = match self.tickets.get(origin) {
            Some((bytes, t)) if *bytes == auth.ticket => {
                // Verified before; its window still has to hold now.
                if now_secs < t.not_before {
                    return Err(Refusal::Ticket(TicketError::NotYetValid {
                        not_before: t.not_before,
                        now: now_secs,
                    }));
                }
                if now_secs >= t.not_after {
                    return Err(Refusal::Ticket(TicketError::Expired {
                        not_after: t.not_after,
                        now: now_secs,
                    }));
                }
                t
            }
            _ => {
                let t = Ticket::verify(&auth.ticket, &PublicKey(registry), now_secs)
                    .map_err(Refusal::Ticket)?;
                if t.name != origin {
                    return Err(Refusal::OtherName(t.name));
                }
                if self.tickets.len() >= MAX_TICKETS {
                    self.tickets.clear();
                }
                self.tickets
                    .insert(origin.to_string(), (auth.ticket.clone(), t));
                &self.tickets[origin].1
            }
        };
        debug_assert_eq!(auth.sig.len(), SIGNATURE_LEN);
        if !ticket
            .key
            .verify(&signed_bytes(room, origin, seq, sent_ms, text), &auth.sig)
        {
            return Err(Refusal::BadSignature);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "sign_tests.rs"]
mod tests;
