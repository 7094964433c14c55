//! [`OpenLink`]: what a secure link keeps once the handshake is over, for a server that holds
//! one per connection for as long as the connection lives.
//!
//! A [`SecureStream`](crate::secure::SecureStream) carries the handshake state, the identity
//! the other side proved, the session hash and four buffers; after the handshake a server that
//! only seals and opens needs two raw keys, two counters and the bytes of a record that has not
//! arrived whole. That is this type (~100 bytes, and its buffer holds memory only while a
//! record is cut across reads), against 384 bytes of `SecureStream`.
//!
//! Records are opened straight from the bytes the caller read: only the tail of a record cut
//! by the read is copied aside, and the ciphertext is copied once, into the caller's plaintext
//! buffer, where it is opened in place.

use bytes::BytesMut;

use crate::secure::channel::{Opener, Sealer};
use crate::secure::record::MAX_RECORD;
use crate::secure::SecureError;

/// An open secure link: seals what its owner sends, opens what it reads. Errors are final:
/// the owner closes the connection (and drops this) on the first one.
pub struct OpenLink {
    sealer: Sealer,
    opener: Opener,
    /// The start of a record cut by the last read; no allocation when none is.
    partial: Vec<u8>,
}

impl std::fmt::Debug for OpenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenLink")
            .field("sealed", &self.sealer.count())
            .field("opened", &self.opener.count())
            .field("partial", &self.partial.len())
            .finish()
    }
}

impl OpenLink {
    pub(crate) fn new(sealer: Sealer, opener: Opener, partial: Vec<u8>) -> OpenLink {
        OpenLink {
            sealer,
            opener,
            partial,
        }
    }

    /// Seals `plain` (any length; one record per 16 KiB) and appends the records to `out`.
    pub fn seal(&mut self, plain: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        self.sealer.seal(plain, out)
    }

    /// Opens every record `bytes` completes and appends their plaintext to `plain`; keeps the
    /// start of a record the read cut. A length out of range fails as soon as its 4 bytes are
    /// here, before anything is buffered for it.
    pub fn receive(&mut self, bytes: &[u8], plain: &mut BytesMut) -> Result<(), SecureError> {
        if self.partial.is_empty() {
            let used = self.open_all(bytes, plain)?;
            if used < bytes.len() {
                self.partial = bytes[used..].to_vec();
            }
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(bytes);
        let used = self.open_all(&buf, plain)?;
        if used < buf.len() {
            // Only the cut record's bytes, not the capacity of a long read.
            self.partial = buf[used..].to_vec();
        }
        Ok(())
    }

    /// Opens the whole records at the start of `buf`; returns how many bytes they took.
    fn open_all(&mut self, buf: &[u8], plain: &mut BytesMut) -> Result<usize, SecureError> {
        let mut at = 0;
        while let Some(head) = buf.get(at..at + 4) {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if len == 0 || len > MAX_RECORD {
                return Err(SecureError::BadLength {
                    len,
                    max: MAX_RECORD,
                });
            }
            let end = at + 4 + len as usize;
            let Some(record) = buf.get(at..end) else {
                break;
            };
            self.opener.open_sealed_into(record, plain)?;
            at = end;
        }
        Ok(at)
    }

    /// Whether part of a record is buffered (a started frame that has not completed).
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Records sealed and opened so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.sealer.count(), self.opener.count())
    }
}
