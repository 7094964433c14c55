//! Open-loop scheduling, as wrk2 does it: operation `i` is *intended* to start at
//! `start + i / rate`, whatever happened to the ones before it. Latency is counted from that
//! intended time, so a stall of the system under test shows up in every operation it delayed
//! instead of hiding behind a sender that waited (coordinated omission).
//!
//! The arithmetic is exact integer nanoseconds from the start (no accumulated rounding), so a
//! long run at a high rate does not drift.

use std::time::{Duration, Instant};

/// A fixed-rate plan of operations from `start`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    /// Operations per second (> 0).
    rate: f64,
    /// Total operations planned (`u64::MAX`: unbounded).
    total: u64,
}

impl Schedule {
    /// `rate` operations per second from `start`, `total` of them. A rate <= 0 plans nothing.
    pub fn new(start: Instant, rate: f64, total: u64) -> Schedule {
        Schedule {
            start,
            rate: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                0.0
            },
            total: if rate > 0.0 { total } else { 0 },
        }
    }

    /// The planned rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Total operations planned.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When operation `i` (from 0) is intended to start.
    pub fn intended(&self, i: u64) -> Instant {
        if self.rate == 0.0 {
            return self.start;
        }
        // i / rate seconds, in ns; u128 so that i * 1e9 cannot overflow.
        let ns = (i as u128 * 1_000_000_000u128) as f64 / self.rate;
        self.start + Duration::from_nanos(ns.min(u64::MAX as f64) as u64)
    }

    /// How many operations are due by `now` (those with `intended(i) <= now`), capped at the
    /// total.
    pub fn due(&self, now: Instant) -> u64 {
        if self.rate == 0.0 || now < self.start {
            return 0;
        }
        let elapsed = now.duration_since(self.start).as_nanos() as f64;
        let n = (elapsed * self.rate / 1e9).floor() as u64 + 1;
        // Floating rounding can put the boundary one off: settle it with `intended` itself.
        let n = if n > 0 && self.intended(n - 1) > now {
            n - 1
        } else if self.intended(n) <= now {
            n + 1
        } else {
            n
        };
        n.min(self.total)
    }

    /// When the next operation after the first `done` is due; `None` when all are planned.
    pub fn next_after(&self, done: u64) -> Option<Instant> {
        (done < self.total).then(|| self.intended(done))
    }

    /// Latency of operation `i` finishing at `end`, from its intended start (zero if early).
    pub fn latency(&self, i: u64, end: Instant) -> Duration {
        end.saturating_duration_since(self.intended(i))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one real anchor; all arithmetic is relative to it
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_exact_multiples_of_the_interval() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0, u64::MAX);
        assert_eq!(s.intended(0), t0);
        assert_eq!(s.intended(1), t0 + Duration::from_millis(1));
        assert_eq!(s.intended(1000), t0 + Duration::from_secs(1));
        // No drift after a billion operations at 3 per second.
        let s = Schedule::new(t0, 3.0, u64::MAX);
        assert_eq!(
            s.intended(3_000_000_000),
            t0 + Duration::from_secs(1_000_000_000)
        );
    }

    #[test]
    fn due_counts_operations_whose_time_has_come() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 100.0, 1000);
        assert_eq!(s.due(t0), 1, "operation 0 is due at the start");
        assert_eq!(s.due(t0 + Duration::from_micros(9_999)), 1);
        assert_eq!(s.due(t0 + Duration::from_millis(10)), 2);
        assert_eq!(s.due(t0 + Duration::from_secs(1)), 101);
        assert_eq!(
            s.due(t0 + Duration::from_secs(100)),
            1000,
            "capped at the total"
        );
        for i in 0..500 {
            assert_eq!(s.due(s.intended(i)), i + 1);
        }
    }

    #[test]
    fn latency_counts_from_the_intended_start_not_the_late_send() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 10.0, 100);
        // Operation 5 was intended at 500 ms; the sender stalled and it finished at 900 ms.
        let end = t0 + Duration::from_millis(900);
        assert_eq!(s.latency(5, end), Duration::from_millis(400));
        assert_eq!(s.latency(50, end), Duration::ZERO);
        assert_eq!(s.next_after(99), Some(s.intended(99)));
        assert_eq!(s.next_after(100), None);
    }

    #[test]
    fn a_zero_rate_plans_nothing() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 0.0, 100);
        assert_eq!(s.total(), 0);
        assert_eq!(s.due(t0 + Duration::from_secs(5)), 0);
        assert_eq!(s.next_after(0), None);
    }
}
