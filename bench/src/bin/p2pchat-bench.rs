//! `p2pchat-bench`: measurements against the real binaries over loopback.
//!
//! `login-stall`: does password hashing stall the registry's event loop? Starts the real
//! registry, then measures the latency of `search` requests sent open-loop at a fixed rate
//! (latency counted from the *intended* send time, so a stalled loop cannot hide behind a slow
//! sender: coordinated omission corrected, as wrk2 does), first with no other load, then while
//! `--logins` clients log in and out in a loop, each login costing a full PBKDF2 hash.
//!
//! `sim-flood`: the cost of flooding room messages, measured in the deterministic simulator
//! (`p2pchat_bench::sim`): for each room size and overlay degree, the frames sent per message
//! against the `n - 1` a spanning tree would need, duplicates, hops, and whether every member
//! showed every message exactly once.
//!
//! `sim-presence`: many peers log in and heartbeat for a while in the simulator; counts the
//! sessions that expired although their peer was alive (false expiries).

// A load generator measures real time: it reads the clock by design.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use p2pchat_bench::sim::{self, scenario};
use p2pchat_protocol::{Frame, FrameDecoder, Msg, Role, VERSION};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[derive(Parser)]
#[command(
    name = "p2pchat-bench",
    version,
    about = "p2pchat measurements over loopback and in the simulator"
)]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Search latency with and without concurrent password logins.
    LoginStall {
        /// The registry binary (default: next to this one).
        #[arg(long)]
        registry_bin: Option<std::path::PathBuf>,
        /// PBKDF2 iterations the registry uses.
        #[arg(long, default_value_t = 600_000)]
        iterations: u32,
        /// Clients logging in and out concurrently.
        #[arg(long, default_value_t = 8)]
        logins: usize,
        /// Searches per second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Flooding cost in the simulator: frames per message against the n-1 bound.
    SimFlood {
        /// Room sizes (peers), comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [8, 32, 128, 512])]
        peers: Vec<usize>,
        /// Overlay degrees, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [2, 3, 4, 6])]
        degrees: Vec<usize>,
        /// Messages per room, each from a random member.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// The simulation seed (default: `SIM_SEED`, else 1).
        #[arg(long)]
        seed: Option<u64>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Presence at scale in the simulator: logins, heartbeats, false expiries.
    SimPresence {
        /// Peers.
        #[arg(long, default_value_t = 10_000)]
        peers: usize,
        /// Virtual minutes of heartbeats after everyone is logged in.
        #[arg(long, default_value_t = 3)]
        minutes: u64,
        /// Probability that a heartbeat datagram is lost.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Largest extra delay of a datagram, in ms (uniform from 0).
        #[arg(long, default_value_t = 2)]
        jitter_ms: u64,
        /// The simulation seed (default: `SIM_SEED`, else 1).
        #[arg(long)]
        seed: Option<u64>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("p2pchat-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::LoginStall {
            registry_bin,
            iterations,
            logins,
            rate,
            seconds,
        } => login_stall(registry_bin, iterations, logins, rate, seconds),
        Scenario::SimFlood {
            peers,
            degrees,
            messages,
            seed,
            json,
        } => sim_flood(&peers, &degrees, messages, seed, json),
        Scenario::SimPresence {
            peers,
            minutes,
            loss,
            jitter_ms,
            seed,
            json,
        } => sim_presence(peers, minutes, loss, jitter_ms, seed, json),
    }
}

struct Registry {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(bin: &std::path::Path, iterations: u32) -> anyhow::Result<Registry> {
    let dir = tempfile::TempDir::new()?;
    let mut child = Command::new(bin)
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--auth-rate",
            "1000000",
        ])
        .arg("--pbkdf2-iterations")
        .arg(iterations.to_string())
        .arg("--db")
        .arg(dir.path().join("bench.db"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let tcp = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tcp="))
        .with_context(|| format!("unexpected first line {line:?}"))?;
    Ok(Registry {
        child,
        addr: tcp.parse()?,
        _dir: dir,
    })
}

/// A blocking client: one request at a time.
struct Client {
    stream: TcpStream,
    decoder: FrameDecoder,
    next: u32,
}

impl Client {
    fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            stream,
            decoder: FrameDecoder::new(1 << 20),
            next: 1,
        };
        c.send(&Frame::event(Msg::Hello {
            version: VERSION,
            role: Role::Client,
            name: String::new(),
            ticket: vec![],
        }))?;
        c.recv()?;
        Ok(c)
    }

    fn send(&mut self, f: &Frame) -> anyhow::Result<()> {
        self.stream.write_all(&f.to_bytes())?;
        Ok(())
    }

    fn recv(&mut self) -> anyhow::Result<Frame> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.decoder.next_frame()? {
                return Ok(f);
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                bail!("registry closed the connection");
            }
            self.decoder.push(&buf[..n]);
        }
    }

    fn request(&mut self, msg: Msg) -> anyhow::Result<Msg> {
        let id = self.next;
        self.next += 1;
        self.send(&Frame::new(id, msg))?;
        loop {
            let f = self.recv()?;
            if f.id == id {
                return Ok(f.msg);
            }
        }
    }
}

fn login(name: &str) -> Msg {
    Msg::Login {
        name: name.into(),
        password: "password1".into(),
        listen: "0.0.0.0:4000".parse().expect("literal address"),
    }
}

/// Sends searches at `rate` per second for `secs`, open-loop, and returns the latency histogram
/// in microseconds, measured from each request's intended send time.
fn search_phase(addr: SocketAddr, rate: u32, secs: u64) -> anyhow::Result<Histogram<u64>> {
    let mut c = Client::connect(addr)?;
    c.request(Msg::Register {
        name: "searcher".into(),
        password: "password1".into(),
    })?;
    if !matches!(c.request(login("searcher"))?, Msg::LoggedIn { .. }) {
        bail!("searcher could not log in");
    }
    let reader = c.stream.try_clone()?;
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = u64::from(rate) * secs;
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let received = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hist);
    let r = Arc::clone(&received);
    let reader_thread = thread::spawn(move || -> anyhow::Result<()> {
        let mut rc = Client {
            stream: reader,
            decoder: FrameDecoder::new(1 << 20),
            next: 0,
        };
        while r.load(Ordering::Relaxed) < total {
            let f = rc.recv()?;
            if f.id >= 1_000 {
                let intended = start + interval * (f.id - 1_000);
                let us = Instant::now()
                    .saturating_duration_since(intended)
                    .as_micros() as u64;
                if let Ok(mut h) = h.lock() {
                    h.saturating_record(us.max(1));
                }
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    });
    for i in 0..total {
        let intended = start + interval * i as u32;
        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let f = Frame::new(
            1_000 + i as u32,
            Msg::Search {
                name: "searcher".into(),
            },
        );
        c.stream.write_all(&f.to_bytes())?;
    }
    reader_thread
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let h = hist
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(h)
}

fn report(label: &str, h: &Histogram<u64>) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{label:<28} n={:<6} p50={:.3}ms p90={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms",
        h.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );
}

fn login_stall(
    bin: Option<std::path::PathBuf>,
    iterations: u32,
    logins: usize,
    rate: u32,
    secs: u64,
) -> anyhow::Result<()> {
    let bin = match bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join("p2pchat-registry"),
    };
    let reg = start_registry(&bin, iterations)?;
    println!(
        "login-stall: registry pbkdf2={iterations}, {logins} login loops, {rate} searches/s, {secs}s per phase"
    );
    let idle = search_phase(reg.addr, rate, secs)?;
    report("search, no logins", &idle);

    // Accounts for the login loops (registration hashes too; done before measuring).
    let mut clients = Vec::new();
    for i in 0..logins {
        let mut c = Client::connect(reg.addr)?;
        let name = format!("loader{i}");
        let reply = c.request(Msg::Register {
            name: name.clone(),
            password: "password1".into(),
        })?;
        if reply != Msg::Ok {
            bail!("register {name}: {reply:?}");
        }
        clients.push((c, name));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done_logins = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (mut c, name) in clients {
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&done_logins);
        threads.push(thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                match c.request(login(&name))? {
                    Msg::LoggedIn { .. } => {}
                    other => bail!("login {name}: {other:?}"),
                }
                c.request(Msg::Logout)?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let t = Instant::now();
    let busy = search_phase(reg.addr, rate, secs)?;
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        th.join()
            .map_err(|_| anyhow::anyhow!("login loop panicked"))??;
    }
    report("search, logins hashing", &busy);
    let n = done_logins.load(Ordering::Relaxed);
    println!(
        "logins completed during the busy phase: {n} ({:.1}/s, each a full PBKDF2 verify)",
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn sim_seed(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| sim::seed_from_env(1))
}

fn sim_flood(
    peers: &[usize],
    degrees: &[usize],
    messages: usize,
    seed: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let seed = sim_seed(seed);
    if !json {
        println!("sim-flood: seed {seed}, {messages} messages per room from random members");
        println!(
            "| n | d | mean nbrs | links L | frames/msg | n-1 | ratio | 2L-(n-1) | dups/msg | max hops | mean hops | exactly once | setup (real) | flood (real) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    let mut all_ok = true;
    for &n in peers {
        for &d in degrees {
            let t = Instant::now();
            let mut config = sim::SimConfig::new(seed);
            config.keep_event = scenario::scenario_events;
            let mut w = sim::World::new(config);
            let limit = Duration::from_secs(600);
            let ids = scenario::add_users(&mut w, n, d, limit).map_err(anyhow::Error::msg)?;
            scenario::form_room(&mut w, &ids, "flood", limit).map_err(anyhow::Error::msg)?;
            let setup = t.elapsed();
            w.track_hops("flood");
            let t = Instant::now();
            let mut rng = StdRng::seed_from_u64(seed ^ 0xf100d);
            let r = scenario::flood(
                &mut w,
                &ids,
                "flood",
                d,
                messages,
                Duration::from_millis(10),
                &mut rng,
            )
            .map_err(anyhow::Error::msg)?;
            let flood_wall = t.elapsed();
            all_ok &= r.exactly_once;
            let m = r.messages.max(1) as f64;
            let per_msg = r.frames as f64 / m;
            let bound = r.peers.saturating_sub(1);
            let tree_excess = 2.0 * r.links - bound as f64;
            if r.one_way > 0 {
                eprintln!("  n={n} d={d}: {} one-way overlay links", r.one_way);
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "peers": r.peers, "degree": d, "messages": r.messages, "seed": seed,
                        "frames": r.frames, "frames_per_message": per_msg,
                        "lower_bound": bound, "ratio": per_msg / bound.max(1) as f64,
                        "links": r.links, "one_way_links": r.one_way,
                        "two_links_minus_bound": tree_excess,
                        "duplicates_per_message": r.duplicates as f64 / m,
                        "delivered": r.delivered,
                        "mean_neighbours": r.mean_neighbours, "max_neighbours": r.max_neighbours,
                        "max_hops": r.max_hops, "mean_hops": r.mean_hops,
                        "exactly_once": r.exactly_once, "problems": r.problems,
                        "virtual_s": r.virtual_time.as_secs_f64(),
                        "setup_wall_s": setup.as_secs_f64(), "flood_wall_s": flood_wall.as_secs_f64(),
                        "steps": w.steps(), "trace_hash": format!("{:016x}", w.trace_hash()),
                    })
                );
            } else {
                println!(
                    "| {n} | {d} | {:.2} (max {}) | {} | {per_msg:.1} | {bound} | {:.2} | {tree_excess:.0} | {:.1} | {} | {:.2} | {} | {:.2} s | {:.2} s |",
                    r.mean_neighbours,
                    r.max_neighbours,
                    r.links,
                    per_msg / bound.max(1) as f64,
                    r.duplicates as f64 / m,
                    r.max_hops,
                    r.mean_hops,
                    if r.exactly_once { "yes" } else { "NO" },
                    setup.as_secs_f64(),
                    flood_wall.as_secs_f64(),
                );
                for p in &r.problems {
                    eprintln!("  n={n} d={d}: {p}");
                }
            }
        }
    }
    if !all_ok {
        bail!("some member did not show some message exactly once (seed {seed})");
    }
    Ok(())
}

fn sim_presence(
    peers: usize,
    minutes: u64,
    loss: f64,
    jitter_ms: u64,
    seed: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    use p2pchat_registry::{Event, OfflineReason};
    let seed = sim_seed(seed);
    let mut config = sim::SimConfig::new(seed);
    config.net.jitter = Duration::from_millis(jitter_ms);
    config.keep_event = |e| matches!(e, p2pchat_peer::NodeEvent::Error { .. });
    config.check_every = Duration::from_millis(10);
    let mut w = sim::World::new(config);
    let t = Instant::now();
    let ids = scenario::add_users(&mut w, peers, 4, Duration::from_secs(600))
        .map_err(anyhow::Error::msg)?;
    let login_virtual = w.elapsed();
    let login_wall = t.elapsed();
    w.set_udp_loss(loss);
    let hb_before = w.registry().stats().heartbeats;
    let t = Instant::now();
    w.run_for(Duration::from_secs(60 * minutes));
    let run_wall = t.elapsed();
    let expired = |e: &sim::RegistryEvent| {
        matches!(
            e.event,
            Event::Offline {
                why: OfflineReason::Expired,
                ..
            }
        )
    };
    // Every peer is alive throughout, so every expiry is a false one.
    let false_expiries = w.registry_events().iter().filter(|e| expired(e)).count();
    let online = w.registry().online_count();
    let heartbeats = w.registry().stats().heartbeats - hb_before;
    let net = w.net_stats();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "peers": ids.len(), "minutes": minutes, "udp_loss": loss, "seed": seed,
                "jitter_ms": jitter_ms,
                "login_virtual_s": login_virtual.as_secs_f64(), "login_wall_s": login_wall.as_secs_f64(),
                "run_wall_s": run_wall.as_secs_f64(), "heartbeats": heartbeats,
                "datagrams_lost": net.datagrams_lost, "false_expiries": false_expiries,
                "online_at_end": online, "steps": w.steps(), "store_commits": w.store_commits(),
                "trace_hash": format!("{:016x}", w.trace_hash()),
            })
        );
    } else {
        println!(
            "sim-presence: seed {seed}, {peers} peers, udp loss {loss}, jitter 0-{jitter_ms} ms"
        );
        println!(
            "logins: all {} logged in after {:.2} s virtual, {:.2} s real ({} store commits)",
            ids.len(),
            login_virtual.as_secs_f64(),
            login_wall.as_secs_f64(),
            w.store_commits()
        );
        println!(
            "heartbeats: {minutes} virtual min in {:.2} s real; {heartbeats} received, {} lost",
            run_wall.as_secs_f64(),
            net.datagrams_lost
        );
        println!(
            "false expiries: {false_expiries}; online at the end: {online} of {}; {} steps",
            ids.len(),
            w.steps()
        );
    }
    Ok(())
}
