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

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

rport=$(free_port)
start_redis "$rport"

echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg); conns=$CONNS secs=$SECS"
for round in $(seq "$ROUNDS"); do
    for depth in $DEPTHS; do
        "$PIPELINE" --target redis --addr "127.0.0.1:$rport" --pid "$redis_pid" \
            --conns "$CONNS" --depth "$depth" --secs "$SECS" | sed "s/^/round=$round server=redis /"
        pipeline_registries "$round" "$depth" "" "$OPS" "$@"
    done
done
