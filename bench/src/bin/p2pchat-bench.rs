//! `p2pchat-bench`: measurements against the real binaries over loopback.
//!
//! `login-stall`: does password hashing stall the registry's event loop? Starts the real
//! registry, then measures the latency of `search` requests sent open-loop at a fixed rate
//! (latency counted from the *intended* send time, so a stalled loop cannot hide behind a slow
//! sender: coordinated omission corrected, as wrk2 does), first with no other load, then while
//! `--logins` clients log in and out in a loop, each login costing a full PBKDF2 hash.

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
use p2pchat_protocol::{Frame, FrameDecoder, Msg, Role, VERSION};

#[derive(Parser)]
#[command(
    name = "p2pchat-bench",
    version,
    about = "p2pchat measurements over loopback"
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
