#!/bin/bash
# Registry CPU per request over clear and secure links, one session (docs/performance.md,
# "What secure links cost per request"). Edit the binary paths: a pre-secure build of the
# registry and of bench/examples/pipeline.rs (commit 08e2453), and the current ones.
#
#   CLEAR_REGISTRY=... CLEAR_PIPELINE=... bench/secure-cost.sh
set -u
: "${CLEAR_REGISTRY:?a registry built before secure links}" "${CLEAR_PIPELINE:?its pipeline example}"
T=${CARGO_TARGET_DIR:-target}
SECURE_REGISTRY=${SECURE_REGISTRY:-$T/release/p2pchat-registry}
SECURE_PIPELINE=${SECURE_PIPELINE:-$T/release/examples/pipeline}
echo -15 > /proc/$$/autogroup
run() { # label registry pipeline
  local dir=$(mktemp -d)
  $2 --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --db $dir/r.db --pbkdf2-iterations 1 --auth-rate 1000000 --max-per-source 20000 > $dir/out 2>/dev/null &
  local pid=$!
  for i in $(seq 50); do grep -q listening $dir/out 2>/dev/null && break; sleep 0.1; done
  local tcp=$(grep -o 'tcp=[^ ]*' $dir/out | cut -d= -f2)
  for op in ping search; do for depth in 1 16; do
    echo "$1 $($3 --target registry --addr $tcp --pid $pid --op $op --conns 50 --depth $depth --secs 5 --warmup 1 2>&1 | tail -1)"
  done; done
  kill $pid; wait $pid 2>/dev/null; rm -rf $dir
}
for round in 1 2; do
run clear "$CLEAR_REGISTRY" "$CLEAR_PIPELINE"
run secure "$SECURE_REGISTRY" "$SECURE_PIPELINE"
done
