//! `requests`: search, online-list and ping against the registry over `--connections`
//! logged-in connections, open loop at `--rate` (latency from the intended send time), or
//! with `--pipeline K` as fast as possible with K requests in flight per connection (closed
//! loop: latency from the actual send; throughput is the figure that matters).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{run_tag, split, DRAIN};
use crate::load::client::{Answer, Kind, RawPool};
use crate::load::registry::RegistryProc;
use crate::load::schedule::Schedule;
use crate::load::{watch_workers, LoadArgs, Phase};
use crate::report::{new_hist, Report, Series};

struct Out {
    hist: Histogram<u64>,
    sent: u64,
    answered: u64,
    errors: u64,
}

struct Plan {
    names: Vec<String>,
    registry: std::net::SocketAddr,
    registry_udp: Option<std::net::SocketAddr>,
    mix: Vec<Kind>,
    rate: f64,
    pipeline: usize,
    duration: Duration,
    seed: u64,
}

fn worker(plan: Plan, phase: Arc<Phase>) -> anyhow::Result<Out> {
    let n = plan.names.len();
    let mut pool = RawPool::connect(plan.registry, plan.registry_udp, plan.names.clone())?;
    let mut answers: Vec<Answer> = Vec::new();
    let t0 = Instant::now();
    let mut reported = false;
    let start = loop {
        let now = pool.turn(Instant::now() + Duration::from_millis(20), &mut answers)?;
        if let Some(s) = phase.setup_turn(pool.ready == n, &mut reported, n, "login")? {
            break s;
        }
        if now > t0 + Duration::from_secs(60) {
            phase.stop.store(true, Ordering::Relaxed);
            bail!(
                "only {} of {n} connections logged in within 60 s",
                pool.ready
            );
        }
    };
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut out = Out {
        hist: new_hist(),
        sent: 0,
        answered: 0,
        errors: 0,
    };
    let end = start + plan.duration;
    let closed = plan.pipeline > 0;
    let total = if closed {
        0
    } else {
        (plan.rate * plan.duration.as_secs_f64()).round() as u64
    };
    let sched = Schedule::new(start, plan.rate, total);
    let mut now = Instant::now();
    let mut op = 0u64;
    // Each connection searches for a random logged-in user of this thread.
    for i in 0..n {
        let t = rng.random_range(0..n);
        let name = pool.name(t).to_string();
        pool.set_search_target(i, &name);
    }
    let kind_of = |op: u64| plan.mix[(op % plan.mix.len() as u64) as usize];
    if closed {
        for i in 0..n {
            for _ in 0..plan.pipeline {
                pool.request(i, kind_of(op), now);
                op += 1;
            }
        }
    }
    loop {
        if now < end && !closed {
            let due = sched.due(now);
            while op < due {
                pool.request((op % n as u64) as usize, kind_of(op), sched.intended(op));
                op += 1;
            }
        }
        if now >= end && (0..n).all(|i| pool.inflight(i) == 0) {
            break;
        }
        if now >= end + DRAIN {
            break;
        }
        let cap = if now >= end {
            end + DRAIN
        } else if closed {
            end
        } else {
            sched.next_after(op).unwrap_or(end).min(end)
        };
        answers.clear();
        now = pool.turn(cap.max(now), &mut answers)?;
        let mut counted = 0;
        for a in &answers {
            if a.from < end {
                out.hist
                    .saturating_record(now.saturating_duration_since(a.from).as_nanos() as u64);
                out.answered += 1;
                counted += 1;
            }
            if closed && now < end {
                pool.request(a.conn, kind_of(op), now);
                op += 1;
            }
        }
        phase.ops.fetch_add(counted, Ordering::Relaxed);
    }
    out.sent = op;
    out.errors = pool.request_errors;
    phase.finish_and_wait();
    Ok(out)
}

/// Runs `requests`.
pub fn run(
    args: &LoadArgs,
    reg: &mut RegistryProc,
    phase: &Arc<Phase>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mix: Vec<Kind> = args
        .mix
        .iter()
        .map(|s| {
            Kind::parse(s)
                .ok_or_else(|| anyhow::anyhow!("unknown request kind {s:?} (search, list, ping)"))
        })
        .collect::<Result<_, _>>()?;
    if mix.is_empty() || args.connections == 0 {
        bail!("requests needs --connections >= 1 and a --mix");
    }
    let threads = args.threads();
    let rate = args.rate.unwrap_or(1000.0);
    let tag = run_tag();
    let parts = split(args.connections, threads);
    let k = parts.len() as f64;
    let mut handles = Vec::new();
    for (t, part) in parts.into_iter().enumerate() {
        let plan = Plan {
            names: part.iter().map(|i| format!("{tag}_{i}")).collect(),
            registry: reg.tcp,
            registry_udp: reg.udp,
            mix: mix.clone(),
            rate: rate / k,
            pipeline: args.pipeline,
            duration: args.duration,
            seed: args.seed ^ (t as u64 + 1),
        };
        let phase = Arc::clone(phase);
        handles.push(
            std::thread::Builder::new()
                .name(format!("requests-{t}"))
                .spawn(move || worker(plan, phase))?,
        );
    }
    let (outs, watch) = watch_workers(
        phase,
        reg.pid,
        handles,
        args.connections as u64,
        "connecting",
        &mut || Ok(None),
    )?;
    let mode = if args.pipeline > 0 {
        format!("closed loop, {} in flight per connection", args.pipeline)
    } else {
        format!("open loop at {rate:.0}/s")
    };
    let what = if args.pipeline > 0 {
        "request round trip from its send (closed loop)"
    } else {
        "request round trip from its intended send time"
    };
    let mut s = Series::new("requests", what);
    for o in &outs {
        s.hist.add(&o.hist)?;
    }
    let answered: u64 = outs.iter().map(|o| o.answered).sum();
    let secs = args.duration.as_secs_f64();
    report.headline = format!(
        "load requests: {} over {} connections, {mode}, {threads} threads",
        args.mix.join("+"),
        args.connections
    );
    report
        .params
        .insert("connections".into(), serde_json::json!(args.connections));
    report
        .params
        .insert("pipeline".into(), serde_json::json!(args.pipeline));
    report
        .params
        .insert("mix".into(), serde_json::json!(args.mix));
    report.figure("requests", outs.iter().map(|o| o.sent).sum::<u64>() as f64);
    report.figure("requests_answered", answered as f64);
    report.figure("throughput_per_s", answered as f64 / secs);
    report.figure("connections", args.connections as f64);
    let errors: u64 = outs.iter().map(|o| o.errors).sum();
    report.figure("request_errors", errors as f64);
    if errors > 0 {
        report
            .problems
            .push(format!("{errors} requests answered with an error"));
    }
    report.series = vec![s];
    if let Some(w) = watch {
        w.finish(report, answered, args.connections as u64);
    }
    Ok(())
}
