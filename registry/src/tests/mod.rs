//! Scenario tests of the [`Registry`] state machine with a virtual clock (quinn's `src/tests`).
//!
//! The harness is the real registry with the real store (SQLite in a temp dir, applied
//! synchronously) and the real PBKDF2 function; only the clock and the sockets are virtual.
//! Time is `t0 + offset` throughout; nothing sleeps.

mod abuse;
mod model;
mod rooms;
mod scenarios;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pchat_protocol::{Frame, FrameDecoder, Heartbeat, HeartbeatKey, Msg, Role, VERSION};
use tempfile::TempDir;

use crate::hasher::{run_hash, HashDone, HashJob};
use crate::io::{CloseReason, ConnId, Event, Input, Output};
use crate::store::{SqliteStore, StoreDone, StoreError};
use crate::{Config, Registry};

pub(crate) struct Harness {
    pub(crate) reg: Registry,
    store: SqliteStore,
    _dir: TempDir,
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    decoders: HashMap<ConnId, FrameDecoder>,
    pub(crate) inbox: HashMap<ConnId, Vec<Frame>>,
    pub(crate) closed: HashMap<ConnId, CloseReason>,
    pub(crate) events: Vec<Event>,
    /// While set, hash jobs are parked instead of run, to model slow hashing.
    pub(crate) hold_hashes: bool,
    pub(crate) held: Vec<HashJob>,
    /// While set, store jobs fail with this error instead of running (a full disk).
    pub(crate) fail_stores: Option<StoreError>,
    next_req: u32,
}

pub(crate) struct LoggedIn {
    pub(crate) session: u64,
    pub(crate) key: [u8; 32],
    pub(crate) token: Vec<u8>,
}

impl Harness {
    pub(crate) fn new(config: Config) -> Harness {
        let dir = TempDir::new().unwrap();
        let (store, snapshot) = SqliteStore::open(&dir.path().join("reg.db")).unwrap();
        // The virtual clock starts at one real instant; everything after is t0 + offset.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let reg = Registry::new(config, &snapshot, 7, t0, 1_700_000_000_000);
        Harness {
            reg,
            store,
            _dir: dir,
            t0,
            now: t0,
            decoders: HashMap::new(),
            inbox: HashMap::new(),
            closed: HashMap::new(),
            events: Vec::new(),
            hold_hashes: false,
            held: Vec::new(),
            fail_stores: None,
            next_req: 1,
        }
    }

    /// Simulates a restart: a new registry over what the store has durably, with nobody
    /// connected.
    pub(crate) fn restart(&mut self) {
        let snapshot = self.store.read_snapshot().unwrap();
        self.reg = Registry::new(Harness::config(), &snapshot, 8, self.now, 1_700_000_000_000);
        self.inbox.clear();
        self.closed.clear();
        self.decoders.clear();
    }

    /// A config with cheap hashing, as tests use.
    pub(crate) fn config() -> Config {
        Config {
            pbkdf2_iterations: 10,
            ..Config::default()
        }
    }

    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Moves the clock to `t` (never backwards) and fires due deadlines.
    pub(crate) fn advance_to(&mut self, t: Instant) {
        assert!(t >= self.now, "time must not go backwards");
        self.now = t;
        self.input(Input::Timeout);
    }

    pub(crate) fn input(&mut self, input: Input<'_>) {
        self.reg.handle_input(self.now, input);
        self.pump();
    }

    /// Carries out every output, completing store and hash jobs with the real implementations.
    fn pump(&mut self) {
        while let Some(out) = self.reg.poll_output() {
            match out {
                Output::Send { conn, bytes } => {
                    let d = self
                        .decoders
                        .entry(conn)
                        .or_insert_with(|| FrameDecoder::new(1 << 20));
                    d.push(&bytes);
                    while let Some(f) = d.next_frame().unwrap() {
                        self.inbox.entry(conn).or_default().push(f);
                    }
                }
                Output::Close { conn, reason } => {
                    self.closed.insert(conn, reason);
                }
                Output::Store(job) => {
                    let done: Vec<StoreDone> = match &self.fail_stores {
                        Some(error) => vec![StoreDone {
                            id: job.id,
                            result: Err(error.clone()),
                        }],
                        None => self.store.apply(vec![job]),
                    };
                    for d in done {
                        self.reg.handle_input(self.now, Input::StoreDone(d));
                    }
                }
                Output::Hash(job) => {
                    if self.hold_hashes {
                        self.held.push(job);
                    } else {
                        let result = run_hash(&job.request);
                        self.reg.handle_input(
                            self.now,
                            Input::HashDone(HashDone { id: job.id, result }),
                        );
                    }
                }
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    /// Runs the parked hash jobs.
    pub(crate) fn release_hashes(&mut self) {
        self.hold_hashes = false;
        for job in std::mem::take(&mut self.held) {
            let result = run_hash(&job.request);
            self.input(Input::HashDone(HashDone { id: job.id, result }));
        }
    }

    pub(crate) fn send(&mut self, conn: ConnId, frame: Frame) {
        let bytes = frame.to_bytes();
        self.input(Input::Received {
            conn,
            bytes: &bytes,
        });
    }

    /// Connects and completes the hello.
    pub(crate) fn connect(&mut self, conn: u64) -> ConnId {
        let conn = ConnId(conn);
        let remote: SocketAddr = format!("10.0.0.{}:5000", conn.0 % 250 + 1).parse().unwrap();
        self.input(Input::Connected { conn, remote });
        let hello = Msg::Hello {
            version: VERSION,
            role: Role::Client,
            name: String::new(),
            ticket: vec![],
        };
        self.send(conn, Frame::event(hello));
        assert!(
            matches!(
                self.take(conn).as_slice(),
                [Frame {
                    msg: Msg::Welcome { .. },
                    ..
                }]
            ),
            "welcome expected"
        );
        conn
    }

    /// Frames received by `conn` since the last call.
    pub(crate) fn take(&mut self, conn: ConnId) -> Vec<Frame> {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// Sends a request and returns the reply with its id (panics if there is none).
    pub(crate) fn request(&mut self, conn: ConnId, msg: Msg) -> Msg {
        let id = self.next_req;
        self.next_req += 1;
        self.send(conn, Frame::new(id, msg));
        let frames = self.take(conn);
        frames
            .into_iter()
            .find(|f| f.id == id)
            .map(|f| f.msg)
            .unwrap_or_else(|| panic!("no reply to request {id}"))
    }

    pub(crate) fn register(&mut self, conn: ConnId, name: &str) {
        let reply = self.request(
            conn,
            Msg::Register {
                name: name.into(),
                password: "password1".into(),
            },
        );
        assert_eq!(reply, Msg::Ok, "register {name}");
    }

    pub(crate) fn login(&mut self, conn: ConnId, name: &str) -> LoggedIn {
        let reply = self.request(conn, login(name, "password1"));
        match reply {
            Msg::LoggedIn {
                session,
                heartbeat_key,
                resume_token,
                ..
            } => LoggedIn {
                session,
                key: heartbeat_key,
                token: resume_token,
            },
            other => panic!("login {name}: {other:?}"),
        }
    }

    pub(crate) fn heartbeat(&mut self, session: &LoggedIn, counter: u64) {
        let hb = Heartbeat::sign(
            &HeartbeatKey::new(&session.key),
            session.session,
            counter,
            0,
        );
        let bytes = hb.encode();
        self.input(Input::Datagram {
            from: "10.0.0.9:7000".parse().unwrap(),
            bytes: &bytes,
        });
    }

    pub(crate) fn error_code(msg: &Msg) -> Option<u16> {
        match msg {
            Msg::Error { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub(crate) fn login(name: &str, password: &str) -> Msg {
    Msg::Login {
        name: name.into(),
        password: password.into(),
        listen: "0.0.0.0:4000".parse().unwrap(),
    }
}
