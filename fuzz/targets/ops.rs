//! What the two session targets (`registry_session`, `peer_room`) share: the step loop over
//! operations read from the input, and the raw-bytes operation that lets seeds be written from
//! real frames (a tag byte, a big-endian u16 length, the bytes).

use arbitrary::{Arbitrary, Unstructured};
use p2pchat_protocol::Frame;

/// Reads operations with `next` and applies each to `harness` with `step`, at most `max` of
/// them: the input ends, or an operation does not decode, and the session is over.
pub fn drive<H, Op>(
    data: &[u8],
    max: usize,
    harness: &mut H,
    mut next: impl FnMut(&mut Unstructured<'_>) -> arbitrary::Result<Op>,
    mut step: impl FnMut(&mut H, Op),
) {
    let mut u = Unstructured::new(data);
    for _ in 0..max {
        if u.is_empty() {
            break;
        }
        match next(&mut u) {
            Ok(op) => step(harness, op),
            Err(_) => break,
        }
    }
}

/// The rest of a raw-bytes operation, after its tag: a big-endian u16 length and that many
/// bytes (or what is left of the input).
pub fn raw_bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([u8::arbitrary(u)?, u8::arbitrary(u)?]));
    Ok(u.bytes(len.min(u.len()))?.to_vec())
}

/// Writes a raw-bytes operation carrying `frame` into a seed: the inverse of [`raw_bytes`].
pub fn push_raw(out: &mut Vec<u8>, tag: u8, frame: Frame) {
    let bytes = frame.to_bytes();
    out.push(tag);
    // Seed frames are a few hundred bytes.
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(&bytes);
}
