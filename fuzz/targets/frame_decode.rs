//! `frame_decode`: [`Frame::decode`] on arbitrary bodies.
//!
//! Properties: it never panics; an error points inside the body; whatever decodes re-encodes to
//! exactly the same bytes (the encoding is canonical, so a frame has one wire form and a
//! decoder/encoder mismatch cannot hide).

use p2pchat_protocol::{kind_name, Frame, LEN_PREFIX};

/// The target body.
pub fn run(data: &[u8]) {
    match Frame::decode(data) {
        Ok(frame) => {
            let bytes = frame.to_bytes();
            assert_eq!(&bytes[LEN_PREFIX..], data, "re-encoding differs: {frame:?}");
            assert_eq!(frame.body_len(), data.len());
            assert_eq!(frame.msg.kind(), data[0]);
            assert_eq!(frame.msg.kind_name(), kind_name(data[0]));
            // Decoding what was encoded gives the same frame back.
            assert_eq!(Frame::decode(&bytes[LEN_PREFIX..]).as_ref(), Ok(&frame));
        }
        Err(err) => {
            assert!(
                err.offset <= data.len(),
                "error offset {} past the body ({} bytes): {err}",
                err.offset,
                data.len()
            );
            assert!(!err.to_string().is_empty());
        }
    }
}

/// Seeds: the body of every sample message.
pub fn seeds() -> Vec<Vec<u8>> {
    p2pchat_protocol::samples::all_messages()
        .into_iter()
        .enumerate()
        .map(|(i, msg)| Frame::new(i as u32, msg).to_bytes()[LEN_PREFIX..].to_vec())
        .collect()
}
