//! The `load` scenarios. Each starts its worker threads (one reactor each), lets
//! [`watch_workers`](super::watch_workers) start the measured phase once every peer is ready,
//! and fills a [`Report`].

pub mod login_stall;
pub mod logins;
pub mod requests;
pub mod room_flood;
pub mod steady;

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use super::registry::{default_bin, RegistryProc, Spawn};
use super::{floor, LoadArgs, Phase, ScenarioName};
use crate::report::Report;

/// Default PBKDF2 iterations of a registry the tool starts: cheap, so that logins measure the
/// registry rather than the hash (login-stall measures the hash and uses the real default).
pub const DEFAULT_ITERATIONS: u32 = 1000;

/// Starts or attaches to the registry.
pub fn registry(args: &LoadArgs) -> anyhow::Result<RegistryProc> {
    if let Some(addr) = args.registry {
        if !addr.ip().is_loopback() {
            bail!("load runs only against 127.0.0.1 (got {addr})");
        }
        return Ok(RegistryProc::attach(addr, args.registry_pid));
    }
    let bin = match &args.registry_bin {
        Some(b) => b.clone(),
        None => default_bin()?,
    };
    let iterations = args.iterations.unwrap_or(match args.scenario {
        ScenarioName::LoginStall => 600_000,
        _ => DEFAULT_ITERATIONS,
    });
    RegistryProc::start(Spawn {
        bin,
        iterations,
        max_clients: args.total_peers() + 1000,
        heartbeat_timeout: args.heartbeat_timeout,
    })
}

/// A name prefix unique to this run, so repeated runs against one registry do not collide.
pub fn run_tag() -> String {
    format!("b{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// Splits peers `0..n` over `threads`: thread `t` gets every `threads`-th peer from `t`.
pub fn split(n: usize, threads: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); threads.min(n).max(1)];
    let k = out.len();
    for i in 0..n {
        out[i % k].push(i);
    }
    out
}

/// Runs the scenario in `args`.
pub fn run(args: &LoadArgs) -> anyhow::Result<Report> {
    let mut reg = registry(args)?;
    let name = format!("{:?}", args.scenario);
    let mut report = Report::new("load", &kebab(&name));
    report.floor.engine_echo = Some(floor::engine_echo(2000)?);
    report.floor.registry_ping = Some(floor::registry_ping(reg.tcp, 1000)?);
    report
        .params
        .insert("peers".into(), json!(args.total_peers()));
    report
        .params
        .insert("duration_s".into(), json!(args.duration.as_secs_f64()));
    report.params.insert("rate".into(), json!(args.rate));
    report
        .params
        .insert("threads".into(), json!(args.threads()));
    report.params.insert("seed".into(), json!(args.seed));
    report
        .params
        .insert("registry_started_by_tool".into(), json!(reg.is_owned()));
    report.params.insert(
        "heartbeat_timeout_s".into(),
        json!(args.heartbeat_timeout.as_secs_f64()),
    );
    let phase = Arc::new(Phase::default());
    match args.scenario {
        ScenarioName::Steady | ScenarioName::Churn | ScenarioName::LoginStorm => {
            steady::run(args, &mut reg, &phase, &mut report)?
        }
        ScenarioName::Requests => requests::run(args, &mut reg, &phase, &mut report)?,
        ScenarioName::RoomFlood | ScenarioName::ReconnectStorm => {
            room_flood::run(args, &mut reg, &phase, &mut report)?
        }
        ScenarioName::LoginStall => login_stall::run(args, reg.tcp, reg.pid, &mut report)?,
    }
    if let Ok(p) = phase.problems.lock() {
        report.problems.extend(p.iter().cloned());
    }
    report.finish();
    Ok(report)
}

fn kebab(camel: &str) -> String {
    let mut s = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            s.push('-');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// Grace after the measured phase for answers still in flight.
pub const DRAIN: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_round_robin() {
        assert_eq!(split(5, 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(split(1, 4), vec![vec![0]]);
        assert_eq!(kebab("ReconnectStorm"), "reconnect-storm");
    }
}
