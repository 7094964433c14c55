//! Abuse limits: token buckets per source address and exponential backoff per account name
//! and source. Both maps are pruned by housekeeping, so a flood of distinct sources or names
//! cannot grow memory without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The unit a per-source limit counts: an IPv4 address, or an IPv6 /64 (one host is usually
/// given a whole /64, so counting single IPv6 addresses would let it rotate past any limit).
/// An IPv4-mapped IPv6 address counts as its IPv4 address.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by source address.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimit {
    pub(crate) fn new(per_min: u32, burst: u32) -> Self {
        RateLimit {
            per_sec: f64::from(per_min) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `ip`, or says how long until one is available.
    pub(crate) fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let (per_sec, burst) = (self.per_sec, self.burst);
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        if per_sec <= 0.0 {
            return Err(Duration::from_secs(60));
        }
        Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
    }

    /// Forgets buckets that have refilled: they carry no information.
    pub(crate) fn prune(&mut self, now: Instant) {
        let (per_sec, burst) = (self.per_sec, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * per_sec < burst
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Exponential backoff after repeated failures. The registry keys it by account name (known or
/// not, so the answer does not reveal whether an account exists) *and* source, so a stranger's
/// failures never delay the owner's logins from the owner's own address.
#[derive(Debug)]
pub(crate) struct Backoff<K> {
    after: u32,
    max: Duration,
    failures: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    pub(crate) fn new(after: u32, max: Duration) -> Self {
        Backoff {
            after,
            max,
            failures: HashMap::new(),
        }
    }

    /// How long `key` must still wait, if it is backing off.
    pub(crate) fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let f = self.failures.get(key)?;
        let until = f.last + self.delay(f.count);
        (until > now).then(|| until - now)
    }

    /// The delay after `count` consecutive failures: none for the first `after`, then 1 s
    /// doubling up to `max`.
    fn delay(&self, count: u32) -> Duration {
        if count < self.after {
            return Duration::ZERO;
        }
        let exp = (count - self.after).min(20);
        Duration::from_secs(1u64 << exp).min(self.max)
    }

    /// Counts one failure. The registry counts each attempt when it is *made* (before its hash
    /// runs) and forgives it on success, so attempts in flight at once see each other.
    pub(crate) fn fail(&mut self, key: K, now: Instant) {
        let f = self.failures.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
    }

    pub(crate) fn succeed(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Forgets failures older than the longest backoff: they no longer delay anyone.
    pub(crate) fn prune(&mut self, now: Instant) {
        let keep = self.max * 2;
        self.failures
            .retain(|_, f| now.saturating_duration_since(f.last) < keep);
    }
}

#[cfg(test)]
// Tests anchor their virtual clock at one real instant and only add durations to it.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut r = RateLimit::new(60, 3);
        for _ in 0..3 {
            assert!(r.take(ip, t0).is_ok());
        }
        let wait = r.take(ip, t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
        assert!(r.take(ip, t0 + Duration::from_millis(999)).is_err());
        assert!(r.take(ip, t0 + Duration::from_millis(2000)).is_ok());
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(r.take(other, t0).is_ok(), "sources are independent");
        r.prune(t0 + Duration::from_secs(10));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let t0 = Instant::now();
        let mut b = Backoff::new(3, Duration::from_secs(8));
        for _ in 0..2 {
            b.fail("a", t0);
        }
        assert_eq!(b.wait(&"a", t0), None);
        b.fail("a", t0);
        assert_eq!(b.wait(&"a", t0), Some(Duration::from_secs(1)));
        b.fail("a", t0);
        assert_eq!(b.wait(&"a", t0), Some(Duration::from_secs(2)));
        for _ in 0..10 {
            b.fail("a", t0);
        }
        assert_eq!(b.wait(&"a", t0), Some(Duration::from_secs(8)), "capped");
        assert_eq!(b.wait(&"a", t0 + Duration::from_secs(8)), None);
        b.succeed(&"a");
        assert_eq!(b.wait(&"a", t0), None);
    }
}
