//! The registry's presence path: one heartbeat, a timeout turn with nothing due at growing
//! online counts (should stay flat: the sweep costs O(expired)), and a sweep that expires
//! every session (cost per expired session).

// Benches anchor the registry's clock at a real instant; the registry itself never reads it.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use p2pchat_bench::{bench_config, RegistryDriver};
use p2pchat_registry::Input;

fn heartbeats_and_idle_timeouts(c: &mut Criterion) {
    let mut g = c.benchmark_group("presence");
    g.sample_size(30);
    for n in [1_000usize, 10_000, 50_000] {
        let t0 = Instant::now();
        let mut d = RegistryDriver::new(bench_config(), t0);
        let sessions = d.login_many(t0, n);
        assert_eq!(sessions.len(), n);
        let from = "10.0.0.1:1".parse().unwrap();
        let mut counter = 0u64;
        let mut i = 0usize;
        let mut now = t0;
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("heartbeat, online", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % sessions.len();
                if i == 0 {
                    counter += 1;
                }
                now += Duration::from_nanos(100);
                let hb = RegistryDriver::heartbeat(&sessions[i], counter + 1);
                d.registry
                    .handle_input(now, Input::Datagram { from, bytes: &hb });
            })
        });
        g.bench_with_input(
            BenchmarkId::new("timeout turn, nothing due, online", n),
            &n,
            |b, _| {
                b.iter(|| {
                    d.registry.handle_input(now, Input::Timeout);
                    black_box(d.registry.poll_output())
                })
            },
        );
    }
    g.finish();
}

fn expiry_sweep(c: &mut Criterion) {
    let mut g = c.benchmark_group("presence");
    g.sample_size(10);
    let n = 5_000;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("sweep expiring every session", n), |b| {
        b.iter_batched(
            || {
                let t0 = Instant::now();
                let mut d = RegistryDriver::new(bench_config(), t0);
                d.login_many(t0, n);
                (d, t0)
            },
            |(mut d, t0)| {
                let at = t0 + Duration::from_secs(20);
                d.registry.handle_input(at, Input::Timeout);
                let mut outputs = 0;
                while d.registry.poll_output().is_some() {
                    outputs += 1;
                }
                assert_eq!(d.registry.online_count(), 0);
                black_box(outputs)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, heartbeats_and_idle_timeouts, expiry_sweep);
criterion_main!(benches);
