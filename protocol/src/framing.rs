//! Splitting a TCP byte stream into frames.
//!
//! The length prefix is read by hand and checked against the maximum *before* any memory is
//! reserved for the body (mini-redis's check-then-parse); only then is the exact body handed to
//! the complete nom parsers of [`Frame::decode`]. This avoids nom's streaming/complete pitfalls
//! and means a hostile `0xFFFFFFFF` prefix costs nothing.

use bytes::{Buf, BytesMut};

use crate::error::{DecodeError, DecodeErrorKind};
use crate::frame::{Frame, BODY_HEADER, LEN_PREFIX};

/// Accumulates stream bytes and yields whole frames.
///
/// Memory is bounded: the buffer holds at most one partial frame (at most `max_len + 4` bytes)
/// plus whatever the caller pushed since it last drained `next_frame`. Callers drain after every
/// push. After an error the decoder is poisoned: the stream can no longer be trusted to be
/// aligned, so every later call repeats the error and the caller closes the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_len: u32,
    failed: Option<DecodeError>,
    /// Bytes consumed from the stream so far, so errors can name a stream offset.
    consumed: u64,
}

impl FrameDecoder {
    /// A decoder that refuses bodies longer than `max_len` bytes.
    pub fn new(max_len: u32) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            max_len,
            failed: None,
            consumed: 0,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the error that poisons
    /// the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len > self.max_len {
            return Err(self.fail(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::TooLong {
                    len,
                    max: self.max_len,
                },
            }));
        }
        if (len as usize) < BODY_HEADER {
            return Err(self.fail(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::TooShort { len },
            }));
        }
        let total = LEN_PREFIX + len as usize;
        if self.buf.len() < total {
            // Reserve for the rest of this frame only now that the length is known to be sane.
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let result = Frame::decode(&self.buf[LEN_PREFIX..total]);
        match result {
            Ok(frame) => {
                self.buf.advance(total);
                self.consumed += total as u64;
                Ok(Some(frame))
            }
            Err(mut err) => {
                err.offset += LEN_PREFIX;
                Err(self.fail(err))
            }
        }
    }

    fn fail(&mut self, err: DecodeError) -> DecodeError {
        self.failed = Some(err.clone());
        self.buf = BytesMut::new();
        err
    }

    /// Whether part of a frame is buffered (a started frame that has not completed). Callers
    /// use it to arm the "started frame must complete" deadline.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream bytes consumed as whole frames so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Msg;

    fn sample_stream() -> (Vec<Frame>, Vec<u8>) {
        let frames: Vec<Frame> = crate::samples::all_messages()
            .into_iter()
            .enumerate()
            .map(|(i, m)| Frame::new(i as u32, m))
            .collect();
        let mut out = BytesMut::new();
        for f in &frames {
            f.encode(&mut out);
        }
        (frames, out.to_vec())
    }

    #[test]
    fn byte_at_a_time_yields_every_frame() {
        let (frames, stream) = sample_stream();
        let mut d = FrameDecoder::new(1 << 16);
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(!d.has_partial());
        assert_eq!(d.consumed(), stream.len() as u64);
    }

    #[test]
    fn oversized_prefix_is_rejected_without_buffering() {
        let mut d = FrameDecoder::new(1 << 16);
        d.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        let err = d.next_frame().unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::TooLong {
                len: u32::MAX,
                max: 1 << 16
            }
        );
        assert_eq!(d.buffered(), 0);
        d.push(&[0; 100]);
        assert_eq!(d.buffered(), 0, "a failed decoder buffers nothing more");
        assert_eq!(d.next_frame().unwrap_err(), err);
    }

    #[test]
    fn too_short_prefix_is_rejected() {
        let mut d = FrameDecoder::new(1 << 16);
        d.push(&[0, 0, 0, 2, 0x80, 0]);
        assert_eq!(
            d.next_frame().unwrap_err().kind,
            DecodeErrorKind::TooShort { len: 2 }
        );
    }

    #[test]
    fn partial_frame_is_reported() {
        let mut d = FrameDecoder::new(1 << 16);
        let bytes = Frame::new(1, Msg::Ping).to_bytes();
        d.push(&bytes[..3]);
        assert!(d.next_frame().unwrap().is_none());
        assert!(d.has_partial());
        d.push(&bytes[3..]);
        assert_eq!(d.next_frame().unwrap(), Some(Frame::new(1, Msg::Ping)));
        assert!(!d.has_partial());
    }

    #[test]
    fn body_errors_carry_stream_offsets() {
        let mut d = FrameDecoder::new(1 << 16);
        d.push(&[0, 0, 0, 5, 0x7e, 0, 0, 0, 0]);
        let err = d.next_frame().unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownKind(0x7e));
        assert_eq!(err.offset, 4);
    }
}
