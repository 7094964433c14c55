#!/usr/bin/env bash
# System calls per request, the registry over its secure links against Redis over TLS, one in
# flight per connection (issue 12, docs/performance.md "Against Redis over TLS"): `strace -c -f`
# attached to each server for one client run, its table divided by the requests served.
# strace slows both servers many times over, so only the counts mean anything, not the times.
#
#   cargo build --release -p p2pchat-registry --bin p2pchat-registry -p p2pchat-bench --example pipeline
#   bench/syscalls.sh target/release/p2pchat-registry
#
# Environment: CONNS (50), SECS (3, the pipeline run), REQS (30000, redis-benchmark requests),
# PIPELINE (the example binary). The registry's figure includes the 50 handshakes and the
# replies after the measured window (pipeline reports only the window), under 1 % here.
set -euo pipefail

CONNS=${CONNS:-50}
SECS=${SECS:-3}
REQS=${REQS:-30000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PIPELINE=${PIPELINE:-$TARGET_DIR/release/examples/pipeline}
[ $# -eq 1 ] || { echo "usage: $0 REGISTRY-BINARY" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

trace() { # PID OUT: strace -c -f on PID in the background -> sets strace_pid
    strace -c -f -q -o "$2" -p "$1" &
    strace_pid=$!
    sleep 1 # strace attaches to every thread before the load starts
}

per_request() { # STRACE-OUTPUT REQUESTS LABEL
    awk -v n="$2" -v l="$3" '
        /^[ ]*[0-9.]+[ ]+[0-9.]+[ ]+[0-9]+[ ]+[0-9]+/ {
            name = $NF; calls = $4
            if (name == "total") next
            printf "%s %-16s %8d calls %7.3f per request\n", l, name, calls, calls / n
            total += calls
        }
        END { printf "%s %-16s %8d calls %7.3f per request\n", l, "TOTAL", total, total / n }
    ' "$1"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg); conns=$CONNS depth=1"

start_redis_tls
for suite in TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
    trace "$redis_pid" "$work/redis-$suite.strace"
    redis-benchmark -h 127.0.0.1 -p "$tport" --tls --cacert "$work/cert.pem" \
        --tls-ciphersuites "$suite" -c "$CONNS" -n "$REQS" -P 1 -t ping_mbulk -q >/dev/null 2>&1
    kill -INT "$strace_pid"
    wait "$strace_pid" || true
    per_request "$work/redis-$suite.strace" "$REQS" "server=redis-tls suite=$suite"
done

for op in ping search; do
    start_registry "$1" "reg-$op"
    trace "$reg_pid" "$work/reg-$op.strace"
    line=$("$PIPELINE" --target registry --addr "$reg_tcp" --pid "$reg_pid" --op "$op" \
        --conns "$CONNS" --depth 1 --secs "$SECS" --warmup 0)
    kill -INT "$strace_pid"
    wait "$strace_pid" || true
    replies=$(echo "$line" | sed -n 's/.*replies=\([0-9]*\).*/\1/p')
    per_request "$work/reg-$op.strace" "$replies" "server=registry op=$op"
    stop_registry
done
