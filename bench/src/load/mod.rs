//! `p2pchat-bench load`: the real registry binary and synthetic peers over loopback.
//!
//! # Brief overview
//!
//! - [`LoadArgs`] are the flags; [`run`] checks the descriptor budget, starts (or attaches to)
//!   the registry ([`registry`]), measures the floor ([`floor`]), runs one scenario
//!   ([`scenarios`]) and returns a [`Report`].
//! - [`peers::Pool`] multiplexes many real `p2pchat_peer::Node`s on one engine reactor; one pool
//!   per `--threads`, never a thread per peer. [`client::RawPool`] is the lean pipelined
//!   registry client the `requests` scenario uses to find the registry's ceiling.
//! - [`schedule::Schedule`] plans open-loop work; latencies count from the intended time.
//! - [`procfs`] reads the registry's CPU, RSS and descriptors and the UDP drop counters.
//! - [`Phase`] coordinates worker threads with the main thread, which samples /proc for the
//!   timeline and draws the progress bar (stderr, only on a terminal).

// A load generator measures real time: it reads the clock by design.
#![allow(clippy::disallowed_methods)]

pub mod client;
pub mod floor;
pub mod peers;
pub mod procfs;
pub mod registry;
pub mod scenarios;
pub mod schedule;
pub mod secure;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::report::threshold::Threshold;
use crate::report::{Report, Sample};

/// The scenarios of `load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// N peers online and heartbeating, with a background search rate.
    Steady,
    /// Search / online-list / ping: open-loop at --rate, or closed loop with --pipeline.
    Requests,
    /// N peers register and log in at --rate; latency of each step.
    LoginStorm,
    /// Rooms of synthetic peers flood messages at --rate; origin-to-member latency.
    RoomFlood,
    /// A fraction of peers vanish without logout; detection time and false expiries.
    Churn,
    /// The registry is killed and restarted under N online peers in rooms.
    ReconnectStorm,
    /// Search latency with and without concurrent full-cost password logins.
    LoginStall,
}

/// Flags of `p2pchat-bench load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The scenario.
    #[arg(long, value_enum)]
    pub scenario: ScenarioName,
    /// Synthetic peers (steady, login-storm, churn, reconnect-storm).
    #[arg(long, default_value_t = 1000)]
    pub peers: usize,
    /// Length of the measured phase.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Operations per second: background searches (steady), requests (requests, open loop),
    /// logins (login-storm), messages per room (room-flood), searches (login-stall).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Reactor threads for the synthetic peers (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// requests: registry connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// requests: requests in flight per connection, as fast as possible (closed loop);
    /// 0 means open loop at --rate.
    #[arg(long, default_value_t = 0)]
    pub pipeline: usize,
    /// requests: the request kinds, comma-separated (search, list, ping).
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("search")])]
    pub mix: Vec<String>,
    /// room-flood, reconnect-storm: rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// room-flood, reconnect-storm: members per room.
    #[arg(long, default_value_t = 50)]
    pub room_size: usize,
    /// Room overlay degree of the synthetic peers.
    #[arg(long, default_value_t = 4)]
    pub degree: usize,
    /// room-flood: how rooms spread messages, `flood` or `tree` (the peer's `--room-mode`).
    #[arg(long, default_value = "flood")]
    pub room_mode: p2pchat_peer::RoomMode,
    /// room-flood: every synthetic peer has an identity key and a registry ticket and signs its
    /// room messages; every member checks them (docs/security.md, layer 4), as real clients do.
    #[arg(long)]
    pub sign: bool,
    /// room-flood, reconnect-storm: spread every room over the threads member by member even
    /// when it would fit on one (as a room over 250 members is), so that its links and
    /// messages cross threads.
    #[arg(long)]
    pub spread: bool,
    /// room-flood: each peer keeps a trace of its room links and frames (the newest 8,192
    /// events); a run with missing deliveries writes every member's to this directory
    /// (`NAME.trace`) and the missing ones to `missing.txt`.
    #[arg(long, value_name = "DIR")]
    pub room_trace: Option<PathBuf>,
    /// churn: fraction of the peers that vanish without logout.
    #[arg(long, default_value_t = 0.1)]
    pub churn: f64,
    /// login-stall: clients logging in and out concurrently.
    #[arg(long, default_value_t = 8)]
    pub logins: usize,
    /// Heartbeat expiry of a registry this tool starts.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,
    /// PBKDF2 iterations of a registry this tool starts (login-stall default: 600000).
    #[arg(long)]
    pub iterations: Option<u32>,
    /// Use this running registry instead of starting one.
    #[arg(long, value_name = "ADDR")]
    pub registry: Option<SocketAddr>,
    /// The pid of the --registry process, for its CPU, RSS and descriptors.
    #[arg(long, value_name = "PID", requires = "registry")]
    pub registry_pid: Option<u32>,
    /// The registry binary to start (default: next to this one).
    #[arg(long)]
    pub registry_bin: Option<PathBuf>,
    /// Fail (exit 1) unless this holds, e.g. `p99<5ms`; repeatable.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = parse_threshold)]
    pub thresholds: Vec<Threshold>,
    /// Write summary.json, .hgrm files and SVG plots here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print summary.json on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// Seed for the choices the generator makes (who searches whom, who sends).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Parses `500ms`, `20s`, `2m`, `1h`, `250us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} needs a unit (500ms, 20s, 2m)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad number in {s:?}"))?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_threshold(s: &str) -> Result<Threshold, String> {
    Threshold::parse(s).map_err(|e| e.to_string())
}

impl LoadArgs {
    /// Reactor threads.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }

    /// Synthetic peers this scenario runs.
    pub fn total_peers(&self) -> usize {
        match self.scenario {
            ScenarioName::RoomFlood | ScenarioName::ReconnectStorm => self.rooms * self.room_size,
            ScenarioName::Requests => self.connections,
            ScenarioName::LoginStall => self.logins + 1,
            _ => self.peers,
        }
    }

    /// Descriptors this process needs: one registry connection per peer, plus for room
    /// scenarios with links (room size > 1) a listener per peer and both ends of about
    /// `degree` links per peer, plus a few per reactor.
    pub fn fds_needed(&self) -> u64 {
        let n = self.total_peers() as u64;
        let per_peer = match self.scenario {
            ScenarioName::RoomFlood | ScenarioName::ReconnectStorm if self.room_size > 1 => {
                2 + self.degree as u64
            }
            _ => 1,
        };
        n * per_peer + 16 * self.threads() as u64 + 64
    }
}

/// State shared by the worker threads of one run and the main thread.
#[derive(Debug, Default)]
pub struct Phase {
    /// Operations completed in the measured phase (for the timeline and progress).
    pub ops: AtomicU64,
    /// Peers ready (logged in, joined...).
    pub ready: AtomicU64,
    /// Set by the main thread when every worker is ready: the measured phase starts here.
    pub start: OnceLock<Instant>,
    /// A moment the main thread marks during the measured phase (reconnect-storm: the kill).
    pub mark: OnceLock<Instant>,
    /// Workers stop.
    pub stop: AtomicBool,
    /// Workers done with the measured phase (their sockets still open).
    pub done: AtomicU64,
    /// Set by the main thread once it has read the registry at the end: workers may close.
    pub release: AtomicBool,
    /// Problems found by workers.
    pub problems: Mutex<Vec<String>>,
}

impl Phase {
    /// One setup turn of a worker that runs `peers` peers: counts them ready the first time
    /// `ready` holds, then returns the measured phase's start once the main thread has set it
    /// (`None` until then), or an error if the main thread asked the workers to stop.
    pub fn setup_turn(
        &self,
        ready: bool,
        reported: &mut bool,
        peers: usize,
        stage: &str,
    ) -> anyhow::Result<Option<Instant>> {
        if ready && !*reported {
            *reported = true;
            self.ready.fetch_add(peers as u64, Ordering::Relaxed);
        }
        if let Some(&s) = self.start.get() {
            return Ok(Some(s));
        }
        if self.stop.load(Ordering::Relaxed) {
            bail!("stopped during {stage}");
        }
        Ok(None)
    }

    /// A worker is done measuring: waits (at most 10 s) until the main thread has read the
    /// registry's end state, so that the registry's descriptors and RSS are read with every
    /// peer still connected.
    pub fn finish_and_wait(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(10);
        while !self.release.load(Ordering::Relaxed)
            && !self.stop.load(Ordering::Relaxed)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Records a problem line.
    pub fn problem(&self, p: String) {
        if let Ok(mut v) = self.problems.lock() {
            if v.len() < 100 {
                v.push(p);
            }
        }
    }
}

/// The registry's figures around the measured phase.
pub struct Watch {
    pid: Option<u32>,
    before: Option<procfs::ProcSample>,
    own_before: procfs::ProcSample,
    udp_before: procfs::UdpDrops,
    end: Option<(
        Instant,
        Option<procfs::ProcSample>,
        procfs::ProcSample,
        procfs::UdpDrops,
    )>,
    start: Instant,
    /// Samples taken.
    pub timeline: Vec<Sample>,
}

impl Watch {
    /// Starts watching `pid` now.
    pub fn start(pid: Option<u32>) -> Watch {
        Watch {
            pid,
            before: pid.and_then(procfs::sample),
            own_before: procfs::own(),
            udp_before: procfs::udp_drops(),
            end: None,
            start: Instant::now(),
            timeline: Vec::new(),
        }
    }

    /// Watches another pid from now on (a restarted registry); its CPU before is unknown, so
    /// CPU figures then cover the new process only.
    pub fn set_pid(&mut self, pid: Option<u32>) {
        if pid != self.pid {
            self.pid = pid;
            self.before = pid
                .and_then(procfs::sample)
                .map(|s| procfs::ProcSample { cpu_s: 0.0, ..s });
        }
    }

    /// Appends a timeline sample with `ops` completed so far.
    pub fn sample(&mut self, ops: u64) {
        let reg = self.pid.and_then(procfs::sample);
        self.timeline.push(Sample {
            t_s: self.start.elapsed().as_secs_f64(),
            ops,
            registry_rss_bytes: reg.map(|r| r.rss_bytes),
            registry_cpu_s: reg.map(|r| r.cpu_s),
            generator_cpu_s: procfs::own().cpu_s,
        });
    }

    /// Reads the end state now (every worker done measuring, sockets still open).
    pub fn mark_end(&mut self) {
        if self.end.is_none() {
            self.end = Some((
                Instant::now(),
                self.pid.and_then(procfs::sample),
                procfs::own(),
                procfs::udp_drops(),
            ));
        }
    }

    /// Writes the registry and generator figures for `ops` operations and `peers` online peers.
    pub fn finish(mut self, report: &mut Report, ops: u64, peers: u64) {
        self.mark_end();
        let Some((end_t, end_reg, own, udp)) = self.end else {
            return;
        };
        let elapsed = end_t.duration_since(self.start).as_secs_f64();
        let ops_f = ops.max(1) as f64;
        let gen_cpu = own.cpu_s - self.own_before.cpu_s;
        report.figure("generator_cpu_s", gen_cpu);
        report.figure("generator_cpu_per_op_us", gen_cpu * 1e6 / ops_f);
        report.figure("generator_cpu_utilisation", gen_cpu / elapsed.max(1e-9));
        report
            .generator
            .insert("pid".into(), json!(std::process::id()));
        report
            .generator
            .insert("rss_bytes".into(), json!(own.rss_bytes));
        report.generator.insert("fds".into(), json!(own.fds));
        report.figure(
            "udp_rcvbuf_errors",
            udp.rcvbuf_errors
                .saturating_sub(self.udp_before.rcvbuf_errors) as f64,
        );
        report.figure(
            "udp_in_errors",
            udp.in_errors.saturating_sub(self.udp_before.in_errors) as f64,
        );
        report.registry.insert("pid".into(), json!(self.pid));
        let (Some(pid), Some(before)) = (self.pid, self.before) else {
            report.registry.insert(
                "note".into(),
                json!("no registry pid: pass --registry-pid for CPU, RSS and descriptors"),
            );
            return;
        };
        let _ = pid;
        let Some(after) = end_reg else {
            report
                .problems
                .push("the registry process was gone at the end".into());
            return;
        };
        let cpu = after.cpu_s - before.cpu_s;
        report.figure("registry_cpu_s", cpu);
        report.figure("registry_cpu_per_op_us", cpu * 1e6 / ops_f);
        report.figure("registry_cpu_utilisation", cpu / elapsed.max(1e-9));
        report.figure("registry_rss_bytes", after.rss_bytes as f64);
        report.figure("registry_fds", after.fds as f64);
        if peers > 0 {
            report.figure(
                "registry_rss_per_peer_bytes",
                after.rss_bytes as f64 / peers as f64,
            );
        }
        report
            .registry
            .insert("rss_bytes_before".into(), json!(before.rss_bytes));
        report
            .registry
            .insert("fds_before".into(), json!(before.fds));
        report.timeline = self.timeline;
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// The main thread's loop while workers run: starts the measured phase once `total_ready`
/// peers are ready (and a [`Watch`] of registry `pid` with it), then every 250 ms samples /proc
/// and ticks the progress bar (`on_start` runs once, right after the start, and may name a
/// new registry pid to watch), until every worker thread has finished. Returns the workers'
/// results and the watch (`None` if the measured phase never started).
pub fn watch_workers<T>(
    phase: &Phase,
    pid: Option<u32>,
    handles: Vec<std::thread::JoinHandle<anyhow::Result<T>>>,
    total_ready: u64,
    label: &str,
    on_start: &mut dyn FnMut() -> anyhow::Result<Option<u32>>,
) -> anyhow::Result<(Vec<T>, Option<Watch>)> {
    let pb = progress(total_ready, label);
    let mut watch: Option<Watch> = None;
    let mut last = Instant::now();
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let ready = phase.ready.load(Ordering::Relaxed);
        pb.set_position(ready.min(total_ready));
        if ready >= total_ready && phase.start.get().is_none() {
            let mut w = Watch::start(pid);
            w.sample(0);
            watch = Some(w);
            let _ = phase.start.set(Instant::now());
            pb.finish_and_clear();
            match on_start() {
                Ok(Some(pid)) => {
                    if let Some(w) = watch.as_mut() {
                        w.set_pid(Some(pid));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    phase.stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        if last.elapsed() >= Duration::from_millis(250) {
            last = Instant::now();
            if let Some(w) = watch.as_mut() {
                w.sample(phase.ops.load(Ordering::Relaxed));
            }
        }
        if phase.done.load(Ordering::Relaxed) >= handles.len() as u64
            && !phase.release.load(Ordering::Relaxed)
        {
            if let Some(w) = watch.as_mut() {
                w.sample(phase.ops.load(Ordering::Relaxed));
                w.mark_end();
            }
            phase.release.store(true, Ordering::Relaxed);
        }
    }
    pb.finish_and_clear();
    let mut errors = Vec::new();
    let mut outs = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => outs.push(t),
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(_) => errors.push("a worker thread panicked".into()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok((outs, watch))
}

/// Runs one `load` scenario and returns its report (thresholds not yet checked).
pub fn run(args: &LoadArgs) -> anyhow::Result<Report> {
    let limit = procfs::raise_nofile();
    let need = args.fds_needed();
    if need > limit {
        let per =
            need.saturating_sub(64 + 16 * args.threads() as u64) / args.total_peers().max(1) as u64;
        let can = limit.saturating_sub(64 + 16 * args.threads() as u64) / per.max(1);
        bail!(
            "{:?} with {} synthetic peers needs about {need} file descriptors in this process, \
             but the limit is {limit} (raised to the hard limit; raise it with ulimit -Hn as root): \
             this machine can run at most about {can} peers for this scenario",
            args.scenario,
            args.total_peers()
        );
    }
    if !args.json {
        eprintln!(
            "p2pchat-bench: {} peers need about {need} descriptors; limit {limit}",
            args.total_peers()
        );
    }
    scenarios::run(args)
}
