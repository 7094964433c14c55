//! `p2pchat-registry`: the registry server. Glue only: flags, the store and hashing workers,
//! and the run loop that drives the sans-IO [`Registry`] on the engine's reactor.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::BytesMut;
use clap::Parser;
use log::{debug, info, warn};
use p2pchat_engine::{NetEvent, Reactor, Signal};
use p2pchat_protocol::parse_duration;
use p2pchat_protocol::secure::MAX_RECORD_PLAINTEXT;
use p2pchat_registry::hasher::{HashDone, HashPool, HashResult};
use p2pchat_registry::secure::{key_path_for, load_or_create_key, SecureConns};
use p2pchat_registry::store::{SqliteStore, StoreDone, StoreError, StoreHandle};
use p2pchat_registry::{Config, ConnId, Event, Input, Output, Registry};

/// How long a graceful shutdown waits for queued replies and store writes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the heartbeat counters are logged (debug level).
const COUNTER_LOG_EVERY: Duration = Duration::from_secs(10);

/// Default UDP receive buffer: room for one heartbeat from each of the 10,000 peers the
/// registry is sized for (`--max-clients`) arriving at once. The kernel charges each small
/// datagram about 1 KiB of buffer (its skb and bookkeeping, not the 57 payload bytes).
const DEFAULT_UDP_RECV_BUFFER: usize = 10_000 * 1024;

/// Largest datagram the batched heartbeat intake reads; a heartbeat is 57 bytes, so anything
/// longer is malformed anyway and only counted.
const UDP_SLOT_LEN: usize = 512;

#[derive(Parser, Debug)]
#[command(
    name = "p2pchat-registry",
    version,
    about = "The p2pchat registry: accounts, presence and the room directory"
)]
struct Args {
    /// TCP address for client sessions.
    #[arg(long, default_value = "0.0.0.0:15600")]
    tcp: SocketAddr,
    /// UDP address for heartbeats.
    #[arg(long, default_value = "0.0.0.0:15500")]
    udp: SocketAddr,
    /// SQLite database file (created if missing).
    #[arg(long, default_value = "p2pchat-registry.db")]
    db: PathBuf,
    /// A session expires after this long without a valid heartbeat (e.g. 20s, 500ms, 2m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    heartbeat_timeout: Duration,
    /// PBKDF2 iterations for new passwords.
    #[arg(long, default_value_t = 600_000, value_parser = clap::value_parser!(u32).range(1..))]
    pbkdf2_iterations: u32,
    /// Most client connections at once. When full, the oldest connection that has not logged
    /// in makes room for a new one; logged-in users are never pushed out.
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Most connections from one source address (IPv6: one /64), logged in or not.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_per_source: u64,
    /// Most connections not yet logged in, from all sources.
    #[arg(long, default_value_t = 2_048, value_parser = clap::value_parser!(u64).range(1..))]
    max_unauthenticated: u64,
    /// A connection must log in within this long of its hello; pings do not extend it.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    login_timeout: Duration,
    /// Password attempts (register + login) per source address per minute; burst is half.
    #[arg(long, default_value_t = 60)]
    auth_rate: u32,
    /// Session resumes per source address per minute; burst is half (load tests lift it).
    #[arg(long, default_value_t = 600)]
    resume_rate: u32,
    /// Password hashing threads (default: one per core but one, at least one, so logins
    /// never take the core the event loop needs).
    #[arg(long)]
    hash_threads: Option<usize>,
    /// Scheduling niceness of the hashing threads (0-19, Linux). Above 0 the event loop wins
    /// the CPU over PBKDF2 when both want it, but on a busy host the hashing threads then also
    /// lose to every other process, so logins slow down many times over (docs/performance.md).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    hash_nice: i32,
    /// Kernel receive buffer for the heartbeat socket, in bytes (default: sized for 10,000
    /// peers). Above `net.core.rmem_max` it needs CAP_NET_ADMIN, otherwise it is clamped.
    #[arg(long, default_value_t = DEFAULT_UDP_RECV_BUFFER)]
    udp_recv_buffer: usize,
    /// Heartbeat datagrams read per system call (recvmmsg); 1 reads them one by one.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    udp_batch: u32,
    /// A new connection must send its hello within this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// A started frame must complete within this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    frame_timeout: Duration,
    /// The registry's long-term key (Ed25519, PKCS#8, mode 0600), created on first start
    /// [default: beside the database, extension .key].
    #[arg(long, value_name = "PATH")]
    key: Option<PathBuf>,
    /// How long an identity ticket (a logged-in peer's proof of its name to other peers)
    /// stays valid. Peers renew theirs every 10 keepalive pings (5 minutes by default), so
    /// keep it above that.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    ticket_lifetime: Duration,
}

/// Allocations from this size up get their own mapping from glibc's malloc (its default), and
/// always will: see [`fix_mmap_threshold`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Keeps glibc's mmap threshold where it starts. By default glibc raises it to the size of
/// every mapped block that is freed (up to 32 MiB), so once a per-peer table has grown once
/// (a hash table or a `Vec` reallocating to twice its size frees the old copy), every later
/// table comes from the `brk` heap instead: each growth then copies, leaves the old copy as a
/// resident hole that only small allocations can reuse, and touches the whole new capacity.
/// With the threshold fixed, a table is a mapping of its own: a `Vec` grows in place by
/// `mremap` (no copy, no hole, and pages of its spare capacity are not resident until used)
/// and a freed table goes back to the kernel. That cut the resident set per online peer by
/// ~270 bytes at 2,000 and ~320 at 10,000 (docs/performance.md, "Memory per online peer").
/// The cost: an allocation of 128 KiB or more is one `mmap` and its free one `munmap`; the
/// registry makes such allocations only when a table grows or a queue passes that size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_mmap_threshold() {
    // SAFETY: mallopt takes two integers and only sets a malloc parameter; called first thing
    // in main, before any other thread exists.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    if ok != 1 {
        warn!("cannot fix malloc's mmap threshold: memory per peer will be higher");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_mmap_threshold() {}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    fix_mmap_threshold();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("p2pchat-registry: {e:#}");
        std::process::exit(1);
    }
}

/// The registry's opaque connection ids are the engine's, packed in a `u64` and unpacked
/// again: no map per connection (memory per online peer, docs/performance.md). An output for a
/// connection the engine has closed meanwhile names a dead generation and is ignored there.
struct ConnMap;

impl ConnMap {
    fn id(conn: p2pchat_engine::ConnId) -> ConnId {
        ConnId((u64::from(conn.index()) << 32) | u64::from(conn.generation()))
    }

    fn engine(id: ConnId) -> p2pchat_engine::ConnId {
        p2pchat_engine::ConnId::from_parts((id.0 >> 32) as u32, id.0 as u32)
    }
}

struct Driver {
    reactor: Reactor,
    registry: Registry,
    store: StoreHandle,
    hasher: HashPool,
    /// Completions the workers could not take (queue full), fed back as inputs.
    rejected: VecDeque<Input<'static>>,
    /// The heartbeat socket, for its kernel drop counter.
    udp: p2pchat_engine::UdpId,
    counters: HeartbeatCounters,
    /// What carrying out outputs taught us (a connection closed by a send, an output queue
    /// over the soft cap), fed back before the next output so no work goes to waste.
    feedback: VecDeque<Input<'static>>,
    /// Connections the registry was told are over the soft cap, until they drain.
    blocked: HashSet<ConnId>,
    /// The secure link of every connection (the core below it reads plain frames).
    secure: SecureConns,
    /// Replies for one connection gathered while the core's outputs are carried out, sealed
    /// as one record when the outputs turn to another connection or run out: 16 pipelined
    /// requests cost one seal (one key setup and tag) and one queue append, not 16.
    pending: Option<ConnId>,
    /// Scratch buffers kept across calls, so a request costs no allocation here: the pending
    /// plaintext, the sealed records, the plaintext opened from a read and handshake replies.
    pending_plain: BytesMut,
    sealed: BytesMut,
    opened: BytesMut,
    reply: BytesMut,
}

/// Heartbeat intake figures as last logged, so each log line also shows the interval's share.
#[derive(Default)]
struct HeartbeatCounters {
    next_log: Option<Instant>,
    received: u64,
}

/// One hashing thread per core but one (the event loop's), and at least one.
fn default_hash_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// Lowers the scheduling priority of the pool's threads (named `p2pchat-hash-N`), found
/// through `/proc/self/task`, so PBKDF2 yields the CPU to the event loop. Linux only: per-thread
/// niceness is a Linux property (`setpriority` on a thread id). A thread names itself when it
/// starts, so this looks again (briefly) until it has seen `expected` of them. Returns how
/// many were changed.
#[cfg(target_os = "linux")]
fn renice_hash_threads(nice: i32, expected: usize) -> std::io::Result<usize> {
    let mut done = std::collections::HashSet::new();
    for _ in 0..1000 {
        renice_named_threads(nice, &mut done)?;
        if done.len() >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(done.len())
}

#[cfg(target_os = "linux")]
fn renice_named_threads(
    nice: i32,
    done: &mut std::collections::HashSet<libc::id_t>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("p2pchat-hash-") {
            continue;
        }
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::id_t>().ok())
        else {
            continue;
        };
        if done.contains(&tid) {
            continue;
        }
        // SAFETY: setpriority takes plain integers; on Linux PRIO_PROCESS with a thread id
        // changes that one thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        done.insert(tid);
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn renice_hash_threads(_nice: i32, _expected: usize) -> std::io::Result<usize> {
    Err(std::io::Error::other("per-thread priority needs Linux"))
}

/// After a restart every online peer reconnects within about a second. A connection the
/// accept queue has no room for loses its SYN, and the client only retries it after the
/// kernel's SYN retransmit timeout (1 s, then 3 s): with the engine's default of 1024, 10,000
/// peers reconnecting took seconds longer than the registry needed to serve them. Linux clamps
/// the value to `net.core.somaxconn` (4096 by default since 5.4).
const LISTEN_BACKLOG: i32 = 8192;

fn run(args: Args) -> anyhow::Result<()> {
    let (store, snapshot) = SqliteStore::open(&args.db)
        .with_context(|| format!("cannot open database {}", args.db.display()))?;
    let key_path = args.key.clone().unwrap_or_else(|| key_path_for(&args.db));
    let (identity, created) = load_or_create_key(&key_path)
        .with_context(|| format!("cannot load the registry key {}", key_path.display()))?;
    let fingerprint = identity.public_key().fingerprint();
    let identity = Arc::new(identity);
    info!(
        "registry key {fingerprint} ({} {})",
        if created { "created" } else { "from" },
        key_path.display()
    );
    let engine_config = p2pchat_engine::Config {
        udp_batch: args.udp_batch as usize,
        udp_slot_len: UDP_SLOT_LEN,
        backlog: LISTEN_BACKLOG,
        ..p2pchat_engine::Config::default()
    };
    let mut reactor = Reactor::new(engine_config).context("cannot start the reactor")?;
    let listener = reactor
        .listen(args.tcp)
        .with_context(|| format!("cannot listen on tcp {}", args.tcp))?;
    let udp = reactor
        .bind_udp(args.udp)
        .with_context(|| format!("cannot bind udp {}", args.udp))?;
    let tcp_addr = reactor
        .listener_addr(listener)
        .context("listener vanished")?;
    let udp_addr = reactor.udp_addr(udp).context("udp socket vanished")?;
    match reactor.set_udp_recv_buffer(udp, args.udp_recv_buffer) {
        // Linux reports twice the request (its bookkeeping share); less means it was clamped.
        Ok(got) if got < args.udp_recv_buffer => warn!(
            "udp receive buffer is {got} bytes, asked for {} (raise net.core.rmem_max, or run \
             with CAP_NET_ADMIN)",
            args.udp_recv_buffer
        ),
        Ok(got) => debug!("udp receive buffer {got} bytes"),
        Err(e) => warn!("cannot size the udp receive buffer: {e}"),
    }
    reactor
        .enable_signals()
        .context("cannot install signal handlers")?;

    let mut config = Config::default().with_heartbeat_timeout(args.heartbeat_timeout);
    config.pbkdf2_iterations = args.pbkdf2_iterations;
    config.max_clients = args.max_clients;
    config.max_per_source = usize::try_from(args.max_per_source).unwrap_or(usize::MAX);
    config.max_unauthenticated = usize::try_from(args.max_unauthenticated).unwrap_or(usize::MAX);
    config.idle_timeout = args.login_timeout;
    config.auth_rate_per_min = args.auth_rate;
    config.auth_burst = (args.auth_rate / 2).max(1);
    config.resume_rate_per_min = args.resume_rate;
    config.resume_burst = (args.resume_rate / 2).max(1);
    config.handshake_timeout = args.handshake_timeout;
    config.frame_timeout = args.frame_timeout;
    config.udp_port = udp_addr.port();
    let threads = args
        .hash_threads
        .unwrap_or_else(default_hash_threads)
        .max(1);

    let waker = reactor.waker();
    let w = Arc::clone(&waker);
    let store = StoreHandle::spawn(
        store,
        config.max_pending_stores,
        Box::new(move || {
            let _ = w.wake();
        }),
    );
    let w = Arc::clone(&waker);
    let hasher = HashPool::spawn(
        threads,
        config.max_pending_hashes,
        Arc::new(move || {
            let _ = w.wake();
        }),
    );

    // The one place the registry reads the clocks: both anchors are taken together.
    #[allow(clippy::disallowed_methods)]
    let (epoch, wall) = (Instant::now(), SystemTime::now());
    let wall_ms = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut registry = Registry::new(config, &snapshot, rand::random(), epoch, wall_ms);
    registry.set_identity(Arc::clone(&identity), args.ticket_lifetime);
    if args.hash_nice > 0 {
        match renice_hash_threads(args.hash_nice, threads) {
            Ok(n) => debug!("{n} hashing threads at nice {}", args.hash_nice),
            Err(e) => warn!("cannot lower the hashing threads' priority: {e}"),
        }
    }
    info!(
        "{} accounts loaded from {}; pbkdf2 iterations {}, {} hashing threads (nice {})",
        registry.account_count(),
        args.db.display(),
        args.pbkdf2_iterations,
        threads,
        args.hash_nice
    );

    // One line, so a reader that stops after it never makes a later print fail.
    println!("listening tcp={tcp_addr} udp={udp_addr} key={fingerprint}");
    std::io::stdout().flush().context("stdout")?;

    let mut driver = Driver {
        reactor,
        registry,
        store,
        hasher,
        rejected: VecDeque::new(),
        udp,
        counters: HeartbeatCounters::default(),
        feedback: VecDeque::new(),
        blocked: HashSet::new(),
        secure: SecureConns::new(identity),
        pending: None,
        pending_plain: BytesMut::new(),
        sealed: BytesMut::new(),
        opened: BytesMut::new(),
        reply: BytesMut::new(),
    };
    driver.run()?;
    let Driver { store, hasher, .. } = driver;
    hasher.shutdown();
    store.shutdown();
    info!("shut down cleanly");
    Ok(())
}

impl Driver {
    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Vec::new();
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            let deadline = [
                self.registry.poll_timeout(),
                shutdown_deadline,
                self.counters.next_log,
            ]
            .into_iter()
            .flatten()
            .min();
            self.reactor
                .turn(deadline, &mut events)
                .context("event loop failed")?;
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            for ev in events.drain(..) {
                match ev {
                    NetEvent::Accepted { conn, remote, .. } => {
                        self.secure.accepted(conn);
                        self.feed(
                            now,
                            Input::Connected {
                                conn: ConnMap::id(conn),
                                remote,
                            },
                        );
                    }
                    NetEvent::Received { conn, bytes } => self.received(now, conn, &bytes),
                    NetEvent::Closed { conn, reason } => {
                        let id = ConnMap::id(conn);
                        debug!("{id} closed: {reason}");
                        self.secure.closed(conn);
                        self.blocked.remove(&id);
                        self.feed(now, Input::Closed { conn: id });
                    }
                    NetEvent::Datagram { from, bytes, .. } => {
                        self.feed(
                            now,
                            Input::Datagram {
                                from,
                                bytes: &bytes,
                            },
                        );
                    }
                    NetEvent::Connected { .. } | NetEvent::Woken => {}
                    NetEvent::Signal(sig) => {
                        if shutdown_deadline.is_some() {
                            warn!("second signal ({sig:?}): exiting at once");
                            std::process::exit(130);
                        }
                        if sig == Signal::Hangup {
                            continue;
                        }
                        info!("{sig:?}: shutting down");
                        shutdown_deadline = Some(now + SHUTDOWN_GRACE);
                        self.reactor.close_listeners();
                        self.feed(now, Input::Shutdown);
                    }
                }
            }
            self.unblock_drained(now);
            self.collect_workers(now);
            self.feed(now, Input::Timeout);
            self.log_counters(now);
            if let Some(deadline) = shutdown_deadline {
                let drained = self.reactor.is_quiescent() && self.registry.pending_jobs() == 0;
                if drained || now >= deadline {
                    if !drained {
                        warn!("shutdown grace period over with work still pending");
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Every `COUNTER_LOG_EVERY`, at debug level: heartbeats received, accepted, rejected by
    /// reason, and dropped by the kernel before we could read them.
    fn log_counters(&mut self, now: Instant) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let Some(at) = self.counters.next_log else {
            self.counters.next_log = Some(now + COUNTER_LOG_EVERY);
            return;
        };
        if now < at {
            return;
        }
        self.counters.next_log = Some(now + COUNTER_LOG_EVERY);
        let engine = self.reactor.stats();
        let st = self.registry.stats();
        let received = engine.datagrams_in + engine.udp_truncated;
        debug!(
            "heartbeats: {} received ({} in the last {}s), {} accepted; rejected: {} malformed, \
             {} oversized, {} unknown session, {} bad tag, {} replayed; {} dropped by the kernel; \
             {} receive calls",
            received,
            received - self.counters.received,
            COUNTER_LOG_EVERY.as_secs(),
            st.heartbeats,
            st.hb_malformed,
            engine.udp_truncated,
            st.hb_unknown_session,
            st.hb_bad_tag,
            st.hb_replayed,
            self.reactor.udp_kernel_drops(self.udp),
            engine.udp_recv_calls,
        );
        self.counters.received = received;
    }

    /// Feeds worker completions (and jobs the workers refused) back into the registry.
    fn collect_workers(&mut self, now: Instant) {
        loop {
            if let Some(done) = self.rejected.pop_front() {
                self.feed(now, done);
            } else if let Some(done) = self.hasher.try_recv() {
                self.feed(now, Input::HashDone(done));
            } else if let Some(done) = self.store.try_recv() {
                self.feed(now, Input::StoreDone(done));
            } else {
                break;
            }
        }
    }

    /// Bytes read from a connection: opened, and the plain frames fed to the core.
    fn received(&mut self, now: Instant, conn: p2pchat_engine::ConnId, bytes: &[u8]) {
        let id = ConnMap::id(conn);
        let (mut opened, mut reply) = (
            std::mem::take(&mut self.opened),
            std::mem::take(&mut self.reply),
        );
        let result = self.secure.received(conn, bytes, &mut opened, &mut reply);
        if !reply.is_empty() {
            self.reactor.send(conn, &reply);
        }
        match result {
            Err(err) => {
                debug!("{id}: secure link failed: {err}");
                self.reactor.close(conn);
            }
            Ok(()) if !opened.is_empty() => self.feed(
                now,
                Input::Received {
                    conn: id,
                    bytes: &opened,
                },
            ),
            Ok(()) => {}
        }
        opened.clear();
        reply.clear();
        (self.opened, self.reply) = (opened, reply);
    }

    fn feed(&mut self, now: Instant, input: Input<'_>) {
        self.registry.handle_input(now, input);
        loop {
            if let Some(out) = self.registry.poll_output() {
                self.apply(out);
            } else if self.pending.is_some() {
                self.seal_pending();
            } else if let Some(input) = self.feedback.pop_front() {
                self.registry.handle_input(now, input);
            } else {
                break;
            }
        }
    }

    /// Tells the registry which blocked connections have drained to half the soft cap (where
    /// the engine resumes reading them too).
    fn unblock_drained(&mut self, now: Instant) {
        if self.blocked.is_empty() {
            return;
        }
        let resume_at = self.reactor.config().write_soft_cap / 2;
        let drained: Vec<ConnId> = self
            .blocked
            .iter()
            .copied()
            .filter(|&id| self.reactor.queued_bytes(ConnMap::engine(id)) <= resume_at)
            .collect();
        for conn in drained {
            self.blocked.remove(&conn);
            self.feed(
                now,
                Input::Backpressure {
                    conn,
                    blocked: false,
                },
            );
        }
    }

    /// Seals the gathered replies of one connection and queues them on it.
    fn seal_pending(&mut self) {
        let Some(conn) = self.pending.take() else {
            return;
        };
        let c = ConnMap::engine(conn);
        self.sealed.clear();
        // False: the secure link is gone (closed, or it failed), nothing to send.
        let sealed = self.secure.seal(c, &self.pending_plain, &mut self.sealed);
        self.pending_plain.clear();
        if !sealed || self.sealed.is_empty() {
            return;
        }
        if !self.reactor.send(c, &self.sealed) {
            // Closed (a slow consumer, a broken pipe): its `Closed` event comes next turn;
            // say so now so the rest of its input is not served.
            self.feedback.push_back(Input::Closed { conn });
        } else if self.reactor.queued_bytes(c) > self.reactor.config().write_soft_cap
            && self.blocked.insert(conn)
        {
            self.feedback.push_back(Input::Backpressure {
                conn,
                blocked: true,
            });
        }
    }

    fn apply(&mut self, out: Output) {
        match out {
            Output::Send { conn, bytes } => {
                if self.pending != Some(conn) {
                    self.seal_pending();
                    self.pending = Some(conn);
                }
                self.pending_plain.extend_from_slice(&bytes);
                if self.pending_plain.len() >= MAX_RECORD_PLAINTEXT {
                    self.seal_pending();
                }
            }
            Output::Close { conn, reason } => {
                // Its replies first: close flushes what is queued, then closes.
                self.seal_pending();
                debug!("closing {conn}: {reason}");
                self.reactor.close(ConnMap::engine(conn));
            }
            Output::Store(job) => {
                if let Err(job) = self.store.submit(job) {
                    // The core caps jobs in flight below the queue size, so this is a
                    // safety net: the request fails cleanly instead of waiting forever.
                    self.rejected.push_back(Input::StoreDone(StoreDone {
                        id: job.id,
                        result: Err(StoreError::Failed("store queue full".into())),
                    }));
                }
            }
            Output::Hash(job) => {
                if let Err(job) = self.hasher.submit(job) {
                    self.rejected.push_back(Input::HashDone(HashDone {
                        id: job.id,
                        result: HashResult::Verified(false),
                    }));
                }
            }
            Output::Event(event) => log_event(&event),
        }
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Registered { name } => info!("registered {name}"),
        Event::Online { name, addr } => info!("{name} online at {addr}"),
        Event::Offline { name, why } => info!("{name} offline ({why:?})"),
        Event::LoginFailed { name, source } => info!("failed login for {name} from {source}"),
        Event::StoreFailed(why) => warn!("store write failed: {why}"),
    }
}
