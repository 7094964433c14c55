//! End-to-end tests of the secure registry link against the real binary: the key file, the
//! fingerprint it prints, pinning, a changed key, versions, and what a wire capture shows.

// Real processes run on the real clock: the tests read it to set deadlines.
#![allow(clippy::disallowed_methods)]

#[path = "e2e/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use harness::{hello, Client, Next, Registry, PW, REPLY_TIMEOUT};
use p2pchat_protocol::secure::{Fingerprint, Remote, SecureError};
use p2pchat_protocol::status::BAD_VERSION;
use p2pchat_protocol::{Frame, Msg, Role};

fn proved_key(c: &Client) -> Fingerprint {
    match c.secure().and_then(|s| s.remote()) {
        Some(Remote::Key(k)) => k.fingerprint(),
        other => panic!("no registry key proved: {other:?}"),
    }
}

#[test]
fn the_key_is_created_private_beside_the_db_printed_and_kept_across_restarts() {
    let mut reg = Registry::start(&[]);
    let printed = reg.key();
    let mut c = reg.client();
    assert_eq!(proved_key(&c), printed, "the key proved is the key printed");
    c.must_register("alice");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(reg.key_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }
    reg.restart();
    assert_eq!(reg.key(), printed);
    let mut c = Client::connect(reg.tcp);
    c.pin = Some(printed);
    assert!(matches!(c.hello(), Msg::Welcome { .. }));
}

#[test]
fn a_changed_registry_key_is_refused_before_anything_is_sent() {
    let mut reg = Registry::start(&[]);
    let old = reg.key();
    reg.kill9();
    std::fs::remove_file(reg.key_file()).unwrap();
    reg.restart_same_ports();
    assert_ne!(reg.key(), old, "a new key was made");
    let mut c = Client::connect(reg.tcp);
    c.pin = Some(old);
    let login = Frame::new(
        1,
        Msg::Login {
            name: "alice".into(),
            password: PW.into(),
            listen: "0.0.0.0:1".parse().unwrap(),
        },
    );
    let err = c.write(&login.to_bytes()).unwrap_err();
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<SecureError>())
        .cloned();
    assert_eq!(
        inner,
        Some(SecureError::KeyMismatch {
            expected: old.to_string(),
            got: reg.key().to_string(),
        })
    );
}

#[test]
fn a_client_of_the_old_version_is_told_in_the_clear() {
    let reg = Registry::start(&[]);
    let mut c = Client::connect(reg.tcp);
    c.send_raw(&Frame::event(hello(1, Role::Client)).to_bytes());
    let (code, message) = c.expect_closed().expect("an error before the close");
    assert_eq!(code, BAD_VERSION);
    assert!(
        message.contains("version 1") && message.contains("speaks 2"),
        "{message}"
    );
}

/// A TCP relay that records every byte in both directions, and can flip one byte of what
/// the client sends once `flip_after` bytes went by.
struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    fn start(to: SocketAddr, flip_at: Option<usize>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let server = TcpStream::connect(to).unwrap();
            let pipe = |mut from: TcpStream, mut to: TcpStream, flip: Option<usize>| {
                let record = Arc::clone(&record);
                thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    let mut total = 0usize;
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if let Some(at) = flip {
                            if (total..total + n).contains(&at) {
                                buf[at - total] ^= 0x01;
                            }
                        }
                        total += n;
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                })
            };
            let up = pipe(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                flip_at,
            );
            let down = pipe(server, client, None);
            let _ = (up.join(), down.join());
        });
        Proxy { addr, seen }
    }

    fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_capture_of_a_registry_session_shows_no_password_key_or_name() {
    let reg = Registry::start(&[]);
    reg.client().must_register("bob");
    let proxy = Proxy::start(reg.tcp, None);
    let mut c = Client::connect(proxy.addr);
    assert!(matches!(c.hello(), Msg::Welcome { .. }));
    let password = "a very secret pass phrase";
    c.register_with("alice", password);
    let session = c.must_login("alice", password, "0.0.0.0:7000");
    let _ = c.search("bob");
    let created = c.request(Msg::CreateRoom {
        room: "hideout".into(),
    });
    assert_eq!(created, Msg::Ok);
    let seen = proxy.seen();
    assert!(
        seen.len() > 500,
        "the capture saw the session ({} bytes)",
        seen.len()
    );
    for (what, secret) in [
        ("password", password.as_bytes()),
        ("heartbeat key", &session.key[..]),
        ("resume token", &session.token[..]),
        ("username", b"alice"),
        ("searched name", b"bob"),
        ("room name", b"hideout"),
    ] {
        assert!(!contains(&seen, secret), "the capture shows the {what}");
    }
}

#[test]
fn an_altered_byte_on_the_wire_closes_the_link() {
    let reg = Registry::start(&[]);
    reg.client().must_register("alice");
    // The client's first 116 bytes are message 1 (53), message 3 (22) and the sealed hello
    // (41); byte 130 is inside the sealed login that follows.
    let proxy = Proxy::start(reg.tcp, Some(130));
    let mut c = Client::connect(proxy.addr);
    assert!(matches!(c.hello(), Msg::Welcome { .. }));
    c.send(&Frame::new(
        9,
        Msg::Login {
            name: "alice".into(),
            password: PW.into(),
            listen: "0.0.0.0:7000".parse().unwrap(),
        },
    ));
    // The registry drops the link instead of acting on the altered request.
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        match c.next(deadline) {
            Next::Closed => break,
            Next::Frame(f) => assert_ne!(f.id, 9, "the altered login was answered: {f:?}"),
            Next::TimedOut => panic!("the link stayed open"),
        }
    }
}

#[test]
fn pipelined_requests_are_answered_in_order_in_few_records() {
    let reg = Registry::start(&[]);
    let mut sock = TcpStream::connect(reg.tcp).unwrap();
    let hello = Frame::new(1, hello(p2pchat_protocol::VERSION, Role::Client)).to_bytes();
    let mut link = p2pchat_registry::secure::client_handshake(
        &mut sock,
        Some(reg.key()),
        &hello,
        REPLY_TIMEOUT,
    )
    .unwrap();
    // 16 pings in one record and one write, as a pipelining client sends them.
    let burst: Vec<u8> = (100..116u32)
        .flat_map(|id| Frame::new(id, Msg::Ping).to_bytes())
        .collect();
    link.send(&burst).unwrap();
    sock.write_all(&link.take_outgoing()).unwrap();
    // Read raw bytes, count the records they hold, open them, until the 16th pong.
    let mut records = p2pchat_protocol::secure::RecordReader::new();
    let mut frames = p2pchat_protocol::FrameDecoder::new(1 << 16);
    let (mut count, mut ids) = (0, Vec::new());
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut buf = [0u8; 4096];
    while ids.len() < 16 {
        assert!(
            Instant::now() < deadline,
            "only {} pongs: {ids:?}",
            ids.len()
        );
        sock.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "the registry closed the link");
        records.push(&buf[..n]);
        while let Some(rec) = records.next_record().unwrap() {
            count += 1;
            link.receive(&rec).unwrap();
        }
        frames.push(&link.take_plaintext());
        while let Some(f) = frames.next_frame().unwrap() {
            match f.msg {
                Msg::Welcome { .. } => {}
                Msg::Pong => ids.push(f.id),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(ids, (100..116).collect::<Vec<u32>>(), "in order");
    // The welcome's record plus the replies: one record for the 16 in practice (a read cut
    // in two would make it two), never a record per reply.
    assert!(count <= 4, "{count} records for the welcome and 16 pongs");
}
