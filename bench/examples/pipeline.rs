//! A pipelining load client that drives the p2pchat registry or Redis with the same pattern and
//! reads the server's CPU time from `/proc/PID/stat`, so the two can be compared in one run.
//!
//! Each of `--conns` connections (one thread each) writes `--depth` requests in one `write`,
//! waits for all their replies, and repeats, as `redis-benchmark -P` does. After `--warmup`
//! seconds it samples the server's user+system CPU time and the reply count, runs `--secs`
//! more, samples again and prints one line:
//!
//! ```text
//! target=registry op=ping conns=50 depth=16 replies=1234567 secs=5.00 rate=246913/s cpu_us_per_req=2.41 cpu_util=0.59
//! ```
//!
//! ```text
//! cargo run --release -p p2pchat-bench --example pipeline -- \
//!     --target registry --addr 127.0.0.1:15600 --pid $(pgrep -n p2pchat-registry) --op ping
//! cargo run --release -p p2pchat-bench --example pipeline -- \
//!     --target redis --addr 127.0.0.1:6379 --pid $(pgrep -n redis-server)
//! ```
//!
//! `--op search` logs every connection in first (register + login as `pl<i>`; start the
//! registry with a small `--pbkdf2-iterations` and a large `--auth-rate`) and then searches for
//! its own name. Redis only knows `ping` (`*1\r\n$4\r\nPING\r\n`, reply `+PONG\r\n`).

// A measuring tool: it reads the wall clock to time its run.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use p2pchat_protocol::secure::SecureStream;
use p2pchat_protocol::{Frame, FrameDecoder, Msg, Role, VERSION};
use p2pchat_registry::secure::client_handshake;

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Target {
    Registry,
    Redis,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Op {
    Ping,
    Search,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    pid: u32,
    #[arg(long, value_enum, default_value = "ping")]
    op: Op,
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Requests in flight per connection (written together).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

/// User + system CPU time of `pid` in clock ticks (fields 14 and 15 of `/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // The command name (field 2) may hold spaces; fields after its closing paren are plain.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// `/proc` reports CPU time in USER_HZ ticks, which Linux fixes at 100 on every architecture
/// we run on (a 10 ms grain: 5 s at full load is 500 ticks, 0.2 %).
const TICKS_PER_SEC: f64 = 100.0;

/// One connection's request burst and the way to count its replies.
struct Conn {
    stream: TcpStream,
    /// The registry: a secure link, as every client's (the burst is sealed as one record per
    /// round, like a client writing its pipelined requests at once). Redis: none.
    secure: Option<SecureStream>,
    decoder: FrameDecoder,
    burst: Vec<u8>,
    target: Target,
    buf: Vec<u8>,
}

impl Conn {
    fn open(args: &Args, i: usize) -> anyhow::Result<Conn> {
        let mut stream = TcpStream::connect(args.addr).context("connect")?;
        stream.set_nodelay(true)?;
        let secure = match args.target {
            Target::Redis => None,
            Target::Registry => {
                let timeout = Duration::from_secs(10);
                let s = client_handshake(&mut stream, None, &[], timeout)
                    .context("secure handshake with the registry")?;
                stream.set_read_timeout(None)?;
                Some(s)
            }
        };
        let mut c = Conn {
            stream,
            secure,
            decoder: FrameDecoder::new(1 << 20),
            burst: Vec::new(),
            target: args.target,
            buf: vec![0; 64 * 1024],
        };
        let one: Vec<u8> = match args.target {
            Target::Redis => b"*1\r\n$4\r\nPING\r\n".to_vec(),
            Target::Registry => {
                c.request(Msg::Hello {
                    version: VERSION,
                    role: Role::Client,
                    name: String::new(),
                    ticket: vec![],
                })?;
                match args.op {
                    Op::Ping => Frame::new(1, Msg::Ping).to_bytes().to_vec(),
                    Op::Search => {
                        let name = format!("pl{i}");
                        let password = "password1".to_string();
                        // Already registered in an earlier run is fine.
                        c.request(Msg::Register {
                            name: name.clone(),
                            password: password.clone(),
                        })?;
                        match c.request(Msg::Login {
                            name: name.clone(),
                            password,
                            listen: "127.0.0.1:4000".parse().expect("literal address"),
                        })? {
                            Msg::LoggedIn { .. } => {}
                            other => bail!("login {name}: {other:?}"),
                        }
                        Frame::new(1, Msg::Search { name }).to_bytes().to_vec()
                    }
                }
            }
        };
        c.burst = one.repeat(args.depth);
        Ok(c)
    }

    fn request(&mut self, msg: Msg) -> anyhow::Result<Msg> {
        self.write(&Frame::new(1, msg).to_bytes())?;
        loop {
            if let Some(f) = self.decoder.next_frame()? {
                return Ok(f.msg);
            }
            let n = self.stream.read(&mut self.buf)?;
            if n == 0 {
                bail!("server closed the connection");
            }
            self.received(n)?;
        }
    }

    /// Writes `plain` in one `write` (sealed first on a secure link).
    fn write(&mut self, plain: &[u8]) -> anyhow::Result<()> {
        match &mut self.secure {
            None => self.stream.write_all(plain)?,
            Some(s) => {
                s.send(plain)?;
                self.stream.write_all(&s.take_outgoing())?;
            }
        }
        Ok(())
    }

    /// The `n` bytes just read into `buf` go to the frame decoder (opened first on a secure
    /// link).
    fn received(&mut self, n: usize) -> anyhow::Result<()> {
        match &mut self.secure {
            None => self.decoder.push(&self.buf[..n]),
            Some(s) => {
                s.receive(&self.buf[..n])?;
                self.decoder.push(&s.take_plaintext());
            }
        }
        Ok(())
    }

    /// Writes one burst and waits for its `depth` replies.
    fn round(&mut self, depth: usize) -> anyhow::Result<()> {
        let burst = std::mem::take(&mut self.burst);
        let wrote = self.write(&burst);
        self.burst = burst;
        wrote?;
        let mut got = 0;
        // Redis: every reply is `+PONG\r\n`, so count line ends.
        while got < depth {
            if self.target == Target::Registry {
                while got < depth && self.decoder.next_frame()?.is_some() {
                    got += 1;
                }
                if got == depth {
                    break;
                }
            }
            let n = self.stream.read(&mut self.buf)?;
            if n == 0 {
                bail!("server closed the connection");
            }
            match self.target {
                Target::Redis => got += self.buf[..n].iter().filter(|&&b| b == b'\n').count(),
                Target::Registry => self.received(n)?,
            }
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.target == Target::Redis && args.op != Op::Ping {
        bail!("Redis is only driven with ping");
    }
    let depth = args.depth.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(args.conns + 1));
    let mut conns = Vec::new();
    for i in 0..args.conns {
        conns.push(Conn::open(&args, i).with_context(|| format!("connection {i}"))?);
    }
    let mut threads = Vec::new();
    for mut c in conns {
        let (stop, replies, ready) = (stop.clone(), replies.clone(), ready.clone());
        threads.push(thread::spawn(move || -> anyhow::Result<()> {
            ready.wait();
            while !stop.load(Ordering::Relaxed) {
                c.round(depth)?;
                replies.fetch_add(depth as u64, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    ready.wait();
    thread::sleep(Duration::from_secs_f64(args.warmup));
    let (t0, r0, c0) = (
        Instant::now(),
        replies.load(Ordering::Relaxed),
        cpu_ticks(args.pid)?,
    );
    thread::sleep(Duration::from_secs_f64(args.secs));
    let (t1, r1, c1) = (
        Instant::now(),
        replies.load(Ordering::Relaxed),
        cpu_ticks(args.pid)?,
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    let secs = (t1 - t0).as_secs_f64();
    let n = r1 - r0;
    let cpu = (c1 - c0) as f64 / TICKS_PER_SEC;
    println!(
        "target={:?} op={:?} conns={} depth={} replies={} secs={:.2} rate={:.0}/s cpu_us_per_req={:.3} cpu_util={:.2}",
        args.target,
        args.op,
        args.conns,
        depth,
        n,
        secs,
        n as f64 / secs,
        cpu * 1e6 / n.max(1) as f64,
        cpu / secs
    );
    Ok(())
}
