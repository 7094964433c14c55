//! Scenario tests of the abuse limits: admission, the per-turn budget and backpressure, the
//! login throttle per account and source, and logins on a full disk. The end-to-end attacks
//! against the real binary are in `registry/tests/abuse.rs`.

use std::time::Duration;

use p2pchat_protocol::{status, Frame, Msg};

use super::{login, Harness};
use crate::io::{CloseReason, ConnId, Input};
use crate::store::StoreError;
use crate::Config;

fn pings(n: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend_from_slice(&Frame::new(i + 1, Msg::Ping).to_bytes());
    }
    bytes
}

#[test]
fn a_pipelined_burst_is_served_a_budget_per_turn_round_robin() {
    let config = Config {
        turn_frames: 10,
        ..Harness::config()
    };
    let mut h = Harness::new(config);
    let a = h.connect(1);
    let b = h.connect(2);
    h.input(Input::Received {
        conn: a,
        bytes: &pings(25),
    });
    assert_eq!(h.take(a).len(), 10, "one budget now");
    assert_eq!(h.reg.poll_timeout(), Some(h.now), "the rest is due at once");
    // Another client is served at once, not after the burst.
    assert_eq!(h.request(b, Msg::Ping), Msg::Pong);
    h.advance_to(h.now);
    assert_eq!(h.take(a).len(), 10);
    h.advance_to(h.now);
    let last = h.take(a);
    assert_eq!(last.len(), 5);
    assert_eq!(last.last().map(|f| f.id), Some(25), "in order");
    assert_ne!(h.reg.poll_timeout(), Some(h.now), "nothing left");
    assert_eq!(h.reg.stats().deferred, 2);
}

#[test]
fn a_blocked_connection_decodes_nothing_until_it_drains() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    h.input(Input::Backpressure {
        conn: a,
        blocked: true,
    });
    h.input(Input::Received {
        conn: a,
        bytes: &pings(3),
    });
    h.advance_to(h.now + Duration::from_millis(1));
    assert!(h.take(a).is_empty(), "nothing decoded while blocked");
    h.input(Input::Backpressure {
        conn: a,
        blocked: false,
    });
    assert_eq!(h.take(a).len(), 3);
}

#[test]
fn a_flood_of_unserved_input_closes_only_that_connection() {
    let config = Config {
        turn_frames: 1,
        max_input_backlog: 1000,
        ..Harness::config()
    };
    let mut h = Harness::new(config);
    let a = h.connect(1);
    let b = h.connect(2);
    h.input(Input::Received {
        conn: a,
        bytes: &pings(200),
    });
    assert_eq!(h.closed.get(&a), Some(&CloseReason::Backlog));
    assert_eq!(h.request(b, Msg::Ping), Msg::Pong);
}

/// Sends `msg` (request 1) on a fresh connection while the hashing pool holds every job,
/// lets the 60 s pre-login deadline pass, checks the connection is still open, releases the
/// hash and returns what the connection received.
fn hashing_at_the_deadline(h: &mut Harness, msg: Msg) -> (ConnId, Vec<Frame>) {
    let a = h.connect(1);
    h.hold_hashes = true;
    h.send(a, Frame::new(1, msg));
    // The deadline passes while the hash is still with the pool (a loaded machine).
    h.advance_to(h.at(60_000));
    assert_eq!(
        h.closed.get(&a),
        None,
        "closed while its request was hashing"
    );
    h.release_hashes();
    let replies = h.take(a);
    (a, replies)
}

#[test]
fn a_register_still_hashing_at_the_pre_login_deadline_is_answered() {
    let mut h = Harness::new(Harness::config());
    let register = Msg::Register {
        name: "slow".into(),
        password: "correct-horse".into(),
    };
    let (a, replies) = hashing_at_the_deadline(&mut h, register);
    assert!(
        replies.iter().any(|f| f.id == 1 && f.msg == Msg::Ok),
        "no register reply: {replies:?}"
    );
    // Idle again: the deadline applies as before.
    h.advance_to(h.at(125_000));
    assert_eq!(h.closed.get(&a), Some(&CloseReason::Idle));
}

#[test]
fn a_failed_login_in_flight_at_the_deadline_is_answered_then_closed() {
    let mut h = Harness::new(Harness::config());
    let (a, replies) = hashing_at_the_deadline(&mut h, login("nobody", "wrong-password"));
    assert!(
        replies
            .iter()
            .any(|f| f.id == 1 && Harness::error_code(&f.msg) == Some(status::BAD_CREDENTIALS)),
        "no login reply: {replies:?}"
    );
    // No new period for a failed attempt: closed at the next look.
    h.advance_to(h.at(60_200));
    assert_eq!(h.closed.get(&a), Some(&CloseReason::Idle));
}

#[test]
fn pings_do_not_extend_the_pre_login_deadline() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    for s in 1..60 {
        h.advance_to(h.at(s * 1000));
        assert_eq!(h.request(a, Msg::Ping), Msg::Pong);
    }
    h.advance_to(h.at(60_000));
    assert_eq!(h.closed.get(&a), Some(&CloseReason::Idle));
}

#[test]
fn a_strangers_failures_do_not_delay_the_owner() {
    let mut h = Harness::new(Harness::config());
    let owner = h.connect(1);
    h.register(owner, "alice");
    let stranger = h.connect(2); // another source address
    for _ in 0..5 {
        let reply = h.request(stranger, login("alice", "wrong password"));
        assert_eq!(Harness::error_code(&reply), Some(status::BAD_CREDENTIALS));
    }
    let reply = h.request(stranger, login("alice", "wrong password"));
    assert_eq!(Harness::error_code(&reply), Some(status::LOCKED_OUT));
    h.login(owner, "alice");
}

#[test]
fn guesses_in_flight_count_before_their_hashes_finish() {
    let mut h = Harness::new(Harness::config());
    let owner = h.connect(1);
    h.register(owner, "alice");
    // Eight connections from one source (the harness derives the address from the id).
    let guessers: Vec<ConnId> = (0..8).map(|i| h.connect(2 + 250 * i)).collect();
    h.hold_hashes = true;
    for &g in &guessers {
        h.send(g, Frame::new(1, login("alice", "wrong password")));
    }
    let locked = guessers
        .iter()
        .filter(|&&g| {
            h.take(g)
                .iter()
                .any(|f| Harness::error_code(&f.msg) == Some(status::LOCKED_OUT))
        })
        .count();
    assert_eq!(
        locked, 3,
        "5 free attempts, then backoff, counting those in flight"
    );
    assert_eq!(h.held.len(), 5);
    h.release_hashes();
}

#[test]
fn a_full_disk_keeps_logins_working_and_the_token_is_saved_later() {
    let mut h = Harness::new(Harness::config());
    let a = h.connect(1);
    h.register(a, "alice");
    h.fail_stores = Some(StoreError::DiskFull);
    let session = h.login(a, "alice");
    let b = h.connect(2);
    let reply = h.request(
        b,
        Msg::Register {
            name: "bob".into(),
            password: "password1".into(),
        },
    );
    assert!(
        matches!(&reply, Msg::Error { code, message } if *code == status::DISK_FULL && message.contains("disk full")),
        "{reply:?}"
    );
    assert_eq!(h.reg.stats().unsaved_logins, 1);
    // Retries while the disk stays full, then space returns.
    h.advance_to(h.now + Duration::from_secs(1));
    h.fail_stores = None;
    h.advance_to(h.now + Duration::from_secs(2));
    h.restart();
    let c = h.connect(3);
    let reply = h.request(
        c,
        Msg::Resume {
            name: "alice".into(),
            token: session.token,
            listen: "0.0.0.0:4000".parse().unwrap(),
        },
    );
    assert!(matches!(reply, Msg::LoggedIn { .. }), "{reply:?}");
}
