//! Abuse cases against the real `p2pchat-registry` binary on loopback (issue 9): each test runs
//! an attack that used to win and checks that a legitimate user is still served while it runs.
//! The legitimate user's login time under each attack is printed (`eprintln!`, see it with
//! `--nocapture`) and recorded in docs/fuzzing.md; it is never asserted (the machine is shared).
//!
//! Another loopback address (127.0.0.2) stands for another machine: the client socket is bound
//! to it before connecting.

// Real processes run on the real clock: the tests read it to set deadlines and measure.
#![allow(clippy::disallowed_methods)]

#[path = "e2e/harness.rs"]
mod harness;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use harness::{expect_error, hello, wait_until, Client, Next, Registry, PW, REPLY_TIMEOUT};
use p2pchat_protocol::status::*;
use p2pchat_protocol::{Frame, Msg, Role, VERSION};

const STRANGER: &str = "127.0.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Connects, says hello and logs `name` in with [`PW`]; returns how long that took, from the
/// connect to the `LoggedIn` reply.
#[track_caller]
fn timed_login(reg: &Registry, name: &str) -> (Client, Duration) {
    let start = Instant::now();
    let mut c = reg.client();
    c.must_login(name, PW, "0.0.0.0:9000");
    (c, start.elapsed())
}

/// A connection that said hello and is not logged in; `None` if the registry refused it.
fn squat(addr: SocketAddr, source: Option<IpAddr>) -> Option<Client> {
    let mut c = match source {
        Some(source) => Client::connect_from(addr, source),
        None => Client::connect(addr),
    };
    let mut bytes = Frame::event(hello(VERSION, Role::Client))
        .to_bytes()
        .to_vec();
    bytes.extend_from_slice(&Frame::new(1, Msg::Ping).to_bytes());
    // A refused connection may already be closed: a failed write is a refusal too.
    c.write(&bytes).ok()?;
    match c.next(Instant::now() + REPLY_TIMEOUT) {
        Next::Frame(Frame {
            msg: Msg::Welcome { .. },
            ..
        }) => Some(c),
        Next::Frame(Frame {
            id: 0,
            msg: Msg::Error { code, .. },
        }) if code == SERVER_FULL => None,
        Next::Closed => None,
        other => panic!("unexpected answer to a hello: {other:?}"),
    }
}

/// Whether `c` is still open: it pings and waits for the pong (or the close).
fn still_open(c: &mut Client) -> bool {
    let Ok(()) = c.write(&Frame::new(77, Msg::Ping).to_bytes()) else {
        return false;
    };
    loop {
        match c.next(Instant::now() + REPLY_TIMEOUT) {
            Next::Frame(Frame { id: 77, msg }) => {
                assert_eq!(msg, Msg::Pong);
                return true;
            }
            Next::Frame(_) => {}
            Next::Closed => return false,
            Next::TimedOut => panic!("no pong and no close"),
        }
    }
}

// ----- 1. slots held before login -----

#[test]
fn connections_that_never_log_in_cannot_keep_a_user_out() {
    let reg = Registry::start(&["--max-clients", "40"]);
    reg.client().must_register("alice");
    // Every slot taken by connections that said hello, ping, and never log in.
    let mut squatters: Vec<Client> = (0..40).filter_map(|_| squat(reg.tcp, None)).collect();
    assert!(
        squatters.len() >= 39,
        "only {} squatters got in",
        squatters.len()
    );
    // They keep pinging; the user still gets in (an old pre-login connection makes room).
    for c in &mut squatters {
        let _ = c.write(&Frame::new(2, Msg::Ping).to_bytes());
    }
    let (mut alice, took) = timed_login(&reg, "alice");
    eprintln!("login with 40 pre-login squatters holding --max-clients 40: {took:?}");
    // More squatters cannot push a logged-in user out: only pre-login connections make room.
    let more: Vec<Client> = (0..40).filter_map(|_| squat(reg.tcp, None)).collect();
    assert!(!more.is_empty());
    assert!(still_open(&mut alice), "the logged-in user was evicted");
    let evicted = squatters
        .iter_mut()
        .map(still_open)
        .filter(|open| !open)
        .count();
    assert!(
        evicted > 0,
        "nothing was evicted, yet a user got in past a full table"
    );
}

#[test]
fn pings_do_not_extend_the_pre_login_deadline() {
    let reg = Registry::start(&["--login-timeout", "1s"]);
    let start = Instant::now();
    let mut c = Client::connect(reg.tcp);
    assert!(matches!(c.hello(), Msg::Welcome { .. }));
    let deadline = start + Duration::from_secs(4);
    let mut error = None;
    let mut pongs = 0;
    // A ping every 100 ms, the way a squatter would keep its slot.
    let mut next_ping = Instant::now();
    loop {
        if Instant::now() >= next_ping {
            if c.write(&Frame::new(5, Msg::Ping).to_bytes()).is_err() {
                break;
            }
            next_ping += Duration::from_millis(100);
        }
        match c.next(next_ping.min(deadline)) {
            Next::Frame(Frame { msg: Msg::Pong, .. }) => pongs += 1,
            Next::Frame(Frame {
                id: 0,
                msg: Msg::Error { code, .. },
            }) => error = Some(code),
            Next::Frame(f) => panic!("unexpected {f:?}"),
            Next::Closed => break,
            Next::TimedOut => assert!(Instant::now() < deadline, "still open after 4 s"),
        }
    }
    let took = start.elapsed();
    assert_eq!(error, Some(TIMEOUT));
    assert!(pongs >= 5, "only {pongs} pings answered");
    assert!(took >= Duration::from_millis(950), "closed after {took:?}");
}

#[test]
fn one_source_cannot_take_more_than_its_share() {
    let reg = Registry::start(&["--max-clients", "40", "--max-per-source", "8"]);
    reg.client().must_register("alice");
    // A stranger opens 30 connections: it only ever holds 8, its own oldest make room.
    let mut stranger: Vec<Client> = (0..30)
        .filter_map(|_| squat(reg.tcp, Some(ip(STRANGER))))
        .collect();
    let open = stranger
        .iter_mut()
        .map(still_open)
        .filter(|open| *open)
        .count();
    assert_eq!(open, 8, "the stranger holds {open} connections");
    // Others still find room.
    let (_alice, took) = timed_login(&reg, "alice");
    eprintln!("login while another source floods connections: {took:?}");
}

// ----- 2. slow readers stall everyone -----

/// Reads frames until `n` have come (events included), or fails on a close or a timeout.
fn read_frames(c: &mut Client, n: usize, each: Duration) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(n);
    while frames.len() < n {
        match c.next(Instant::now() + each) {
            Next::Frame(f) => frames.push(f),
            other => panic!("{other:?} after {} of {n} frames", frames.len()),
        }
    }
    frames
}

#[test]
fn readers_that_never_read_do_not_stall_others_and_a_fast_reader_gets_every_reply() {
    let reg = Registry::start(&["--auth-rate", "100000"]);
    // 1000 rooms with long names, so a full room list is about 45 KB.
    let (mut owner, _) = reg.user("owner", "0.0.0.0:7000");
    let mut batch = Vec::new();
    for i in 0..1000u32 {
        let room = format!("room-{i:05}-{}", "x".repeat(21));
        batch.extend_from_slice(&Frame::new(i + 1, Msg::CreateRoom { room }).to_bytes());
    }
    owner.send_raw(&batch);
    let created = read_frames(&mut owner, 1000, REPLY_TIMEOUT);
    assert!(
        created.iter().all(|f| f.msg == Msg::Ok),
        "room creation failed"
    );
    reg.client().must_register("late");

    // 20 slow readers pipeline 3,000 online-list requests each and never read.
    let mut slow: Vec<Client> = (0..20)
        .map(|i| reg.user(&format!("slow{i}"), "0.0.0.0:7001").0)
        .collect();
    let (mut fast, _) = reg.user("fast", "0.0.0.0:7002");
    let mut requests = Vec::new();
    for i in 0..3000u32 {
        let f = Frame::new(
            i + 1,
            Msg::ListOnline {
                after: String::new(),
                limit: 1000,
            },
        );
        requests.extend_from_slice(&f.to_bytes());
    }
    for c in &mut slow {
        c.send_raw(&requests);
    }

    // Meanwhile a fast reader sends a 400-request burst of full room lists and reads it all.
    let fast_reader = thread::spawn(move || {
        let mut burst = Vec::new();
        for i in 0..400u32 {
            let f = Frame::new(
                i + 1,
                Msg::ListRooms {
                    after: String::new(),
                    limit: 1000,
                },
            );
            burst.extend_from_slice(&f.to_bytes());
        }
        let start = Instant::now();
        fast.send_raw(&burst);
        let replies = read_frames(&mut fast, 400, REPLY_TIMEOUT);
        let took = start.elapsed();
        for (i, f) in replies.iter().enumerate() {
            assert_eq!(f.id, i as u32 + 1);
            assert!(
                matches!(&f.msg, Msg::RoomList { rooms, .. } if rooms.len() == 1000),
                "reply {i}: {:?}",
                f.msg
            );
        }
        took
    });

    // And a legitimate client pings and logs in.
    let mut pinger = reg.client();
    let start = Instant::now();
    assert_eq!(pinger.request(Msg::Ping), Msg::Pong);
    let ping = start.elapsed();
    let (_late, login) = timed_login(&reg, "late");
    let burst = fast_reader.join().expect("the fast reader failed");
    eprintln!(
        "under 20 slow readers: ping {ping:?}, login {login:?}, fast reader's 400 replies {burst:?}"
    );
    assert_eq!(owner.request(Msg::Ping), Msg::Pong);
    drop(slow);
}

// ----- 3. targeted account lockout -----

#[test]
fn a_stranger_cannot_lock_the_owner_out() {
    let reg = Registry::start(&[]);
    reg.client().must_register("alice");
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    // A stranger guesses alice's password from another address, on 4 connections, all along.
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let mut c = Client::connect_from(reg.tcp, ip(STRANGER));
            assert!(matches!(c.hello(), Msg::Welcome { .. }));
            let (stop, refused) = (Arc::clone(&stop), Arc::clone(&refused));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match c.login("alice", "wrong password", "0.0.0.0:1") {
                        Msg::Error { code, .. } if code == BAD_CREDENTIALS => {}
                        Msg::Error { code, .. } if code == LOCKED_OUT || code == RATE_LIMITED => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("the stranger got {other:?}"),
                    }
                }
            })
        })
        .collect();
    wait_until(
        "the stranger is throttled",
        Instant::now() + REPLY_TIMEOUT,
        || refused.load(Ordering::Relaxed) > 0,
    );
    // The owner, from her own address with the right password, gets in every time.
    let mut times = Vec::new();
    for _ in 0..10 {
        let (mut c, took) = timed_login(&reg, "alice");
        times.push(took);
        assert_eq!(c.request(Msg::Logout), Msg::Ok);
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().expect("attacker thread");
    }
    times.sort();
    eprintln!(
        "owner logged in 10 of 10 under a lockout attack: median {:?}, max {:?}",
        times[5], times[9]
    );
}

#[test]
fn concurrent_guesses_are_counted_before_they_are_hashed() {
    // Slow hashes, so every guess is in flight before the first one is answered.
    let reg = Registry::start(&["--pbkdf2-iterations", "200000"]);
    reg.client().must_register("alice");
    let mut conns: Vec<Client> = (0..20)
        .map(|_| {
            let mut c = Client::connect_from(reg.tcp, ip(STRANGER));
            assert!(matches!(c.hello(), Msg::Welcome { .. }));
            c
        })
        .collect();
    let ids: Vec<u32> = conns
        .iter_mut()
        .map(|c| {
            c.send_request(Msg::Login {
                name: "alice".into(),
                password: "wrong password".into(),
                listen: "0.0.0.0:1".parse().unwrap(),
            })
        })
        .collect();
    let mut hashed = 0;
    for (c, id) in conns.iter_mut().zip(ids) {
        match c.wait_reply(id, Duration::from_secs(30)) {
            Msg::Error { code, .. } if code == BAD_CREDENTIALS => hashed += 1,
            reply => {
                expect_error(reply, LOCKED_OUT);
            }
        }
    }
    // Five free failures per account and source (the default), then backoff: the guesses in
    // flight count, so 20 at once do not all get through.
    assert!(hashed <= 5, "{hashed} of 20 concurrent guesses were tried");
    // The owner is not affected.
    timed_login(&reg, "alice");
}

// ----- 4. a full disk -----

/// A small tmpfs mounted on a temp dir; unmounted on drop.
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` on `dir`, or says why it cannot (not root, no mount(8)).
    fn mount(dir: &std::path::Path, size: &str) -> Result<Tmpfs, String> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: dir.to_path_buf(),
        })
    }

    /// Writes a file until the file system is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        let path = self.path.join("filler");
        let mut f = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0xa5u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

fn token_hash(token: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token)
        .as_ref()
        .to_vec()
}

/// The SHA-256 of the resume token stored for `name`, read from the database file.
fn stored_token_hash(db: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.query_row(
        "SELECT t.token_hash FROM resume_tokens t JOIN accounts a ON a.id = t.account_id
         WHERE a.name = ?1",
        [name],
        |row| row.get(0),
    )
    .ok()
}

#[test]
fn a_full_disk_keeps_logins_working_and_says_so_to_registrations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = match Tmpfs::mount(dir.path(), "1m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_disk_keeps_logins_working_and_says_so_to_registrations: {why}"
            );
            return;
        }
    };
    let mut reg = Registry::start_in(dir, &[]);
    reg.client().must_register("alice");
    let filler = disk.fill();

    // Logging in needs no new disk space: the resume token is kept in memory meanwhile...
    let start = Instant::now();
    let mut alice = reg.client();
    let session = alice.must_login("alice", PW, "0.0.0.0:9000");
    eprintln!("login on a full disk: {:?}", start.elapsed());
    // ...a registration does, and says so.
    let mut c = reg.client();
    let message = expect_error(c.register_with("bob", PW), DISK_FULL);
    assert!(message.contains("disk full"), "{message}");
    assert_ne!(
        stored_token_hash(&reg.db(), "alice"),
        Some(token_hash(&session.token)),
        "the token cannot have reached a full disk"
    );

    // Space comes back: the token reaches the disk by itself, and survives a restart.
    std::fs::remove_file(&filler).expect("free the space");
    wait_until(
        "the resume token is persisted",
        Instant::now() + Duration::from_secs(10),
        || stored_token_hash(&reg.db(), "alice") == Some(token_hash(&session.token)),
    );
    assert_eq!(c.register_with("bob", PW), Msg::Ok);
    drop(alice);
    reg.restart();
    reg.client()
        .must_resume("alice", &session.token, "0.0.0.0:9000");
    drop(reg);
    drop(disk);
}

// ----- the attacks that already failed: a user's login time while each runs -----

/// Runs `attack` on a thread, waits until it says it has started, times a login of `name`
/// (registered beforehand) meanwhile, then stops the attack.
fn login_during(
    reg: &Registry,
    name: &str,
    attack: impl FnOnce(Stop, mpsc::Sender<()>) + Send + 'static,
) -> Duration {
    let (stop_tx, stop) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel();
    let attacker = thread::spawn(move || attack(Stop(stop), started_tx));
    started
        .recv_timeout(REPLY_TIMEOUT)
        .expect("the attack did not start");
    let (_c, took) = timed_login(reg, name);
    drop(stop_tx);
    attacker.join().expect("attack thread");
    took
}

/// Tells an attack thread to stop (the sender is dropped).
struct Stop(mpsc::Receiver<()>);

impl Stop {
    fn now(&self) -> bool {
        !matches!(self.0.try_recv(), Err(mpsc::TryRecvError::Empty))
    }

    /// Paces the attack: waits `d`, or less if told to stop; true when told to stop.
    fn after(&self, d: Duration) -> bool {
        !matches!(self.0.recv_timeout(d), Err(mpsc::RecvTimeoutError::Timeout))
    }
}

/// Reads until the registry closes the connection (or a short while passes).
fn drain_until_closed(c: &mut Client) {
    while let Next::Frame(_) = c.next(Instant::now() + Duration::from_millis(500)) {}
}

#[test]
fn logins_stay_fast_under_the_attacks_that_already_failed() {
    use rand::{RngCore, SeedableRng};
    let mut reg = Registry::start(&["--auth-rate", "100000"]);
    let mut names = Vec::new();
    {
        let mut c = reg.client();
        for i in 0..5 {
            let name = format!("user{i}");
            c.must_register(&name);
            names.push(name);
        }
    }
    let (tcp, udp) = (reg.tcp, reg.udp);
    let mut report = Vec::new();

    // Malformed frames and random bytes, on fresh connections, as fast as they are refused.
    let took = login_during(&reg, &names[0], move |stop, started| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut n = 0u32;
        while !stop.now() {
            let mut c = Client::connect(tcp);
            let mut bytes = vec![0u8; 64];
            rng.fill_bytes(&mut bytes);
            if n.is_multiple_of(2) {
                // A plausible length, then garbage: a malformed frame rather than a huge one.
                bytes[..4].copy_from_slice(&60u32.to_be_bytes());
            }
            let _ = c.stream().write_all(&bytes);
            drain_until_closed(&mut c);
            n += 1;
            if n == 10 {
                let _ = started.send(());
            }
        }
    });
    report.push(("malformed frames and random bytes", took));

    // Slowloris: 100 connections each trickling one byte of an endless frame every 50 ms.
    let took = login_during(&reg, &names[1], move |stop, started| {
        let mut conns: Vec<Client> = (0..100)
            .map(|_| {
                let mut c = Client::connect(tcp);
                let mut bytes = Frame::event(hello(VERSION, Role::Client))
                    .to_bytes()
                    .to_vec();
                bytes.extend_from_slice(&[0, 0, 0xff]);
                // Inside the secure link, so the trickle reaches the core's frame deadline.
                let _ = c.write(&bytes);
                c
            })
            .collect();
        let _ = started.send(());
        loop {
            for c in &mut conns {
                let _ = c.write(&[0]);
            }
            if stop.after(Duration::from_millis(50)) {
                break;
            }
        }
    });
    report.push(("slowloris (100 trickling connections)", took));

    // Forged heartbeats: random 57-byte datagrams, and a victim's valid heartbeat replayed.
    let (mut victim, session) = reg.user("victim", "0.0.0.0:7100");
    let valid = harness::heartbeat(&session.key, session.session, 1);
    let udp_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_sock.send_to(&valid, udp).unwrap();
    let sock = udp_sock.try_clone().unwrap();
    let took = login_during(&reg, &names[2], move |stop, started| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut forged = [0u8; p2pchat_protocol::HEARTBEAT_LEN];
        let mut n = 0u32;
        while !stop.now() {
            rng.fill_bytes(&mut forged);
            // The victim's real session id, so each one costs a tag check.
            forged[..9].copy_from_slice(&valid[..9]);
            let _ = sock.send_to(&forged, udp);
            n += 1;
            if n == 1000 {
                let _ = started.send(());
            }
        }
    });
    report.push(("forged heartbeats (UDP flood)", took));
    let sock = udp_sock.try_clone().unwrap();
    let took = login_during(&reg, &names[3], move |stop, started| {
        let mut n = 0u32;
        while !stop.now() {
            let _ = sock.send_to(&valid, udp);
            n += 1;
            if n == 1000 {
                let _ = started.send(());
            }
        }
    });
    report.push(("replayed heartbeats (UDP flood)", took));
    assert_eq!(victim.request(Msg::Ping), Msg::Pong);
    drop(victim);

    // kill -9 in the middle of registrations: nothing acknowledged is lost, and a login right
    // after the restart is served.
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let acked = Arc::clone(&acked);
            let mut c = reg.client();
            thread::spawn(move || {
                for i in 0.. {
                    let name = format!("w{w}n{i}");
                    let id = c.send_request(Msg::Register {
                        name: name.clone(),
                        password: PW.into(),
                    });
                    match c.next(Instant::now() + REPLY_TIMEOUT) {
                        Next::Frame(f) if f.id == id && f.msg == Msg::Ok => {
                            acked.lock().unwrap().push(name)
                        }
                        _ => break, // killed
                    }
                }
            })
        })
        .collect();
    wait_until(
        "registrations under way",
        Instant::now() + REPLY_TIMEOUT,
        || acked.lock().unwrap().len() >= 100,
    );
    reg.kill9();
    for w in writers {
        w.join().expect("writer thread");
    }
    reg.restart();
    let (mut c, took) = timed_login(&reg, &names[4]);
    report.push((
        "a kill -9 during registrations, then restart (login right after)",
        took,
    ));
    let acked = acked.lock().unwrap();
    for name in acked.iter() {
        assert_eq!(
            c.search(name),
            p2pchat_protocol::Presence::Offline,
            "{name} was acknowledged, then lost"
        );
    }
    eprintln!(
        "kill -9 after {} acknowledged registrations: none lost",
        acked.len()
    );

    for (attack, took) in &report {
        eprintln!("login under {attack}: {took:?}");
    }
}
