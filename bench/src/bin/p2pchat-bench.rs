//! `p2pchat-bench`: the p2pchat evaluation toolkit.
//!
//! - `load --scenario NAME`: the real registry binary and synthetic peers (real peer nodes
//!   multiplexed on engine reactors) over loopback; see `p2pchat_bench::load`.
//! - `compare OLD.json NEW.json`: two runs side by side; exit 1 on a regression.
//! - `sim-flood`: the cost of room broadcast in the deterministic simulator
//!   (`p2pchat_bench::sim`): for each room size, overlay degree and room mode (flood, tree), the
//!   full-message frames per message against the `n - 1` a spanning tree needs, announcement
//!   bytes, duplicates, hops, time to the last member, delivery and whether every member showed
//!   every message exactly once, under loss, jitter, churn and partitions.
//! - `sim-presence`: many peers log in and heartbeat for a while in the simulator; counts the
//!   sessions that expired although their peer was alive (false expiries).
//! - `login-stall`: kept as a shortcut for `load --scenario login-stall`.
//!
//! Every command prints a wrk2-style summary (or `--json`), writes `summary.json`, `.hgrm` files
//! and SVG plots with `--out DIR`, and exits 1 when a `--threshold` is missed.

// A load generator measures real time: it reads the clock by design.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use p2pchat_bench::load::{self, LoadArgs, ScenarioName};
use p2pchat_bench::report::threshold::{self, Threshold};
use p2pchat_bench::report::{compare, LinePlot, Report};
use p2pchat_bench::sim::flood_cmd::{self, FloodArgs, Mode as FloodMode};
use p2pchat_bench::sim::measure::FaultPlan;
use p2pchat_bench::sim::{self, scenario};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "p2pchat-bench",
    version,
    about = "p2pchat evaluation toolkit: load over loopback, simulator, reports, compare"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

/// Report flags shared by the simulator commands.
#[derive(clap::Args, Clone, Debug)]
struct ReportFlags {
    /// Write summary.json and SVG plots here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Fail (exit 1) unless this holds, e.g. `delivery>=100%`; repeatable.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = parse_threshold)]
    thresholds: Vec<Threshold>,
}

fn parse_threshold(s: &str) -> Result<Threshold, String> {
    Threshold::parse(s).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the real registry with synthetic peers over loopback.
    Load(LoadArgs),
    /// Compare two summary.json files; exit 1 if a figure regressed past the tolerance.
    Compare {
        /// The baseline run.
        old: PathBuf,
        /// The run to judge.
        new: PathBuf,
        /// How far a figure may move the bad way (10% or 0.1).
        #[arg(long, default_value = "10%")]
        tolerance: String,
    },
    /// Search latency with and without concurrent password logins (= load --scenario login-stall).
    LoginStall {
        /// The registry binary (default: next to this one).
        #[arg(long)]
        registry_bin: Option<PathBuf>,
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
    /// Room broadcast in the simulator: frames per message against the n-1 bound, delivery,
    /// duplicates, hops, per room mode, with loss, jitter, churn and partitions.
    SimFlood {
        /// Room sizes (peers), comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [8, 32, 128, 512])]
        peers: Vec<usize>,
        /// Overlay degrees, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [2, 3, 4, 6])]
        degrees: Vec<usize>,
        /// Room modes, comma-separated (`flood,tree` runs both, side by side).
        #[arg(long = "room-mode", value_delimiter = ',', default_value = "flood")]
        room_mode: Vec<FloodMode>,
        /// Messages per room, each from a random member.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Messages sent first (no faults) and not measured: steady state starts after them.
        #[arg(long, default_value_t = 0)]
        warmup: usize,
        /// Virtual milliseconds between two sends.
        #[arg(long, default_value_t = 10)]
        gap_ms: u64,
        /// Probability that a chunk of room data between two peers is lost.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Fraction of the members that go down once while messages are sent (half crash and
        /// restart, half leave and join again), each for 1-3 virtual seconds.
        #[arg(long, default_value_t = 0.0)]
        churn: f64,
        /// Cut this fraction of the members off from the rest for the middle third of the
        /// sending window.
        #[arg(long)]
        partition: Option<f64>,
        /// Largest extra delay of a chunk, in ms (uniform from 0; never reorders a connection).
        #[arg(long, default_value_t = 2)]
        jitter_ms: u64,
        /// The simulation seed (default: `SIM_SEED`, else 1).
        #[arg(long)]
        seed: Option<u64>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        report: ReportFlags,
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
        #[command(flatten)]
        report: ReportFlags,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("p2pchat-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Prints the report, writes `--out`, checks thresholds: exit 1 with one line per miss.
fn finish(
    report: &Report,
    json_out: bool,
    quiet_text: bool,
    out: Option<&PathBuf>,
    thresholds: &[Threshold],
) -> anyhow::Result<ExitCode> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else if !quiet_text {
        print!("{}", report.text());
    }
    if let Some(dir) = out {
        let files = report.write_out(dir)?;
        eprintln!("wrote {}: {}", dir.display(), files.join(", "));
    }
    let missed = threshold::check_all(thresholds, &report.figures);
    for m in &missed {
        println!("{m}");
    }
    Ok(if missed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Load(a) => {
            let report = load::run(&a)?;
            finish(&report, a.json, false, a.out.as_ref(), &a.thresholds)
        }
        Cmd::Compare {
            old,
            new,
            tolerance,
        } => {
            let tol = compare::parse_tolerance(&tolerance).map_err(anyhow::Error::msg)?;
            let read = |p: &PathBuf| -> anyhow::Result<serde_json::Value> {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
            };
            let (o, n) = (read(&old)?, read(&new)?);
            let rows = compare::compare(&o, &n, tol);
            print!("{}", compare::render(&o, &n, &rows, tol));
            Ok(if rows.iter().any(|r| r.regressed) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::LoginStall {
            registry_bin,
            iterations,
            logins,
            rate,
            seconds,
        } => {
            let a = <LoadArgs as clap::FromArgMatches>::from_arg_matches(
                &<LoadArgs as clap::Args>::augment_args(clap::Command::new("load"))
                    .try_get_matches_from(["load", "--scenario", "login-stall"])?,
            )?;
            let a = LoadArgs {
                scenario: ScenarioName::LoginStall,
                registry_bin,
                iterations: Some(iterations),
                logins,
                rate: Some(f64::from(rate)),
                duration: Duration::from_secs(seconds),
                ..a
            };
            let report = load::run(&a)?;
            finish(&report, false, false, None, &[])
        }
        Cmd::SimFlood {
            peers,
            degrees,
            room_mode,
            messages,
            warmup,
            gap_ms,
            loss,
            churn,
            partition,
            jitter_ms,
            seed,
            json,
            report,
        } => {
            let gap = Duration::from_millis(gap_ms);
            let window = gap * messages as u32;
            let args = FloodArgs {
                peers,
                degrees,
                modes: room_mode,
                messages,
                warmup,
                gap,
                plan: FaultPlan {
                    loss,
                    churn,
                    partition: partition.map(|f| flood_cmd::partition_plan(f, window)),
                    ..FaultPlan::default()
                },
                jitter: Duration::from_millis(jitter_ms),
                seed: sim_seed(seed),
                json,
            };
            let r = flood_cmd::run(&args)?;
            let code = finish(&r, false, true, report.out.as_ref(), &report.thresholds)?;
            if !r.problems.is_empty() {
                bail!("{}", r.problems.join("; "));
            }
            Ok(code)
        }
        Cmd::SimPresence {
            peers,
            minutes,
            loss,
            jitter_ms,
            seed,
            json,
            report,
        } => {
            let r = sim_presence(peers, minutes, loss, jitter_ms, seed, json)?;
            finish(&r, false, true, report.out.as_ref(), &report.thresholds)
        }
    }
}

fn sim_seed(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| sim::seed_from_env(1))
}

fn sim_presence(
    peers: usize,
    minutes: u64,
    loss: f64,
    jitter_ms: u64,
    seed: Option<u64>,
    json: bool,
) -> anyhow::Result<Report> {
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
    let mut report = Report::new("sim-presence", "sim-presence");
    report.headline =
        format!("sim-presence: seed {seed}, {peers} peers, {minutes} virtual min, udp loss {loss}");
    report.params.insert("peers".into(), json!(peers));
    report.params.insert("minutes".into(), json!(minutes));
    report.params.insert("udp_loss".into(), json!(loss));
    report.params.insert("jitter_ms".into(), json!(jitter_ms));
    report.params.insert("seed".into(), json!(seed));
    report.figure("peers", ids.len() as f64);
    report.figure("false_expiries", false_expiries as f64);
    report.figure("online_at_end", online as f64);
    report.figure("heartbeats", heartbeats as f64);
    report.figure("datagrams_lost", net.datagrams_lost as f64);
    report.figure("login_virtual_s", login_virtual.as_secs_f64());
    report.figure("login_wall_s", login_wall.as_secs_f64());
    report.figure("run_wall_s", run_wall.as_secs_f64());
    // Online sessions over virtual time, from the registry's offline events.
    let mut offline_at: Vec<f64> = w
        .registry_events()
        .iter()
        .filter(|e| expired(e))
        .map(|e| e.at.as_secs_f64())
        .collect();
    offline_at.sort_by(f64::total_cmp);
    let end = w.elapsed().as_secs_f64();
    let mut pts = vec![(login_virtual.as_secs_f64(), ids.len() as f64)];
    for (i, t) in offline_at.iter().enumerate() {
        pts.push((*t, (ids.len() - i - 1) as f64));
    }
    pts.push((end, online as f64));
    report.lines.push(LinePlot {
        file: "online.svg".into(),
        title: "Sessions online over virtual time (drops are expiries)".into(),
        x_label: "virtual time (s)".into(),
        y_label: "online sessions".into(),
        lines: vec![("online".into(), pts)],
    });
    if false_expiries > 0 {
        report
            .problems
            .push(format!("{false_expiries} false expiries"));
    }
    report.finish();
    Ok(report)
}
