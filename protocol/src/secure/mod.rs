//! Secure links: a handshake that agrees keys and proves identities, then a channel that seals
//! every byte of the stream. Sans-IO like the rest of this crate: bytes in, bytes out.
//!
//! # Shape
//!
//! The handshake follows the message pattern of Noise XX (ephemeral X25519 keys both ways,
//! every message hashed into a transcript, identities sent encrypted) but proves identities
//! with Ed25519 signatures over the transcript hash, as TLS 1.3's CertificateVerify does,
//! rather than with static Diffie-Hellman keys: a peer's identity is a registry-signed
//! [`Ticket`] naming an Ed25519 key, and the registry's own identity is a bare Ed25519 key.
//!
//! ```text
//!  initiator                                         responder
//!  hello v2 {ticket field = suite, e_I}      ──▶                      (message 1, clear)
//!                                            ◀──  0x50 e_R, seal_hs_r2i(auth_R)   (message 2)
//!  0x51 seal_hs_i2r(auth_I)                  ──▶                                  (message 3)
//!  0x52 sealed records                      ◀──▶  0x52 sealed records
//! ```
//!
//! `auth` is "who I am" (nothing, a bare key, or a ticket) and a signature over the
//! transcript hash up to that point. Message 1 is an ordinary `hello` frame (version
//! [`VERSION`]), so a registry or peer of another version answers it with its usual clear
//! `error 402`, and a new side answers an old side's `hello` the same way: versions refuse each
//! other with a message, never by falling back to clear text.
//!
//! After the handshake the stream carries records: `len u32 | 0x52 | ciphertext | tag`, one
//! ChaCha20-Poly1305 key per direction and a 64-bit counter as nonce, so a record that was
//! altered, replayed, reordered, dropped or cut fails to open, and the link is closed with
//! [`SecureError::Open`]. The plaintext of the records is the ordinary frame stream: the
//! sans-IO cores above (registry, node) keep reading plain frames and never see this layer, so
//! fuzz targets and the simulator still drive them with plain frames.
//!
//! The byte-by-byte layout, the labels and the threat model are in `docs/security.md`.

mod channel;
mod error;
mod handshake;
mod identity;
mod link;
mod record;
mod stream;
mod ticket;

pub use channel::{Opener, Sealer};
pub use error::SecureError;
pub use handshake::{Credential, Expect, Remote, HELLO_SUITE};
pub use identity::{Fingerprint, Identity, PublicKey, PUBLIC_KEY_LEN, SIGNATURE_LEN};
pub use link::OpenLink;
pub use record::{RecordReader, MAX_RECORD, MAX_RECORD_PLAINTEXT, RECORD_HEADER, TAG_LEN};
pub use stream::{OpenHalf, SecureStream};
pub use ticket::{Ticket, TicketError, TICKET_VERSION};

/// The protocol version of a secure link, carried in the clear `hello` that opens it: the
/// crate's [`VERSION`](crate::VERSION), which went to 2 with this layer.
pub const VERSION: u16 = crate::frame::VERSION;

/// Record kinds (the byte after the length prefix). They sit where a frame's kind byte sits and
/// are chosen outside the frame kinds, so a side that does not speak this layer reports an
/// unknown frame kind rather than misreading one.
pub mod record_kind {
    /// Message 2: the responder's ephemeral key and its sealed identity proof.
    pub const HANDSHAKE_REPLY: u8 = 0x50;
    /// Message 3: the initiator's sealed identity proof.
    pub const HANDSHAKE_FINISH: u8 = 0x51;
    /// A sealed slice of the frame stream.
    pub const SEALED: u8 = 0x52;
}
