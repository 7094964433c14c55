//! Splitting a TCP byte stream into frames.
//!
//! The length prefix is read by hand and checked against the maximum *before* any memory is
//! reserved for the body (mini-redis's check-then-parse); only then is the exact body handed to
//! the complete nom parsers of [`Frame::decode`]. This avoids nom's streaming/complete pitfalls
//! and means a hostile `0xFFFFFFFF` prefix costs nothing.

use bytes::{Buf, BytesMut};

use crate::error::{DecodeError, DecodeErrorKind};
use crate::frame::{Frame, BODY_HEADER, LEN_PREFIX};

/// Buffer capacity kept once the buffer is empty again; a larger one is given back.
const RETAIN: usize = 64 * 1024;

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
        match split(&self.buf, self.max_len) {
            Ok(Split::Frame(frame, total)) => {
                self.buf.advance(total);
                self.consumed += total as u64;
                if self.buf.is_empty() && self.buf.capacity() > RETAIN {
                    // One big frame (a room's member list) must not keep its buffer for the
                    // connection's life: ten thousand peers held gigabytes that way.
                    self.buf = BytesMut::new();
                }
                Ok(Some(frame))
            }
            Ok(Split::Need(total)) => {
                // Reserve for the rest of this frame only now that the length is known to be
                // sane.
                self.buf.reserve(total.saturating_sub(self.buf.len()));
                Ok(None)
            }
            Err(err) => Err(self.fail(err)),
        }
    }

    /// [`FrameDecoder::push`] then [`FrameDecoder::next_frame`] until it needs more bytes,
    /// appending the frames to `out`; the same frames and errors. When nothing is buffered
    /// (a chunk that starts on a frame boundary, as most do), the chunk's whole frames are
    /// decoded where they lie and only a trailing partial frame is copied: a 200 kB room list
    /// or a burst of pushed events is not copied into the buffer first.
    pub fn push_frames(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        if !self.buf.is_empty() || self.failed.is_some() {
            self.push(bytes);
            while let Some(frame) = self.next_frame()? {
                out.push(frame);
            }
            return Ok(());
        }
        let mut rest = bytes;
        loop {
            match split(rest, self.max_len) {
                Ok(Split::Frame(frame, total)) => {
                    rest = &rest[total..];
                    self.consumed += total as u64;
                    out.push(frame);
                }
                Ok(Split::Need(_)) => {
                    self.push(rest);
                    // Reserves for a started frame, as `next_frame` would.
                    while let Some(frame) = self.next_frame()? {
                        out.push(frame);
                    }
                    return Ok(());
                }
                Err(err) => return Err(self.fail(err)),
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

/// What the front of a stream holds.
enum Split {
    /// A whole frame and the bytes it took, prefix included.
    Frame(Frame, usize),
    /// Part of a frame that takes this many bytes in all (or, before the prefix is complete,
    /// at least the prefix).
    Need(usize),
}

/// Decodes the frame at the front of `data`, checking its length prefix against `max_len`
/// before anything else.
fn split(data: &[u8], max_len: u32) -> Result<Split, DecodeError> {
    let Some(prefix) = data.get(..LEN_PREFIX) else {
        return Ok(Split::Need(LEN_PREFIX));
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len > max_len {
        return Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::TooLong { len, max: max_len },
        });
    }
    if (len as usize) < BODY_HEADER {
        return Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::TooShort { len },
        });
    }
    let total = LEN_PREFIX + len as usize;
    let Some(body) = data.get(LEN_PREFIX..total) else {
        return Ok(Split::Need(total));
    };
    match Frame::decode(body) {
        Ok(frame) => Ok(Split::Frame(frame, total)),
        Err(mut err) => {
            err.offset += LEN_PREFIX;
            Err(err)
        }
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

    /// `push_frames` gives what `push` and `next_frame` give, however the stream is cut.
    #[test]
    fn push_frames_matches_push_and_next_frame_at_every_cut() {
        let (frames, stream) = sample_stream();
        for step in [1, 3, 7, 64, 1000, stream.len()] {
            let mut d = FrameDecoder::new(1 << 16);
            let mut got = Vec::new();
            for chunk in stream.chunks(step) {
                d.push_frames(chunk, &mut got).unwrap();
            }
            assert_eq!(got, frames, "chunks of {step}");
            assert!(!d.has_partial());
            assert_eq!(d.consumed(), stream.len() as u64);
        }
        // Errors too: the same error, and the decoder stays poisoned.
        let mut d = FrameDecoder::new(1 << 16);
        let mut bad = BytesMut::new();
        for f in &frames[..3] {
            f.encode(&mut bad);
        }
        let mut bad = bad.to_vec();
        bad.extend_from_slice(&[0, 0, 0, 5, 0x7e, 0, 0, 0, 0]);
        let mut got = Vec::new();
        let mut reference = FrameDecoder::new(1 << 16);
        reference.push(&bad);
        let want = loop {
            match reference.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the sample stream has no error"),
                Err(e) => break e,
            }
        };
        let err = loop {
            if let Err(e) = d.push_frames(&bad, &mut got) {
                break e;
            }
        };
        assert_eq!(err, want);
        assert_eq!(d.push_frames(&[0; 4], &mut got).unwrap_err(), want);
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
