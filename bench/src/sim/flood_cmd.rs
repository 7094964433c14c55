//! `p2pchat-bench sim-flood`: for each room size, overlay degree and room mode, form a room in
//! the simulator, send messages through it under the chosen faults ([`super::measure`]), and
//! report the cost and who showed what. Several modes in one invocation give a side-by-side
//! table (same seed, so the same users, overlay rules and senders).

// A command-line measurement: it reads the real clock to report how long setup and sending
// took (the simulation itself runs on virtual time).
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::measure::{self, FaultPlan, Partition, RunReport};
use super::{scenario, SimConfig, World};
use crate::report::{BarPlot, LinePlot, Report, Series};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// How a room spreads its messages (the peer's `RoomMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Mode {
    /// Every peer forwards every new message to every neighbour.
    Flood,
    /// Plumtree: eager push along a tree, lazy announcements on the other links.
    Tree,
}

impl Mode {
    /// The name in tables and figure names.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Flood => "flood",
            Mode::Tree => "tree",
        }
    }

    /// Sets the peer's room mode.
    pub fn configure(self, c: &mut p2pchat_peer::Config) {
        c.room_mode = match self {
            Mode::Flood => p2pchat_peer::RoomMode::Flood,
            Mode::Tree => p2pchat_peer::RoomMode::Tree,
        };
    }
}

/// Arguments of `sim-flood`.
#[derive(Debug, Clone)]
pub struct FloodArgs {
    /// Room sizes.
    pub peers: Vec<usize>,
    /// Overlay degrees.
    pub degrees: Vec<usize>,
    /// Room modes (each size and degree runs once per mode).
    pub modes: Vec<Mode>,
    /// Messages per room.
    pub messages: usize,
    /// Messages sent (without faults) before the measured ones, and not counted: the tree
    /// prunes itself into shape on the first messages, so steady state starts after them.
    pub warmup: usize,
    /// Virtual time between two sends.
    pub gap: Duration,
    /// Faults during the sending window.
    pub plan: FaultPlan,
    /// Largest extra delay per chunk (the network's jitter).
    pub jitter: Duration,
    /// The seed.
    pub seed: u64,
    /// One JSON object per line instead of a table.
    pub json: bool,
}

/// Runs `sim-flood`; prints the table (or JSON lines) as it goes and returns the report.
pub fn run(a: &FloodArgs) -> anyhow::Result<Report> {
    let seed = a.seed;
    let mut report = Report::new("sim-flood", "sim-flood");
    let modes: Vec<&str> = a.modes.iter().map(|m| m.name()).collect();
    report.headline = format!(
        "sim-flood: seed {seed}, {} messages per room, rooms {:?}, degrees {:?}, modes {modes:?}",
        a.messages, a.peers, a.degrees
    );
    let p = &a.plan;
    for (k, v) in [
        ("peers", json!(a.peers)),
        ("degrees", json!(a.degrees)),
        ("modes", json!(modes)),
        ("messages", json!(a.messages)),
        ("warmup", json!(a.warmup)),
        ("seed", json!(seed)),
        ("gap_ms", json!(a.gap.as_millis() as u64)),
        ("jitter_ms", json!(a.jitter.as_millis() as u64)),
        ("loss", json!(p.loss)),
        ("churn", json!(p.churn)),
        ("partition", json!(p.partition.map(|x| x.fraction))),
    ] {
        report.params.insert(k.into(), v);
    }
    let mut latency = Series::new(
        "delivery_virtual",
        "virtual time from a message's send to its first display at a member",
    );
    latency.cdf = true;
    let (mut runs, mut curves, mut frames_bars) = (Vec::new(), Vec::new(), Vec::new());
    let (mut delivered_total, mut expected_total) = (0u64, 0u64);
    let mut all_ok = true;
    if !a.json {
        println!(
            "sim-flood: seed {seed}, {} messages per room from random members, {} ms apart; loss {}, churn {}, partition {:?}",
            a.messages,
            a.gap.as_millis(),
            p.loss,
            p.churn,
            p.partition.map(|x| x.fraction)
        );
        println!("| n | d | mode | mean nbrs | full frames/msg | / (n-1) | announce B/msg | dups/msg | max hops | mean hops | last member mean / max | delivery | exactly once | setup (real) | run (real) |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    for &n in &a.peers {
        for &d in &a.degrees {
            for &mode in &a.modes {
                let t = Instant::now();
                let mut config = SimConfig::new(seed);
                config.keep_event = scenario::scenario_events;
                config.net.jitter = a.jitter;
                if n > 1_000 {
                    config.check_every = Duration::from_millis(10);
                }
                let mut w = World::new(config);
                let limit = Duration::from_secs(600);
                let ids = scenario::add_users_with(&mut w, n, limit, |c| {
                    c.degree = d;
                    // Big rooms need no larger frame limit: the registry pages its answers.
                    mode.configure(c);
                })
                .map_err(anyhow::Error::msg)?;
                scenario::form_room(&mut w, &ids, "flood", limit).map_err(anyhow::Error::msg)?;
                let setup = t.elapsed();
                let setup_virtual = w.elapsed();
                w.track_hops("flood");
                let t = Instant::now();
                let mut rng = StdRng::seed_from_u64(seed ^ 0xf100d);
                if a.warmup > 0 {
                    let calm = FaultPlan::default();
                    let r = measure::run(&mut w, &ids, "flood", a.warmup, a.gap, &calm, &mut rng)
                        .map_err(anyhow::Error::msg)?;
                    if !a.json {
                        println!("  warm-up: {}", window_line(&r));
                    }
                }
                let r = measure::run(&mut w, &ids, "flood", a.messages, a.gap, p, &mut rng)
                    .map_err(anyhow::Error::msg)?;
                let run_wall = t.elapsed();
                delivered_total += r.delivered;
                expected_total += r.expected;
                for l in &r.latencies {
                    latency.hist.saturating_record(l.as_nanos() as u64);
                }
                let label = format!("n={n} d={d} {}", mode.name());
                curves.push((label.clone(), cumulative(&r)));
                let suffix = if mode == Mode::Flood { "" } else { "-tree" };
                report.bars.push(BarPlot {
                    file: format!("hops-n{n}-d{d}{suffix}.svg"),
                    title: format!("First deliveries by hops, n={n} d={d} {}", mode.name()),
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
                all_ok &= r.exactly_once();
                let row = row_json(&r, n, d, mode, seed, setup, setup_virtual, run_wall, &w);
                let m = r.messages.max(1) as f64;
                let per_msg = r.full_frames as f64 / m;
                let bound = r.peers.saturating_sub(1).max(1) as f64;
                frames_bars.push((label, per_msg));
                let prefix = if mode == Mode::Flood {
                    format!("n{n}_d{d}")
                } else {
                    format!("n{n}_d{d}_{}", mode.name())
                };
                for (name, v) in [
                    ("frames_per_message", per_msg),
                    ("frames_to_bound", per_msg / bound),
                    ("announce_bytes_per_message", r.announce_bytes as f64 / m),
                    ("duplicates_per_message", r.duplicates as f64 / m),
                    ("mean_hops", r.hop_summary().1),
                    ("delivery", r.delivery()),
                    ("setup_wall_s", setup.as_secs_f64()),
                ] {
                    report.figure(&format!("{prefix}_{name}"), v);
                }
                if a.json {
                    println!("{row}");
                } else {
                    print_row(&r, n, d, mode, setup, run_wall);
                    println!("  measured: {}", window_line(&r));
                }
                for p in &r.problems {
                    eprintln!("  n={n} d={d} {}: {p}", mode.name());
                    report
                        .problems
                        .push(format!("n={n} d={d} {}: {p}", mode.name()));
                }
                runs.push(row);
            }
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
    report.figure(
        "messages",
        (a.messages * a.peers.len() * a.degrees.len() * a.modes.len()) as f64,
    );
    report.tables.insert("runs".into(), json!(runs));
    report.series = vec![latency];
    report.lines.push(LinePlot {
        file: "delivery.svg".into(),
        title: "Deliveries over virtual time (fraction of expected)".into(),
        x_label: "virtual time since the message was sent (ms)".into(),
        y_label: "fraction delivered".into(),
        lines: curves,
    });
    report.bars.push(BarPlot {
        file: "frames.svg".into(),
        title: "Full-message frames per message, by room, degree and mode".into(),
        x_label: "room".into(),
        y_label: "frames per message".into(),
        bars: frames_bars,
    });
    if !all_ok {
        report.problems.push(format!(
            "some member showed some message twice (seed {seed})"
        ));
    }
    report.finish();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn row_json(
    r: &RunReport,
    n: usize,
    d: usize,
    mode: Mode,
    seed: u64,
    setup: Duration,
    setup_virtual: Duration,
    run_wall: Duration,
    w: &World,
) -> Value {
    let m = r.messages.max(1) as f64;
    let bound = r.peers.saturating_sub(1);
    let per_msg = r.full_frames as f64 / m;
    let (max_hops, mean_hops) = r.hop_summary();
    let (last_mean, last_max) = last_member(r);
    let control: serde_json::Map<String, Value> = r
        .control
        .iter()
        .map(|(k, (f, b))| (k.to_string(), json!({"frames": f, "bytes": b})))
        .collect();
    let mut row = json!({
        "peers": r.peers, "degree": d, "mode": mode.name(), "messages": r.messages,
        "seed": seed, "requested_peers": n,
        "frames": r.full_frames, "frames_per_message": per_msg,
        "lower_bound": bound, "ratio": per_msg / bound.max(1) as f64,
        "announce_bytes_per_message": r.announce_bytes as f64 / m,
        "control_frames": control, "dropped_frames": r.dropped_frames,
        "links": r.links, "one_way_links": r.one_way,
        "two_links_minus_bound": 2.0 * r.links - bound as f64,
        "duplicates_per_message": r.duplicates as f64 / m,
        "delivered": r.delivered, "expected": r.expected, "delivery": r.delivery(),
        "shown_twice": r.shown_twice, "reshown_after_restart": r.reshown_after_restart,
        "own_shown": r.own_shown, "crashed": r.crashed, "rejoined": r.rejoined,
        "mean_neighbours": r.mean_neighbours, "max_neighbours": r.max_neighbours,
        "max_hops": max_hops, "mean_hops": mean_hops,
        "last_member_mean_ms": last_mean, "last_member_max_ms": last_max,
        "exactly_once": r.exactly_once(), "problems": r.problems,
        "virtual_s": r.virtual_time.as_secs_f64(), "setup_virtual_s": setup_virtual.as_secs_f64(),
        "setup_wall_s": setup.as_secs_f64(), "flood_wall_s": run_wall.as_secs_f64(),
        "steps": w.steps(), "trace_hash": format!("{:016x}", w.trace_hash()),
        "hops": r.hops,
    });
    row["window"] = json!(WINDOW);
    row["frames_to_bound_by_window"] = json!(windows(r));
    row
}

/// Messages per window in the per-window figures.
const WINDOW: usize = 20;

/// The per-window figures as one line of text.
fn window_line(r: &RunReport) -> String {
    let w: Vec<String> = windows(r).iter().map(|x| format!("{x:.3}")).collect();
    format!("full frames / (n-1) per {WINDOW} messages: {}", w.join(" "))
}

/// Full frames per message over `n - 1`, for each window of [`WINDOW`] messages in sending
/// order: whether the tree settles with time (a warm-up long enough shows flat windows).
fn windows(r: &RunReport) -> Vec<f64> {
    let bound = r.peers.saturating_sub(1).max(1) as f64;
    r.message_frames
        .chunks(WINDOW)
        .map(|c| c.iter().sum::<u64>() as f64 / c.len() as f64 / bound)
        .collect()
}

fn print_row(r: &RunReport, n: usize, d: usize, mode: Mode, setup: Duration, run: Duration) {
    let m = r.messages.max(1) as f64;
    let per_msg = r.full_frames as f64 / m;
    let bound = r.peers.saturating_sub(1).max(1) as f64;
    let (max_hops, mean_hops) = r.hop_summary();
    let (last_mean, last_max) = last_member(r);
    let _ = n;
    println!(
        "| {} | {d} | {} | {:.2} (max {}) | {per_msg:.1} | {:.3} | {:.0} | {:.1} | {max_hops} | {mean_hops:.2} | {last_mean:.0} / {last_max:.0} ms | {:.4} % | {} | {:.2} s | {:.2} s |",
        r.peers,
        mode.name(),
        r.mean_neighbours,
        r.max_neighbours,
        per_msg / bound,
        r.announce_bytes as f64 / m,
        r.duplicates as f64 / m,
        100.0 * r.delivery(),
        if r.exactly_once() { "yes" } else { "NO" },
        setup.as_secs_f64(),
        run.as_secs_f64(),
    );
}

/// Mean and largest time (ms) from a message's send to its display at the last member.
fn last_member(r: &RunReport) -> (f64, f64) {
    let ms: Vec<f64> = r
        .last_member
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    (mean, ms.iter().copied().fold(0.0, f64::max))
}

/// A cumulative curve of first displays over virtual time (ms since the message's send), as
/// a fraction of the expected ones, at most ~200 points.
fn cumulative(r: &RunReport) -> Vec<(f64, f64)> {
    let mut times: Vec<f64> = r.latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    times.sort_by(f64::total_cmp);
    let step = (times.len() / 200).max(1);
    let mut pts = vec![(0.0, 0.0)];
    for (i, t) in times.iter().enumerate() {
        if i % step == 0 || i + 1 == times.len() {
            pts.push((*t, (i + 1) as f64 / r.expected.max(1) as f64));
        }
    }
    pts
}

/// Parses `--partition FRACTION` into a partition over the middle third of the window.
pub fn partition_plan(fraction: f64, window: Duration) -> Partition {
    Partition {
        fraction,
        at: window / 3,
        length: window / 3,
    }
}
