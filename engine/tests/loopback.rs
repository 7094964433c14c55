//! Real-socket tests of the reactor on 127.0.0.1, ephemeral ports only.
//!
//! Every wait is "turn until a condition holds, or fail after `WAIT`"; nothing sleeps for a
//! fixed time hoping a condition became true.

// Tests bound their waits with wall-clock deadlines, so they read the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use p2pchat_engine::{CloseReason, Config, ConnId, NetEvent, Reactor, Signal};

/// Upper bound for any single wait; generous so a loaded CI machine does not flake.
const WAIT: Duration = Duration::from_secs(20);

const EMFILE_CHILD_ENV: &str = "P2PCHAT_ENGINE_EMFILE_CHILD";

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

/// A deterministic, non-periodic byte stream, so reordering or loss shows up as a mismatch.
fn byte_at(i: usize) -> u8 {
    ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

fn pattern(start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(byte_at).collect()
}

fn conn_of(ev: &NetEvent) -> Option<ConnId> {
    match ev {
        NetEvent::Accepted { conn, .. }
        | NetEvent::Connected { conn }
        | NetEvent::Received { conn, .. }
        | NetEvent::Closed { conn, .. } => Some(*conn),
        _ => None,
    }
}

/// Events without their payloads, for failure messages.
fn brief(events: &[NetEvent]) -> Vec<String> {
    events
        .iter()
        .map(|ev| match ev {
            NetEvent::Received { conn, bytes } => {
                format!("Received({conn}, {} bytes)", bytes.len())
            }
            NetEvent::Datagram { sock, bytes, .. } => {
                format!("Datagram({sock:?}, {} bytes)", bytes.len())
            }
            other => format!("{other:?}"),
        })
        .collect()
}

/// A reactor plus the events it reported that the test has not consumed yet.
struct Harness {
    reactor: Reactor,
    backlog: Vec<NetEvent>,
}

impl Harness {
    fn new(config: Config) -> Self {
        Self {
            reactor: Reactor::new(config).expect("reactor"),
            backlog: Vec::new(),
        }
    }

    /// One turn that blocks for at most `max_wait`.
    fn turn_for(&mut self, max_wait: Duration) {
        let mut out = Vec::new();
        self.reactor
            .turn(Some(Instant::now() + max_wait), &mut out)
            .expect("turn");
        self.backlog.extend(out);
    }

    /// Turns until `done` holds; fails the test after `WAIT`.
    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Harness) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; unconsumed events: {:?}",
                brief(&self.backlog)
            );
            let mut out = Vec::new();
            self.reactor.turn(Some(deadline), &mut out).expect("turn");
            self.backlog.extend(out);
        }
    }

    /// Turns until an event matching `pred` arrives, and takes it out of the backlog.
    fn expect(&mut self, what: &str, pred: impl Fn(&NetEvent) -> bool) -> NetEvent {
        let mut found = None;
        self.until(what, |h| match h.backlog.iter().position(&pred) {
            Some(pos) => {
                found = Some(h.backlog.remove(pos));
                true
            }
            None => false,
        });
        found.expect("until returned, so the event was found")
    }

    fn expect_accept(&mut self) -> (ConnId, SocketAddr) {
        match self.expect("Accepted", |e| matches!(e, NetEvent::Accepted { .. })) {
            NetEvent::Accepted { conn, remote, .. } => (conn, remote),
            _ => unreachable!(),
        }
    }

    fn expect_closed(&mut self, conn: ConnId) -> CloseReason {
        let what = format!("Closed for {conn}");
        match self.expect(
            &what,
            |e| matches!(e, NetEvent::Closed { conn: c, .. } if *c == conn),
        ) {
            NetEvent::Closed { reason, .. } => reason,
            _ => unreachable!(),
        }
    }

    /// Moves the bytes received on `conn` so far from the backlog into `into`.
    fn take_received(&mut self, conn: ConnId, into: &mut Vec<u8>) {
        self.backlog.retain(|ev| match ev {
            NetEvent::Received { conn: c, bytes } if *c == conn => {
                into.extend_from_slice(bytes);
                false
            }
            _ => true,
        });
    }

    /// Turns until exactly `n` bytes arrived on `conn`.
    fn read_exact(&mut self, conn: ConnId, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        self.until(&format!("{n} bytes on {conn}"), |h| {
            h.take_received(conn, &mut got);
            got.len() >= n
        });
        assert_eq!(got.len(), n, "more bytes than expected on {conn}");
        got
    }

    /// Gives late or duplicate events a chance to show up: a full wake round trip, then a short
    /// quiet turn.
    fn settle(&mut self) {
        self.reactor.waker().wake().expect("wake");
        self.expect("the wake round trip", |e| *e == NetEvent::Woken);
        self.turn_for(Duration::from_millis(50));
    }

    fn assert_no_events_for(&self, conn: ConnId) {
        let left: Vec<NetEvent> = self
            .backlog
            .iter()
            .filter(|e| conn_of(e) == Some(conn))
            .cloned()
            .collect();
        assert!(
            left.is_empty(),
            "unexpected events for {conn}: {:?}",
            brief(&left)
        );
    }
}

fn std_client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    s
}

/// Reactor echo on `conn` for one message from a std client.
fn echo_round_trip(h: &mut Harness, client: &mut TcpStream, conn: ConnId, msg: &[u8]) {
    client.write_all(msg).expect("client write");
    let got = h.read_exact(conn, msg.len());
    assert_eq!(got, msg);
    assert!(h.reactor.send(conn, &got), "echo send on {conn}");
    // Output leaves at the end of the iteration: the next turn writes it before polling.
    h.turn_for(Duration::ZERO);
    let mut back = vec![0; msg.len()];
    client.read_exact(&mut back).expect("client read echo");
    assert_eq!(back, msg);
}

#[test]
fn accept_and_echo_both_directions() {
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");

    // Incoming: a std client talks to an accepted connection.
    let mut client = std_client(addr);
    let (conn, remote) = match h.expect("Accepted", |e| matches!(e, NetEvent::Accepted { .. })) {
        NetEvent::Accepted {
            listener: l,
            conn,
            remote,
        } => {
            assert_eq!(l, listener);
            (conn, remote)
        }
        _ => unreachable!(),
    };
    assert_eq!(remote, client.local_addr().expect("client addr"));
    assert_eq!(h.reactor.peer_addr(conn), Some(remote));
    assert_eq!(h.reactor.local_addr(conn), Some(addr));
    assert!(h.reactor.is_open(conn));
    echo_round_trip(&mut h, &mut client, conn, b"hello engine");

    // Outgoing: bytes sent before the connect completes are queued and delivered after it.
    let server = TcpListener::bind(localhost()).expect("std listener");
    let server_addr = server.local_addr().expect("server addr");
    let out = h.reactor.connect(server_addr).expect("connect");
    assert!(h.reactor.is_open(out));
    assert!(h.reactor.send(out, b"queued before connect"));
    h.expect("Connected", |e| *e == NetEvent::Connected { conn: out });
    assert_eq!(h.reactor.peer_addr(out), Some(server_addr));
    let (mut peer, _) = server.accept().expect("std accept");
    peer.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut buf = [0; 21];
    peer.read_exact(&mut buf).expect("peer read");
    assert_eq!(&buf, b"queued before connect");
    peer.write_all(b"pong").expect("peer write");
    assert_eq!(h.read_exact(out, 4), b"pong");
    assert!(h.reactor.send(out, b"ping"));
    h.reactor.flush();
    let mut buf = [0; 4];
    peer.read_exact(&mut buf).expect("peer read");
    assert_eq!(&buf, b"ping");

    let stats = h.reactor.stats();
    assert_eq!((stats.accepted, stats.connects, stats.connected), (1, 1, 1));
    assert_eq!(h.reactor.connection_count(), 2);
}

#[test]
fn closed_is_emitted_exactly_once_for_each_cause() {
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");

    // Remote EOF, with data in front of it: the data comes first.
    let mut client = std_client(addr);
    let (eof_conn, _) = h.expect_accept();
    client.write_all(b"last words").expect("write");
    drop(client);
    assert_eq!(h.expect_closed(eof_conn), CloseReason::Remote);
    let mut got = Vec::new();
    h.take_received(eof_conn, &mut got);
    assert_eq!(got, b"last words");

    // close(): the peer sees EOF; the id is dead at once.
    let mut client = std_client(addr);
    let (closed_conn, _) = h.expect_accept();
    h.reactor.close(closed_conn);
    assert!(!h.reactor.is_open(closed_conn));
    assert!(!h.reactor.send(closed_conn, b"too late"));
    assert_eq!(h.expect_closed(closed_conn), CloseReason::Local);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("EOF after close");
    assert!(rest.is_empty());
    // close() again, abort() after close: no second event.
    h.reactor.close(closed_conn);
    h.reactor.abort(closed_conn);

    // abort().
    let _client = std_client(addr);
    let (aborted_conn, _) = h.expect_accept();
    h.reactor.abort(aborted_conn);
    h.reactor.abort(aborted_conn);
    assert_eq!(h.expect_closed(aborted_conn), CloseReason::Local);

    h.settle();
    for conn in [eof_conn, closed_conn, aborted_conn] {
        h.assert_no_events_for(conn);
        assert!(!h.reactor.is_open(conn));
    }
    assert_eq!(h.reactor.stats().closed, 3);
    assert_eq!(h.reactor.connection_count(), 0);
}

#[test]
fn close_flushes_queued_data_before_closing() {
    let mut h = Harness::new(Config {
        write_hard_cap: 64 * 1024 * 1024,
        ..Config::default()
    });
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let client = std_client(addr);
    let (conn, _) = h.expect_accept();

    // The peer reads only after close() was called, so the data must sit in our queue.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut client = client;
        go_rx.recv().expect("go");
        let mut all = Vec::new();
        client.read_to_end(&mut all).expect("read to EOF");
        all
    });

    // At least 2 MiB, and more until some of it waits in the engine's queue (loopback socket
    // buffers can hold a few MiB).
    let mut payload = Vec::new();
    while payload.len() < 2 * 1024 * 1024 || h.reactor.queued_bytes(conn) == 0 {
        assert!(
            payload.len() < 64 * 1024 * 1024,
            "the kernel never pushed back"
        );
        let chunk = pattern(payload.len(), 1024 * 1024);
        assert!(h.reactor.send(conn, &chunk));
        payload.extend_from_slice(&chunk);
    }
    assert!(!h.reactor.is_quiescent());
    h.reactor.close(conn);
    assert!(!h.reactor.send(conn, b"after close"));
    go_tx.send(()).expect("start reader");

    assert_eq!(h.expect_closed(conn), CloseReason::Local);
    let all = reader.join().expect("reader thread");
    assert_eq!(all.len(), payload.len());
    assert!(all == payload, "flushed bytes differ from what was sent");
    assert!(h.reactor.is_quiescent());
    h.settle();
    h.assert_no_events_for(conn);
}

/// Splits complete `\n`-terminated requests off the front of `buf`.
fn take_lines(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    while let Some(end) = buf.iter().position(|&b| b == b'\n') {
        lines.push(buf.drain(..=end).collect());
    }
    lines
}

/// Nonblocking read of whatever `client` has, appended to `into`; `true` at end of stream.
fn read_available(client: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => panic!("client read: {e}"),
        }
    }
}

/// Serves a line protocol on `conn`: every complete request `req N` gets `rep N`, all replies
/// of one iteration sent back to back, until `done` holds.
fn serve_lines(
    h: &mut Harness,
    conn: ConnId,
    pending: &mut Vec<u8>,
    mut done: impl FnMut() -> bool,
) {
    h.until("the replies", |h| {
        h.take_received(conn, pending);
        for line in take_lines(pending) {
            let reply = [b"rep".as_slice(), &line[3..]].concat();
            assert!(h.reactor.send(conn, &reply), "reply on {conn}");
        }
        done()
    });
}

#[test]
fn pipelined_requests_are_answered_in_order_with_few_writes() {
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let mut client = std_client(addr);
    let (conn, _) = h.expect_accept();
    client.set_nonblocking(true).expect("nonblocking");

    // Warm up (one round trip), so only the pipelined burst is counted below.
    client.write_all(b"req warm\n").expect("write");
    let mut pending = Vec::new();
    let mut got = Vec::new();
    let c = &mut client;
    serve_lines(&mut h, conn, &mut pending, || {
        read_available(c, &mut got);
        got == b"rep warm\n"
    });

    const N: usize = 16;
    let requests: Vec<u8> = (0..N)
        .flat_map(|i| format!("req {i:02}\n").into_bytes())
        .collect();
    let expected: Vec<u8> = (0..N)
        .flat_map(|i| format!("rep {i:02}\n").into_bytes())
        .collect();
    let before = h.reactor.stats();
    // One write: the requests arrive together, as from a pipelining client.
    client.write_all(&requests).expect("write");
    let mut got = Vec::new();
    let c = &mut client;
    serve_lines(&mut h, conn, &mut pending, || {
        read_available(c, &mut got);
        got.len() >= expected.len()
    });
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected),
        "replies out of order or damaged"
    );
    let after = h.reactor.stats();
    let writes = after.writes - before.writes;
    assert_eq!(after.bytes_out - before.bytes_out, expected.len() as u64);
    assert!(
        (1..=4).contains(&writes),
        "{N} replies took {writes} write calls"
    );
}

#[test]
fn end_of_stream_is_seen_after_a_short_read() {
    // A short read ends a read loop without the EAGAIN read; the end of stream must still
    // arrive, whether it comes with the data or after it.
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");

    let mut later = std_client(addr);
    let (later_conn, _) = h.expect_accept();
    later.write_all(b"first").expect("write");
    assert_eq!(h.read_exact(later_conn, 5), b"first");
    later.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(h.expect_closed(later_conn), CloseReason::Remote);

    let mut together = std_client(addr);
    let (together_conn, _) = h.expect_accept();
    together.write_all(b"and last").expect("write");
    together
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    assert_eq!(h.expect_closed(together_conn), CloseReason::Remote);
    let mut got = Vec::new();
    h.take_received(together_conn, &mut got);
    assert_eq!(got, b"and last");
}

#[test]
fn the_last_replies_before_close_are_delivered() {
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let mut client = std_client(addr);
    let (conn, _) = h.expect_accept();

    let requests: Vec<u8> = (0..8)
        .flat_map(|i| format!("req {i}\n").into_bytes())
        .collect();
    let expected: Vec<u8> = (0..8)
        .flat_map(|i| format!("rep {i}\n").into_bytes())
        .collect();
    client.write_all(&requests).expect("write");
    let mut pending = Vec::new();
    h.until("all requests", |h| {
        h.take_received(conn, &mut pending);
        pending.len() >= requests.len()
    });
    // Replies and the close in the same iteration, with nothing flushed in between.
    for line in take_lines(&mut pending) {
        let reply = [b"rep".as_slice(), &line[3..]].concat();
        assert!(h.reactor.send(conn, &reply));
    }
    h.reactor.close(conn);
    assert!(!h.reactor.send(conn, b"after close\n"));
    assert_eq!(h.expect_closed(conn), CloseReason::Local);
    let mut all = Vec::new();
    client.read_to_end(&mut all).expect("read to EOF");
    assert_eq!(
        String::from_utf8_lossy(&all),
        String::from_utf8_lossy(&expected)
    );
    assert!(h.reactor.is_quiescent());
}

#[test]
fn close_gives_up_after_the_linger() {
    let linger = Duration::from_millis(200);
    let mut h = Harness::new(Config {
        close_linger: linger,
        write_soft_cap: 64 * 1024 * 1024,
        write_hard_cap: 64 * 1024 * 1024,
        ..Config::default()
    });
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let _never_reads = std_client(addr);
    let (conn, _) = h.expect_accept();

    let chunk = pattern(0, 1024 * 1024);
    for _ in 0..16 {
        assert!(h.reactor.send(conn, &chunk));
    }
    assert!(h.reactor.queued_bytes(conn) > 0);
    let closed_at = Instant::now();
    h.reactor.close(conn);
    assert_eq!(h.expect_closed(conn), CloseReason::Local);
    assert!(
        closed_at.elapsed() >= linger,
        "closed before the linger ended"
    );
    assert!(h.reactor.is_quiescent());
    assert_eq!(h.reactor.connection_count(), 0);
}

#[test]
fn connect_to_a_closed_port_fails() {
    let mut h = Harness::new(Config::default());
    let addr = TcpListener::bind(localhost())
        .expect("bind")
        .local_addr()
        .expect("addr");
    // The listener is dropped: nothing listens on `addr` any more.
    match h.reactor.connect(addr) {
        // Some systems refuse a loopback connect synchronously.
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
        Ok(conn) => {
            assert_eq!(
                h.expect_closed(conn),
                CloseReason::ConnectFailed(io::ErrorKind::ConnectionRefused)
            );
            h.settle();
            h.assert_no_events_for(conn);
        }
    }
    assert_eq!(h.reactor.connection_count(), 0);
}

#[test]
fn connect_times_out_against_a_full_backlog() {
    // A listener with backlog 1 that is never accepted from: once its queue is full, Linux drops
    // further SYNs, so those connects hang in SYN_SENT and only our timeout ends them.
    let mut server = Reactor::new(Config {
        backlog: 1,
        ..Config::default()
    })
    .expect("server reactor");
    let listener = server.listen(localhost()).expect("listen");
    let addr = server.listener_addr(listener).expect("listener addr");

    let timeout = Duration::from_millis(300);
    let mut h = Harness::new(Config {
        connect_timeout: timeout,
        ..Config::default()
    });
    let started = Instant::now();
    let ids: Vec<ConnId> = (0..8)
        .map(|_| h.reactor.connect(addr).expect("connect"))
        .collect();

    let mut outcomes: HashMap<ConnId, Option<CloseReason>> = HashMap::new();
    let mut first_timeout = None;
    h.until("every connect to resolve", |h| {
        for ev in h.backlog.drain(..) {
            let (conn, outcome) = match ev {
                NetEvent::Connected { conn } => (conn, None),
                NetEvent::Closed { conn, reason } => (conn, Some(reason)),
                other => panic!("unexpected {other:?}"),
            };
            if outcome == Some(CloseReason::ConnectTimeout) && first_timeout.is_none() {
                first_timeout = Some(started.elapsed());
            }
            assert!(
                outcomes.insert(conn, outcome).is_none(),
                "two outcomes for {conn}"
            );
        }
        outcomes.len() == ids.len()
    });
    let timeouts = outcomes
        .values()
        .filter(|o| **o == Some(CloseReason::ConnectTimeout))
        .count();
    let connected = outcomes.values().filter(|o| o.is_none()).count();
    assert!(timeouts >= 1, "no connect timed out: {outcomes:?}");
    assert_eq!(timeouts + connected, ids.len(), "{outcomes:?}");
    assert!(first_timeout.expect("a timeout") >= timeout);
    assert_eq!(h.reactor.stats().connect_timeouts, timeouts as u64);
    assert_eq!(h.reactor.connection_count(), connected);
    drop(server);
}

#[test]
fn slow_consumer_is_closed_while_another_connection_is_served() {
    let mut h = Harness::new(Config {
        write_soft_cap: 64 * 1024,
        write_hard_cap: 1024 * 1024,
        ..Config::default()
    });
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let _never_reads = std_client(addr);
    let (slow, _) = h.expect_accept();
    let mut echo_client = std_client(addr);
    let (echo, _) = h.expect_accept();

    let chunk = pattern(0, 64 * 1024);
    let mut rounds = 0usize;
    let mut next_check = 16;
    while h.reactor.send(slow, &chunk) {
        rounds += 1;
        assert!(rounds < 10_000, "never hit the hard cap");
        if rounds == next_check {
            next_check += 16;
            let msg = format!("still served after {rounds} rounds");
            echo_round_trip(&mut h, &mut echo_client, echo, msg.as_bytes());
        }
    }
    assert!(!h.reactor.is_open(slow));
    assert_eq!(h.expect_closed(slow), CloseReason::SlowConsumer);
    echo_round_trip(&mut h, &mut echo_client, echo, b"served after the close");
    assert!(h.reactor.is_open(echo));
    assert_eq!(h.reactor.stats().slow_consumers, 1);
    assert!(
        h.reactor.is_quiescent(),
        "the slow consumer's queue was dropped"
    );
}

#[test]
fn backpressure_pauses_reading_and_resumes_when_drained() {
    let mut h = Harness::new(Config {
        write_soft_cap: 4 * 1024,
        write_hard_cap: 1024 * 1024 * 1024,
        ..Config::default()
    });
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let mut peer = std_client(addr);
    peer.set_nonblocking(true).expect("nonblocking");
    let (conn, _) = h.expect_accept();

    let mut written = 0usize;
    let mut read = 0usize;
    let mut buf = vec![0; 64 * 1024];

    // The reactor echoes everything; the peer writes but does not read. The echo queue grows
    // past the soft cap and the reactor must stop reading.
    let deadline = Instant::now() + WAIT;
    let echo = |h: &mut Harness| {
        let mut got = Vec::new();
        h.take_received(conn, &mut got);
        if !got.is_empty() {
            assert!(h.reactor.send(conn, &got), "echo send");
        }
    };
    while h.reactor.stats().read_pauses == 0 {
        assert!(Instant::now() < deadline, "reading never paused");
        write_some(&mut peer, &mut written, usize::MAX);
        h.turn_for(Duration::from_millis(10));
        echo(&mut h);
    }

    // Now the peer reads everything back, while writing 1 MiB more. That only completes if
    // reading resumed once the echo queue drained.
    let target = written + 1024 * 1024;
    while read < target {
        assert!(
            Instant::now() < deadline,
            "echo stalled at {read} of {target} bytes"
        );
        write_some(&mut peer, &mut written, target);
        loop {
            match peer.read(&mut buf) {
                Ok(0) => panic!("unexpected EOF"),
                Ok(n) => {
                    for (k, b) in buf[..n].iter().enumerate() {
                        assert_eq!(*b, byte_at(read + k), "echo corrupted at byte {}", read + k);
                    }
                    read += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("peer read: {e}"),
            }
        }
        h.turn_for(Duration::from_millis(10));
        echo(&mut h);
    }
    assert_eq!(read, written);
    let stats = h.reactor.stats();
    assert!(stats.read_pauses >= 1);
    assert_eq!(stats.bytes_in, written as u64);
    assert!(h.reactor.is_open(conn));
}

/// Nonblocking writes of the pattern from `*written` until `WouldBlock` or `limit`.
fn write_some(peer: &mut TcpStream, written: &mut usize, limit: usize) {
    while *written < limit {
        let n = (limit - *written).min(64 * 1024);
        match peer.write(&pattern(*written, n)) {
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("peer write: {e}"),
        }
    }
}

#[test]
fn max_read_chunk_is_fair_and_resumes_without_a_new_edge() {
    let chunk = 1024;
    let mut h = Harness::new(Config {
        max_read_chunk: chunk,
        ..Config::default()
    });
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let mut a = std_client(addr);
    let (conn_a, _) = h.expect_accept();
    let mut b = std_client(addr);
    let (conn_b, _) = h.expect_accept();

    // 64 KiB each, written once: after the first capped read no new edge arrives for the rest.
    let total = 64 * 1024;
    a.write_all(&pattern(0, total)).expect("write a");
    b.write_all(&pattern(0, total)).expect("write b");

    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut both_in_one_turn = false;
    let deadline = Instant::now() + WAIT;
    while got_a.len() < total || got_b.len() < total {
        assert!(
            Instant::now() < deadline,
            "stalled at {} / {}",
            got_a.len(),
            got_b.len()
        );
        let mut out = Vec::new();
        h.reactor.turn(Some(deadline), &mut out).expect("turn");
        let (mut this_a, mut this_b) = (0, 0);
        for ev in out {
            match ev {
                NetEvent::Received { conn, bytes } if conn == conn_a => {
                    this_a += bytes.len();
                    got_a.extend_from_slice(&bytes);
                }
                NetEvent::Received { conn, bytes } if conn == conn_b => {
                    this_b += bytes.len();
                    got_b.extend_from_slice(&bytes);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            this_a <= chunk && this_b <= chunk,
            "read {this_a} / {this_b} in one turn"
        );
        both_in_one_turn |= this_a > 0 && this_b > 0;
    }
    assert!(got_a == pattern(0, total) && got_b == pattern(0, total));
    assert!(
        both_in_one_turn,
        "the two connections were never served in the same turn"
    );
}

#[test]
fn stale_conn_id_is_rejected_after_slot_reuse() {
    let mut h = Harness::new(Config::default());
    let server = TcpListener::bind(localhost()).expect("std listener");
    let addr = server.local_addr().expect("addr");

    let old = h.reactor.connect(addr).expect("connect");
    h.expect("Connected", |e| *e == NetEvent::Connected { conn: old });
    let _old_peer = server.accept().expect("accept old");
    h.reactor.abort(old);
    assert_eq!(h.expect_closed(old), CloseReason::Local);

    let new = h.reactor.connect(addr).expect("connect");
    assert_eq!(new.index(), old.index(), "the slab slot is reused");
    assert_ne!(new, old);
    h.expect("Connected", |e| *e == NetEvent::Connected { conn: new });
    let (mut new_peer, _) = server.accept().expect("accept new");
    new_peer.set_read_timeout(Some(WAIT)).expect("read timeout");

    assert!(!h.reactor.is_open(old));
    assert!(!h.reactor.send(old, b"to the old one"));
    assert_eq!(h.reactor.peer_addr(old), None);
    h.reactor.close(old);
    h.reactor.abort(old);
    assert!(h.reactor.is_open(new));
    assert!(h.reactor.send(new, b"to the new one"));
    h.reactor.flush();
    let mut buf = [0; 14];
    new_peer.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"to the new one");

    h.settle();
    h.assert_no_events_for(old);
    h.assert_no_events_for(new);
    assert!(h.reactor.is_open(new));
}

#[test]
fn udp_send_to_and_receive() {
    let mut h = Harness::new(Config::default());
    let a = h.reactor.bind_udp(localhost()).expect("bind a");
    let b = h.reactor.bind_udp(localhost()).expect("bind b");
    let addr_a = h.reactor.udp_addr(a).expect("addr a");
    let addr_b = h.reactor.udp_addr(b).expect("addr b");

    assert!(h.reactor.send_to(a, addr_b, b"ping"));
    let ev = h.expect("datagram at b", |e| matches!(e, NetEvent::Datagram { .. }));
    assert_eq!(
        ev,
        NetEvent::Datagram {
            sock: b,
            from: addr_a,
            bytes: bytes::Bytes::from_static(b"ping"),
        }
    );

    let big = pattern(0, 60_000);
    assert!(h.reactor.send_to(b, addr_a, &big));
    match h.expect("datagram at a", |e| matches!(e, NetEvent::Datagram { .. })) {
        NetEvent::Datagram { sock, from, bytes } => {
            assert_eq!((sock, from), (a, addr_b));
            assert!(bytes == big, "the 60 KB datagram changed");
        }
        _ => unreachable!(),
    }
    let stats = h.reactor.stats();
    assert_eq!(
        (stats.datagrams_out, stats.datagrams_in, stats.udp_dropped),
        (2, 2, 0)
    );
}

/// Turns until `n` datagrams arrived on `sock`; returns their payloads in arrival order.
fn take_datagrams(h: &mut Harness, sock: p2pchat_engine::UdpId, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    h.until(&format!("{n} datagrams"), |h| {
        h.backlog.retain(|ev| match ev {
            NetEvent::Datagram { sock: s, bytes, .. } if *s == sock => {
                got.push(bytes.to_vec());
                false
            }
            _ => true,
        });
        got.len() >= n
    });
    got
}

#[test]
fn batched_udp_receive_keeps_order_and_drops_oversized() {
    let mut h = Harness::new(Config {
        udp_batch: 16,
        udp_slot_len: 128,
        ..Config::default()
    });
    let sock = h.reactor.bind_udp(localhost()).expect("bind");
    let addr = h.reactor.udp_addr(sock).expect("addr");
    let sender = std::net::UdpSocket::bind(localhost()).expect("sender");
    let from = sender.local_addr().expect("sender addr");

    // 100 datagrams with one too long for a slot in the middle; the socket buffer holds them
    // all, so they are read in batches.
    let n = 100;
    for i in 0..n {
        sender
            .send_to(&pattern(i, 16 + i % 64), addr)
            .expect("send");
        if i == 50 {
            sender.send_to(&pattern(0, 200), addr).expect("send long");
        }
    }
    let before = h.reactor.stats();
    let mut got = Vec::new();
    h.until("100 datagrams", |h| {
        h.backlog.retain(|ev| match ev {
            NetEvent::Datagram {
                sock: s,
                bytes,
                from: f,
            } if *s == sock => {
                assert_eq!(*f, from);
                got.push(bytes.to_vec());
                false
            }
            _ => true,
        });
        got.len() >= n
    });
    for (i, d) in got.iter().enumerate() {
        assert!(*d == pattern(i, 16 + i % 64), "datagram {i} differs");
    }
    let stats = h.reactor.stats();
    assert_eq!(stats.udp_truncated, 1);
    assert_eq!(stats.datagrams_in, n as u64);
    let calls = stats.udp_recv_calls - before.udp_recv_calls;
    assert!(
        calls < n as u64 / 4,
        "{calls} receive calls for {n} datagrams"
    );
}

#[test]
fn kernel_drops_are_counted_when_the_receive_buffer_overflows() {
    let mut h = Harness::new(Config {
        udp_batch: 32,
        ..Config::default()
    });
    let sock = h.reactor.bind_udp(localhost()).expect("bind");
    let addr = h.reactor.udp_addr(sock).expect("addr");
    let small = h
        .reactor
        .set_udp_recv_buffer(sock, 4096)
        .expect("small buffer");
    assert!(small > 0);
    let sender = std::net::UdpSocket::bind(localhost()).expect("sender");

    // Far more than a 4 KiB buffer holds, sent while the reactor does not read.
    let sent = 2000;
    for i in 0..sent {
        sender.send_to(&pattern(i, 64), addr).expect("send");
    }
    // Non-blocking turns until one brings no datagram: the socket is then empty.
    let mut received = 0;
    for _ in 0..sent {
        h.turn_for(Duration::ZERO);
        let before = h.backlog.len();
        h.backlog
            .retain(|ev| !matches!(ev, NetEvent::Datagram { .. }));
        if before == h.backlog.len() {
            break;
        }
        received += before - h.backlog.len();
    }
    assert!(received < sent, "a 4 KiB buffer held {received} datagrams");
    // The kernel reports its drop count with the next datagram it queues.
    sender.send_to(b"marker", addr).expect("send marker");
    let last = take_datagrams(&mut h, sock, 1);
    assert_eq!(last, vec![b"marker".to_vec()]);
    assert_eq!(
        h.reactor.udp_kernel_drops(sock) + received as u64,
        sent as u64,
        "every datagram was either received or counted as dropped"
    );
    let big = h
        .reactor
        .set_udp_recv_buffer(sock, 1024 * 1024)
        .expect("big buffer");
    assert!(big > small);
}

#[test]
fn waker_from_another_thread_reports_woken() {
    let mut h = Harness::new(Config::default());
    let waker = h.reactor.waker();
    let t = thread::spawn(move || waker.wake().expect("wake"));
    h.expect("Woken", |e| *e == NetEvent::Woken);
    t.join().expect("waker thread");
}

#[test]
fn hangup_signal_is_reported() {
    // The only test that touches signals: handlers are process-wide.
    let mut h = Harness::new(Config::default());
    h.reactor.enable_signals().expect("signals");
    h.reactor.enable_signals().expect("idempotent");
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).expect("raise");
    h.expect("SIGHUP", |e| *e == NetEvent::Signal(Signal::Hangup));
}

#[test]
fn large_transfers_arrive_intact_and_in_order() {
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let client = h.reactor.connect(addr).expect("connect");
    let (server, _) = h.expect_accept();
    h.expect("Connected", |e| *e == NetEvent::Connected { conn: client });

    // Both directions at once, 8 MiB each, different contents.
    let len = 8 * 1024 * 1024;
    let up = pattern(0, len);
    let down = pattern(len, len);
    let mut sent = [0usize; 2];
    let (mut at_server, mut at_client) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + WAIT;
    while at_server.len() < len || at_client.len() < len {
        assert!(Instant::now() < deadline, "transfer stalled");
        for (k, (conn, data)) in [(client, &up), (server, &down)].into_iter().enumerate() {
            while sent[k] < len && h.reactor.queued_bytes(conn) < 512 * 1024 {
                let end = (sent[k] + 256 * 1024).min(len);
                assert!(h.reactor.send(conn, &data[sent[k]..end]));
                sent[k] = end;
            }
        }
        h.turn_for(Duration::from_millis(100));
        h.take_received(server, &mut at_server);
        h.take_received(client, &mut at_client);
    }
    assert!(at_server == up, "client-to-server bytes differ");
    assert!(at_client == down, "server-to-client bytes differ");
    let stats = h.reactor.stats();
    assert_eq!(stats.bytes_in, 2 * len as u64);
    assert_eq!(stats.bytes_out, 2 * len as u64);
}

#[test]
fn many_connections_at_once() {
    const N: usize = 500;
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let clients: Vec<ConnId> = (0..N)
        .map(|_| h.reactor.connect(addr).expect("connect"))
        .collect();
    for (i, &c) in clients.iter().enumerate() {
        // Queued until connected.
        assert!(h.reactor.send(c, format!("client {i};").as_bytes()));
    }

    // Servers echo; clients collect.
    let client_set: HashSet<ConnId> = clients.iter().copied().collect();
    let mut servers = HashSet::new();
    let mut connected = 0;
    let mut replies: HashMap<ConnId, Vec<u8>> = HashMap::new();
    let expected = |i: usize| format!("client {i};").into_bytes();
    h.until("every echo", |h| {
        for ev in std::mem::take(&mut h.backlog) {
            match ev {
                NetEvent::Accepted { conn, .. } => assert!(servers.insert(conn)),
                NetEvent::Connected { conn } => {
                    assert!(client_set.contains(&conn));
                    connected += 1;
                }
                NetEvent::Received { conn, bytes } if servers.contains(&conn) => {
                    assert!(h.reactor.send(conn, &bytes));
                }
                NetEvent::Received { conn, bytes } if client_set.contains(&conn) => {
                    replies.entry(conn).or_default().extend_from_slice(&bytes);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        clients
            .iter()
            .enumerate()
            .all(|(i, c)| replies.get(c).is_some_and(|r| r.len() >= expected(i).len()))
    });
    assert_eq!((servers.len(), connected), (N, N));
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(replies[c], expected(i), "reply for client {i}");
    }
    assert_eq!(h.reactor.connection_count(), 2 * N);

    for &c in &clients {
        h.reactor.close(c);
    }
    let mut closed: HashMap<ConnId, CloseReason> = HashMap::new();
    h.until("every Closed", |h| {
        for ev in std::mem::take(&mut h.backlog) {
            match ev {
                NetEvent::Closed { conn, reason } => {
                    assert!(
                        closed.insert(conn, reason).is_none(),
                        "second Closed for {conn}"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        closed.len() == 2 * N
    });
    for c in &clients {
        assert_eq!(closed[c], CloseReason::Local);
    }
    for s in &servers {
        assert_eq!(closed[s], CloseReason::Remote);
    }
    assert_eq!(h.reactor.connection_count(), 0);
}

#[test]
fn shutdown_closes_listeners_and_flushes_connections() {
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    let mut client = std_client(addr);
    let (incoming, _) = h.expect_accept();
    let server = TcpListener::bind(localhost()).expect("std listener");
    let outgoing = h
        .reactor
        .connect(server.local_addr().expect("addr"))
        .expect("connect");
    h.expect("Connected", |e| {
        *e == NetEvent::Connected { conn: outgoing }
    });

    let goodbye = pattern(0, 512 * 1024);
    assert!(h.reactor.send(incoming, &goodbye));
    h.reactor.shutdown();
    assert_eq!(h.reactor.listener_addr(listener), None);
    assert!(!h.reactor.is_open(incoming) && !h.reactor.is_open(outgoing));

    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("read to EOF");
    assert!(got == goodbye, "the goodbye was not flushed");
    assert_eq!(h.expect_closed(incoming), CloseReason::Shutdown);
    assert_eq!(h.expect_closed(outgoing), CloseReason::Shutdown);
    assert_eq!(h.reactor.connection_count(), 0);
    assert!(h.reactor.is_quiescent());
}

/// Runs `emfile_child` in a child process: it exhausts the process's descriptors, which no
/// other test running in parallel could survive.
#[test]
fn accept_sheds_connections_when_out_of_descriptors() {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([
            "emfile_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(EMFILE_CHILD_ENV, "1")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child did not run\n{stdout}");
}

#[test]
#[ignore = "run in a child process by accept_sheds_connections_when_out_of_descriptors"]
fn emfile_child() {
    if std::env::var_os(EMFILE_CHILD_ENV).is_none() {
        return;
    }
    let mut h = Harness::new(Config::default());
    let listener = h.reactor.listen(localhost()).expect("listen");
    let addr = h.reactor.listener_addr(listener).expect("listener addr");
    // Completes in the kernel's backlog; the reactor has not accepted it yet.
    let mut doomed = std_client(addr);

    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }

    // The pending connection is shed (accepted and closed with the reserve descriptor).
    h.until("the accept error", |h| h.reactor.stats().accept_errors >= 1);
    let mut buf = [0; 1];
    match doomed.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("the shed connection should be closed, got {other:?}"),
    }
    assert!(h.reactor.stats().accept_dropped >= 1);
    assert!(h.backlog.is_empty(), "{:?}", brief(&h.backlog));

    // No busy loop: with nothing pending, turns block until their deadline.
    let turns_before = h.reactor.stats().turns;
    let quiet_until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < quiet_until {
        let mut out = Vec::new();
        h.reactor.turn(Some(quiet_until), &mut out).expect("turn");
        assert!(out.is_empty(), "{:?}", brief(&out));
    }
    let turns = h.reactor.stats().turns - turns_before;
    assert!(turns <= 5, "{turns} turns in 200 ms: spinning");

    // With descriptors back, accepting works again.
    drop(hog);
    let _client = std_client(addr);
    h.expect_accept();
}
