//! Why a secure link failed. Every variant is the other side's doing (or the network's): the
//! caller closes that one link with the error's text as the reason.

use crate::error::DecodeError;
use crate::secure::ticket::TicketError;

/// A secure link failed; the link is unusable from then on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecureError {
    /// A handshake message does not parse.
    #[error("malformed handshake message: {0}")]
    Malformed(DecodeError),
    /// A record's length prefix is out of range.
    #[error("record length {len} is outside 1..={max}")]
    BadLength {
        /// Announced length.
        len: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A message that has no place at this point of the handshake.
    #[error("unexpected {0} during the secure handshake")]
    Unexpected(String),
    /// The other side speaks another protocol version.
    #[error("the other side speaks protocol version {theirs}; this one speaks {ours}: upgrade the older side")]
    BadVersion {
        /// Theirs.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// The other side refused the link with an `error` frame sent in the clear.
    #[error("refused: {message} ({code})")]
    Refused {
        /// Status code.
        code: u16,
        /// Its message.
        message: String,
    },
    /// Key agreement failed (an invalid or low-order X25519 key).
    #[error("key agreement failed: the other side's ephemeral key is invalid")]
    KeyAgreement,
    /// A handshake message failed to decrypt: altered in transit or not for this handshake.
    #[error("handshake message failed to open: altered in transit")]
    HandshakeOpen,
    /// The other side's signature over the transcript does not verify.
    #[error("the other side's handshake signature does not verify")]
    BadSignature,
    /// The other side proved an identity of the wrong kind (or none where one is required).
    #[error("the other side {0}")]
    WrongIdentity(&'static str),
    /// The other side proved a key other than the one expected.
    #[error("the other side's key is {got}, expected {expected}")]
    KeyMismatch {
        /// Fingerprint expected.
        expected: String,
        /// Fingerprint presented.
        got: String,
    },
    /// The other side's ticket is not acceptable.
    #[error("identity ticket refused: {0}")]
    Ticket(TicketError),
    /// A record failed to open: altered, replayed, reordered, dropped or not from this link.
    #[error("a frame failed to open (altered, replayed, reordered or forged); link closed")]
    Open,
    /// A direction used up its 2^64 nonces (never in practice; the link must be re-made).
    #[error("nonce counter exhausted")]
    CounterExhausted,
    /// Randomness or key generation failed on this machine.
    #[error("local crypto failure: {0}")]
    Local(&'static str),
}

impl From<DecodeError> for SecureError {
    fn from(e: DecodeError) -> Self {
        SecureError::Malformed(e)
    }
}

impl From<TicketError> for SecureError {
    fn from(e: TicketError) -> Self {
        SecureError::Ticket(e)
    }
}
