//! The kernel's floor for heartbeat intake (docs/performance.md, "Heartbeat intake", fourth
//! pass): a UDP receiver that asks the kernel for datagrams exactly as the registry does
//! (`recvmmsg` in batches of 64, the registry's 10,000 x 1 KiB receive buffer, the sender's
//! address and the `SO_RXQ_OVFL` drop counter with every datagram) and does nothing with them,
//! so its CPU time per datagram is what the kernel alone costs, the bound under any registry.
//!
//! Modes (how it waits for datagrams):
//! - `block`: a blocking `recvmmsg` with `MSG_WAITFORONE` (sleeps until one datagram is there,
//!   then takes what is queued, up to the batch); no epoll.
//! - `epoll`: nonblocking socket, edge-triggered `epoll_wait`, drain with `recvmmsg` until
//!   `EAGAIN`, as the registry's event loop (mio) does.
//! - `spin`: nonblocking `recvmmsg` in a loop, never sleeping: one core busy all the time.
//! - `tick`: nonblocking; drain to `EAGAIN`, then sleep `--tick-us` (no readiness events), so
//!   the datagrams of a whole tick wait in the kernel and come out in full batches: the cost
//!   of taking a datagram with almost no wake-up share.
//!
//! `--spin-empty N` makes epoll mode retry up to N times in a row after `EAGAIN` before it sleeps
//! again (the count restarts whenever a call gets datagrams).
//!
//! It prints `port=N`, waits for the first datagram, lets `--warmup` seconds pass, then measures
//! `--secs` seconds: datagrams, calls, and its own user and system CPU time (`getrusage`), and
//! prints one line with them per datagram. It keeps receiving (uncounted) until no datagram has
//! come for a second, then exits, so the sender never sees its port close. Drive it with
//! `hbflood` (which logs its sessions in on a registry over TCP) pointed at this port:
//!
//! ```text
//! target/release/examples/udp_floor --mode epoll &     # prints port=PORT
//! target/release/examples/hbflood --tcp 127.0.0.1:TCP --udp 127.0.0.1:PORT --pid FLOOR_PID \
//!     --sessions 10000 --threads 2 --rate 200000 --secs 10
//! ```
//!
//! `bench/hb-floor.sh` runs both this receiver and the registry under the same flood.

// A measuring tool: it reads the wall clock to time its window.
#![allow(clippy::disallowed_methods)]

use std::io::{self, Write};
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use socket2::{Domain, Socket, Type};

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Mode {
    Block,
    Epoll,
    Spin,
    Tick,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Epoll)]
    mode: Mode,
    /// Datagrams per `recvmmsg` call (the registry's `--udp-batch` default).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Kernel receive buffer in bytes (the registry's `--udp-recv-buffer` default).
    #[arg(long, default_value_t = 10_000 * 1024)]
    recv_buffer: usize,
    /// Ask for the payload only: no sender address, no drop counter (the registry needs both).
    #[arg(long)]
    payload_only: bool,
    /// Seconds from the first datagram to the start of the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Length of the measured window in seconds.
    #[arg(long, default_value_t = 6.0)]
    secs: f64,
    /// Epoll mode: after a drain, retry `recvmmsg` up to this many times before sleeping in
    /// `epoll_wait` again (a bounded busy poll, as the registry could do).
    #[arg(long, default_value_t = 0)]
    spin_empty: u64,
    /// Tick mode: microseconds to sleep each time the socket is drained.
    #[arg(long, default_value_t = 1000)]
    tick_us: u64,
}

/// The registry's slot per datagram (its `UDP_SLOT_LEN`); a heartbeat is 57 bytes.
const SLOT_LEN: usize = 512;
/// Control bytes per message: room for one `SO_RXQ_OVFL` (as the engine's `mmsg.rs`).
const CONTROL_WORDS: usize = 8;
/// The flood is over once nothing has come for this long.
const IDLE_END: Duration = Duration::from_secs(1);

/// Counts over a stretch of the run.
#[derive(Clone, Copy, Default)]
struct Counts {
    datagrams: u64,
    /// `recvmmsg` calls, and of those the ones that found nothing (`EAGAIN`).
    calls: u64,
    empty: u64,
    /// Returns from `epoll_wait` (epoll mode) or sleeps (tick mode).
    wakeups: u64,
    /// The socket's kernel drop counter (`SO_RXQ_OVFL`) as last reported: this receiver's own
    /// losses, unlike `RcvbufErrors`, which counts every socket on the machine.
    drops: u32,
}

/// The counts and this process's user and system CPU time (microseconds) at one moment.
#[derive(Clone, Copy)]
struct Snapshot {
    counts: Counts,
    user_us: u64,
    sys_us: u64,
}

impl Snapshot {
    fn take(counts: Counts) -> Self {
        let (user_us, sys_us) = cpu_us();
        Snapshot {
            counts,
            user_us,
            sys_us,
        }
    }
}

/// Reusable `recvmmsg` buffers: every header points into the vectors here, which never move
/// after `new` (none is resized), so the pointers set once stay valid.
struct Buffers {
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    control: Vec<[u64; CONTROL_WORDS]>,
    headers: Vec<libc::mmsghdr>,
    payload_only: bool,
    /// The last drop counter the kernel reported (it reports it only once it is above 0).
    drops: u32,
}

impl Buffers {
    fn new(batch: usize, payload_only: bool) -> Self {
        // SAFETY: all-zero is a valid value for these plain C structs (null pointers, zero
        // lengths); the fields that matter are set below.
        let (zero_addr, zero_hdr) = unsafe { (mem::zeroed(), mem::zeroed()) };
        let mut b = Buffers {
            data: vec![0; batch * SLOT_LEN],
            addrs: vec![zero_addr; batch],
            iovecs: Vec::with_capacity(batch),
            control: vec![[0; CONTROL_WORDS]; batch],
            headers: vec![zero_hdr; batch],
            payload_only,
            drops: 0,
        };
        for i in 0..batch {
            b.iovecs.push(libc::iovec {
                iov_base: b.data[i * SLOT_LEN..].as_mut_ptr().cast(),
                iov_len: SLOT_LEN,
            });
        }
        for i in 0..batch {
            let h = &mut b.headers[i].msg_hdr;
            h.msg_iov = &mut b.iovecs[i];
            h.msg_iovlen = 1;
            if !payload_only {
                h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_control = b.control[i].as_mut_ptr().cast();
            }
        }
        b.reset(batch);
        b
    }

    /// Restores the in-out lengths the kernel overwrote in the first `n` headers.
    fn reset(&mut self, n: usize) {
        for h in &mut self.headers[..n] {
            if !self.payload_only {
                h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as _;
                h.msg_hdr.msg_controllen = mem::size_of::<[u64; CONTROL_WORDS]>() as _;
            }
        }
    }

    /// One `recvmmsg`: the number of datagrams, 0 for `EAGAIN` (or a timeout when blocking).
    fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        loop {
            // SAFETY: every header points at live buffers of the stated sizes owned by
            // `self`, which outlives the call; the kernel writes at most those sizes.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    self.headers.len() as libc::c_uint,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n > 0 && !self.payload_only {
                    if let Some(d) = rxq_overflow(&self.headers[n - 1].msg_hdr) {
                        self.drops = d;
                    }
                }
                self.reset(n);
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(0),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }
}

/// The `SO_RXQ_OVFL` counter in a received message's control data, if present (as the
/// engine's `mmsg.rs` reads it).
fn rxq_overflow(h: &libc::msghdr) -> Option<u32> {
    // SAFETY: `h` is a header the kernel just filled; the CMSG macros walk its control buffer
    // within `msg_controllen`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(h);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL {
                return Some(libc::CMSG_DATA(cmsg).cast::<u32>().read_unaligned());
            }
            cmsg = libc::CMSG_NXTHDR(h, cmsg);
        }
    }
    None
}

/// User and system CPU time of this process, in microseconds.
fn cpu_us() -> (u64, u64) {
    // SAFETY: all-zero is a valid `rusage`; getrusage fills it.
    let mut r: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: a live `rusage` to write into; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(r.ru_utime), us(r.ru_stime))
}

/// A plain `setsockopt` of an `int` option.
fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: a pointer to a live `c_int` and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// The socket as the registry sets it up: 127.0.0.1 port 0, `SO_RCVBUFFORCE` else
/// `SO_RCVBUF` (engine `set_udp_recv_buffer`), `SO_RXQ_OVFL` unless payload only.
fn bind(args: &Args) -> anyhow::Result<Socket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>()?.into())?;
    let fd = sock.as_raw_fd();
    let want = libc::c_int::try_from(args.recv_buffer).context("--recv-buffer too large")?;
    if !set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want) {
        sock.set_recv_buffer_size(args.recv_buffer)?;
    }
    if !args.payload_only && !set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1) {
        bail!("SO_RXQ_OVFL: {}", io::Error::last_os_error());
    }
    match args.mode {
        // Blocking, but waking every `IDLE_END` so the end of the flood is seen.
        Mode::Block => sock.set_read_timeout(Some(IDLE_END))?,
        Mode::Epoll | Mode::Spin | Mode::Tick => sock.set_nonblocking(true)?,
    }
    Ok(sock)
}

/// Waits for the socket to become readable (edge-triggered, as mio registers it): `false`
/// after `IDLE_END` without an event.
fn epoll_wait(epfd: RawFd) -> io::Result<bool> {
    // SAFETY: all-zero is a valid `epoll_event`.
    let mut ev: libc::epoll_event = unsafe { mem::zeroed() };
    loop {
        // SAFETY: room for one event, which is what we pass as the maximum.
        let n = unsafe { libc::epoll_wait(epfd, &mut ev, 1, IDLE_END.as_millis() as libc::c_int) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// An epoll instance watching `fd` for input, edge-triggered.
fn epoll_for(fd: RawFd) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain epoll syscalls on descriptors we own; `ev` is live for the call, and a
    // nonnegative `epoll_create1` result is a new descriptor nobody else owns.
    unsafe {
        let epfd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if epfd < 0 {
            bail!("epoll_create1: {}", io::Error::last_os_error());
        }
        let epfd = OwnedFd::from_raw_fd(epfd);
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        if libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) < 0 {
            bail!("epoll_ctl: {}", io::Error::last_os_error());
        }
        Ok(epfd)
    }
}

/// The receive loop: calls `recvmmsg` the mode's way and counts, until the flood ends.
/// Returns the snapshots at the start and end of the measured window.
fn run(args: &Args, sock: &Socket) -> anyhow::Result<(Snapshot, Snapshot)> {
    let fd = sock.as_raw_fd();
    let epfd = if args.mode == Mode::Epoll {
        Some(epoll_for(fd)?)
    } else {
        None
    };
    let epfd = epfd.as_ref().map(AsRawFd::as_raw_fd);
    let flags = match args.mode {
        Mode::Block => libc::MSG_WAITFORONE,
        Mode::Epoll | Mode::Spin | Mode::Tick => 0,
    };
    let tick = Duration::from_micros(args.tick_us);
    let mut bufs = Buffers::new(args.batch.max(1), args.payload_only);
    let mut c = Counts::default();
    let mut start: Option<(Instant, Snapshot)> = None;
    let mut end: Option<Snapshot> = None;
    let mut first: Option<Instant> = None;
    let mut last_data = Instant::now();
    loop {
        if let Some(epfd) = epfd {
            // Sleep until the socket becomes readable, then drain it to `EAGAIN`.
            if !epoll_wait(epfd)? && first.is_some() {
                break;
            }
            c.wakeups += 1;
        }
        let mut spun = 0;
        loop {
            c.calls += 1;
            let n = bufs.recv(fd, flags)?;
            if n == 0 {
                c.empty += 1;
                match args.mode {
                    Mode::Epoll if spun >= args.spin_empty => break,
                    Mode::Epoll => {
                        spun += 1;
                        continue;
                    }
                    Mode::Tick => {
                        thread::sleep(tick);
                        c.wakeups += 1;
                    }
                    Mode::Block | Mode::Spin => {}
                }
                // Block: a timeout; tick: a sleep; spin: look at the clock only now and then.
                if (args.mode != Mode::Spin || c.empty % 4096 == 0)
                    && first.is_some()
                    && last_data.elapsed() >= IDLE_END
                {
                    return finish(start, end, c);
                }
                continue;
            }
            c.datagrams += n as u64;
            c.drops = bufs.drops;
            spun = 0;
            // One clock read per call that got datagrams (vDSO, tens of ns per batch).
            let now = Instant::now();
            last_data = now;
            let t0 = *first.get_or_insert(now);
            let since = now.duration_since(t0).as_secs_f64();
            if start.is_none() && since >= args.warmup {
                start = Some((now, Snapshot::take(c)));
            } else if let Some((s, _)) = start {
                if end.is_none() && now.duration_since(s).as_secs_f64() >= args.secs {
                    end = Some(Snapshot::take(c));
                }
            }
        }
    }
    finish(start, end, c)
}

fn finish(
    start: Option<(Instant, Snapshot)>,
    end: Option<Snapshot>,
    total: Counts,
) -> anyhow::Result<(Snapshot, Snapshot)> {
    match (start, end) {
        (Some((_, s0)), Some(s1)) => Ok((s0, s1)),
        _ => bail!(
            "the flood ended before the measured window did ({} datagrams in all)",
            total.datagrams
        ),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sock = bind(&args)?;
    let port = sock
        .local_addr()?
        .as_socket()
        .context("not an inet socket")?
        .port();
    let rcvbuf = sock.recv_buffer_size()?;
    println!("port={port} recv_buffer={rcvbuf}");
    io::stdout().flush()?;
    let (s0, s1) = run(&args, &sock)?;
    let (c0, c1) = (s0.counts, s1.counts);
    let n = (c1.datagrams - c0.datagrams).max(1) as f64;
    let user = (s1.user_us - s0.user_us) as f64 / n;
    let sys = (s1.sys_us - s0.sys_us) as f64 / n;
    let calls = c1.calls - c0.calls;
    println!(
        "mode={:?} batch={} payload_only={} datagrams={} rate={:.0}/s calls={calls} empty={} \
         per_call={:.1} wakeups={} dropped={} user_us={user:.3} sys_us={sys:.3} total_us={:.3} per datagram",
        args.mode,
        args.batch,
        args.payload_only,
        c1.datagrams - c0.datagrams,
        n / args.secs,
        c1.empty - c0.empty,
        n / (calls - (c1.empty - c0.empty)).max(1) as f64,
        c1.wakeups - c0.wakeups,
        c1.drops.wrapping_sub(c0.drops),
        user + sys,
    );
    Ok(())
}
