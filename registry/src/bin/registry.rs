//! `p2pchat-registry`: the registry server. Glue only: flags, the store and hashing workers,
//! and the run loop that drives the sans-IO [`Registry`] on the engine's reactor.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use log::{debug, info, warn};
use p2pchat_engine::{NetEvent, Reactor, Signal};
use p2pchat_registry::hasher::{HashDone, HashPool, HashResult};
use p2pchat_registry::store::{SqliteStore, StoreDone, StoreError, StoreHandle};
use p2pchat_registry::{Config, ConnId, Event, Input, Output, Registry};

/// How long a graceful shutdown waits for queued replies and store writes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    /// Most client connections at once.
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Password attempts (register + login) per source address per minute; burst is half.
    #[arg(long, default_value_t = 60)]
    auth_rate: u32,
    /// Session resumes per source address per minute; burst is half (load tests lift it).
    #[arg(long, default_value_t = 600)]
    resume_rate: u32,
    /// Password hashing threads (default: one per core).
    #[arg(long)]
    hash_threads: Option<usize>,
    /// A new connection must send its hello within this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// A started frame must complete within this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    frame_timeout: Duration,
}

/// Parses `500ms`, `20s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("`{s}` needs a unit: ms, s, m or h"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number with a unit"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` (use ms, s, m or h)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("p2pchat-registry: {e:#}");
        std::process::exit(1);
    }
}

/// Maps the registry's opaque connection ids to the engine's.
#[derive(Default)]
struct ConnMap {
    to_engine: HashMap<ConnId, p2pchat_engine::ConnId>,
}

impl ConnMap {
    fn id(conn: p2pchat_engine::ConnId) -> ConnId {
        ConnId((u64::from(conn.index()) << 32) | u64::from(conn.generation()))
    }
}

struct Driver {
    reactor: Reactor,
    registry: Registry,
    store: StoreHandle,
    hasher: HashPool,
    conns: ConnMap,
    /// Completions the workers could not take (queue full), fed back as inputs.
    rejected: VecDeque<Input<'static>>,
}

fn run(args: Args) -> anyhow::Result<()> {
    let (store, snapshot) = SqliteStore::open(&args.db)
        .with_context(|| format!("cannot open database {}", args.db.display()))?;
    let mut reactor =
        Reactor::new(p2pchat_engine::Config::default()).context("cannot start the reactor")?;
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
    reactor
        .enable_signals()
        .context("cannot install signal handlers")?;

    let mut config = Config::default().with_heartbeat_timeout(args.heartbeat_timeout);
    config.pbkdf2_iterations = args.pbkdf2_iterations;
    config.max_clients = args.max_clients;
    config.auth_rate_per_min = args.auth_rate;
    config.auth_burst = (args.auth_rate / 2).max(1);
    config.resume_rate_per_min = args.resume_rate;
    config.resume_burst = (args.resume_rate / 2).max(1);
    config.handshake_timeout = args.handshake_timeout;
    config.frame_timeout = args.frame_timeout;
    config.udp_port = udp_addr.port();
    let threads = args
        .hash_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));

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
    let registry = Registry::new(config, &snapshot, rand::random(), epoch, wall_ms);
    info!(
        "{} accounts loaded from {}; pbkdf2 iterations {}, {} hashing threads",
        registry.account_count(),
        args.db.display(),
        args.pbkdf2_iterations,
        threads
    );

    println!("listening tcp={tcp_addr} udp={udp_addr}");
    std::io::stdout().flush().context("stdout")?;

    let mut driver = Driver {
        reactor,
        registry,
        store,
        hasher,
        conns: ConnMap::default(),
        rejected: VecDeque::new(),
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
            let deadline = match (self.registry.poll_timeout(), shutdown_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.reactor
                .turn(deadline, &mut events)
                .context("event loop failed")?;
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            for ev in events.drain(..) {
                match ev {
                    NetEvent::Accepted { conn, remote, .. } => {
                        let id = ConnMap::id(conn);
                        self.conns.to_engine.insert(id, conn);
                        self.feed(now, Input::Connected { conn: id, remote });
                    }
                    NetEvent::Received { conn, bytes } => {
                        let id = ConnMap::id(conn);
                        self.feed(
                            now,
                            Input::Received {
                                conn: id,
                                bytes: &bytes,
                            },
                        );
                    }
                    NetEvent::Closed { conn, reason } => {
                        let id = ConnMap::id(conn);
                        debug!("{id} closed: {reason}");
                        self.conns.to_engine.remove(&id);
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
            self.collect_workers(now);
            self.feed(now, Input::Timeout);
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

    fn feed(&mut self, now: Instant, input: Input<'_>) {
        self.registry.handle_input(now, input);
        while let Some(out) = self.registry.poll_output() {
            self.apply(out);
        }
    }

    fn apply(&mut self, out: Output) {
        match out {
            Output::Send { conn, bytes } => {
                if let Some(&c) = self.conns.to_engine.get(&conn) {
                    self.reactor.send(c, &bytes);
                }
            }
            Output::Close { conn, reason } => {
                debug!("closing {conn}: {reason}");
                if let Some(&c) = self.conns.to_engine.get(&conn) {
                    self.reactor.close(c);
                }
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

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("20").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("xs").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
