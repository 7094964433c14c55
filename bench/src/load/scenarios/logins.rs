//! Bringing synthetic peers online: each peer dials, registers and logs in through its own
//! node, like a user typing `/register` and `/login`. Closed-loop with a window of peers in
//! flight (steady, churn, rooms), or open-loop at a rate (login-storm), with the latency of
//! each step from its intended start.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use p2pchat_peer::{Command, NodeEvent, Password};

use super::super::peers::{Listen, Pool};
use super::super::schedule::Schedule;
use crate::report::new_hist;

/// The password every synthetic account uses.
pub const PASSWORD: &str = "password1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Registering,
    LoggingIn,
    Online,
}

/// Where the peers log in and how they listen.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Registry TCP address.
    pub registry: SocketAddr,
    /// Registry UDP address, when known.
    pub registry_udp: Option<SocketAddr>,
    /// Listener mode.
    pub listen: Listen,
    /// Room overlay degree.
    pub degree: usize,
    /// Seed base for the nodes' RNGs.
    pub seed: u64,
}

/// The login phase of one pool. Peer `k` of `names` becomes pool index `k`.
pub struct Logins {
    names: Vec<String>,
    state: Vec<St>,
    /// When each peer's current step was intended to start.
    step_start: Vec<Instant>,
    started: usize,
    in_flight: usize,
    window: usize,
    schedule: Option<Schedule>,
    retry: VecDeque<(Instant, usize)>,
    target: Target,
    /// Register latency (intended start to `Registered`).
    pub register: Histogram<u64>,
    /// Login latency (`Registered` to `LoggedIn`).
    pub login: Histogram<u64>,
    /// Peers online.
    pub online: usize,
    /// Errors seen (retried).
    pub errors: u64,
    /// The first few distinct error messages.
    pub error_samples: Vec<String>,
}

impl Logins {
    /// Logs in `names` with at most `window` peers in flight, or at `schedule` when given.
    pub fn new(
        names: Vec<String>,
        target: Target,
        window: usize,
        schedule: Option<Schedule>,
    ) -> Logins {
        let n = names.len();
        Logins {
            state: vec![St::Registering; n],
            step_start: Vec::with_capacity(n),
            names,
            started: 0,
            in_flight: 0,
            window: window.max(1),
            schedule,
            retry: VecDeque::new(),
            target,
            register: new_hist(),
            login: new_hist(),
            online: 0,
            errors: 0,
            error_samples: Vec::new(),
        }
    }

    /// Whether every peer is online.
    pub fn is_done(&self) -> bool {
        self.online == self.names.len()
    }

    /// The name of peer `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The next moment `poll` has work (a scheduled start or a retry).
    pub fn next_due(&self) -> Option<Instant> {
        let sched = self
            .schedule
            .and_then(|s| s.next_after(self.started as u64));
        let retry = self.retry.front().map(|r| r.0);
        match (sched, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts the peers that are due and retries that are due.
    pub fn poll(&mut self, pool: &mut Pool, now: Instant) -> anyhow::Result<()> {
        while let Some(&(t, i)) = self.retry.front() {
            if t > now {
                break;
            }
            self.retry.pop_front();
            self.send_step(pool, now, i);
        }
        loop {
            if self.started == self.names.len() {
                return Ok(());
            }
            let intended = match self.schedule {
                Some(s) => {
                    if s.due(now) <= self.started as u64 {
                        return Ok(());
                    }
                    s.intended(self.started as u64)
                }
                None => {
                    if self.in_flight >= self.window {
                        return Ok(());
                    }
                    now
                }
            };
            let k = self.started;
            let i = pool.add(
                now,
                self.target.registry,
                self.target.registry_udp,
                self.target.listen,
                self.target.degree,
                self.target.seed.wrapping_add(k as u64),
            )?;
            debug_assert_eq!(i, k, "peer k is pool index k");
            self.started += 1;
            self.in_flight += 1;
            self.step_start.push(intended);
            self.send_step(pool, now, k);
        }
    }

    fn send_step(&mut self, pool: &mut Pool, now: Instant, i: usize) {
        let name = self.names[i].clone();
        let password = Some(Password(PASSWORD.into()));
        let c = match self.state[i] {
            St::Registering => Command::Register { name, password },
            St::LoggingIn => Command::Login { name, password },
            St::Online => return,
        };
        pool.command(i, now, c);
    }

    /// Handles an event of peer `i`; `true` when it belonged to the login phase.
    pub fn on_event(&mut self, pool: &mut Pool, now: Instant, i: usize, e: &NodeEvent) -> bool {
        if i >= self.state.len() {
            return false;
        }
        match (self.state[i], e) {
            (St::Registering, NodeEvent::Registered { .. }) => {
                self.register.saturating_record(
                    now.saturating_duration_since(self.step_start[i]).as_nanos() as u64,
                );
                self.state[i] = St::LoggingIn;
                self.step_start[i] = now;
                self.send_step(pool, now, i);
                true
            }
            (St::LoggingIn, NodeEvent::LoggedIn { .. }) => {
                self.login.saturating_record(
                    now.saturating_duration_since(self.step_start[i]).as_nanos() as u64,
                );
                self.state[i] = St::Online;
                self.online += 1;
                self.in_flight -= 1;
                true
            }
            (St::LoggingIn | St::Online, NodeEvent::Error { message })
                if message.contains("already logged in") =>
            {
                // A login retried after an error whose first attempt went through after all:
                // the LoggedIn event settles it.
                true
            }
            (St::Registering, NodeEvent::Error { message }) if message.contains("taken") => {
                // An account left by an earlier run against the same registry: log in.
                self.state[i] = St::LoggingIn;
                self.send_step(pool, now, i);
                true
            }
            (St::Registering | St::LoggingIn, NodeEvent::Error { message }) => {
                // Busy, rate limited, or the link dropped: try this step again shortly.
                self.errors += 1;
                if self.error_samples.len() < 5 && !self.error_samples.contains(message) {
                    self.error_samples.push(message.clone());
                }
                self.retry.push_back((now + Duration::from_millis(100), i));
                true
            }
            _ => false,
        }
    }
}
