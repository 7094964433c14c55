//! End-to-end tests of the `p2pchat-registry` binary: each test starts its own registry process
//! on 127.0.0.1 with ephemeral ports and a temp SQLite file, and talks to it over real sockets
//! with a small blocking client (`e2e/harness.rs`).
//!
//! Waits are on events with deadlines: socket read timeouts, the child's exit, or polling a
//! condition ("eventually offline") until a deadline. Timing assertions only check lower
//! bounds the registry can never beat (a session cannot expire before its timeout) and
//! generous upper bounds.

// Real processes run on the real clock: the tests read it to set deadlines.
#![allow(clippy::disallowed_methods)]

#[path = "e2e/harness.rs"]
mod harness;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use harness::{
    expect_error, heartbeat, hello, run_to_exit, wait_until, Client, Heartbeats, Registry, PW,
    REPLY_TIMEOUT,
};
use p2pchat_protocol::status::*;
use p2pchat_protocol::{Frame, Msg, Presence, Role, HEARTBEAT_LEN, VERSION};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Extra time allowed on top of a deadline the registry must meet.
const SLACK: Duration = Duration::from_secs(2);

// ----- accounts -----

#[test]
fn register_succeeds_and_a_taken_name_is_refused() {
    let reg = Registry::start(&[]);
    let mut c = reg.client();
    assert_eq!(c.register_with("alice", PW), Msg::Ok);
    expect_error(c.register_with("alice", "another password"), NAME_TAKEN);
    // Taken for everyone, not just this connection.
    let mut d = reg.client();
    expect_error(d.register_with("alice", PW), NAME_TAKEN);
    // The account is real: it logs in with the first password.
    d.must_login("alice", PW, "127.0.0.1:4000");
}

#[test]
fn invalid_names_and_passwords_are_refused() {
    let reg = Registry::start(&[]);
    let mut c = reg.client();
    for name in ["", "has space", &"x".repeat(33), "émile", "a/b"] {
        expect_error(c.register_with(name, PW), INVALID_NAME);
    }
    for password in ["seven77", &"p".repeat(129)] {
        expect_error(c.register_with("alice", password), INVALID_PASSWORD);
    }
    // The limits themselves are accepted, and the refusals did not take the name.
    assert_eq!(c.register_with(&"x".repeat(32), "eightchr"), Msg::Ok);
    assert_eq!(c.register_with("alice", &"p".repeat(128)), Msg::Ok);
}

#[test]
fn login_returns_a_sane_session() {
    let reg = Registry::start(&["--heartbeat-timeout", "3s"]);
    let (mut a, s) = reg.user("alice", "0.0.0.0:4567");
    assert_eq!(s.name, "alice");
    assert_ne!(s.session, 0);
    assert_ne!(s.key, [0; 32]);
    assert!(!s.token.is_empty());
    assert_eq!(s.timeout_ms, 3000);
    assert_eq!(s.interval_ms, 1000, "interval is a third of the timeout");
    assert_eq!(s.udp_port, reg.udp.port(), "the printed udp port");
    assert_eq!(
        s.advertised,
        addr("127.0.0.1:4567"),
        "an unspecified listen IP is replaced by the TCP source"
    );

    let (mut b, t) = reg.user("bob", "10.9.8.7:1234");
    assert_eq!(t.advertised, addr("10.9.8.7:1234"), "a specific IP is kept");
    assert_ne!(t.session, s.session);
    assert_ne!(t.key, s.key);
    assert_ne!(t.token, s.token);
    assert_eq!(b.search("alice"), Presence::Online(addr("127.0.0.1:4567")));
    assert_eq!(a.search("bob"), Presence::Online(addr("10.9.8.7:1234")));
}

#[test]
fn wrong_password_and_unknown_user_are_indistinguishable() {
    let reg = Registry::start(&[]);
    let mut c = reg.client();
    c.must_register("alice");
    let wrong = expect_error(
        c.login("alice", "wrong password", "0.0.0.0:1"),
        BAD_CREDENTIALS,
    );
    let unknown = expect_error(c.login("nobody", PW, "0.0.0.0:1"), BAD_CREDENTIALS);
    assert_eq!(wrong, unknown);
    // The connection is still usable, and the right password works.
    c.must_login("alice", PW, "0.0.0.0:1");
}

#[test]
fn login_while_online_is_refused() {
    let reg = Registry::start(&[]);
    let (mut a, _) = reg.user("alice", "0.0.0.0:5001");
    let mut b = reg.client();
    expect_error(b.login("alice", PW, "0.0.0.0:5002"), ALREADY_ONLINE);
    expect_error(a.login("alice", PW, "0.0.0.0:5002"), ALREADY_LOGGED_IN);
    // The first session is untouched.
    assert_eq!(a.search("alice"), Presence::Online(addr("127.0.0.1:5001")));
}

#[test]
fn repeated_failures_of_one_name_back_off() {
    let reg = Registry::start(&[]);
    let mut c = reg.client();
    c.must_register("alice");
    for _ in 0..5 {
        expect_error(
            c.login("alice", "wrong password", "0.0.0.0:1"),
            BAD_CREDENTIALS,
        );
    }
    // Even the right password waits now.
    expect_error(c.login("alice", PW, "0.0.0.0:1"), LOCKED_OUT);
    // Other names are not affected.
    c.must_register("bob");
    c.must_login("bob", PW, "0.0.0.0:1");
}

#[test]
fn password_attempts_are_rate_limited_per_source_but_resumes_are_not() {
    // 6 a minute: a burst of 3.
    let reg = Registry::start(&["--auth-rate", "6"]);
    let (a, s) = reg.user("alice", "0.0.0.0:1"); // attempts 1 and 2
    let mut c = reg.client();
    c.must_register("bob"); // attempt 3
    expect_error(c.register_with("carol", PW), RATE_LIMITED);
    expect_error(c.login("bob", PW, "0.0.0.0:2"), RATE_LIMITED);
    // Resumes have their own, generous limit.
    drop(a);
    let mut a2 = reg.client();
    a2.must_resume("alice", &s.token, "0.0.0.0:1");
}

// ----- presence, search, online list -----

#[test]
fn search_reports_online_offline_and_not_found() {
    let reg = Registry::start(&[]);
    let mut anon = reg.client();
    expect_error(
        anon.request(Msg::Search {
            name: "alice".into(),
        }),
        NOT_LOGGED_IN,
    );
    let (mut a, _) = reg.user("alice", "0.0.0.0:5001");
    anon.must_register("bob");
    assert_eq!(a.search("alice"), Presence::Online(addr("127.0.0.1:5001")));
    assert_eq!(a.search("bob"), Presence::Offline);
    assert_eq!(a.search("carol"), Presence::NotFound);

    let mut b = reg.client();
    b.must_login("bob", PW, "0.0.0.0:5002");
    assert_eq!(a.search("bob"), Presence::Online(addr("127.0.0.1:5002")));
    // Closing the TCP connection ends the session.
    drop(b);
    wait_until("bob offline", Instant::now() + REPLY_TIMEOUT, || {
        a.search("bob") == Presence::Offline
    });
}

#[test]
fn online_list_is_sorted_and_paged() {
    let reg = Registry::start(&[]);
    let mut clients: Vec<Client> = ["echo", "alpha", "delta", "bravo", "charlie"]
        .iter()
        .enumerate()
        .map(|(i, n)| reg.user(n, &format!("0.0.0.0:{}", 6000 + i)).0)
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let c = &mut clients[0];
    assert_eq!(c.list_online("", 2), (s(&["alpha", "bravo"]), true));
    assert_eq!(c.list_online("bravo", 2), (s(&["charlie", "delta"]), true));
    assert_eq!(c.list_online("delta", 2), (s(&["echo"]), false));
    assert_eq!(c.list_online("echo", 2), (vec![], false));
    assert_eq!(
        c.list_online("b", 2),
        (s(&["bravo", "charlie"]), true),
        "`after` need not be a name"
    );
    let all = s(&["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(
        c.list_online("", 0),
        (all, false),
        "0 asks for the default page"
    );

    // A user who disconnects leaves the list.
    drop(clients.remove(4)); // charlie
    let c = &mut clients[0];
    wait_until(
        "charlie leaves the list",
        Instant::now() + REPLY_TIMEOUT,
        || c.list_online("", 0).0 == s(&["alpha", "bravo", "delta", "echo"]),
    );
}

#[test]
fn rename_moves_the_account_and_its_presence() {
    let reg = Registry::start(&[]);
    let (mut a, _) = reg.user("alice", "0.0.0.0:5001");
    let (mut b, _) = reg.user("bob", "0.0.0.0:5002");
    assert_eq!(
        a.request(Msg::Rename {
            name: "alicia".into()
        }),
        Msg::Ok
    );
    assert_eq!(b.search("alice"), Presence::NotFound);
    assert_eq!(b.search("alicia"), Presence::Online(addr("127.0.0.1:5001")));
    assert_eq!(b.list_online("", 0).0, vec!["alicia", "bob"]);
    expect_error(a.request(Msg::Rename { name: "bob".into() }), NAME_TAKEN);
    expect_error(
        a.request(Msg::Rename {
            name: "not valid".into(),
        }),
        INVALID_NAME,
    );

    assert_eq!(a.request(Msg::Logout), Msg::Ok);
    assert_eq!(b.search("alicia"), Presence::Offline);
    expect_error(a.login("alice", PW, "0.0.0.0:5001"), BAD_CREDENTIALS);
    a.must_login("alicia", PW, "0.0.0.0:5001");
    assert_eq!(b.search("alicia"), Presence::Online(addr("127.0.0.1:5001")));
    // The old name is free again.
    let mut c = reg.client();
    c.must_register("alice");
}

#[test]
fn logout_ends_presence_and_the_resume_token() {
    let reg = Registry::start(&[]);
    let (mut a, s) = reg.user("alice", "0.0.0.0:5001");
    let (mut b, _) = reg.user("bob", "0.0.0.0:5002");
    assert_eq!(a.request(Msg::Logout), Msg::Ok);
    assert_eq!(b.search("alice"), Presence::Offline);
    expect_error(
        a.resume("alice", &s.token, "0.0.0.0:5001"),
        BAD_RESUME_TOKEN,
    );
    expect_error(a.request(Msg::Logout), NOT_LOGGED_IN);
    expect_error(a.request(Msg::Search { name: "bob".into() }), NOT_LOGGED_IN);
    // The connection stays open and can log in again.
    a.must_login("alice", PW, "0.0.0.0:5001");
    assert_eq!(b.search("alice"), Presence::Online(addr("127.0.0.1:5001")));
}

// ----- resume -----

#[test]
fn resume_after_a_dropped_connection_needs_no_password() {
    let reg = Registry::start(&[]);
    let (a, s1) = reg.user("alice", "0.0.0.0:5001");
    let (mut b, _) = reg.user("bob", "0.0.0.0:5002");
    drop(a);
    let mut a2 = reg.client();
    let s2 = a2.must_resume("alice", &s1.token, "0.0.0.0:5003");
    assert_eq!(s2.name, "alice");
    assert_ne!(s2.token, s1.token, "each resume issues a new token");
    assert_ne!(s2.session, s1.session);
    assert_ne!(s2.key, s1.key);
    assert_eq!(b.search("alice"), Presence::Online(addr("127.0.0.1:5003")));

    // The old token was replaced; a token only works for its own account.
    let mut a3 = reg.client();
    expect_error(
        a3.resume("alice", &s1.token, "0.0.0.0:5004"),
        BAD_RESUME_TOKEN,
    );
    expect_error(
        a3.resume("bob", &s2.token, "0.0.0.0:5004"),
        BAD_RESUME_TOKEN,
    );
    expect_error(
        a3.resume("alice", b"forged", "0.0.0.0:5004"),
        BAD_RESUME_TOKEN,
    );
    // Failed resumes change nothing.
    assert_eq!(b.search("alice"), Presence::Online(addr("127.0.0.1:5003")));
    assert_eq!(a2.search("bob"), Presence::Online(addr("127.0.0.1:5002")));
}

#[test]
fn resume_replaces_a_session_whose_connection_is_still_open() {
    let reg = Registry::start(&[]);
    let (mut a, s1) = reg.user("alice", "0.0.0.0:5001");
    let (mut b, _) = reg.user("bob", "0.0.0.0:5002");
    let mut a2 = reg.client();
    let s2 = a2.must_resume("alice", &s1.token, "0.0.0.0:5003");
    assert_ne!(s2.session, s1.session);
    let (code, _) = a.expect_closed().expect("the old connection is told why");
    assert_eq!(code, ALREADY_ONLINE);
    assert_eq!(b.search("alice"), Presence::Online(addr("127.0.0.1:5003")));
    assert_eq!(a2.search("bob"), Presence::Online(addr("127.0.0.1:5002")));
}

// ----- heartbeats -----

#[test]
fn sessions_without_heartbeats_expire_and_heartbeating_ones_stay() {
    let reg = Registry::start(&["--heartbeat-timeout", "1500ms"]);
    let timeout = Duration::from_millis(1500);
    let mut a = reg.client();
    a.must_register("alice");
    let a_asked = Instant::now();
    let sa = a.must_login("alice", PW, "0.0.0.0:5001");
    assert_eq!(sa.interval_ms, 500);
    let _beats = Heartbeats::start(reg.udp, &sa, Duration::from_millis(300));

    let mut b = reg.client();
    b.must_register("bob");
    let b_asked = Instant::now();
    b.must_login("bob", PW, "0.0.0.0:5002");
    assert_eq!(a.search("bob"), Presence::Online(addr("127.0.0.1:5002")));
    let offline_at = wait_until("bob expires", b_asked + timeout + SLACK, || {
        a.search("bob") == Presence::Offline
    });
    assert!(
        offline_at - b_asked >= timeout,
        "bob expired after {:?}, before the timeout",
        offline_at - b_asked
    );
    let (code, _) = b.expect_closed().expect("bob's connection is told");
    assert_eq!(code, TIMEOUT);

    // Alice, heartbeating, stays online for at least two timeouts.
    while a_asked.elapsed() < 2 * timeout + Duration::from_millis(200) {
        assert_eq!(a.search("alice"), Presence::Online(addr("127.0.0.1:5001")));
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn forged_and_replayed_heartbeats_do_not_keep_a_session_alive() {
    let reg = Registry::start(&["--heartbeat-timeout", "1500ms"]);
    let timeout = Duration::from_millis(1500);
    let (mut o, so) = reg.user("olga", "0.0.0.0:5001");
    let _beats = Heartbeats::start(reg.udp, &so, Duration::from_millis(300));
    let mut v = reg.client();
    v.must_register("victor");
    let v_asked = Instant::now();
    let sv = v.must_login("victor", PW, "0.0.0.0:5002");

    // One valid heartbeat, late enough that victor would expire sooner without it: it moves
    // the expiry to at least `hb_sent + timeout`, which the assertion below relies on.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pace = (v_asked + timeout / 2).saturating_duration_since(Instant::now());
    thread::sleep(pace);
    let valid = heartbeat(&sv.key, sv.session, 1);
    let hb_sent = Instant::now();
    sock.send_to(&valid, reg.udp).unwrap();

    // From now on only replays and forgeries.
    let mut counter = 2;
    let offline_at = wait_until("victor expires", hb_sent + timeout + SLACK, || {
        sock.send_to(&valid, reg.udp).unwrap(); // replay
        let forged = heartbeat(&[0x5a; 32], sv.session, counter); // wrong key
        sock.send_to(&forged, reg.udp).unwrap();
        let mut flipped = heartbeat(&sv.key, sv.session, counter); // tag broken
        flipped[HEARTBEAT_LEN - 1] ^= 1;
        sock.send_to(&flipped, reg.udp).unwrap();
        let mut moved = heartbeat(&sv.key, sv.session, counter); // counter changed after signing
        moved[16] ^= 0x80;
        sock.send_to(&moved, reg.udp).unwrap();
        counter += 1;
        o.search("victor") == Presence::Offline
    });
    assert!(
        offline_at - hb_sent >= timeout,
        "victor expired {:?} after the valid heartbeat: it was not counted",
        offline_at - hb_sent
    );
    let (code, _) = v.expect_closed().expect("victor's connection is told");
    assert_eq!(code, TIMEOUT);
    assert_eq!(o.search("olga"), Presence::Online(addr("127.0.0.1:5001")));
}

#[test]
fn junk_datagrams_are_ignored() {
    let reg = Registry::start(&[]);
    let (mut a, s) = reg.user("alice", "0.0.0.0:5001");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let valid = heartbeat(&s.key, s.session, 1);
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        b"garbage".to_vec(),
        vec![0; HEARTBEAT_LEN],
        vec![0xab; 65_000],
        valid[..HEARTBEAT_LEN - 1].to_vec(),
        [&valid[..], &[0]].concat(),
        heartbeat(&[1; 32], s.session, 2).to_vec(),
        heartbeat(&s.key, s.session ^ 1, 3).to_vec(),
    ];
    // Pseudo-random datagrams of every size up to 1500 bytes, some starting with the kind.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..500 {
        let mut d = Vec::new();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for _ in 0..(x % 1500) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.push(x as u8);
        }
        if i % 2 == 0 && !d.is_empty() {
            d[0] = 1;
        }
        junk.push(d);
    }
    for d in &junk {
        sock.send_to(d, reg.udp).unwrap();
    }
    assert_eq!(a.search("alice"), Presence::Online(addr("127.0.0.1:5001")));
    let (mut b, _) = reg.user("bob", "0.0.0.0:5002");
    assert_eq!(b.search("alice"), Presence::Online(addr("127.0.0.1:5001")));
    assert!(reg_alive(&reg, &mut a));
    // The registry never answers a datagram.
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let got = sock.recv_from(&mut buf);
    assert!(
        matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the registry answered a datagram: {got:?}"
    );
}

fn reg_alive(reg: &Registry, good: &mut Client) -> bool {
    good.request(Msg::Ping) == Msg::Pong && {
        let mut c = reg.client();
        c.request(Msg::Ping) == Msg::Pong
    }
}

// ----- restarts and shutdown -----

#[test]
fn restart_after_kill_keeps_accounts_and_nobody_is_online() {
    let mut reg = Registry::start(&[]);
    let names = ["alice", "bob", "carol"];
    // All three registered and online when the registry dies.
    let before: Vec<Client> = names
        .iter()
        .map(|n| reg.user(n, "0.0.0.0:5000").0)
        .collect();
    reg.kill9();
    drop(before);
    reg.restart();

    let mut a = reg.client();
    a.must_login("alice", PW, "0.0.0.0:5001");
    assert_eq!(a.search("bob"), Presence::Offline);
    assert_eq!(a.search("carol"), Presence::Offline);
    assert_eq!(a.list_online("", 0).0, vec!["alice"]);
    let mut b = reg.client();
    b.must_login("bob", PW, "0.0.0.0:5002");
    let mut c = reg.client();
    c.must_login("carol", PW, "0.0.0.0:5003");
    assert_eq!(a.list_online("", 0).0, names.to_vec());
    assert_eq!(c.search("bob"), Presence::Online(addr("127.0.0.1:5002")));
}

fn signal_shuts_down_gracefully(sig: libc::c_int) {
    let mut reg = Registry::start(&[]);
    let (mut a, _) = reg.user("alice", "0.0.0.0:5001");
    let mut idle = reg.client();
    reg.signal(sig);
    let (code, _) = a.expect_closed().expect("a logged-in client is told");
    assert_eq!(code, SHUTTING_DOWN);
    let (code, _) = idle
        .expect_closed()
        .expect("a client not logged in is told");
    assert_eq!(code, SHUTTING_DOWN);
    let status = reg
        .wait_exit(REPLY_TIMEOUT)
        .expect("the registry exits after a signal");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let out = reg.stdout_lines();
    assert_eq!(out.len(), 1, "exactly one stdout line: {out:?}");
    assert!(out[0].starts_with("listening tcp="), "{out:?}");

    // The database was closed cleanly: every account is there after a restart.
    reg.restart();
    let mut c = reg.client();
    expect_error(c.register_with("alice", PW), NAME_TAKEN);
    c.must_login("alice", PW, "0.0.0.0:5001");
}

#[test]
fn sigterm_tells_clients_and_exits_cleanly() {
    signal_shuts_down_gracefully(libc::SIGTERM);
}

#[test]
fn sigint_tells_clients_and_exits_cleanly() {
    signal_shuts_down_gracefully(libc::SIGINT);
}

#[test]
fn resume_token_survives_a_restart() {
    let mut reg = Registry::start(&[]);
    let (_a, s1) = reg.user("alice", "0.0.0.0:5001");
    let (tcp, udp) = (reg.tcp, reg.udp);
    reg.kill9();
    reg.restart_same_ports();
    assert_eq!((reg.tcp, reg.udp), (tcp, udp));

    let mut a2 = reg.client();
    let s2 = a2.must_resume("alice", &s1.token, "0.0.0.0:5002");
    assert_ne!(s2.token, s1.token);
    assert_eq!(s2.udp_port, udp.port());
    assert_eq!(a2.search("alice"), Presence::Online(addr("127.0.0.1:5002")));
    let mut a3 = reg.client();
    expect_error(
        a3.resume("alice", &s1.token, "0.0.0.0:5003"),
        BAD_RESUME_TOKEN,
    );
}

#[test]
fn command_line_errors_exit_with_the_contract_codes() {
    let (status, out, _) = run_to_exit(&["--version"]);
    assert_eq!(status.code(), Some(0));
    assert!(out.starts_with("p2pchat-registry "), "{out:?}");
    let (status, _, err) = run_to_exit(&["--bogus"]);
    assert_eq!(status.code(), Some(2), "usage error: {err}");
    let (status, _, err) = run_to_exit(&["--heartbeat-timeout", "20"]);
    assert_eq!(status.code(), Some(2), "a duration needs a unit: {err}");

    // A runtime error (the TCP port is taken): exit 1, one line saying why, no listening line.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tcp = taken.local_addr().unwrap().to_string();
    let db = dir.path().join("reg.db");
    let args = [
        "--tcp",
        &tcp,
        "--udp",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
    ];
    let (status, out, err) = run_to_exit(&args);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(out, "");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("p2pchat-registry: ") && last.contains(&tcp),
        "{err}"
    );
}

// ----- bad input: only the offending connection is closed -----

/// A registry with one logged-in bystander, to show after each bad connection that the
/// registry still serves others.
fn with_bystander(flags: &[&str]) -> (Registry, Client) {
    let reg = Registry::start(flags);
    let (good, _) = reg.user("good", "0.0.0.0:7000");
    (reg, good)
}

#[track_caller]
fn assert_serves(good: &mut Client) {
    assert_eq!(
        good.search("good"),
        Presence::Online(addr("127.0.0.1:7000"))
    );
}

/// Opens a connection (with a hello first if `handshake`), sends `bytes`, and returns the
/// connection-level error seen before the registry closed it. Checks the bystander after.
fn send_bad(reg: &Registry, good: &mut Client, handshake: bool, bytes: &[u8]) -> (u16, String) {
    let mut bad = if handshake {
        reg.client()
    } else {
        Client::connect(reg.tcp)
    };
    bad.send_raw(bytes);
    let err = bad
        .expect_closed()
        .expect("an error frame before the close");
    assert_serves(good);
    err
}

#[test]
fn oversized_length_prefix_is_refused() {
    let (reg, mut good) = with_bystander(&[]);
    let (code, _) = send_bad(&reg, &mut good, true, &[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(code, TOO_LARGE);
    let (code, _) = send_bad(&reg, &mut good, false, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert_eq!(code, TOO_LARGE);
}

#[test]
fn frame_truncated_then_eof_closes_cleanly() {
    let (reg, mut good) = with_bystander(&[]);
    let mut bad = reg.client();
    let frame = Frame::new(
        1,
        Msg::Search {
            name: "good".into(),
        },
    )
    .to_bytes();
    bad.send_raw(&frame[..frame.len() - 3]);
    bad.stream().shutdown(std::net::Shutdown::Write).unwrap();
    // No reply to the half frame; the registry closes its side.
    bad.expect_closed();
    assert!(bad.events.is_empty(), "{:?}", bad.events);
    assert_serves(&mut good);
}

#[test]
fn unknown_kind_is_malformed() {
    let (reg, mut good) = with_bystander(&[]);
    let (code, _) = send_bad(&reg, &mut good, true, &[0, 0, 0, 5, 0x7f, 0, 0, 0, 1]);
    assert_eq!(code, MALFORMED);
}

#[test]
fn invalid_utf8_in_a_name_is_malformed() {
    let (reg, mut good) = with_bystander(&[]);
    let mut bytes = Frame::new(
        1,
        Msg::Login {
            name: "ab".into(),
            password: PW.into(),
            listen: addr("0.0.0.0:1"),
        },
    )
    .to_bytes()
    .to_vec();
    // length(4) kind(1) id(4) name length(2), then the name's two bytes.
    assert_eq!(&bytes[11..13], b"ab");
    bytes[11] = 0xff;
    bytes[12] = 0xfe;
    let (code, _) = send_bad(&reg, &mut good, true, &bytes);
    assert_eq!(code, MALFORMED);
}

#[test]
fn trailing_bytes_are_malformed() {
    let (reg, mut good) = with_bystander(&[]);
    let mut bytes = Frame::new(
        1,
        Msg::Search {
            name: "good".into(),
        },
    )
    .to_bytes()
    .to_vec();
    bytes.push(0);
    let body_len = u32::try_from(bytes.len() - 4).unwrap();
    bytes[..4].copy_from_slice(&body_len.to_be_bytes());
    let (code, _) = send_bad(&reg, &mut good, true, &bytes);
    assert_eq!(code, MALFORMED);
}

#[test]
fn http_before_the_handshake_is_refused() {
    let (reg, mut good) = with_bystander(&[]);
    let (code, message) = send_bad(
        &reg,
        &mut good,
        false,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    // "GET " read as a length is far over the maximum.
    assert_eq!(code, TOO_LARGE, "{message}");
}

#[test]
fn wrong_protocol_version_is_refused() {
    let (reg, mut good) = with_bystander(&[]);
    let frame = Frame::event(hello(VERSION + 1, Role::Client)).to_bytes();
    let (code, message) = send_bad(&reg, &mut good, false, &frame);
    assert_eq!(code, BAD_VERSION);
    assert!(message.contains(&(VERSION + 1).to_string()), "{message}");
}

#[test]
fn unexpected_frames_are_refused() {
    let (reg, mut good) = with_bystander(&[]);
    // A frame only the registry sends.
    let (code, _) = send_bad(&reg, &mut good, true, &Frame::new(1, Msg::Ok).to_bytes());
    assert_eq!(code, UNEXPECTED);
    // A second hello.
    let again = Frame::event(hello(VERSION, Role::Client)).to_bytes();
    let (code, _) = send_bad(&reg, &mut good, true, &again);
    assert_eq!(code, UNEXPECTED);
    // A request before the hello.
    let search = Frame::new(
        1,
        Msg::Search {
            name: "good".into(),
        },
    )
    .to_bytes();
    let (code, _) = send_bad(&reg, &mut good, false, &search);
    assert_eq!(code, UNEXPECTED);
    // A peer's hello.
    let peer = Frame::event(hello(VERSION, Role::Peer)).to_bytes();
    let (code, _) = send_bad(&reg, &mut good, false, &peer);
    assert_eq!(code, UNEXPECTED);
}

#[test]
fn a_frame_never_finished_times_out() {
    let (reg, mut good) = with_bystander(&["--frame-timeout", "1s"]);
    let mut bad = reg.client();
    let frame = Frame::new(
        1,
        Msg::Search {
            name: "good".into(),
        },
    )
    .to_bytes();
    let sent = Instant::now();
    bad.send_raw(&frame[..3]);
    let err = bad.expect_closed_within(Duration::from_secs(1) + SLACK);
    let took = sent.elapsed();
    assert_eq!(err.map(|e| e.0), Some(TIMEOUT));
    assert!(took >= Duration::from_millis(950), "closed after {took:?}");
    assert_serves(&mut good);
}

#[test]
fn a_client_that_never_says_hello_times_out() {
    let (reg, mut good) = with_bystander(&["--handshake-timeout", "1s"]);
    let connected = Instant::now();
    let mut bad = Client::connect(reg.tcp);
    let err = bad.expect_closed_within(Duration::from_secs(1) + SLACK);
    let took = connected.elapsed();
    assert_eq!(err.map(|e| e.0), Some(TIMEOUT));
    assert!(took >= Duration::from_millis(950), "closed after {took:?}");
    assert_serves(&mut good);
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let (mut reg, mut good) = with_bystander(&[]);
    let (mut slow, _) = reg.user("slow", "0.0.0.0:7001");
    slow.stream()
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Pipelined searches, never reading a reply, until the registry stops taking them (it
    // stopped reading us once our replies piled up, or closed us as a slow consumer).
    let mut batch = Vec::new();
    for i in 0..1000u32 {
        let f = Frame::new(
            i + 10,
            Msg::Search {
                name: "good".into(),
            },
        );
        batch.extend_from_slice(&f.to_bytes());
    }
    let mut sent = 0;
    let stopped = loop {
        if let Err(e) = slow.write(&batch) {
            break e;
        }
        sent += batch.len();
        assert!(
            sent < 256 << 20,
            "the registry read 256 MiB of requests without pushing back"
        );
    };
    eprintln!("slow consumer: {sent} bytes of searches sent, then: {stopped}");
    assert!(
        matches!(
            stopped.kind(),
            std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
        ),
        "{stopped}"
    );
    assert_serves(&mut good);
    assert!(reg_alive(&reg, &mut good));
    drop(slow);
    assert_serves(&mut good);
    assert!(reg.is_running());
}

#[test]
fn max_clients_refuses_the_extra_connection() {
    let reg = Registry::start(&["--max-clients", "2"]);
    let (mut a, _) = reg.user("alice", "0.0.0.0:5001");
    reg.client().must_register("bob");
    let mut b = reg.client();
    // The table is full; the newcomer takes the place of the connection that has not logged
    // in (docs/architecture.md, "Admission").
    let mut c = reg.client();
    let (code, _) = b.expect_closed().expect("the evicted connection is told");
    assert_eq!(code, SERVER_FULL);
    c.must_login("bob", PW, "0.0.0.0:5002");
    // Full of logged-in users: the extra connection is refused.
    let mut d = Client::connect(reg.tcp);
    let (code, _) = d.expect_closed().expect("the extra connection is told");
    assert_eq!(code, SERVER_FULL);
    assert_eq!(a.search("alice"), Presence::Online(addr("127.0.0.1:5001")));
    // A freed slot is usable again.
    drop(c);
    wait_until("a slot frees up", Instant::now() + REPLY_TIMEOUT, || {
        let mut d = Client::connect(reg.tcp);
        // A refused connection may already be closed: a failed write is a refusal too.
        let hello = Frame::event(hello(VERSION, Role::Client)).to_bytes();
        d.write(&hello).is_ok()
            && matches!(
                d.next(Instant::now() + REPLY_TIMEOUT),
                harness::Next::Frame(Frame {
                    msg: Msg::Welcome { .. },
                    ..
                })
            )
    });
}

// ----- the loop never waits for password hashing -----

#[test]
fn logins_never_stall_the_loop() {
    let reg = Registry::start(&["--pbkdf2-iterations", "2000000", "--hash-threads", "1"]);
    let (mut good, _) = reg.user("owner", "0.0.0.0:5001");
    let seq = Arc::new(AtomicUsize::new(0));
    let (sent_tx, sent_rx) = mpsc::channel();
    let logins: Vec<_> = (0..4)
        .map(|i| {
            let mut c = reg.client();
            let (seq, sent) = (Arc::clone(&seq), sent_tx.clone());
            thread::spawn(move || {
                // Unknown users cost a full hash too.
                let id = c.send_request(Msg::Login {
                    name: format!("ghost{i}"),
                    password: PW.into(),
                    listen: addr("0.0.0.0:1"),
                });
                sent.send(()).unwrap();
                let reply = c.wait_reply(id, Duration::from_secs(60));
                (seq.fetch_add(1, Ordering::SeqCst), reply)
            })
        })
        .collect();
    for _ in 0..4 {
        sent_rx.recv_timeout(REPLY_TIMEOUT).unwrap();
    }
    // Four hashes of ~0.5 s queue on one thread; the search must not wait for them.
    assert_eq!(
        good.search("owner"),
        Presence::Online(addr("127.0.0.1:5001"))
    );
    let search_seq = seq.fetch_add(1, Ordering::SeqCst);
    let replies: Vec<(usize, Msg)> = logins.into_iter().map(|t| t.join().unwrap()).collect();
    for (_, reply) in &replies {
        expect_error(reply.clone(), BAD_CREDENTIALS);
    }
    let last_login = replies.iter().map(|r| r.0).max().unwrap();
    let before = replies.iter().filter(|r| r.0 < search_seq).count();
    assert!(
        search_seq < last_login,
        "the search was answered after every login ({before} logins before it)"
    );
    eprintln!("{before} of 4 logins answered before the search");
}
