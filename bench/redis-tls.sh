#!/usr/bin/env bash
# Registry CPU per request over its secure links against Redis over TLS, in one run (issue 12,
# docs/performance.md "Against Redis over TLS"). Every registry link is sealed (ChaCha20-
# Poly1305 records), so the fair reference is Redis with TLS on: Debian's redis-server is built
# with TLS (`--tls-port`), and redis-benchmark drives it with `--tls` (50 connections, PING as a
# multi-bulk command, `-P 1` and `-P 16`). The server's user+system CPU is read from
# /proc/PID/stat before and after each client run; CPU per request = that / requests.
#
# Redis plain is measured too, by both clients (redis-benchmark and bench/examples/pipeline.rs),
# to show how much the client changes the server's figure. The registries are driven by the
# pipeline example (its only client), ping and search, over secure links.
#
#   cargo build --release -p p2pchat-registry --bin p2pchat-registry
#   cargo build --release -p p2pchat-bench --example pipeline
#   bench/redis-tls.sh target/release/p2pchat-registry [OTHER-REGISTRY-BINARY ...]
#
# Environment: CONNS (50), SECS (5, the pipeline runs), REQS1 (400000) and REQS16 (2000000)
# (redis-benchmark requests with 1 and 16 in flight), ROUNDS (2), CIPHERS (TLS 1.3 suites to
# try, default "TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256": the default suite and the
# registry's AEAD), PIPELINE (the example binary).
set -euo pipefail

CONNS=${CONNS:-50}
SECS=${SECS:-5}
REQS1=${REQS1:-400000}
REQS16=${REQS16:-2000000}
ROUNDS=${ROUNDS:-2}
CIPHERS=${CIPHERS:-TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PIPELINE=${PIPELINE:-$TARGET_DIR/release/examples/pipeline}
[ $# -ge 1 ] || { echo "usage: $0 REGISTRY-BINARY [MORE ...]" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

start_redis_tls

cpu_ticks() { # PID -> utime+stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}
tck=$(getconf CLK_TCK)

bench_redis() { # LABEL DEPTH REQS [redis-benchmark flags ...]
    local label=$1 depth=$2 reqs=$3
    shift 3
    local c0 c1 out rate
    c0=$(cpu_ticks "$redis_pid")
    out=$(redis-benchmark -h 127.0.0.1 -c "$CONNS" -n "$reqs" -P "$depth" -t ping_mbulk -q "$@" 2>&1 |
        tr '\r' '\n' | grep -a 'requests per second' | tail -1)
    c1=$(cpu_ticks "$redis_pid")
    rate=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p')
    awk -v l="$label" -v d="$depth" -v n="$reqs" -v r="$rate" -v t=$((c1 - c0)) -v hz="$tck" \
        'BEGIN { printf "%s depth=%d replies=%d rate=%.0f/s cpu_us_per_req=%.2f\n", l, d, n, r, t / hz * 1e6 / n }'
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg); conns=$CONNS"
echo "# $(redis-server --version | cut -d' ' -f1-3), $(openssl version)"
for round in $(seq "$ROUNDS"); do
    for depth in 1 16; do
        reqs=$REQS1
        [ "$depth" = 1 ] || reqs=$REQS16
        bench_redis "round=$round server=redis-plain client=redis-benchmark" "$depth" "$reqs" -p "$rport"
        for suite in $CIPHERS; do
            bench_redis "round=$round server=redis-tls suite=$suite client=redis-benchmark" \
                "$depth" "$reqs" -p "$tport" --tls --cacert "$work/cert.pem" --tls-ciphersuites "$suite"
        done
        "$PIPELINE" --target redis --addr "127.0.0.1:$rport" --pid "$redis_pid" \
            --conns "$CONNS" --depth "$depth" --secs "$SECS" |
            sed "s/^/round=$round server=redis-plain client=pipeline /"
        pipeline_registries "$round" "$depth" " client=pipeline" "ping search" "$@"
    done
done
