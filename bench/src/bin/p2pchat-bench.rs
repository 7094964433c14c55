//! `p2pchat-bench`: the p2pchat evaluation toolkit.
//!
//! - `load --scenario NAME`: the real registry binary and synthetic peers (real peer nodes
//!   multiplexed on engine reactors) over loopback; see `p2pchat_bench::load`.
//! - `compare OLD.json NEW.json`: two runs side by side; exit 1 on a regression.
//! - `sim-flood`: the cost of flooding room messages in the deterministic simulator
//!   (`p2pchat_bench::sim`): for each room size and overlay degree, the frames sent per message
//!   against the `n - 1` a spanning tree would need, duplicates, hops, and whether every member
//!   showed every message exactly once.
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
use p2pchat_bench::report::{compare, BarPlot, LinePlot, Report};
use p2pchat_bench::sim::{self, scenario};
use rand::rngs::StdRng;
use rand::SeedableRng;
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
            messages,
            seed,
            json,
            report,
        } => {
            let r = sim_flood(&peers, &degrees, messages, seed, json)?;
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

fn sim_flood(
    peers: &[usize],
    degrees: &[usize],
    messages: usize,
    seed: Option<u64>,
    json: bool,
) -> anyhow::Result<Report> {
    let seed = sim_seed(seed);
    let gap = Duration::from_millis(10);
    let mut report = Report::new("sim-flood", "sim-flood");
    report.headline = format!("sim-flood: seed {seed}, {messages} messages per room, rooms {peers:?}, degrees {degrees:?}");
    report.params.insert("peers".into(), json!(peers));
    report.params.insert("degrees".into(), json!(degrees));
    report.params.insert("messages".into(), json!(messages));
    report.params.insert("seed".into(), json!(seed));
    report
        .params
        .insert("gap_ms".into(), json!(gap.as_millis() as u64));
    let mut latency = p2pchat_bench::report::Series::new(
        "delivery_virtual",
        "virtual time from a message's send to its first display at a member",
    );
    latency.cdf = true;
    let mut runs = Vec::new();
    let mut curves = Vec::new();
    let mut frames_bars = Vec::new();
    let (mut delivered_total, mut expected_total) = (0u64, 0u64);
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
            let flood_start = w.elapsed();
            let t = Instant::now();
            let mut rng = StdRng::seed_from_u64(seed ^ 0xf100d);
            let r = scenario::flood(&mut w, &ids, "flood", d, messages, gap, &mut rng)
                .map_err(anyhow::Error::msg)?;
            let flood_wall = t.elapsed();
            let expected = (r.messages * r.peers.saturating_sub(1)) as u64;
            delivered_total += r.delivered;
            expected_total += expected;
            let times = delivery_times(&w, &ids, flood_start, gap, &mut latency.hist);
            curves.push((format!("n={n} d={d}"), cumulative(&times, expected)));
            report.bars.push(BarPlot {
                file: format!("hops-n{n}-d{d}.svg"),
                title: format!("First deliveries by hops, n={n} d={d}"),
                x_label: "hops".into(),
                y_label: "first deliveries".into(),
                bars: r
                    .hops
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(|(h, c)| (h.to_string(), *c as f64))
                    .collect(),
            });
            all_ok &= r.exactly_once;
            let m = r.messages.max(1) as f64;
            let per_msg = r.frames as f64 / m;
            let bound = r.peers.saturating_sub(1);
            let tree_excess = 2.0 * r.links - bound as f64;
            if r.one_way > 0 {
                eprintln!("  n={n} d={d}: {} one-way overlay links", r.one_way);
            }
            let row = json!({
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
                "hops": r.hops,
            });
            frames_bars.push((format!("n={n} d={d}"), per_msg));
            report.figure(&format!("n{n}_d{d}_frames_per_message"), per_msg);
            report.figure(
                &format!("n{n}_d{d}_frames_to_bound"),
                per_msg / bound.max(1) as f64,
            );
            report.figure(
                &format!("n{n}_d{d}_duplicates_per_message"),
                r.duplicates as f64 / m,
            );
            report.figure(&format!("n{n}_d{d}_mean_hops"), r.mean_hops);
            if json {
                println!("{row}");
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
            for p in &r.problems {
                report.problems.push(format!("n={n} d={d}: {p}"));
            }
            runs.push(row);
        }
    }
    let ratio = if expected_total == 0 {
        0.0
    } else {
        delivered_total as f64 / expected_total as f64
    };
    println!("delivery ratio: {ratio:.6} ({delivered_total} of {expected_total} first deliveries)");
    report.figure("delivery", ratio);
    report.figure("exactly_once", if all_ok { 1.0 } else { 0.0 });
    report.figure("messages", (messages * peers.len() * degrees.len()) as f64);
    report.tables.insert("runs".into(), json!(runs));
    report.series = vec![latency];
    report.lines.push(LinePlot {
        file: "delivery.svg".into(),
        title: "Deliveries over virtual time (fraction of n-1 per message)".into(),
        x_label: "virtual time since the first send (ms)".into(),
        y_label: "fraction delivered".into(),
        lines: curves,
    });
    report.bars.push(BarPlot {
        file: "frames.svg".into(),
        title: "Room-message frames per message, by room size and degree".into(),
        x_label: "room".into(),
        y_label: "frames per message".into(),
        bars: frames_bars,
    });
    if !all_ok {
        report.problems.push(format!(
            "some member did not show some message exactly once (seed {seed})"
        ));
    }
    report.finish();
    Ok(report)
}

/// Virtual times (ms since `start`) of every first display of a `flood-K` message at a member,
/// sorted; records each delivery's latency from its send (`start + K * gap`) in `hist` (ns).
fn delivery_times(
    w: &sim::World,
    ids: &[sim::NodeId],
    start: Duration,
    gap: Duration,
    hist: &mut hdrhistogram::Histogram<u64>,
) -> Vec<f64> {
    let mut times = Vec::new();
    for id in ids {
        for (t, e) in w.timed_events(*id) {
            let p2pchat_peer::NodeEvent::RoomMessage { text, .. } = e else {
                continue;
            };
            let Some(k) = text
                .strip_prefix("flood-")
                .and_then(|k| k.parse::<u32>().ok())
            else {
                continue;
            };
            if *t < start {
                continue;
            }
            let sent = start + gap * k;
            hist.saturating_record(t.saturating_sub(sent).as_nanos() as u64);
            times.push((*t - start).as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    times
}

/// A cumulative curve of `times` as a fraction of `expected`, at most ~200 points.
fn cumulative(times: &[f64], expected: u64) -> Vec<(f64, f64)> {
    let step = (times.len() / 200).max(1);
    let mut pts = vec![(0.0, 0.0)];
    for (i, t) in times.iter().enumerate() {
        if i % step == 0 || i + 1 == times.len() {
            pts.push((*t, (i + 1) as f64 / expected.max(1) as f64));
        }
    }
    pts
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
