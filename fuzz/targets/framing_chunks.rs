//! `framing_chunks`: the [`FrameDecoder`] under arbitrary chunking.
//!
//! Input: one control byte (bit 7: a small maximum frame length, so `TooLong` is reachable;
//! bits 0-4: how many chunk-length bytes follow), the chunk lengths, then the stream. The
//! stream is decoded once in one push and once pushed chunk by chunk (cycling through the
//! lengths, a length of 0 pushing nothing), draining after every push. Both must yield the same
//! frames, then the same error or the same leftover partial frame, and the same byte counts.

use p2pchat_protocol::{DecodeError, Frame, FrameDecoder, DEFAULT_MAX_FRAME};

#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<DecodeError>,
    partial: bool,
    buffered: usize,
    consumed: u64,
}

fn drain(d: &mut FrameDecoder, frames: &mut Vec<Frame>) -> Option<DecodeError> {
    loop {
        match d.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return None,
            Err(e) => {
                // A failed decoder repeats its error and buffers nothing more.
                assert_eq!(d.next_frame().as_ref(), Err(&e));
                d.push(b"more");
                assert_eq!(d.buffered(), 0);
                return Some(e);
            }
        }
    }
}

fn finish(d: FrameDecoder, frames: Vec<Frame>, error: Option<DecodeError>) -> Outcome {
    Outcome {
        frames,
        error,
        partial: d.has_partial(),
        buffered: d.buffered(),
        consumed: d.consumed(),
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let max = if control & 0x80 != 0 {
        64
    } else {
        DEFAULT_MAX_FRAME
    };
    let n = usize::from(control & 0x1f).min(rest.len());
    let (lengths, stream) = rest.split_at(n);

    let mut whole = FrameDecoder::new(max);
    whole.push(stream);
    let mut frames = Vec::new();
    let error = drain(&mut whole, &mut frames);
    let one_shot = finish(whole, frames, error);

    let mut chunked = FrameDecoder::new(max);
    let mut frames = Vec::new();
    let mut error = None;
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() && error.is_none() {
        let len = lengths
            .get(i % lengths.len().max(1))
            .map_or(1, |&l| usize::from(l));
        i += 1;
        let end = (at + len).min(stream.len());
        chunked.push(&stream[at..end]);
        at = end;
        error = drain(&mut chunked, &mut frames);
        if len == 0 && i > stream.len() + lengths.len() {
            // Only zero lengths: push the rest at once rather than loop forever.
            chunked.push(&stream[at..]);
            at = stream.len();
            error = drain(&mut chunked, &mut frames);
        }
    }
    let chunks = finish(chunked, frames, error);

    assert_eq!(one_shot, chunks);
    if one_shot.error.is_none() {
        assert_eq!(
            one_shot.consumed as usize + one_shot.buffered,
            stream.len(),
            "every byte is either a whole frame or the partial one"
        );
    }
}

/// Seeds: the stream of every sample frame, whole, in odd chunks, byte by byte, with the small
/// maximum, and cut off mid-frame.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut stream = Vec::new();
    for (i, msg) in p2pchat_protocol::samples::all_messages()
        .into_iter()
        .enumerate()
    {
        stream.extend_from_slice(&Frame::new(i as u32, msg).to_bytes());
    }
    let with = |control: u8, lengths: &[u8], stream: &[u8]| {
        let mut s = vec![control];
        s.extend_from_slice(lengths);
        s.extend_from_slice(stream);
        s
    };
    vec![
        with(0, &[], &stream),
        with(3, &[1, 7, 200], &stream),
        with(1, &[1], &stream[..600]),
        with(0x82, &[5, 13], &stream),
        with(2, &[0, 3], &stream[..stream.len() - 3]),
    ]
}
