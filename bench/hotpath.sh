#!/usr/bin/env bash
# Registry hot path against Redis, in one run: CPU per request with 1 and 16 requests in flight
# per connection over 50 connections, the server's CPU time read from /proc (see
# bench/examples/pipeline.rs). Every registry binary given is measured next to the same
# redis-server, so the figures are ratios taken on the same (possibly shared, noisy) machine.
#
#   cargo build --release -p p2pchat-registry --bin p2pchat-registry
#   cargo build --release -p p2pchat-bench --example pipeline
#   bench/hotpath.sh target/release/p2pchat-registry [OTHER-REGISTRY-BINARY ...]
#
# Environment: CONNS (50), SECS (5), ROUNDS (2), OPS ("ping search"), DEPTHS ("1 16"),
# PIPELINE (the pipeline example binary; default target/release/examples/pipeline).
# Needs redis-server (Debian: apt-get install redis-server). Only 127.0.0.1, ports picked free.
set -euo pipefail

CONNS=${CONNS:-50}
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-2}
OPS=${OPS:-ping search}
DEPTHS=${DEPTHS:-1 16}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PIPELINE=${PIPELINE:-$TARGET_DIR/release/examples/pipeline}
[ $# -ge 1 ] || { echo "usage: $0 REGISTRY-BINARY [MORE ...]" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
    --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 100); do
    redis-cli -p "$rport" ping >/dev/null 2>&1 && break
    sleep 0.1
done

start_registry() { # BIN NAME -> sets reg_pid, reg_tcp
    local bin=$1 name=$2
    "$bin" --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --db "$work/$name.db" \
        --pbkdf2-iterations 1 --auth-rate 1000000 >"$work/$name.out" 2>"$work/$name.err" &
    reg_pid=$!
    pids+=("$reg_pid")
    for _ in $(seq 100); do
        grep -q listening "$work/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    reg_tcp=$(sed -n 's/.*tcp=\([^ ]*\).*/\1/p' "$work/$name.out")
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg); conns=$CONNS secs=$SECS"
for round in $(seq "$ROUNDS"); do
    for depth in $DEPTHS; do
        "$PIPELINE" --target redis --addr "127.0.0.1:$rport" --pid "$redis_pid" \
            --conns "$CONNS" --depth "$depth" --secs "$SECS" | sed "s/^/round=$round server=redis /"
        n=0
        for bin in "$@"; do
            n=$((n + 1))
            start_registry "$bin" "reg$n-$round-$depth"
            for op in $OPS; do
                "$PIPELINE" --target registry --addr "$reg_tcp" --pid "$reg_pid" --op "$op" \
                    --conns "$CONNS" --depth "$depth" --secs "$SECS" |
                    sed "s|^|round=$round server=$bin |"
            done
            kill "$reg_pid"
            wait "$reg_pid" 2>/dev/null || true
        done
    done
done
