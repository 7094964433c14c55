//! The hot paths, one at a time, for instruction counting under callgrind (`bench/callgrind.sh`):
//! `hotops OP ITERS PREPARED` sets everything up for `PREPARED` iterations, then runs `ITERS` of
//! them. Running it with two `ITERS` and the same `PREPARED` and subtracting the instruction
//! counts cancels the setup, leaving the cost of `ITERS` operations.
//!
//! Ops: `decode` (one search frame body), `framer` (one search frame through `FrameDecoder`),
//! `encode` (one search-result frame), `search` (one search request through the registry state
//! machine, outputs drained), `heartbeat` (one valid heartbeat through the registry), `hmac`
//! and `hmac-new` (one heartbeat tag verified with a prebuilt key, and with the key built
//! first from its 32 bytes, as the registry now does).
//!
//! Secure links, per 16 pipelined `ping` replies or requests: `seal16-each` seals each reply
//! as its own record through a `SecureStream` (the registry before `OpenLink`), `seal16-once`
//! gathers them and seals one record through an `OpenLink` into a reused buffer (the registry
//! now); `open16-stream` and `open16-link` open one record holding 16 requests each way.

// The registry's clock is anchored at one real instant; it never reads the clock itself.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use p2pchat_bench::{bench_config, RegistryDriver};
use p2pchat_protocol::secure::{Credential, Expect, Identity, SecureStream};
use p2pchat_protocol::{
    Frame, FrameDecoder, Heartbeat, HeartbeatKey, Msg, Presence, Role, LEN_PREFIX,
};
use p2pchat_registry::Input;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, op, iters, prepared] = args.as_slice() else {
        bail!("usage: hotops OP ITERS PREPARED");
    };
    let iters: usize = iters.parse().context("ITERS")?;
    let prepared: usize = prepared.parse().context("PREPARED")?;
    if iters > prepared {
        bail!("ITERS must not exceed PREPARED");
    }
    let search = Frame::new(
        7,
        Msg::Search {
            name: "user42".into(),
        },
    );
    match op.as_str() {
        "decode" => {
            let bytes = search.to_bytes();
            for _ in 0..iters {
                black_box(Frame::decode(black_box(&bytes[LEN_PREFIX..]))?);
            }
        }
        "framer" => {
            let bytes = search.to_bytes();
            let mut dec = FrameDecoder::new(1 << 16);
            for _ in 0..iters {
                dec.push(black_box(&bytes));
                black_box(dec.next_frame()?);
            }
        }
        "encode" => {
            let reply = Frame::new(
                7,
                Msg::SearchResult {
                    name: "user42".into(),
                    presence: Presence::Online("10.1.2.3:4000".parse()?),
                },
            );
            let mut out = BytesMut::with_capacity(4096);
            for _ in 0..iters {
                out.clear();
                black_box(&reply).encode(&mut out);
                black_box(out.len());
            }
        }
        "search" | "heartbeat" => {
            let t0 = Instant::now();
            let mut d = RegistryDriver::new(bench_config(), t0);
            let sessions = d.login_many(t0, 100);
            let me = &sessions[0];
            let from = "10.0.0.1:1".parse()?;
            // Signed up front, the same number whatever ITERS is, so the subtraction cancels it.
            let beats: Vec<_> = (0..prepared)
                .map(|i| RegistryDriver::heartbeat(me, i as u64 + 1))
                .collect();
            let bytes = search.to_bytes();
            let mut now = t0;
            for beat in beats.iter().take(iters) {
                now += Duration::from_nanos(100);
                if op == "search" {
                    d.registry.handle_input(
                        now,
                        Input::Received {
                            conn: me.conn,
                            bytes: &bytes,
                        },
                    );
                } else {
                    d.registry
                        .handle_input(now, Input::Datagram { from, bytes: beat });
                }
                while let Some(out) = d.registry.poll_output() {
                    black_box(out);
                }
            }
        }
        // The registry keeps each session's 32-byte heartbeat key and builds ring's HMAC key
        // (two SHA-256 block states) per heartbeat: `hmac` verifies with a prebuilt key,
        // `hmac-new` builds it first, so the difference is what the memory saving costs.
        "hmac" | "hmac-new" => {
            let raw = [7u8; 32];
            let key = HeartbeatKey::new(&raw);
            let beat = Heartbeat::sign(&key, 1, 1, 0).encode();
            let hb = Heartbeat::decode(&beat)?;
            let mut ok = 0usize;
            for _ in 0..iters {
                let good = if op == "hmac" {
                    black_box(&hb).is_authentic(black_box(&key))
                } else {
                    black_box(&hb).is_authentic(&HeartbeatKey::new(black_box(&raw)))
                };
                ok += usize::from(good);
            }
            if ok != iters {
                bail!("a heartbeat failed to verify");
            }
            if std::env::var_os("HOTOPS_TIME").is_some() {
                // Wall time on the real CPU (SHA extensions and all), as a rough cross-check
                // of the instruction counts, which valgrind takes on its own CPU model.
                let t = Instant::now();
                for _ in 0..iters {
                    let good = if op == "hmac" {
                        black_box(&hb).is_authentic(black_box(&key))
                    } else {
                        black_box(&hb).is_authentic(&HeartbeatKey::new(black_box(&raw)))
                    };
                    black_box(good);
                }
                println!(
                    "op={op} ns_per_op={:.1}",
                    t.elapsed().as_nanos() as f64 / iters.max(1) as f64
                );
            }
        }
        "seal16-each" | "seal16-once" | "open16-stream" | "open16-link" => {
            secure_op(op, iters, prepared)?;
        }
        other => bail!("unknown op {other}"),
    }
    Ok(())
}

/// The secure-link ops (see the module comment): a real handshake first, then `ITERS` rounds of
/// 16 replies sealed or of one 16-request record opened (all `PREPARED` records sealed up front).
fn secure_op(op: &str, iters: usize, prepared: usize) -> anyhow::Result<()> {
    let id = std::sync::Arc::new(Identity::generate_from_os()?);
    let mut client =
        SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(None))?;
    let mut server = SecureStream::responder(Role::Client, Credential::Key(id), Expect::Anonymous);
    server.receive(&client.take_outgoing())?;
    client.receive(&server.take_outgoing())?;
    server.receive(&client.take_outgoing())?;
    if !server.is_open() {
        bail!("handshake did not finish");
    }
    let ping = Frame::new(7, Msg::Ping).to_bytes();
    let pong = Frame::new(7, Msg::Pong).to_bytes();
    let burst: Vec<u8> = (0..16).flat_map(|_| ping.iter().copied()).collect();
    let records: Vec<BytesMut> = (0..prepared)
        .map(|_| {
            client.send(&burst)?;
            Ok(client.take_outgoing())
        })
        .collect::<anyhow::Result<_>>()?;
    let (mut plain, mut sealed) = (BytesMut::new(), BytesMut::new());
    match op {
        "seal16-each" => {
            for _ in 0..iters {
                for _ in 0..16 {
                    server.send(black_box(&pong))?;
                    black_box(server.take_outgoing());
                }
            }
        }
        "seal16-once" => {
            let mut link = server.into_link()?;
            for _ in 0..iters {
                plain.clear();
                for _ in 0..16 {
                    plain.extend_from_slice(black_box(&pong));
                }
                sealed.clear();
                link.seal(&plain, &mut sealed)?;
                black_box(sealed.len());
            }
        }
        "open16-stream" => {
            for rec in records.iter().take(iters) {
                server.receive(black_box(rec))?;
                black_box(server.take_plaintext());
            }
        }
        _ => {
            let mut link = server.into_link()?;
            for rec in records.iter().take(iters) {
                plain.clear();
                link.receive(black_box(rec), &mut plain)?;
                black_box(plain.len());
            }
        }
    }
    Ok(())
}
