//! Heartbeat intake under load: logs in `--sessions` real sessions on a running registry, then
//! sends their valid, pre-signed heartbeats over UDP at `--rate` datagrams per second (0: as fast
//! as the sender threads go) for `--secs`, and reports the registry's CPU time per datagram (from
//! `/proc/PID/stat`) and the datagrams the kernel dropped (`RcvbufErrors` in `/proc/net/snmp`,
//! machine-wide, so run nothing else that drops UDP meanwhile).
//!
//! Start the registry with cheap logins, e.g.
//! `p2pchat-registry --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --db /tmp/x.db --pbkdf2-iterations 1
//! --auth-rate 1000000 --max-clients 20000`, then
//!
//! ```text
//! cargo run --release -p p2pchat-bench --example hbflood -- \
//!     --tcp 127.0.0.1:TCP --udp 127.0.0.1:UDP --pid PID --sessions 1000 --rate 200000
//! ```
//!
//! The login connections stay open until the end: a session lives as long as its connection.

// A measuring tool: it reads the wall clock to pace and time its run.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use p2pchat_bench::load::secure::BlockingLink;
use p2pchat_protocol::{Frame, Heartbeat, HeartbeatKey, Msg, Role, VERSION};

#[derive(Parser, Debug)]
struct Args {
    /// The registry's TCP address.
    #[arg(long)]
    tcp: SocketAddr,
    /// The registry's heartbeat address.
    #[arg(long)]
    udp: SocketAddr,
    /// The registry's process id.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Datagrams per second in total; 0 sends as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Sender threads (one socket each).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Name prefix for the accounts (registered if new).
    #[arg(long, default_value = "hb")]
    prefix: String,
    /// Only measure memory: the registry's resident set before and after the logins, per
    /// session, then exit without sending heartbeats.
    #[arg(long)]
    rss_only: bool,
    /// Register every account (and close those connections) before the first resident-set
    /// reading, so the per-session figure leaves out the account cache, which every registered
    /// user costs whether online or not.
    #[arg(long)]
    register_first: bool,
    /// With `--rss-only`: copy the registry's `/proc/PID/smaps` here at both readings
    /// (`smaps-before`, `smaps-after`), to see which mappings the sessions grew.
    #[arg(long)]
    smaps: Option<std::path::PathBuf>,
    /// Datagrams per `sendmmsg` call on each sender thread; 1 sends each with `send_to`.
    #[arg(long, default_value_t = 64)]
    send_batch: usize,
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("odd VmRSS")?
        .parse()?)
}

/// Copies the registry's `/proc/PID/smaps` to `NAME` in the `--smaps` directory, if given.
fn save_smaps(args: &Args, name: &str) -> anyhow::Result<()> {
    if let Some(dir) = &args.smaps {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", args.pid))?;
        std::fs::write(dir.join(name), smaps)?;
    }
    Ok(())
}

/// `/proc` CPU times are in USER_HZ ticks, fixed at 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').context("odd stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// `Udp: ... RcvbufErrors` from `/proc/net/snmp` (machine-wide).
fn rcvbuf_errors() -> anyhow::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp")?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let head: Vec<&str> = lines
        .next()
        .context("no Udp header")?
        .split_whitespace()
        .collect();
    let vals: Vec<&str> = lines
        .next()
        .context("no Udp values")?
        .split_whitespace()
        .collect();
    let i = head
        .iter()
        .position(|h| *h == "RcvbufErrors")
        .context("no RcvbufErrors")?;
    Ok(vals[i].parse()?)
}

struct Session {
    _link: BlockingLink,
    id: u64,
    key: HeartbeatKey,
}

/// Sends a request (id 1) and returns its answer; events in between are skipped.
fn request(link: &mut BlockingLink, msg: Msg) -> anyhow::Result<Msg> {
    link.send(&Frame::new(1, msg))?;
    loop {
        let f = link.recv()?;
        if f.id == 1 {
            return Ok(f.msg);
        }
    }
}

/// A registry connection over a secure link (as every client's is), past its hello.
fn hello(args: &Args) -> anyhow::Result<BlockingLink> {
    let stream = TcpStream::connect(args.tcp)?;
    stream.set_nodelay(true)?;
    let hello = Frame::new(
        1,
        Msg::Hello {
            version: VERSION,
            role: Role::Client,
            name: String::new(),
            ticket: vec![],
        },
    );
    let mut link = BlockingLink::open(stream, &hello.to_bytes())?;
    match link.recv()?.msg {
        Msg::Welcome { .. } => Ok(link),
        other => bail!("hello: {other:?}"),
    }
}

fn register(args: &Args, link: &mut BlockingLink, i: usize) -> anyhow::Result<()> {
    request(
        link,
        Msg::Register {
            name: format!("{}{i}", args.prefix),
            password: "password1".into(),
        },
    )?;
    Ok(())
}

fn login(args: &Args, i: usize) -> anyhow::Result<Session> {
    let mut link = hello(args)?;
    if !args.register_first {
        register(args, &mut link, i)?;
    }
    let name = format!("{}{i}", args.prefix);
    let password = "password1".to_string();
    match request(
        &mut link,
        Msg::Login {
            name: name.clone(),
            password,
            listen: "127.0.0.1:4000".parse().expect("literal address"),
        },
    )? {
        Msg::LoggedIn {
            session,
            heartbeat_key,
            ..
        } => Ok(Session {
            _link: link,
            id: session,
            key: HeartbeatKey::new(&heartbeat_key),
        }),
        other => bail!("login {name}: {other:?}"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = args.threads.max(1);
    if args.register_first {
        for i in 0..args.sessions {
            let mut link = hello(&args)?;
            register(&args, &mut link, i).with_context(|| format!("register {i}"))?;
        }
        // Let the registry see those connections close before the first reading.
        thread::sleep(Duration::from_millis(500));
    }
    let rss0 = rss_kib(args.pid)?;
    save_smaps(&args, "smaps-before")?;
    let mut sessions = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        sessions.push(login(&args, i).with_context(|| format!("session {i}"))?);
    }
    if args.rss_only {
        let rss1 = rss_kib(args.pid)?;
        save_smaps(&args, "smaps-after")?;
        println!(
            "sessions={} rss_before_kib={rss0} rss_after_kib={rss1} per_session_bytes={:.0}",
            sessions.len(),
            (rss1.saturating_sub(rss0) * 1024) as f64 / sessions.len().max(1) as f64
        );
        return Ok(());
    }
    // Enough pre-signed datagrams for the whole run, counters rising per session.
    let total = if args.rate == 0 {
        2_000_000
    } else {
        (args.rate as f64 * args.secs) as usize
    };
    let rounds = total.div_ceil(sessions.len().max(1));
    let mut datagrams: Vec<Vec<[u8; 57]>> = vec![Vec::new(); threads];
    let mut k = 0;
    for round in 1..=rounds as u64 {
        for s in &sessions {
            datagrams[k % threads].push(Heartbeat::sign(&s.key, s.id, round, 0).encode());
            k += 1;
        }
    }
    eprintln!(
        "{} sessions logged in, {k} heartbeats signed",
        sessions.len()
    );

    let sent = Arc::new(AtomicU64::new(0));
    let (cpu0, drop0, t0) = (cpu_ticks(args.pid)?, rcvbuf_errors()?, Instant::now());
    let deadline = t0 + Duration::from_secs_f64(args.secs);
    let per_thread_rate = args.rate as f64 / threads as f64;
    let send_batch = args.send_batch.max(1);
    let handles: Vec<_> = datagrams
        .into_iter()
        .map(|mine| {
            let sent = Arc::clone(&sent);
            let to = args.udp;
            thread::spawn(move || -> anyhow::Result<()> {
                let sock = UdpSocket::bind("127.0.0.1:0")?;
                let start = Instant::now();
                for (chunk_no, chunk) in mine.chunks(send_batch).enumerate() {
                    let n = chunk_no * send_batch;
                    if chunk_no % 64_usize.div_ceil(send_batch) == 0 {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        if per_thread_rate > 0.0 {
                            // Pace: do not run ahead of the schedule.
                            let due = start + Duration::from_secs_f64(n as f64 / per_thread_rate);
                            if due > now {
                                thread::sleep(due - now);
                            }
                        }
                    }
                    let done = if send_batch == 1 {
                        sock.send_to(&chunk[0], to)?;
                        1
                    } else {
                        sendmmsg(&sock, to, chunk)?
                    };
                    sent.fetch_add(done as u64, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    // Let the registry finish what is queued before reading its CPU time.
    thread::sleep(Duration::from_millis(300));
    let (cpu1, drop1) = (cpu_ticks(args.pid)?, rcvbuf_errors()?);
    let sent = sent.load(Ordering::Relaxed);
    let dropped = drop1 - drop0;
    let taken = sent.saturating_sub(dropped);
    let cpu = (cpu1 - cpu0) as f64 / TICKS_PER_SEC;
    println!(
        "sessions={} sent={sent} secs={secs:.2} rate={:.0}/s kernel_dropped={dropped} loss={:.2}% cpu_us_per_datagram={:.3}",
        sessions.len(),
        sent as f64 / secs,
        100.0 * dropped as f64 / sent.max(1) as f64,
        cpu * 1e6 / taken.max(1) as f64
    );
    Ok(())
}

/// Sends `datagrams` to `to` with as few `sendmmsg(2)` calls as the kernel needs; returns how
/// many were sent.
fn sendmmsg(sock: &UdpSocket, to: SocketAddr, datagrams: &[[u8; 57]]) -> anyhow::Result<usize> {
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(v4) = to else {
        bail!("sendmmsg here supports IPv4 only");
    };
    // SAFETY: all-zero is a valid `sockaddr_in`; the fields that matter are set below.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = v4.port().to_be();
    addr.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    let mut iovecs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut done = 0;
    while done < headers.len() {
        // SAFETY: every header points at live buffers (`datagrams`, `iovecs`, `addr`) that
        // outlive the call; the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                headers[done..].as_mut_ptr(),
                (headers.len() - done) as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        done += n as usize;
    }
    Ok(done)
}
