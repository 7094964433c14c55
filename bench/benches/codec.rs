//! Frame encode/decode and the framing decoder on fragmented input.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use p2pchat_protocol::samples::all_messages;
use p2pchat_protocol::{Frame, FrameDecoder, Heartbeat, HeartbeatKey, Msg, LEN_PREFIX};

fn chat_message() -> Frame {
    Frame::event(Msg::RoomMessage {
        room: "lobby".into(),
        origin: "alice".into(),
        seq: 12_345,
        hops: 8,
        sent_ms: 1_763_700_000_000,
        text: "x".repeat(100),
        auth: None,
    })
}

fn encode_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let frame = chat_message();
    let bytes = frame.to_bytes();
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode room-message 100B", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            black_box(&frame).encode(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("decode room-message 100B", |b| {
        b.iter(|| Frame::decode(black_box(&bytes[LEN_PREFIX..])).unwrap())
    });
    let all: Vec<Frame> = all_messages()
        .into_iter()
        .map(|m| Frame::new(1, m))
        .collect();
    let encoded: Vec<_> = all.iter().map(|f| f.to_bytes()).collect();
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("encode every kind", |b| {
        let mut out = BytesMut::with_capacity(1 << 16);
        b.iter(|| {
            out.clear();
            for f in &all {
                f.encode(&mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("decode every kind", |b| {
        b.iter(|| {
            for e in &encoded {
                black_box(Frame::decode(&e[LEN_PREFIX..]).unwrap());
            }
        })
    });
    g.finish();
}

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing");
    let mut stream = BytesMut::new();
    let frames = 1000;
    for _ in 0..frames {
        chat_message().encode(&mut stream);
    }
    let stream = stream.freeze();
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for chunk in [1usize, 7, 64, 1500, 65_536] {
        g.bench_with_input(
            BenchmarkId::new("1000 frames, chunk", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| {
                    let mut d = FrameDecoder::new(1 << 16);
                    let mut n = 0;
                    for piece in stream.chunks(chunk) {
                        d.push(piece);
                        while let Some(f) = d.next_frame().unwrap() {
                            black_box(f);
                            n += 1;
                        }
                    }
                    assert_eq!(n, frames);
                })
            },
        );
    }
    g.finish();
}

fn heartbeat(c: &mut Criterion) {
    let mut g = c.benchmark_group("heartbeat");
    let key = HeartbeatKey::new(&[7; 32]);
    let hb = Heartbeat::sign(&key, 42, 1, 0).encode();
    g.bench_function("sign+encode", |b| {
        let mut counter = 0;
        b.iter(|| {
            counter += 1;
            black_box(Heartbeat::sign(&key, 42, counter, 0).encode())
        })
    });
    g.bench_function("decode+verify", |b| {
        b.iter(|| {
            let h = Heartbeat::decode(black_box(&hb)).unwrap();
            assert!(h.is_authentic(&key));
        })
    });
    g.finish();
}

criterion_group!(benches, encode_decode, framing, heartbeat);
criterion_main!(benches);
