//! `steady`, `login-storm` and `churn`: synthetic peers online through their own nodes.
//!
//! - `steady`: N peers log in (closed loop, a window in flight), then stay online and
//!   heartbeating for `--duration` while a background of `--rate` searches per second (open
//!   loop) runs. Every expiry or registry disconnect is false: nobody died.
//! - `login-storm`: N peers start at `--rate` per second (open loop); register and login
//!   latency from each peer's intended start. Then as `steady`.
//! - `churn`: as `steady`, and at the start of the measured phase a `--churn` fraction of peers
//!   vanish without logout: half crash (sockets closed by the kernel, heartbeats stop), half go
//!   silent (sockets left open, nothing more sent: a machine that lost power), so that only the
//!   heartbeat expiry finds them. Live peers search each vanished one every 100 ms; the
//!   detection time is from the vanishing to the first `offline` answer, one series per kind.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use p2pchat_peer::{Command, NodeEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::logins::{Logins, Target};
use super::{run_tag, split, DRAIN};
use crate::load::peers::{Listen, Pool};
use crate::load::registry::RegistryProc;
use crate::load::schedule::Schedule;
use crate::load::{watch_workers, LoadArgs, Phase, ScenarioName};
use crate::report::{new_hist, Report, Series};

const CHURN_PROBE: Duration = Duration::from_millis(100);

struct Out {
    search: Histogram<u64>,
    register: Histogram<u64>,
    login: Histogram<u64>,
    detection: Histogram<u64>,
    detection_silent: Histogram<u64>,
    issued: u64,
    answered: u64,
    false_expiries: u64,
    disconnects: u64,
    online_at_end: u64,
    killed: u64,
    undetected: u64,
    login_errors: u64,
    datagrams: u64,
    datagrams_dropped: u64,
    error_samples: Vec<String>,
}

struct Plan {
    mode: ScenarioName,
    names: Vec<String>,
    target: Target,
    rate: f64,
    duration: Duration,
    churn: f64,
    login_rate: Option<f64>,
    seed: u64,
}

fn worker(plan: Plan, phase: Arc<Phase>) -> anyhow::Result<Out> {
    let n = plan.names.len();
    let mut pool = Pool::new()?;
    let t0 = Instant::now();
    let schedule = plan.login_rate.map(|r| Schedule::new(t0, r, n as u64));
    let mut logins = Logins::new(plan.names.clone(), plan.target, 64, schedule);
    let login_deadline = t0 + Duration::from_secs(60) + Duration::from_millis(10 * n as u64);
    let mut reported = false;
    // Login phase, until the main thread starts the measured phase for everyone.
    let start = loop {
        let now = Instant::now();
        logins.poll(&mut pool, now)?;
        let cap = logins
            .next_due()
            .map_or(now + Duration::from_millis(20), |d| {
                d.min(now + Duration::from_millis(20))
            });
        let now = pool.turn(cap)?;
        for (i, e) in std::mem::take(&mut pool.events) {
            logins.on_event(&mut pool, now, i, &e);
        }
        if let Some(s) = phase.setup_turn(logins.is_done(), &mut reported, n, "the login phase")? {
            break s;
        }
        if now > login_deadline {
            phase.stop.store(true, Ordering::Relaxed);
            bail!(
                "only {} of {n} peers of one thread logged in within {:?} ({} errors, for example {:?}; {} connections open)",
                logins.online,
                login_deadline - t0,
                logins.errors,
                logins.error_samples,
                pool.connection_count()
            );
        }
    };
    let mut rng = StdRng::seed_from_u64(plan.seed);
    // Churn: kill a fraction now; live peers probe them.
    let mut killed: Vec<(usize, Option<Instant>)> = Vec::new();
    if plan.mode == ScenarioName::Churn {
        let k = ((n as f64) * plan.churn).round() as usize;
        for (j, i) in (0..n).rev().take(k.min(n.saturating_sub(1))).enumerate() {
            pool.kill(i, j & 1 == 0);
            killed.push((i, None));
        }
    }
    let live = n - killed.len();
    let end = start + plan.duration;
    let total = (plan.rate * plan.duration.as_secs_f64()).round() as u64;
    let sched = Schedule::new(start, plan.rate, total);
    let mut pending: Vec<VecDeque<(Instant, bool)>> = vec![VecDeque::new(); n];
    let mut out = Out {
        search: new_hist(),
        register: logins.register.clone(),
        login: logins.login.clone(),
        detection: new_hist(),
        detection_silent: new_hist(),
        issued: 0,
        answered: 0,
        false_expiries: 0,
        disconnects: 0,
        online_at_end: 0,
        killed: killed.len() as u64,
        undetected: 0,
        login_errors: logins.errors,
        datagrams: 0,
        datagrams_dropped: 0,
        error_samples: Vec::new(),
    };
    let dg0 = pool.stats;
    let mut next_probe = start;
    let mut now = Instant::now();
    let drain_end = end + DRAIN;
    while now < drain_end {
        if now < end {
            // Background searches, open loop: op k from a random live peer for a random peer.
            while out.issued < sched.due(now) {
                let who = rng.random_range(0..live);
                let whom = plan.names[rng.random_range(0..n)].clone();
                pending[who].push_back((sched.intended(out.issued), false));
                pool.command(who, now, Command::Search { name: whom });
                out.issued += 1;
            }
            if !killed.is_empty() && now >= next_probe {
                next_probe = now + CHURN_PROBE;
                for &(k, found) in &killed {
                    if found.is_none() {
                        let who = rng.random_range(0..live);
                        pending[who].push_back((now, true));
                        pool.command(
                            who,
                            now,
                            Command::Search {
                                name: plan.names[k].clone(),
                            },
                        );
                    }
                }
            }
        } else if pending.iter().all(|p| p.is_empty()) {
            break;
        }
        let mut cap = sched.next_after(out.issued).unwrap_or(end).min(end);
        if !killed.is_empty() {
            cap = cap.min(next_probe);
        }
        if now >= end {
            cap = drain_end;
        }
        now = pool.turn(cap.max(now))?;
        for (i, e) in std::mem::take(&mut pool.events) {
            match &e {
                NodeEvent::UserOnline { .. }
                | NodeEvent::UserOffline { .. }
                | NodeEvent::UserNotFound { .. } => {
                    let Some((intended, probe)) = pending[i].pop_front() else {
                        continue;
                    };
                    if probe {
                        if let NodeEvent::UserOffline { name } = &e {
                            if let Some(k) = killed.iter_mut().find(|k| plan.names[k.0] == *name) {
                                if k.1.is_none() {
                                    k.1 = Some(now);
                                    // Kill j (from n - 1 down) closed its sockets when j is even.
                                    let closed = (n - 1 - k.0) & 1 == 0;
                                    let h = if closed {
                                        &mut out.detection
                                    } else {
                                        &mut out.detection_silent
                                    };
                                    h.saturating_record(
                                        now.saturating_duration_since(start).as_nanos() as u64,
                                    );
                                }
                            }
                        }
                    } else {
                        out.search.saturating_record(
                            now.saturating_duration_since(intended).as_nanos() as u64,
                        );
                        out.answered += 1;
                        phase.ops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                NodeEvent::RegistryDisconnected => out.disconnects += 1,
                NodeEvent::Error { message } if message.contains("expired") => {
                    out.false_expiries += 1;
                    phase.problem(format!("false expiry of {}: {message}", plan.names[i]));
                }
                _ => {}
            }
        }
    }
    out.undetected = killed.iter().filter(|k| k.1.is_none()).count() as u64;
    out.online_at_end = (0..live)
        .filter(|&i| pool.node(i).is_registry_ready())
        .count() as u64;
    out.datagrams = pool.stats.datagrams - dg0.datagrams;
    out.datagrams_dropped = pool.stats.datagrams_dropped - dg0.datagrams_dropped;
    out.error_samples = logins.error_samples.clone();
    phase.finish_and_wait();
    Ok(out)
}

/// Runs `steady`, `login-storm` or `churn`.
pub fn run(
    args: &LoadArgs,
    reg: &mut RegistryProc,
    phase: &Arc<Phase>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let threads = args.threads();
    let tag = run_tag();
    let rate = args.rate.unwrap_or(match args.scenario {
        ScenarioName::LoginStorm => 0.0,
        _ => 100.0,
    });
    let login_rate = match args.scenario {
        ScenarioName::LoginStorm => Some(args.rate.unwrap_or(1000.0)),
        _ => None,
    };
    let parts = split(args.peers, threads);
    let k = parts.len() as f64;
    let mut handles = Vec::new();
    for (t, part) in parts.into_iter().enumerate() {
        let plan = Plan {
            mode: args.scenario,
            names: part.iter().map(|i| format!("{tag}_{i}")).collect(),
            target: Target {
                registry: reg.tcp,
                registry_udp: reg.udp,
                listen: Listen::Shared,
                degree: args.degree,
                seed: args
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add(t as u64 * 1_000_000),
            },
            rate: if args.scenario == ScenarioName::LoginStorm {
                0.0
            } else {
                rate / k
            },
            duration: args.duration,
            churn: args.churn,
            login_rate: login_rate.map(|r| r / k),
            seed: args.seed ^ (t as u64 + 1),
        };
        let phase = Arc::clone(phase);
        handles.push(
            std::thread::Builder::new()
                .name(format!("peers-{t}"))
                .spawn(move || worker(plan, phase))?,
        );
    }
    let t0 = Instant::now();
    let (outs, watch) = watch_workers(
        phase,
        reg.pid,
        handles,
        args.peers as u64,
        "logging in",
        &mut || Ok(None),
    )?;
    let login_s = phase
        .start
        .get()
        .map_or(0.0, |s| s.saturating_duration_since(t0).as_secs_f64());
    let mut search = Series::new("search", "search round trip from its intended send time");
    let mut register = Series::new("register", "register, from the peer's intended start");
    let mut login = Series::new("login", "login, from Registered to LoggedIn");
    let mut detection = Series::new(
        "detection_crash",
        "from a peer crashing (sockets closed) to the registry saying offline",
    );
    let mut silent = Series::new(
        "detection_silent",
        "from a peer going silent (sockets open, no heartbeats) to the registry saying offline",
    );
    silent.cdf = true;
    let sum = |f: &dyn Fn(&Out) -> u64| outs.iter().map(f).sum::<u64>();
    for o in &outs {
        search.hist.add(&o.search)?;
        register.hist.add(&o.register)?;
        login.hist.add(&o.login)?;
        detection.hist.add(&o.detection)?;
        silent.hist.add(&o.detection_silent)?;
    }
    let answered = sum(&|o| o.answered);
    let online = sum(&|o| o.online_at_end);
    let secs = args.duration.as_secs_f64();
    report.figure("requests", sum(&|o| o.issued) as f64);
    report.figure("requests_answered", answered as f64);
    report.figure("throughput_per_s", answered as f64 / secs);
    report.figure("false_expiries", sum(&|o| o.false_expiries) as f64);
    report.figure("registry_disconnects", sum(&|o| o.disconnects) as f64);
    report.figure("online_at_end", online as f64);
    report.figure("peers", args.peers as f64);
    report.figure("login_phase_s", login_s);
    report.figure("login_errors_retried", sum(&|o| o.login_errors) as f64);
    report.figure("heartbeats_per_s", sum(&|o| o.datagrams) as f64 / secs);
    report.figure(
        "heartbeats_dropped_by_sender",
        sum(&|o| o.datagrams_dropped) as f64,
    );
    let samples: Vec<&String> = outs.iter().flat_map(|o| &o.error_samples).collect();
    report
        .generator
        .insert("login_error_samples".into(), json!(samples));
    let ops = answered + sum(&|o| o.datagrams);
    match args.scenario {
        ScenarioName::LoginStorm => {
            report.headline = format!(
                "load login-storm: {} peers at {:.0} logins/s, {threads} threads",
                args.peers,
                login_rate.unwrap_or(0.0)
            );
            report.figure("logins_per_s", args.peers as f64 / login_s.max(1e-9));
            report.series = vec![register, login];
        }
        ScenarioName::Churn => {
            let killed = sum(&|o| o.killed);
            report.headline = format!(
                "load churn: {} peers, {killed} vanish without logout, heartbeat timeout {:?}, {threads} threads",
                args.peers, args.heartbeat_timeout
            );
            report.figure("vanished", killed as f64);
            report.figure("undetected", sum(&|o| o.undetected) as f64);
            report.figure("detection_resolution_ms", CHURN_PROBE.as_secs_f64() * 1e3);
            report.series = vec![silent, detection, search];
            if sum(&|o| o.undetected) > 0 {
                report.problems.push(format!(
                    "{} vanished peers were still online at the end (run longer than the heartbeat timeout)",
                    sum(&|o| o.undetected)
                ));
            }
        }
        _ => {
            report.headline = format!(
                "load steady: {} peers online for {secs:.0}s, {rate:.0} searches/s in the background, {threads} threads",
                args.peers
            );
            report.series = vec![search, login, register];
        }
    }
    let expected_online = args.peers as u64 - sum(&|o| o.killed);
    if online < expected_online {
        report.problems.push(format!(
            "only {online} of {expected_online} peers online at the end"
        ));
    }
    if let Some(w) = watch {
        w.finish(report, ops, online);
    }
    report.figure("registry_ops", ops as f64);
    Ok(())
}
