//! `registry_session`: the sans-IO [`Registry`] driven by arbitrary frames, datagrams, timeouts,
//! disconnects, slow workers and restarts.
//!
//! The harness plays the driver as `registry/src/tests` and `bench`'s `RegistryDriver` do: the
//! real state machine over the real SQLite store (here in memory, for speed), hash jobs run with
//! the real PBKDF2 (one iteration), store jobs applied at once, unless the input parks them to
//! model slow workers. The input is a list of operations read with `arbitrary`: raw stream bytes
//! (so the committed seeds can be real frames), structured requests over a small alphabet of
//! names and passwords (so registration, login, resume and rooms are reached), time steps,
//! connects, disconnects, heartbeats signed with a key the registry really handed out, forged
//! or replayed ones, parking and releasing jobs, restarts and shutdown.
//!
//! Checked after every step: nothing panics; every `Close` is for an open connection, has a
//! reason that renders, and nothing is sent to a connection after it; every `Send` is whole,
//! decodable registry-to-client frames; a reply to a structured request answers one outstanding
//! request of that connection, at most once; the registry's connection count matches the
//! driver's; at most as many users are online as there are accounts; jobs pending match jobs
//! parked; feeding `Timeout` settles (no deadline stays due: no busy loop). At the end, with
//! every parked job released, each structured request on a connection still open was answered.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use p2pchat_protocol::{Frame, FrameDecoder, Heartbeat, HeartbeatKey, Msg, Role, VERSION};
use p2pchat_registry::hasher::{run_hash, HashDone, HashJob};
use p2pchat_registry::store::{Snapshot, SqliteStore, StoreJob};
use p2pchat_registry::{Config, ConnId, Input, Output, Registry};

use super::ops::{self, push_raw as raw};

/// Names the requests use: valid ones that collide on purpose (the same name in another case,
/// a rename target), and invalid ones.
const NAMES: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "Alice",
    "dave.x",
    "",
    "a b",
    "émile",
    "x-32-chars-long-name-0123456789",
];
const PASSWORDS: &[&str] = &["password1", "password2", "short", ""];
/// Structured request ids start here, so they are told apart from ids in raw bytes.
const FIRST_ID: u32 = 1 << 24;
const MAX_CONNS: u64 = 6;
const MAX_STEPS: usize = 96;

#[derive(Debug, Clone, Copy, Arbitrary)]
struct Name(u8);

impl Name {
    fn get(self) -> String {
        NAMES[usize::from(self.0) % NAMES.len()].to_string()
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
struct Pass(u8);

impl Pass {
    fn get(self) -> String {
        PASSWORDS[usize::from(self.0) % PASSWORDS.len()].to_string()
    }
}

/// A request a client could send, over the small alphabets above.
#[derive(Debug, Clone, Arbitrary)]
enum Req {
    Hello {
        good_version: bool,
        peer_role: bool,
    },
    Register(Name, Pass),
    Login(Name, Pass),
    /// Resume with the token of the `n`th login seen (or a forged one).
    Resume(Name, u8),
    Logout,
    Search(Name),
    ListOnline(Name, u8),
    Rename(Name),
    Ping,
    CreateRoom(Name),
    ListRooms(Name, u8),
    JoinRoom(Name),
    LeaveRoom(Name),
    ListMembers(Name),
    Kick(Name, Name),
    Promote(Name, Name),
    /// A kind a client must not send to the registry (a reply or a peer-to-peer kind).
    Stray(u8),
}

#[derive(Debug, Clone, Arbitrary)]
enum Op {
    /// Raw stream bytes on a connection.
    Raw {
        conn: u8,
        bytes: Vec<u8>,
    },
    /// One structured request, optionally split into two reads at `split`.
    Request {
        conn: u8,
        req: Req,
        split: Option<u8>,
    },
    /// Time passes by `ms * 64` milliseconds (up to about 70 minutes), then `Timeout`.
    Advance {
        ms: u16,
    },
    Connect {
        conn: u8,
        source: u8,
    },
    Disconnect {
        conn: u8,
    },
    /// A heartbeat for the `n`th login seen.
    Heartbeat {
        n: u8,
        kind: HbKind,
    },
    /// Garbage on the heartbeat socket.
    Datagram(Vec<u8>),
    HoldHashes,
    HoldStores,
    Release,
    Restart,
    Shutdown,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum HbKind {
    Next,
    Replay,
    Forged,
    OtherSession,
}

struct Login {
    session: u64,
    key: [u8; 32],
    token: Vec<u8>,
    counter: u64,
}

#[derive(Default)]
struct ConnView {
    /// Structured requests sent and not answered yet.
    outstanding: BTreeSet<u32>,
    /// Raw bytes went over this connection: its ids are not ours to check.
    raw: bool,
}

struct Harness {
    reg: Registry,
    store: SqliteStore,
    config: Config,
    t0: Instant,
    now: Instant,
    boots: u64,
    /// Open connections as the driver sees them.
    conns: BTreeMap<u64, ConnView>,
    /// Every id ever used (ids are never reused, as the engine guarantees).
    used: BTreeSet<u64>,
    decoders: BTreeMap<u64, FrameDecoder>,
    logins: Vec<Login>,
    hold_hashes: bool,
    hold_stores: bool,
    held_hashes: Vec<HashJob>,
    held_stores: Vec<StoreJob>,
    next_id: u32,
    /// Closes to report back as `Input::Closed`, as the engine does after flushing.
    to_report: Vec<u64>,
}

impl Harness {
    fn new() -> Harness {
        let store = fresh_store();
        // The store is empty (`a_cleared_store_is_a_new_store` in the registry's tests).
        let snapshot = Snapshot::default();
        let config = Config {
            pbkdf2_iterations: 1,
            max_clients: 4,
            max_frame_len: 4096,
            max_page: 2,
            heartbeat_timeout: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(6),
            ..Config::default()
        };
        // The virtual clock starts at one real instant; everything after is t0 + offsets.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        Harness {
            reg: Registry::new(config.clone(), &snapshot, 7, t0, 1_700_000_000_000),
            store,
            config,
            t0,
            now: t0,
            boots: 1,
            conns: BTreeMap::new(),
            used: BTreeSet::new(),
            decoders: BTreeMap::new(),
            logins: Vec::new(),
            hold_hashes: false,
            hold_stores: false,
            held_hashes: Vec::new(),
            held_stores: Vec::new(),
            next_id: FIRST_ID,
            to_report: Vec::new(),
        }
    }

    fn input(&mut self, input: Input<'_>) {
        self.reg.handle_input(self.now, input);
        self.pump();
    }

    /// Carries out every output, checking each.
    fn pump(&mut self) {
        loop {
            while let Some(out) = self.reg.poll_output() {
                self.output(out);
            }
            if !self.hold_stores && !self.held_stores.is_empty() {
                let jobs = std::mem::take(&mut self.held_stores);
                for done in self.store.apply(jobs) {
                    self.reg.handle_input(self.now, Input::StoreDone(done));
                }
                continue;
            }
            if !self.hold_hashes && !self.held_hashes.is_empty() {
                for job in std::mem::take(&mut self.held_hashes) {
                    let result = run_hash(&job.request);
                    self.reg
                        .handle_input(self.now, Input::HashDone(HashDone { id: job.id, result }));
                }
                continue;
            }
            if let Some(conn) = self.to_report.pop() {
                self.reg
                    .handle_input(self.now, Input::Closed { conn: ConnId(conn) });
                continue;
            }
            break;
        }
        self.check();
    }

    fn output(&mut self, out: Output) {
        match out {
            Output::Send { conn, bytes } => {
                let view = self
                    .conns
                    .get_mut(&conn.0)
                    .unwrap_or_else(|| panic!("send to {conn}, which is not open"));
                let decoder = self
                    .decoders
                    .entry(conn.0)
                    .or_insert_with(|| FrameDecoder::new(1 << 24));
                decoder.push(&bytes);
                while let Some(frame) = decoder.next_frame().expect("the registry sends frames") {
                    assert!(
                        frame.msg.kind() >= 0x80 || frame.msg.kind() == 0x02,
                        "{conn} got a client-to-server kind: {frame:?}"
                    );
                    if frame.id >= FIRST_ID && !view.raw {
                        assert!(
                            view.outstanding.remove(&frame.id),
                            "{conn}: reply to request {} that is not outstanding",
                            frame.id
                        );
                    }
                    if let Msg::LoggedIn {
                        session,
                        heartbeat_key,
                        resume_token,
                        ..
                    } = frame.msg
                    {
                        self.logins.push(Login {
                            session,
                            key: heartbeat_key,
                            token: resume_token,
                            counter: 0,
                        });
                    }
                }
                assert!(!decoder.has_partial(), "{conn}: a send ends mid-frame");
            }
            Output::Close { conn, reason } => {
                assert!(
                    self.conns.remove(&conn.0).is_some(),
                    "close of {conn}, which is not open ({reason})"
                );
                assert!(!reason.to_string().is_empty());
                self.to_report.push(conn.0);
            }
            Output::Store(job) => self.held_stores.push(job),
            Output::Hash(job) => self.held_hashes.push(job),
            Output::Event(_) => {}
        }
    }

    fn check(&mut self) {
        // Connections the registry closed itself but that are not reported yet are still in its
        // table only if it keeps closed ones, which it must not.
        assert_eq!(
            self.reg.connection_count(),
            self.conns.len(),
            "the registry and the driver disagree on open connections"
        );
        assert!(self.reg.online_count() <= self.reg.account_count());
        assert_eq!(
            self.reg.pending_jobs(),
            self.held_hashes.len() + self.held_stores.len(),
            "pending jobs that no worker holds"
        );
    }

    fn conn_id(&self, conn: u8) -> u64 {
        // Connection ids of this boot: ids are never reused, so each boot has its own range.
        self.boots * 100 + u64::from(conn) % MAX_CONNS
    }

    fn send_bytes(&mut self, conn: u64, bytes: &[u8], split: Option<u8>) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let at = split.map_or(bytes.len(), |s| usize::from(s).min(bytes.len()));
        let (a, b) = bytes.split_at(at);
        for part in [a, b] {
            if !part.is_empty() && self.conns.contains_key(&conn) {
                self.input(Input::Received {
                    conn: ConnId(conn),
                    bytes: part,
                });
            }
        }
    }

    fn request(&mut self, conn: u64, req: Req, split: Option<u8>) {
        let Some(view) = self.conns.get(&conn) else {
            return;
        };
        let raw = view.raw;
        let msg = match req {
            Req::Hello {
                good_version,
                peer_role,
            } => Msg::Hello {
                version: if good_version { VERSION } else { VERSION + 1 },
                role: if peer_role { Role::Peer } else { Role::Client },
                name: String::new(),
                ticket: Vec::new(),
            },
            Req::Register(n, p) => Msg::Register {
                name: n.get(),
                password: p.get(),
            },
            Req::Login(n, p) => Msg::Login {
                name: n.get(),
                password: p.get(),
                listen: SocketAddr::from(([0, 0, 0, 0], 4000)),
            },
            Req::Resume(n, which) => Msg::Resume {
                name: n.get(),
                token: self
                    .logins
                    .get(usize::from(which))
                    .map_or_else(|| vec![which; 32], |l| l.token.clone()),
                listen: SocketAddr::from(([0, 0, 0, 0], 4000)),
            },
            Req::Logout => Msg::Logout,
            Req::Search(n) => Msg::Search { name: n.get() },
            Req::ListOnline(n, limit) => Msg::ListOnline {
                after: n.get(),
                limit: u16::from(limit),
            },
            Req::Rename(n) => Msg::Rename { name: n.get() },
            Req::Ping => Msg::Ping,
            Req::CreateRoom(r) => Msg::CreateRoom { room: r.get() },
            Req::ListRooms(r, limit) => Msg::ListRooms {
                after: r.get(),
                limit: u16::from(limit),
            },
            Req::JoinRoom(r) => Msg::JoinRoom { room: r.get() },
            Req::LeaveRoom(r) => Msg::LeaveRoom { room: r.get() },
            Req::ListMembers(r) => Msg::ListMembers { room: r.get() },
            Req::Kick(r, n) => Msg::Kick {
                room: r.get(),
                name: n.get(),
            },
            Req::Promote(r, n) => Msg::Promote {
                room: r.get(),
                name: n.get(),
            },
            Req::Stray(i) => {
                let samples = p2pchat_protocol::samples::all_messages();
                samples[usize::from(i) % samples.len()].clone()
            }
        };
        // The hello is an event (id 0), as clients send it; everything else gets a fresh id.
        let id = if matches!(msg, Msg::Hello { .. }) {
            0
        } else {
            self.next_id += 1;
            self.next_id
        };
        if id != 0 && !raw {
            if let Some(view) = self.conns.get_mut(&conn) {
                view.outstanding.insert(id);
            }
        }
        let bytes = Frame::new(id, msg).to_bytes();
        self.send_bytes(conn, &bytes, split);
    }

    fn heartbeat(&mut self, n: u8, kind: HbKind) {
        if self.logins.is_empty() {
            return;
        }
        let count = self.logins.len();
        let i = usize::from(n) % count;
        let login = &mut self.logins[i];
        let (session, counter, key) = match kind {
            HbKind::Next => {
                login.counter += 1;
                (login.session, login.counter, login.key)
            }
            HbKind::Replay => (login.session, login.counter, login.key),
            HbKind::Forged => (login.session, login.counter + 1, [0x66; 32]),
            HbKind::OtherSession => {
                let key = login.key;
                let other = self.logins[(i + 1) % count].session;
                (other, 1, key)
            }
        };
        let bytes = Heartbeat::sign(&HeartbeatKey::new(&key), session, counter, 0).encode();
        self.input(Input::Datagram {
            from: SocketAddr::from(([10, 0, 0, 9], 7000)),
            bytes: &bytes,
        });
    }

    /// Feeds `Timeout` until no deadline is due any more.
    fn settle(&mut self) {
        for _ in 0..64 {
            self.input(Input::Timeout);
            if self.reg.poll_timeout().is_none_or(|t| t > self.now) {
                return;
            }
        }
        panic!(
            "a deadline stays due after 64 timeouts: busy loop ({:?} <= now)",
            self.reg.poll_timeout().map(|t| t - self.t0)
        );
    }

    fn restart(&mut self) {
        // A crash: parked work is lost, what the store committed is what the new registry sees.
        self.held_hashes.clear();
        self.held_stores.clear();
        self.hold_hashes = false;
        self.hold_stores = false;
        let snapshot = self.store.read_snapshot().expect("read back the store");
        self.boots += 1;
        self.reg = Registry::new(
            self.config.clone(),
            &snapshot,
            7 + self.boots,
            self.now,
            1_700_000_000_000 + (self.now - self.t0).as_millis() as i64,
        );
        self.conns.clear();
        self.decoders.clear();
        self.to_report.clear();
        self.check();
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Raw { conn, bytes } => {
                let conn = self.conn_id(conn);
                if let Some(view) = self.conns.get_mut(&conn) {
                    view.raw = true;
                    view.outstanding.clear();
                }
                self.send_bytes(conn, &bytes, None);
            }
            Op::Request { conn, req, split } => {
                let conn = self.conn_id(conn);
                self.request(conn, req, split);
            }
            Op::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms) * 64);
                self.settle();
            }
            Op::Connect { conn, source } => {
                let conn = self.conn_id(conn);
                if self.used.insert(conn) {
                    self.conns.insert(conn, ConnView::default());
                    let remote = SocketAddr::from(([10, 0, 0, source % 3 + 1], 5000));
                    self.input(Input::Connected {
                        conn: ConnId(conn),
                        remote,
                    });
                }
            }
            Op::Disconnect { conn } => {
                let conn = self.conn_id(conn);
                if self.conns.remove(&conn).is_some() {
                    self.input(Input::Closed { conn: ConnId(conn) });
                }
            }
            Op::Heartbeat { n, kind } => self.heartbeat(n, kind),
            Op::Datagram(bytes) => self.input(Input::Datagram {
                from: SocketAddr::from(([10, 0, 0, 9], 7000)),
                bytes: &bytes,
            }),
            Op::HoldHashes => self.hold_hashes = true,
            Op::HoldStores => self.hold_stores = true,
            Op::Release => {
                self.hold_hashes = false;
                self.hold_stores = false;
                self.pump();
            }
            Op::Restart => self.restart(),
            Op::Shutdown => self.input(Input::Shutdown),
        }
    }

    fn finish(&mut self) {
        self.hold_hashes = false;
        self.hold_stores = false;
        self.pump();
        for (conn, view) in &self.conns {
            assert!(
                view.raw || view.outstanding.is_empty(),
                "conn#{conn:x}: requests {:?} never answered",
                view.outstanding
            );
        }
    }
}

thread_local! {
    /// The store of the previous input, cleared and reused: creating the schema costs
    /// milliseconds per input, clearing it microseconds.
    static SPARE: RefCell<Option<SqliteStore>> = const { RefCell::new(None) };
}

/// An empty in-memory store with the real schema.
fn fresh_store() -> SqliteStore {
    if let Some(mut store) = SPARE.with(|s| s.borrow_mut().take()) {
        if store.clear().is_ok() {
            return store;
        }
    }
    // NOTE(expect): an in-memory database with the real schema; failing to create one is a
    // broken build, not an input.
    SqliteStore::open(Path::new(":memory:"))
        .expect("in-memory store")
        .0
}

/// Reads the next operation. Three tags are plain bytes so that seeds can be written by hand
/// from real frames (see [`seeds`]); every other tag byte is followed by an `arbitrary` [`Op`].
fn next_op(u: &mut Unstructured<'_>) -> arbitrary::Result<Op> {
    let tag = u8::arbitrary(u)?;
    Ok(match tag {
        // 0x00-0x0f: raw bytes on connection `tag`, a big-endian u16 length, the bytes.
        0x00..=0x0f => Op::Raw {
            conn: tag,
            bytes: ops::raw_bytes(u)?,
        },
        // 0x10-0x1f: connection `tag & 0xf` connects (from source 0).
        0x10..=0x1f => Op::Connect {
            conn: tag & 0xf,
            source: 0,
        },
        // 0x20: time passes by the next big-endian u16 times 64 ms.
        0x20 => Op::Advance {
            ms: u16::from_be_bytes([u8::arbitrary(u)?, u8::arbitrary(u)?]),
        },
        _ => Op::arbitrary(u)?,
    })
}

/// The target body.
pub fn run(data: &[u8]) {
    let mut h = Harness::new();
    ops::drive(data, MAX_STEPS, &mut h, next_op, Harness::step);
    h.finish();
    SPARE.with(|s| *s.borrow_mut() = Some(h.store));
}

fn hello() -> Frame {
    Frame::event(Msg::Hello {
        version: VERSION,
        role: Role::Client,
        name: String::new(),
        ticket: Vec::new(),
    })
}

/// Seeds: sessions written as raw frames (the protocol samples and real request sequences), so
/// the committed corpus starts from real, valid traffic.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    // Every sample kind after a hello: the registry's answer to each, including the kinds it
    // must refuse.
    for (i, msg) in p2pchat_protocol::samples::all_messages()
        .into_iter()
        .enumerate()
    {
        let mut s = vec![0x10];
        raw(&mut s, 0, hello());
        raw(&mut s, 0, Frame::new(i as u32 + 1, msg));
        seeds.push(s);
    }
    // Register, log in, rooms, heartbeat time, logout; a second user joins and is kicked.
    let login = |name: &str| Msg::Login {
        name: name.into(),
        password: "password1".into(),
        listen: SocketAddr::from(([0, 0, 0, 0], 4000)),
    };
    let register = |name: &str| Msg::Register {
        name: name.into(),
        password: "password1".into(),
    };
    let room = || "lobby".to_string();
    let mut s = vec![0x10, 0x11];
    raw(&mut s, 0, hello());
    raw(&mut s, 1, hello());
    raw(&mut s, 0, Frame::new(1, register("alice")));
    raw(&mut s, 1, Frame::new(1, register("bob")));
    raw(&mut s, 0, Frame::new(2, login("alice")));
    raw(&mut s, 1, Frame::new(2, login("bob")));
    raw(&mut s, 0, Frame::new(3, Msg::CreateRoom { room: room() }));
    raw(&mut s, 0, Frame::new(4, Msg::JoinRoom { room: room() }));
    raw(&mut s, 1, Frame::new(3, Msg::JoinRoom { room: room() }));
    raw(&mut s, 0, Frame::new(5, Msg::ListMembers { room: room() }));
    raw(
        &mut s,
        0,
        Frame::new(
            6,
            Msg::Promote {
                room: room(),
                name: "bob".into(),
            },
        ),
    );
    raw(
        &mut s,
        1,
        Frame::new(
            4,
            Msg::Kick {
                room: room(),
                name: "alice".into(),
            },
        ),
    );
    raw(
        &mut s,
        1,
        Frame::new(
            5,
            Msg::Rename {
                name: "robert".into(),
            },
        ),
    );
    raw(
        &mut s,
        0,
        Frame::new(
            7,
            Msg::ListOnline {
                after: String::new(),
                limit: 10,
            },
        ),
    );
    raw(
        &mut s,
        0,
        Frame::new(
            8,
            Msg::Search {
                name: "robert".into(),
            },
        ),
    );
    s.extend_from_slice(&[0x20, 0x01, 0x00]);
    raw(&mut s, 1, Frame::new(6, Msg::LeaveRoom { room: room() }));
    raw(&mut s, 0, Frame::new(9, Msg::Logout));
    seeds.push(s);
    // A long silence: handshake, idle and expiry deadlines.
    let mut s = vec![0x10, 0x11];
    raw(&mut s, 0, hello());
    raw(&mut s, 0, Frame::new(1, register("carol")));
    raw(&mut s, 0, Frame::new(2, login("carol")));
    s.extend_from_slice(&[0x20, 0x40, 0x00]);
    raw(&mut s, 0, Frame::new(3, Msg::Ping));
    seeds.push(s);
    seeds
}
