//! Exact heap cost of online peers in the registry state machine (issue 12): a counting global
//! allocator around the real [`Registry`] (driven in memory by `RegistryDriver`, real SQLite
//! store whose own pages are C allocations and not counted), `N` clients registered and logged
//! in, then taken apart step by step so each layer's cost shows:
//!
//! 0. the `N` accounts are registered first, one connection at a time, so the account cache
//!    (which every registered user costs, online or not) is in place before the baseline;
//! 1. `online total`: `N` clients connected and logged in (what peers cost while online),
//!    each over a secure link as the binary keeps it (`SecureConns`, a real handshake per
//!    connection; the client's side is freed), whose share is shown on its own line too;
//! 2. then every session logged out and every connection closed: what that frees is the
//!    per-entry heap (names, buffers); the hash tables keep their capacity, so what stays is
//!    their share.
//!
//! Bytes are counted twice: as requested, and as glibc malloc chunks (`max(32, size + 8)`
//! rounded up to 16), which is what the resident set pays. Usage: `memsession N [N ...]`; run one `N` per process for
//! figures unaffected by the allocations of an earlier round.
//!
//! A last line per `N` keeps `N` open links as the registry kept them before `OpenLink` (a
//! whole `SecureStream` per connection in a `HashMap`), for the same figure before and after
//! in one run.

// The registry's clock is anchored at one real instant; it never reads the clock itself.
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use anyhow::Context;
use p2pchat_bench::{bench_config, RegistryDriver};
use std::net::SocketAddr;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use p2pchat_protocol::secure::{Credential, Expect, Identity, SecureStream};
use p2pchat_protocol::{Frame, Msg, Role, VERSION};
use p2pchat_registry::secure::SecureConns;
use p2pchat_registry::{ConnId, Input};

struct Counting;

static REQUESTED: AtomicI64 = AtomicI64::new(0);
static CHUNKS: AtomicI64 = AtomicI64::new(0);

/// What glibc's malloc takes for `size` bytes on 64-bit Linux: an 8-byte header, 16-byte
/// alignment, 32 bytes at least.
fn chunk(size: usize) -> i64 {
    (((size + 8 + 15) & !15).max(32)) as i64
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        REQUESTED.fetch_add(layout.size() as i64, Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: same layout, same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        REQUESTED.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        CHUNKS.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc`/`realloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REQUESTED.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(new_size) - chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: as `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap() -> (i64, i64) {
    (
        REQUESTED.load(Ordering::Relaxed),
        CHUNKS.load(Ordering::Relaxed),
    )
}

/// Connects a client from `user{i}`'s source address and says hello.
fn connect(d: &mut RegistryDriver, t0: Instant, conn: ConnId, i: usize) {
    let remote = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000));
    d.feed(t0, Input::Connected { conn, remote });
    let hello = Msg::Hello {
        version: VERSION,
        role: Role::Client,
        name: String::new(),
        ticket: vec![],
    };
    send(d, t0, conn, hello);
}

fn send(d: &mut RegistryDriver, t0: Instant, conn: ConnId, msg: Msg) {
    let bytes = Frame::new(1, msg).to_bytes();
    d.feed(
        t0,
        Input::Received {
            conn,
            bytes: &bytes,
        },
    );
}

/// Registers `user{i}` over a connection of its own, then closes it.
fn register(d: &mut RegistryDriver, t0: Instant, i: usize) {
    let conn = ConnId((1 << 40) + i as u64);
    connect(d, t0, conn, i);
    let register = Msg::Register {
        name: format!("user{i}"),
        password: "password1".into(),
    };
    send(d, t0, conn, register);
    d.feed(t0, Input::Closed { conn });
    let _ = d.take_frames();
}

/// Runs a client's handshake with the registry's side of link `i`; the client's side is
/// dropped, so only what the registry keeps stays on the heap.
fn secure_link(secure: &mut SecureConns, i: usize) -> anyhow::Result<()> {
    let conn = p2pchat_engine::ConnId::from_parts(i as u32, 1);
    secure.accepted(conn);
    let mut client =
        SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(None))?;
    let (mut plain, mut reply) = (BytesMut::new(), BytesMut::new());
    secure.received(conn, &client.take_outgoing(), &mut plain, &mut reply)?;
    client.receive(&reply)?;
    reply.clear();
    secure.received(conn, &client.take_outgoing(), &mut plain, &mut reply)?;
    anyhow::ensure!(client.is_open(), "link {i} did not open");
    Ok(())
}

/// `n` open links kept as the registry kept them before `OpenLink`: each side's whole
/// `SecureStream` in a hash map. Returns the heap they hold.
fn links_as_before(identity: &Arc<Identity>, n: usize) -> anyhow::Result<(i64, i64)> {
    let start = heap();
    let mut streams = HashMap::new();
    for i in 0..n {
        let mut r = SecureStream::responder(
            Role::Client,
            Credential::Key(Arc::clone(identity)),
            Expect::Anonymous,
        );
        let mut client =
            SecureStream::initiator(Role::Client, Credential::Anonymous, Expect::Key(None))?;
        r.receive(&client.take_outgoing())?;
        client.receive(&r.take_outgoing())?;
        r.receive(&client.take_outgoing())?;
        anyhow::ensure!(r.is_open(), "link {i} did not open");
        streams.insert(ConnId(i as u64), r);
    }
    let end = heap();
    drop(streams);
    Ok((end.0 - start.0, end.1 - start.1))
}

/// Logs `user{i}` in on a new connection, one client at a time as a live registry serves
/// them (every output carried out before the next input), and returns the connection.
fn login(d: &mut RegistryDriver, t0: Instant, i: usize) -> anyhow::Result<ConnId> {
    let conn = ConnId((1 << 41) + i as u64);
    connect(d, t0, conn, i);
    let login = Msg::Login {
        name: format!("user{i}"),
        password: "password1".into(),
        listen: SocketAddr::from(([0, 0, 0, 0], 4000)),
    };
    send(d, t0, conn, login);
    let frames = d.take_frames();
    anyhow::ensure!(
        frames
            .iter()
            .any(|(_, f)| matches!(f.msg, Msg::LoggedIn { .. })),
        "user{i} not logged in: {frames:?}"
    );
    Ok(conn)
}

fn main() -> anyhow::Result<()> {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().context("N"))
        .collect::<anyhow::Result<_>>()?;
    println!("peers,layer,requested_per_peer,chunk_per_peer");
    for n in ns {
        let t0 = Instant::now();
        // All N connect before any logs in: no pre-login cap.
        let config = p2pchat_registry::Config {
            max_unauthenticated: usize::MAX,
            ..bench_config()
        };
        let mut d = RegistryDriver::new(config, t0);
        // Accounts first, one connection at a time (connect, register, close), from the source
        // address `login_many` will use for the same user: the account cache and the limiter's
        // bucket for that source exist before the baseline, and no per-connection table grows.
        for i in 0..n {
            register(&mut d, t0, i);
        }
        let identity = Arc::new(Identity::generate_from_os()?);
        let base = heap();
        let mut conns = Vec::with_capacity(n);
        let mut secure = SecureConns::new(Arc::clone(&identity));
        let held = heap();
        let mut links = (0, 0);
        for i in 0..n {
            let before = heap();
            secure_link(&mut secure, i)?;
            let after = heap();
            links = (links.0 + after.0 - before.0, links.1 + after.1 - before.1);
            conns.push(login(&mut d, t0, i)?);
        }
        let online = heap();
        // By table, as allocated (capacity, not use), while all are online.
        let mut tables: Vec<(String, i64)> = d
            .registry
            .table_bytes()
            .into_iter()
            .map(|(name, bytes)| (format!("table: {name}"), bytes as i64))
            .collect();
        tables.push((
            "table: secure links (slot table)".to_owned(),
            (secure.capacity() * SecureConns::slot_size()) as i64,
        ));
        // The list of connections above is this tool's, not the registry's.
        let online = (online.0 - (held.0 - base.0), online.1 - (held.1 - base.1));
        for &conn in &conns {
            send(&mut d, t0, conn, Msg::Logout);
        }
        let _ = d.take_frames();
        anyhow::ensure!(d.registry.online_count() == 0, "logout left sessions");
        let logout_h = heap();
        for &conn in &conns {
            d.feed(t0, Input::Closed { conn });
        }
        for i in 0..n {
            secure.closed(p2pchat_engine::ConnId::from_parts(i as u32, 1));
        }
        let _ = d.take_frames();
        let closed = heap();
        let per = |a: (i64, i64), b: (i64, i64)| {
            ((a.0 - b.0) as f64 / n as f64, (a.1 - b.1) as f64 / n as f64)
        };
        let before = links_as_before(&identity, n)?;
        for (layer, (r, c)) in [
            ("online total", per(online, base)),
            ("of which secure links (OpenLink table)", per(links, (0, 0))),
            (
                "secure links as kept before (SecureStream in a HashMap; not in the total)",
                per(before, (0, 0)),
            ),
            ("freed by logout", per(online, logout_h)),
            ("freed by close", per(logout_h, closed)),
            (
                "kept after close (tables keep their capacity)",
                per(closed, base),
            ),
        ] {
            println!("{n},{layer},{r:.0},{c:.0}");
        }
        // Table bytes are requested bytes; a mapping or chunk adds at most a page or 16 bytes.
        for (layer, bytes) in &tables {
            let per = *bytes as f64 / n as f64;
            println!("{n},{layer},{per:.0},{per:.0}");
        }
        for (entry, bytes) in p2pchat_registry::Registry::entry_sizes()
            .into_iter()
            .chain([(
                "engine connection",
                p2pchat_engine::Reactor::connection_entry_bytes(),
            )])
            .chain([("secure link slot", SecureConns::slot_size())])
        {
            println!("{n},entry size: {entry},{bytes},{bytes}");
        }
    }
    Ok(())
}
