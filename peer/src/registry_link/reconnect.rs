//! Losing and regaining the registry connection: reconnect with backoff, liveness pings, the
//! dead-link verdict, heartbeats and the link's deadlines.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use log::{debug, warn};
use p2pchat_protocol::Msg;
use rand::rngs::StdRng;
use rand::Rng;

use super::{event, Conn, Outcome, RegistryLink, Request, BACKOFF_GROWTH, TICKET_RENEW_PINGS};
use crate::io::{CloseReason, Config, LinkId, NodeEvent, Output};
use crate::link::FrameReader;

impl RegistryLink {
    /// The driver reports the connection gone.
    pub(crate) fn handle_closed(
        &mut self,
        now: Instant,
        link: LinkId,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if self.owns(link) {
            self.lost(now, config, rng, out, outcomes);
        }
    }

    /// Not logged in, and nothing but our own keepalive pings waits for an answer.
    pub(super) fn is_idle_without_session(&self) -> bool {
        self.session.is_none() && self.pending.values().all(|r| matches!(r, Request::Ping))
    }

    /// Closes the connection ourselves, then handles it as lost.
    pub(super) fn drop_link(
        &mut self,
        now: Instant,
        reason: CloseReason,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if let Conn::Connecting { link, .. }
        | Conn::ExpectWelcome { link, .. }
        | Conn::Ready { link, .. } = self.conn
        {
            warn!("closing the registry link: {reason}");
            out.push_back(Output::Close { link, reason });
        }
        self.lost(now, config, rng, out, outcomes);
    }

    /// The connection is gone: report, fail what waited for it, schedule a reconnect.
    pub(super) fn lost(
        &mut self,
        now: Instant,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        // A login whose ticket did not come is still a login.
        if let Some(ev) = self.announce_login.take() {
            event(out, ev);
        }
        // Without a session and with nothing in flight, losing the link changes nothing the
        // user can see (the registry closes pre-login connections after a deadline): it is
        // re-opened quietly rather than announced as lost and found.
        let quiet = self.is_idle_without_session();
        self.parts.clear();
        if matches!(self.conn, Conn::Ready { .. }) && !self.announce_reconnect && !quiet {
            event(out, NodeEvent::RegistryDisconnected);
            self.announce_reconnect = true;
        } else if !self.ever_connected && !self.reported_unreachable {
            self.reported_unreachable = true;
            let addr = config.registry;
            event(
                out,
                NodeEvent::error(format!("cannot reach the registry at {addr}; retrying")),
            );
        }
        for (_, req) in std::mem::take(&mut self.pending) {
            match req {
                Request::Ping | Request::Resume => {}
                Request::Logout => event(out, NodeEvent::LoggedOut),
                Request::Search {
                    name,
                    for_chat: true,
                } => outcomes.push(Outcome::ChatSearch {
                    query: name,
                    result: Err("disconnected from registry".into()),
                }),
                _ => event(
                    out,
                    NodeEvent::error("disconnected from registry before it answered"),
                ),
            }
        }
        if let Some(s) = &mut self.session {
            s.heartbeats.stop();
        }
        self.reader = FrameReader::new(config.max_frame);
        let delay = self.backoff(config, rng);
        debug!("reconnecting to the registry in {delay:?}");
        self.conn = Conn::Backoff { until: now + delay };
    }

    /// The next reconnect delay: growing by half per failed attempt from `backoff_min` up to
    /// `backoff_max`, then a random point in its upper half ("equal jitter"), so that peers cut
    /// off together do not all come back in the same instant. Half, not double: when a
    /// registry restarts under thousands of peers (a second or two down), doubling had put the
    /// next attempts 2-4 s apart, so the last peers came back seconds after the registry was
    /// up; growing by 1.5 keeps the gap near the outage under ~1.3 s and still reaches the
    /// 10 s cap within seven failures (a refused connect costs the registry nothing).
    pub(super) fn backoff(&mut self, config: &Config, rng: &mut StdRng) -> Duration {
        let factor = BACKOFF_GROWTH.powi(self.attempts.min(32) as i32);
        // Out of range (a huge configured minimum) means "as long as allowed".
        let grown = Duration::try_from_secs_f64(config.backoff_min.as_secs_f64() * factor)
            .unwrap_or(Duration::MAX);
        let base = grown.min(config.backoff_max);
        self.attempts = self.attempts.saturating_add(1);
        let half = base / 2;
        let jitter_ms = rng.random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Reconnects, pings, detects a dead link and sends heartbeats, as their times come.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        wall_ms: u64,
        link_for_dial: impl FnOnce() -> LinkId,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        match self.conn {
            Conn::Backoff { until } if until <= now => {
                let link = link_for_dial();
                debug!(
                    "connecting to the registry at {} ({link:?})",
                    config.registry
                );
                self.conn = Conn::Connecting {
                    link,
                    deadline: now + config.handshake_timeout,
                };
                out.push_back(Output::Connect {
                    link,
                    addr: config.registry,
                });
            }
            Conn::Backoff { .. } => {}
            Conn::Connecting { deadline, .. } | Conn::ExpectWelcome { deadline, .. } => {
                if deadline <= now {
                    let reason = CloseReason::HandshakeTimeout;
                    self.drop_link(now, reason, config, rng, out, outcomes);
                }
            }
            Conn::Ready {
                link,
                last_rx,
                next_ping,
                ..
            } => {
                if last_rx + config.ping_interval * 2 <= now {
                    self.drop_link(now, CloseReason::Silent, config, rng, out, outcomes);
                    return;
                }
                if self.reader.deadline(config).is_some_and(|t| t <= now) {
                    self.drop_link(now, CloseReason::FrameTimeout, config, rng, out, outcomes);
                    return;
                }
                if next_ping <= now {
                    if !self.pending.values().any(|r| *r == Request::Ping) {
                        self.send_request(link, Request::Ping, Msg::Ping, out);
                    }
                    let renew = self.session.as_mut().is_some_and(|s| {
                        s.pings += 1;
                        s.pings % TICKET_RENEW_PINGS == 0
                    });
                    if renew {
                        let _ = self.request_ticket(config, out);
                    }
                    if let Conn::Ready { next_ping, .. } = &mut self.conn {
                        *next_ping = now + config.ping_interval;
                    }
                }
                self.heartbeat(now, wall_ms, out);
            }
        }
    }

    pub(super) fn heartbeat(&mut self, now: Instant, wall_ms: u64, out: &mut VecDeque<Output>) {
        if let Some(s) = &mut self.session {
            out.extend(s.heartbeats.handle_timeout(now, wall_ms));
        }
    }

    /// The earliest deadline of the registry link.
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        let conn = match self.conn {
            Conn::Backoff { until } => until,
            Conn::Connecting { deadline, .. } | Conn::ExpectWelcome { deadline, .. } => deadline,
            Conn::Ready {
                last_rx, next_ping, ..
            } => next_ping.min(last_rx + config.ping_interval * 2),
        };
        let heartbeat = self
            .session
            .as_ref()
            .and_then(|s| s.heartbeats.poll_timeout());
        [Some(conn), heartbeat, self.reader.deadline(config)]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::net::SocketAddr;

    fn config() -> Config {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("a literal address");
        Config::new(addr, addr)
    }

    /// Each delay lies in the upper half of a base that grows by half per failure from
    /// `backoff_min` and stops at `backoff_max`; a success starts over.
    #[test]
    fn reconnect_delays_grow_by_half_up_to_the_cap_with_equal_jitter() {
        let config = config();
        // Any instant: the delays do not depend on it.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        for seed_round in 0..20 {
            let mut link = RegistryLink::new(now, &config);
            let mut base = config.backoff_min.as_secs_f64();
            for attempt in 0..12 {
                let delay = link.backoff(&config, &mut rng).as_secs_f64();
                let capped = base.min(config.backoff_max.as_secs_f64());
                assert!(
                    delay >= capped / 2.0 - 1e-3 && delay <= capped + 1e-3,
                    "round {seed_round} attempt {attempt}: {delay} s outside [{}, {capped}]",
                    capped / 2.0
                );
                base *= BACKOFF_GROWTH;
            }
            assert!(
                base > config.backoff_max.as_secs_f64(),
                "the cap was reached"
            );
        }
    }

    #[test]
    fn a_huge_minimum_means_the_cap_not_a_panic() {
        let config = Config {
            backoff_min: Duration::from_secs(u64::MAX / 4),
            ..config()
        };
        #[allow(clippy::disallowed_methods)]
        let mut link = RegistryLink::new(Instant::now(), &config);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..40 {
            assert!(link.backoff(&config, &mut rng) <= config.backoff_max);
        }
    }
}
