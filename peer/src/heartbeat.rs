//! The UDP presence heartbeat of one login session: signed datagrams at the interval the
//! registry announced, with a counter that starts at 1 and only grows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2pchat_protocol::{Heartbeat, HeartbeatKey};

use crate::io::Output;

/// The heartbeat schedule of one session (a new login or resume starts a new one).
#[derive(Debug)]
pub(crate) struct Heartbeats {
    session: u64,
    key: HeartbeatKey,
    interval: Duration,
    to: SocketAddr,
    counter: u64,
    /// The next beat; `None` while stopped (the registry connection is down).
    next: Option<Instant>,
}

impl Heartbeats {
    /// A schedule whose first beat is due at `now`. Intervals under 100 ms are raised to that.
    pub(crate) fn start(
        now: Instant,
        session: u64,
        key: &[u8; 32],
        interval_ms: u32,
        to: SocketAddr,
    ) -> Heartbeats {
        Heartbeats {
            session,
            key: HeartbeatKey::new(key),
            interval: Duration::from_millis(u64::from(interval_ms.max(100))),
            to,
            counter: 0,
            next: Some(now),
        }
    }

    /// No more beats (until a new session starts).
    pub(crate) fn stop(&mut self) {
        self.next = None;
    }

    /// Sends the beat if it is due. `wall_ms` is the Unix time in milliseconds at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, wall_ms: u64) -> Option<Output> {
        let due = self.next.filter(|t| *t <= now)?;
        self.counter += 1;
        let hb = Heartbeat::sign(&self.key, self.session, self.counter, wall_ms);
        // Keep the cadence; after a long stall (a suspended laptop) start again from now.
        let next = due + self.interval;
        self.next = Some(if next <= now {
            now + self.interval
        } else {
            next
        });
        Some(Output::SendTo {
            to: self.to,
            bytes: Bytes::copy_from_slice(&hb.encode()),
        })
    }

    /// When the next beat is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(out: Option<Output>) -> Heartbeat {
        match out {
            Some(Output::SendTo { bytes, .. }) => Heartbeat::decode(&bytes).unwrap(),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }

    #[test]
    fn schedule_counter_and_stall() {
        // The test's one clock read; everything after is t0 + Duration.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let to = "10.0.0.1:15500".parse().unwrap();
        let mut h = Heartbeats::start(at(0), 5, &[3; 32], 1_000, to);
        assert_eq!(h.poll_timeout(), Some(at(0)));
        let first = beat(h.handle_timeout(at(0), 77));
        assert_eq!((first.session, first.counter, first.sent_ms), (5, 1, 77));
        assert!(first.is_authentic(&HeartbeatKey::new(&[3; 32])));
        assert!(h.handle_timeout(at(999), 0).is_none());
        assert_eq!(beat(h.handle_timeout(at(1_003), 0)).counter, 2);
        assert_eq!(
            h.poll_timeout(),
            Some(at(2_000)),
            "cadence kept despite a late call"
        );
        // A stall of many intervals sends one beat, then restarts from now.
        assert_eq!(beat(h.handle_timeout(at(60_000), 0)).counter, 3);
        assert_eq!(h.poll_timeout(), Some(at(61_000)));
        h.stop();
        assert_eq!(h.poll_timeout(), None);
        assert!(h.handle_timeout(at(100_000), 0).is_none());
    }

    #[test]
    fn tiny_intervals_are_raised() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let to = "10.0.0.1:15500".parse().unwrap();
        let mut h = Heartbeats::start(t0, 1, &[0; 32], 0, to);
        h.handle_timeout(t0, 0);
        assert_eq!(h.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    }
}
