//! Decode errors: where in the body decoding stopped, and why.

use std::fmt;

/// A frame or datagram could not be decoded.
///
/// `offset` counts bytes from the start of the frame body (the kind byte) or the datagram, so a
/// report can point at the exact byte. A decode error is the peer's fault: callers close that
/// one connection with the error as the reason; nothing unwinds the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset at which decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// The ways a frame or datagram can be malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The body ended before a field did.
    Truncated,
    /// The length prefix announces more than the configured maximum.
    TooLong {
        /// Announced length.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The length prefix announces less than the fixed frame header.
    TooShort {
        /// Announced length.
        len: u32,
    },
    /// The kind byte names no frame we know.
    UnknownKind(u8),
    /// A string field is not valid UTF-8.
    InvalidUtf8,
    /// Bytes were left after the last field.
    TrailingBytes,
    /// The hello frame does not start with the p2pchat magic.
    BadMagic,
    /// A field holds a value outside its domain (a bool that is not 0 or 1, say).
    InvalidValue(&'static str),
}

impl DecodeError {
    pub(crate) fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        DecodeError { offset, kind }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::Truncated => f.write_str("truncated frame"),
            DecodeErrorKind::TooLong { len, max } => {
                write!(f, "frame length {len} exceeds the maximum {max}")
            }
            DecodeErrorKind::TooShort { len } => write!(f, "frame length {len} is too short"),
            DecodeErrorKind::UnknownKind(k) => write!(f, "unknown frame kind 0x{k:02x}"),
            DecodeErrorKind::InvalidUtf8 => f.write_str("invalid UTF-8 in a string field"),
            DecodeErrorKind::TrailingBytes => f.write_str("trailing bytes after the last field"),
            DecodeErrorKind::BadMagic => f.write_str("not a p2pchat connection (bad magic)"),
            DecodeErrorKind::InvalidValue(what) => write!(f, "invalid value for {what}"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

impl std::error::Error for DecodeError {}
