//! Properties of the codec over random input: decoding never panics, anything that decodes
//! re-encodes to the same bytes, and how a stream is cut into reads never changes the frames.

use bytes::BytesMut;
use p2pchat_protocol::samples::all_messages;
use p2pchat_protocol::{Frame, FrameDecoder, Heartbeat, Msg, LEN_PREFIX};
use proptest::prelude::*;

fn stream() -> (Vec<Frame>, Vec<u8>) {
    let frames: Vec<Frame> = all_messages()
        .into_iter()
        .enumerate()
        .map(|(i, m)| Frame::new(i as u32 * 7919, m))
        .collect();
    let mut out = BytesMut::new();
    for f in &frames {
        f.encode(&mut out);
    }
    (frames, out.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_random_bodies_never_panics_and_round_trips(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(frame) = Frame::decode(&body) {
            let bytes = frame.to_bytes();
            prop_assert_eq!(&bytes[LEN_PREFIX..], &body[..]);
        }
    }

    #[test]
    fn mutated_valid_bodies_never_panic(idx in 0usize..64, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let msgs = all_messages();
        let frame = Frame::new(1, msgs[idx % msgs.len()].clone());
        let mut body = frame.to_bytes()[LEN_PREFIX..].to_vec();
        let at = pos.index(body.len());
        body[at] = byte;
        if let Ok(f) = Frame::decode(&body) {
            prop_assert_eq!(&f.to_bytes()[LEN_PREFIX..], &body[..]);
        }
    }

    #[test]
    fn any_chunking_yields_the_same_frames(cuts in proptest::collection::vec(1usize..97, 1..200)) {
        let (frames, bytes) = stream();
        let mut d = FrameDecoder::new(1 << 16);
        let mut got = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < bytes.len() {
            let n = cuts[i % cuts.len()].min(bytes.len() - at);
            i += 1;
            d.push(&bytes[at..at + n]);
            at += n;
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn random_streams_never_panic_and_stay_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..50)) {
        let mut d = FrameDecoder::new(1024);
        for c in &chunks {
            d.push(c);
            while let Ok(Some(_)) = d.next_frame() {}
            prop_assert!(d.buffered() <= 1024 + LEN_PREFIX + 64);
        }
    }

    #[test]
    fn random_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(hb) = Heartbeat::decode(&bytes) {
            prop_assert_eq!(&hb.encode()[..], &bytes[..]);
        }
    }
}

#[test]
fn every_sample_message_is_a_distinct_kind_or_event() {
    let msgs = all_messages();
    assert!(msgs.len() >= 36);
    assert!(msgs.iter().any(|m| matches!(m, Msg::RoomMessage { .. })));
}
