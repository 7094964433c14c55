//! `login-stall`: does password hashing stall the registry's event loop? Measures the latency
//! of searches sent open-loop at `--rate` (latency from the *intended* send time, coordinated
//! omission corrected), first with no other load, then while `--logins` clients log in and out
//! in a loop, each login costing a full PBKDF2 hash (600,000 iterations unless --iterations).
//! A few blocking client threads (one per login loop), as the experiment always had: these are
//! not synthetic peers.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use p2pchat_protocol::{Frame, Msg, Role, VERSION};
use serde_json::json;

use crate::load::secure::BlockingLink;
use crate::load::{LoadArgs, Watch};
use crate::report::{new_hist, Report, Series};

/// A blocking client over a secure link: one request at a time.
struct Client {
    link: BlockingLink,
    next: u32,
}

impl Client {
    fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let hello = Frame::event(Msg::Hello {
            version: VERSION,
            role: Role::Client,
            name: String::new(),
            ticket: vec![],
        });
        let mut link = BlockingLink::open(stream, &hello.to_bytes())?;
        link.recv()?;
        Ok(Client { link, next: 1 })
    }

    fn send(&mut self, f: &Frame) -> anyhow::Result<()> {
        self.link.send(f)
    }

    fn recv(&mut self) -> anyhow::Result<Frame> {
        self.link.recv()
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
        listen: SocketAddr::from(([0, 0, 0, 0], 4000)),
    }
}

/// Sends searches at `rate` per second for `secs`, open-loop, and returns the latency histogram
/// in nanoseconds, measured from each request's intended send time.
fn search_phase(addr: SocketAddr, rate: u32, secs: u64) -> anyhow::Result<Histogram<u64>> {
    let mut c = Client::connect(addr)?;
    c.request(Msg::Register {
        name: "searcher".into(),
        password: "password1".into(),
    })?;
    if !matches!(c.request(login("searcher"))?, Msg::LoggedIn { .. }) {
        bail!("searcher could not log in");
    }
    let (mut writer, mut reader) = c.link.split()?;
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = u64::from(rate) * secs;
    let hist = Arc::new(Mutex::new(new_hist()));
    let received = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hist);
    let r = Arc::clone(&received);
    let reader_thread = thread::spawn(move || -> anyhow::Result<()> {
        while r.load(Ordering::Relaxed) < total {
            let f = reader.recv()?;
            if f.id >= 1_000 {
                let intended = start + interval * (f.id - 1_000);
                let ns = Instant::now()
                    .saturating_duration_since(intended)
                    .as_nanos() as u64;
                if let Ok(mut h) = h.lock() {
                    h.saturating_record(ns.max(1));
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
        writer.send(&f)?;
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

/// Runs `login-stall` against `addr` (registry process `pid`).
pub fn run(
    args: &LoadArgs,
    addr: SocketAddr,
    pid: Option<u32>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let rate = args.rate.unwrap_or(200.0).max(1.0) as u32;
    let secs = args.duration.as_secs().max(1);
    let logins = args.logins;
    let idle = search_phase(addr, rate, secs)?;

    // Accounts for the login loops (registration hashes too; done before measuring).
    let mut clients = Vec::new();
    let tag = super::run_tag();
    for i in 0..logins {
        let mut c = Client::connect(addr)?;
        let name = format!("{tag}_l{i}");
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
    let watch = Watch::start(pid);
    let t = Instant::now();
    let busy = search_phase(addr, rate, secs)?;
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        th.join()
            .map_err(|_| anyhow::anyhow!("login loop panicked"))??;
    }
    let n = done_logins.load(Ordering::Relaxed);
    report.headline =
        format!("load login-stall: {logins} login loops, {rate} searches/s, {secs}s per phase");
    let mut s_busy = Series::new(
        "search_during_logins",
        "search, from its intended send, while logins hash",
    );
    s_busy.hist = busy;
    let mut s_idle = Series::new("search_idle", "search, from its intended send, no logins");
    s_idle.hist = idle;
    report.figure("logins_completed", n as f64);
    report.figure("logins_per_s", n as f64 / elapsed.as_secs_f64());
    let idle_p99 = s_idle.hist.value_at_quantile(0.99).max(1) as f64;
    report.figure(
        "p99_busy_to_idle",
        s_busy.hist.value_at_quantile(0.99) as f64 / idle_p99,
    );
    report.params.insert("logins".into(), json!(logins));
    report.series = vec![s_busy, s_idle];
    watch.finish(report, u64::from(rate) * secs + n, 0);
    Ok(())
}
