//! The [`Registry`] state machine: connection lifecycle, framing, deadlines and heartbeats.
//! Account operations are in `auth.rs`, as more `impl Registry` blocks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2pchat_protocol::{status, Frame, FrameDecoder, Msg, Role, VERSION};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::accounts::Accounts;
use crate::admission::{Admission, Caps, Refusal};
use crate::config::Config;
use crate::hasher::{HashDone, HashJob, HashRequest};
use crate::io::{CloseReason, ConnId, ConnTable, Event, Input, OfflineReason, Output};
use crate::limits::{Backoff, RateLimit};
use crate::presence::{HeartbeatRejection, Presence};
use crate::rooms::Rooms;
use crate::store::{
    AccountId, Role as MemberRole, RoomId, Snapshot, StoreDone, StoreError, StoreJob, StoreRequest,
};
use crate::timers::Timers;

const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How often a pre-login deadline that fell due during a register or login looks again.
const AUTH_WAIT_POLL: Duration = Duration::from_millis(100);
/// First and longest wait before retrying resume tokens the store could not write.
pub(crate) const TOKEN_RETRY_FIRST: Duration = Duration::from_secs(1);
pub(crate) const TOKEN_RETRY_MAX: Duration = Duration::from_secs(4);

/// The registry: accounts, sessions, presence and (later) rooms, as a sans-IO state machine.
///
/// Method groups (quinn's order):
/// - A. getters: [`Registry::online_count`], [`Registry::is_online`], [`Registry::stats`] ...
/// - B. input: [`Registry::handle_input`]
/// - D. output: [`Registry::poll_output`], [`Registry::poll_timeout`]
pub struct Registry {
    pub(crate) config: Config,
    pub(crate) rng: StdRng,
    epoch: Instant,
    epoch_wall_ms: i64,
    pub(crate) conns: ConnTable<Conn>,
    pub(crate) accounts: Accounts,
    pub(crate) presence: Presence,
    pub(crate) rooms: Rooms,
    pub(crate) auth_limit: RateLimit,
    pub(crate) resume_limit: RateLimit,
    /// Failed logins by (account name, source): see `limits::Backoff`.
    pub(crate) backoff: Backoff<(String, IpAddr)>,
    pub(crate) admission: Admission,
    /// Connections with decoded-but-unserved input, served a budget each per turn, in turn.
    pub(crate) backlog: VecDeque<ConnId>,
    /// The `now` of the last input: `poll_timeout` answers it while the backlog has work.
    last_now: Instant,
    /// Output bytes produced since the current connection's budget began.
    pub(crate) produced: usize,
    /// Accounts whose resume token in memory may differ from the one on disk (a store write
    /// failed, e.g. a full disk); retried with backoff until the disk agrees.
    pub(crate) unsaved_tokens: HashSet<AccountId>,
    pub(crate) token_retry: Duration,
    /// Accounts whose login succeeded and whose session is being set up.
    pub(crate) starting: HashSet<AccountId>,
    pub(crate) timers: Timers<TimerKey>,
    pub(crate) pending: HashMap<u64, Pending>,
    next_job: u64,
    pub(crate) hashes_in_flight: usize,
    pub(crate) stores_in_flight: usize,
    outbox: VecDeque<Output>,
    shutting_down: bool,
    /// Salt and hash that no password matches: unknown users cost a full hash too, so timing
    /// does not tell them apart from wrong passwords.
    pub(crate) dummy: ([u8; 16], [u8; 32]),
    pub(crate) stats: Stats,
    /// Issues identity tickets once the binary gave the registry its key (`tickets.rs`).
    pub(crate) tickets: Option<crate::tickets::TicketIssuer>,
}

/// Counters, for logs, benchmarks and tests.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Heartbeats accepted.
    pub heartbeats: u64,
    /// Datagrams that were not heartbeats.
    pub hb_malformed: u64,
    /// Heartbeats for no live session.
    pub hb_unknown_session: u64,
    /// Heartbeats whose tag failed.
    pub hb_bad_tag: u64,
    /// Replayed heartbeats.
    pub hb_replayed: u64,
    /// Sessions expired for lack of heartbeats.
    pub expired: u64,
    /// Connections closed for bad bytes or protocol violations.
    pub protocol_errors: u64,
    /// Requests answered "busy".
    pub busy: u64,
    /// Requests answered "rate limited".
    pub rate_limited: u64,
    /// Pre-login connections closed to make room for a new connection.
    pub evicted: u64,
    /// New connections refused because every slot (or every slot of their source) was taken
    /// by logged-in users.
    pub refused: u64,
    /// Times a connection's pipelined input was left for a later turn (budget spent).
    pub deferred: u64,
    /// Logins that opened their session with a resume token the store could not write yet.
    pub unsaved_logins: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    Handshake(ConnId),
    Frame(ConnId),
    Idle(ConnId),
    Housekeeping,
    TokenRetry,
}

/// What a connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    ExpectHello,
    ExpectLogin,
    LoggedIn { account: AccountId, session: u64 },
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) remote: SocketAddr,
    pub(crate) state: ConnState,
    /// Input bytes not yet decoded: `None` while there are none, so an idle connection holds
    /// neither a decoder nor a read buffer (memory per online peer, docs/performance.md).
    pub(crate) decoder: Option<Box<FrameDecoder>>,
    /// A login or resume is running for this connection: one at a time.
    pub(crate) auth_in_flight: bool,
    /// The driver says its output is over the soft cap: decode nothing more until it drains.
    pub(crate) blocked: bool,
    /// It is in `backlog`.
    pub(crate) queued: bool,
}

impl Conn {
    /// Bytes buffered and not yet decoded.
    pub(crate) fn buffered(&self) -> usize {
        self.decoder.as_ref().map_or(0, |d| d.buffered())
    }

    /// Whether part of a frame is buffered.
    pub(crate) fn has_partial(&self) -> bool {
        self.decoder.as_ref().is_some_and(|d| d.has_partial())
    }
}

/// A hash or store job and what to do when it finishes.
#[derive(Debug)]
pub(crate) enum Pending {
    RegisterHash {
        conn: ConnId,
        req: u32,
        name: String,
        salt: [u8; 16],
        iterations: u32,
    },
    RegisterStore {
        conn: ConnId,
        req: u32,
        name: String,
        salt: [u8; 16],
        iterations: u32,
        hash: [u8; 32],
        created_ms: i64,
    },
    LoginHash {
        conn: ConnId,
        req: u32,
        name: String,
        /// The throttle key's source (`limits::source_key`).
        source: IpAddr,
        account: Option<AccountId>,
        listen: SocketAddr,
    },
    SessionToken {
        conn: ConnId,
        req: u32,
        account: AccountId,
        listen: SocketAddr,
        token: Vec<u8>,
        token_hash: [u8; 32],
        expires_ms: i64,
    },
    Rename {
        conn: ConnId,
        req: u32,
        account: AccountId,
        name: String,
    },
    CreateRoom {
        conn: ConnId,
        req: u32,
        account: AccountId,
        room: String,
    },
    Join {
        conn: ConnId,
        req: u32,
        account: AccountId,
        room_id: RoomId,
        role: MemberRole,
    },
    /// A leave (`by` is `None`) or a kick by `by`.
    Remove {
        conn: ConnId,
        req: u32,
        room_id: RoomId,
        target: AccountId,
        by: Option<AccountId>,
    },
    /// A promotion by an admin (with the request to answer) or by succession (none).
    Promote {
        conn: Option<(ConnId, u32)>,
        room_id: RoomId,
        target: AccountId,
    },
    /// Writing the account's resume token as memory had it (`None`: deleted) when submitted.
    TokenSync {
        account: AccountId,
        token: Option<[u8; 32]>,
    },
}

impl Registry {
    /// A registry over the accounts in `snapshot`. `epoch` and `epoch_wall_ms` anchor wall-clock
    /// time (for persisted expiries) to the monotonic `now` the driver passes in; `seed` feeds
    /// every random value (session ids, keys, salts, tokens): the binary seeds it from the OS.
    pub fn new(
        config: Config,
        snapshot: &Snapshot,
        seed: u64,
        epoch: Instant,
        epoch_wall_ms: i64,
    ) -> Registry {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut dummy = ([0u8; 16], [0u8; 32]);
        rng.fill_bytes(&mut dummy.0);
        rng.fill_bytes(&mut dummy.1);
        let mut timers = Timers::new();
        timers.set(TimerKey::Housekeeping, epoch + HOUSEKEEPING);
        Registry {
            auth_limit: RateLimit::new(config.auth_rate_per_min, config.auth_burst),
            resume_limit: RateLimit::new(config.resume_rate_per_min, config.resume_burst),
            backoff: Backoff::new(config.backoff_after, config.backoff_max),
            admission: Admission::default(),
            backlog: VecDeque::new(),
            last_now: epoch,
            produced: 0,
            unsaved_tokens: HashSet::new(),
            token_retry: TOKEN_RETRY_FIRST,
            config,
            rng,
            epoch,
            epoch_wall_ms,
            conns: ConnTable::default(),
            accounts: Accounts::load(snapshot),
            presence: Presence::default(),
            rooms: Rooms::load(snapshot),
            starting: HashSet::new(),
            timers,
            pending: HashMap::new(),
            next_job: 1,
            hashes_in_flight: 0,
            stores_in_flight: 0,
            outbox: VecDeque::new(),
            shutting_down: false,
            dummy,
            stats: Stats::default(),
            tickets: None,
        }
    }

    /// Feeds one input. `now` must not go backwards between calls.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        self.last_now = now;
        match input {
            Input::Connected { conn, remote } => self.handle_connected(now, conn, remote),
            Input::Received { conn, bytes } => self.handle_received(now, conn, bytes),
            Input::Closed { conn } => self.drop_conn(conn, OfflineReason::Disconnected),
            Input::Datagram { bytes, .. } => self.handle_datagram(now, bytes),
            Input::StoreDone(done) => self.handle_store_done(now, done),
            Input::HashDone(done) => self.handle_hash_done(now, done),
            Input::Timeout => self.handle_timeout(now),
            Input::Backpressure { conn, blocked } => self.handle_backpressure(now, conn, blocked),
            Input::Shutdown => self.handle_shutdown(),
        }
    }

    /// The next thing to do, until `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }

    /// The latest moment to feed `Input::Timeout`. Changes after every input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = match (self.timers.next(), self.presence.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.backlog.is_empty() {
            return next;
        }
        // Input left over from a turn: feed `Timeout` again at once.
        Some(next.map_or(self.last_now, |t| t.min(self.last_now)))
    }

    /// Users online now.
    pub fn online_count(&self) -> usize {
        self.presence.len()
    }

    /// Registered accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Open client connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Open client connections that have not logged in.
    pub fn unauthenticated_count(&self) -> usize {
        self.admission.unauthenticated()
    }

    /// Whether `name` is online.
    pub fn is_online(&self, name: &str) -> bool {
        self.accounts
            .by_name(name)
            .is_some_and(|a| self.presence.session_of(a.id).is_some())
    }

    /// Whether a graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Hash and store jobs not yet answered.
    pub fn pending_jobs(&self) -> usize {
        self.pending.len()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ----- connection lifecycle -----

    fn handle_connected(&mut self, now: Instant, conn: ConnId, remote: SocketAddr) {
        if self.shutting_down {
            self.refuse(conn, status::SHUTTING_DOWN, CloseReason::Shutdown);
            return;
        }
        let caps = Caps {
            max_clients: self.config.max_clients,
            max_per_source: self.config.max_per_source,
            max_unauthenticated: self.config.max_unauthenticated,
        };
        match self.admission.admit(remote.ip(), caps) {
            Ok(evict) => {
                for victim in evict {
                    self.stats.evicted += 1;
                    self.close_with(
                        victim,
                        status::SERVER_FULL,
                        "server full: this connection had not logged in and made room for a newer one",
                        CloseReason::Evicted,
                    );
                }
            }
            Err(refusal) => {
                self.stats.refused += 1;
                let message = match refusal {
                    Refusal::Source => "server full: too many connections from your address",
                    Refusal::Full => status::message(status::SERVER_FULL),
                };
                let frame = Frame::event(Msg::Error {
                    code: status::SERVER_FULL,
                    message: message.to_owned(),
                });
                self.send_frame(conn, &frame);
                self.outbox.push_back(Output::Close {
                    conn,
                    reason: CloseReason::ServerFull,
                });
                return;
            }
        }
        self.admission.add(conn, remote.ip());
        self.conns.insert(
            conn,
            Conn {
                remote,
                state: ConnState::ExpectHello,
                decoder: None,
                auth_in_flight: false,
                blocked: false,
                queued: false,
            },
        );
        self.timers.set(
            TimerKey::Handshake(conn),
            now + self.config.handshake_timeout,
        );
    }

    /// Tells a connection we do not keep why, and closes it.
    fn refuse(&mut self, conn: ConnId, code: u16, reason: CloseReason) {
        let frame = Frame::event(Msg::Error {
            code,
            message: status::message(code).to_owned(),
        });
        self.send_frame(conn, &frame);
        self.outbox.push_back(Output::Close { conn, reason });
    }

    pub(crate) fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let state = c.state;
        if state == ConnState::ExpectHello {
            self.handle_hello(now, conn, frame);
            return;
        }
        // No deadline moves here: a frame, even a ping, does not buy a pre-login connection
        // more time (only a successful login, resume or registration does).
        let id = frame.id;
        match frame.msg {
            Msg::Register { name, password } => self.handle_register(now, conn, id, name, password),
            Msg::Login {
                name,
                password,
                listen,
            } => self.handle_login(now, conn, id, name, password, listen),
            Msg::Resume {
                name,
                token,
                listen,
            } => self.handle_resume(now, conn, id, name, token, listen),
            Msg::Logout => self.handle_logout(now, conn, id),
            Msg::Search { name } => self.handle_search(conn, id, &name),
            Msg::ListOnline { after, limit } => self.handle_list_online(conn, id, &after, limit),
            Msg::Rename { name } => self.handle_rename(conn, id, name),
            Msg::Ping => self.reply(conn, id, Msg::Pong),
            Msg::GetTicket { key } => self.handle_get_ticket(now, conn, id, key),
            msg @ (Msg::CreateRoom { .. }
            | Msg::ListRooms { .. }
            | Msg::JoinRoom { .. }
            | Msg::LeaveRoom { .. }
            | Msg::ListMembers { .. }
            | Msg::Kick { .. }
            | Msg::Promote { .. }) => self.handle_room_request(now, conn, id, msg),
            other => {
                // Server-to-client and peer-to-peer kinds have no business here.
                let what = other.kind_name();
                self.stats.protocol_errors += 1;
                self.close_with(
                    conn,
                    status::UNEXPECTED,
                    &format!("unexpected {what} frame"),
                    CloseReason::Unexpected(what),
                );
            }
        }
    }

    fn handle_hello(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        let Msg::Hello { version, role, .. } = frame.msg else {
            let what = frame.msg.kind_name();
            self.stats.protocol_errors += 1;
            self.close_with(
                conn,
                status::UNEXPECTED,
                &format!("expected hello, got {what}"),
                CloseReason::Unexpected(what),
            );
            return;
        };
        if version != VERSION {
            self.close_with(
                conn,
                status::BAD_VERSION,
                &format!("unsupported protocol version {version}; this registry speaks {VERSION}"),
                CloseReason::BadVersion(version),
            );
            return;
        }
        if role != Role::Client {
            self.close_with(
                conn,
                status::UNEXPECTED,
                "this is a registry, not a peer",
                CloseReason::Unexpected("peer hello"),
            );
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::ExpectLogin;
        }
        self.timers.cancel(TimerKey::Handshake(conn));
        self.timers
            .set(TimerKey::Idle(conn), now + self.config.idle_timeout);
        let welcome = Msg::Welcome {
            version: VERSION,
            name: format!("p2pchat-registry {}", env!("CARGO_PKG_VERSION")),
        };
        self.reply(conn, frame.id, welcome);
    }

    /// Sends an error with id 0 (a connection-level error), closes the connection and forgets it.
    pub(crate) fn close_with(
        &mut self,
        conn: ConnId,
        code: u16,
        message: &str,
        reason: CloseReason,
    ) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.reply_error(conn, 0, code, message);
        let why = match reason {
            CloseReason::Expired => OfflineReason::Expired,
            CloseReason::Replaced => OfflineReason::Replaced,
            _ => OfflineReason::Disconnected,
        };
        self.drop_conn(conn, why);
        self.outbox.push_back(Output::Close { conn, reason });
    }

    /// Forgets a connection: its deadlines, and its session if it had one.
    fn drop_conn(&mut self, conn: ConnId, why: OfflineReason) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.timers.cancel(TimerKey::Handshake(conn));
        self.timers.cancel(TimerKey::Frame(conn));
        self.timers.cancel(TimerKey::Idle(conn));
        self.admission.remove(conn, c.remote.ip());
        if let ConnState::LoggedIn { session, .. } = c.state {
            self.end_session(session, why);
        }
    }

    /// Takes a session offline. The connection stays as it is.
    pub(crate) fn end_session(&mut self, session: u64, why: OfflineReason) {
        if let Some(s) = self.presence.remove(session) {
            let name = s.name.to_string();
            let event = p2pchat_protocol::RoomEvent::Offline { name: name.clone() };
            self.push_to_rooms_of(s.account, event);
            self.outbox
                .push_back(Output::Event(Event::Offline { name, why }));
        }
    }

    pub(crate) fn disarm_idle(&mut self, conn: ConnId) {
        self.timers.cancel(TimerKey::Idle(conn));
    }

    /// Whether a register or login of `conn` is with the hashing pool or the store.
    fn awaits_auth(&self, conn: ConnId) -> bool {
        // Only when a pre-login deadline falls due: O(jobs in flight), which are capped.
        self.pending.values().any(|p| match p {
            Pending::RegisterHash { conn: c, .. }
            | Pending::RegisterStore { conn: c, .. }
            | Pending::LoginHash { conn: c, .. }
            | Pending::SessionToken { conn: c, .. } => *c == conn,
            _ => false,
        })
    }

    pub(crate) fn arm_idle(&mut self, now: Instant, conn: ConnId) {
        self.timers
            .set(TimerKey::Idle(conn), now + self.config.idle_timeout);
    }

    // ----- heartbeats and deadlines -----

    fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        // O(1): moves the session's deadline, no timer index is touched (presence.rs).
        match self
            .presence
            .check_heartbeat(bytes, now + self.config.heartbeat_timeout)
        {
            Ok(_) => self.stats.heartbeats += 1,
            Err(HeartbeatRejection::Malformed) => self.stats.hb_malformed += 1,
            Err(HeartbeatRejection::UnknownSession) => self.stats.hb_unknown_session += 1,
            Err(HeartbeatRejection::BadTag) => self.stats.hb_bad_tag += 1,
            Err(HeartbeatRejection::Replayed) => self.stats.hb_replayed += 1,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_expired(now) {
            match key {
                TimerKey::Handshake(conn) => self.close_with(
                    conn,
                    status::TIMEOUT,
                    "no hello received in time",
                    CloseReason::HandshakeTimeout,
                ),
                TimerKey::Frame(conn) => self.close_with(
                    conn,
                    status::TIMEOUT,
                    "frame not completed in time",
                    CloseReason::FrameTimeout,
                ),
                // A register or login of this connection still with the hashing pool or the
                // store is our delay, not the client's idleness: under load a slow hash must
                // not cost the user the account it asked for. The deadline waits for the
                // answer and no longer: a successful register re-arms it as always, and after
                // a failed login the next look closes the connection (a login timed to be in
                // flight at the deadline cannot hold a slot).
                TimerKey::Idle(conn) if self.awaits_auth(conn) => {
                    self.timers.set(TimerKey::Idle(conn), now + AUTH_WAIT_POLL);
                }
                TimerKey::Idle(conn) => {
                    let secs = self.config.idle_timeout.as_secs_f64();
                    self.close_with(
                        conn,
                        status::TIMEOUT,
                        &format!("not logged in within {secs}s"),
                        CloseReason::Idle,
                    );
                }
                TimerKey::TokenRetry => self.retry_tokens(now),
                TimerKey::Housekeeping => {
                    self.auth_limit.prune(now);
                    self.resume_limit.prune(now);
                    self.backoff.prune(now);
                    self.timers.set(TimerKey::Housekeeping, now + HOUSEKEEPING);
                }
            }
        }
        while let Some(session) = self.presence.pop_expired(now) {
            self.expire(session);
        }
        self.serve_backlog(now);
    }

    /// Arms the retry of unsaved resume tokens, if it is not armed.
    pub(crate) fn arm_token_retry(&mut self, now: Instant) {
        if !self.timers.is_set(TimerKey::TokenRetry) {
            self.timers
                .set(TimerKey::TokenRetry, now + self.token_retry);
        }
    }

    fn expire(&mut self, session: u64) {
        let Some(s) = self.presence.get(session) else {
            return;
        };
        let conn = s.conn;
        self.stats.expired += 1;
        let secs = self.config.heartbeat_timeout.as_secs_f64();
        self.close_with(
            conn,
            status::TIMEOUT,
            &format!("session expired: no heartbeat for {secs}s"),
            CloseReason::Expired,
        );
        // A session whose connection is already gone still goes offline.
        if self.presence.contains(session) {
            self.end_session(session, OfflineReason::Expired);
        }
    }

    fn handle_shutdown(&mut self) {
        self.shutting_down = true;
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort();
        for conn in conns {
            self.close_with(
                conn,
                status::SHUTTING_DOWN,
                status::message(status::SHUTTING_DOWN),
                CloseReason::Shutdown,
            );
        }
    }

    // ----- outputs -----

    pub(crate) fn send_frame(&mut self, conn: ConnId, frame: &Frame) {
        self.send_bytes(conn, frame.to_bytes());
    }

    /// Sends an encoded frame; one encoding can go to many connections (a room event).
    pub(crate) fn send_bytes(&mut self, conn: ConnId, bytes: Bytes) {
        self.produced += bytes.len();
        self.outbox.push_back(Output::Send { conn, bytes });
    }

    pub(crate) fn reply(&mut self, conn: ConnId, id: u32, msg: Msg) {
        if self.conns.contains_key(&conn) {
            self.send_frame(conn, &Frame::new(id, msg));
        }
    }

    pub(crate) fn reply_error(&mut self, conn: ConnId, id: u32, code: u16, message: &str) {
        self.reply(
            conn,
            id,
            Msg::Error {
                code,
                message: message.to_owned(),
            },
        );
    }

    pub(crate) fn state(&self, conn: ConnId) -> Option<ConnState> {
        self.conns.get(&conn).map(|c| c.state)
    }

    /// The account and session of a logged-in connection.
    pub(crate) fn logged_in(&self, conn: ConnId) -> Option<(AccountId, u64)> {
        match self.state(conn)? {
            ConnState::LoggedIn { account, session } => Some((account, session)),
            _ => None,
        }
    }

    /// The account of a logged-in connection; otherwise answers "not logged in".
    pub(crate) fn require_login(&mut self, conn: ConnId, id: u32) -> Option<AccountId> {
        let account = self.logged_in(conn).map(|(account, _)| account);
        if account.is_none() {
            self.error(conn, id, status::NOT_LOGGED_IN);
        }
        account
    }

    /// Answers a request with `code` and its default message.
    pub(crate) fn error(&mut self, conn: ConnId, id: u32, code: u16) {
        self.reply_error(conn, id, code, status::message(code));
    }

    /// Answers a request whose store write failed: "disk full" when it was (the client can tell
    /// its user why, and that retrying later may work), otherwise "internal server error".
    pub(crate) fn store_failed<T>(
        &mut self,
        conn: ConnId,
        id: u32,
        result: &Result<T, StoreError>,
    ) {
        match result {
            Err(StoreError::DiskFull) => self.reply_error(
                conn,
                id,
                status::DISK_FULL,
                "disk full: the server cannot save this now, try again later",
            ),
            _ => self.error(conn, id, status::INTERNAL),
        }
    }

    /// Answers a request with "busy, try again" and counts it.
    pub(crate) fn busy(&mut self, conn: ConnId, id: u32) {
        self.stats.busy += 1;
        self.error(conn, id, status::BUSY);
    }

    /// Whether another store job may be queued; if not, answers "busy" and returns false.
    pub(crate) fn store_capacity_ok(&mut self, conn: ConnId, id: u32) -> bool {
        if self.stores_in_flight >= self.config.max_pending_stores {
            self.busy(conn, id);
            return false;
        }
        true
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.outbox.push_back(Output::Event(event));
    }

    fn next_job_id(&mut self) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        id
    }

    pub(crate) fn submit_hash(&mut self, request: HashRequest, pending: Pending) {
        let id = self.next_job_id();
        self.hashes_in_flight += 1;
        self.pending.insert(id, pending);
        self.outbox.push_back(Output::Hash(HashJob { id, request }));
    }

    pub(crate) fn submit_store(&mut self, request: StoreRequest, pending: Pending) {
        let id = self.next_job_id();
        self.stores_in_flight += 1;
        self.pending.insert(id, pending);
        self.outbox
            .push_back(Output::Store(StoreJob { id, request }));
    }

    pub(crate) fn take_pending_hash(&mut self, done: &HashDone) -> Option<Pending> {
        let p = self.pending.remove(&done.id)?;
        self.hashes_in_flight = self.hashes_in_flight.saturating_sub(1);
        Some(p)
    }

    pub(crate) fn take_pending_store(&mut self, done: &StoreDone) -> Option<Pending> {
        let p = self.pending.remove(&done.id)?;
        self.stores_in_flight = self.stores_in_flight.saturating_sub(1);
        Some(p)
    }

    /// Wall-clock unix ms at `now`, derived from the anchor given at construction.
    pub(crate) fn wall_ms(&self, now: Instant) -> i64 {
        let since = now.saturating_duration_since(self.epoch).as_millis();
        self.epoch_wall_ms
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}
