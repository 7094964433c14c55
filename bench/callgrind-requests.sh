#!/usr/bin/env bash
# Instructions per request of a whole registry process (user space, all threads, the engine
# and the secure links included) under callgrind, immune to a noisy machine: the registry runs
# under valgrind with instrumentation off, bench/examples/pipeline.rs drives it (50
# connections, DEPTHS in flight, OP), instrumentation is on for its 5 s window, and the
# instructions counted (callgrind's `totals`) are divided by the replies in that window.
# The kernel's work (syscalls) is not counted: this is our code's share only.
#
#   cargo build --release -p p2pchat-registry --bin p2pchat-registry -p p2pchat-bench --example pipeline
#   bench/callgrind-requests.sh /tmp/registry-before target/release/p2pchat-registry
#
# Environment: DEPTHS ("1 16"), OP (ping; search works too), PIPELINE (the example binary).
set -u
PIPELINE=${PIPELINE:-${CARGO_TARGET_DIR:-target}/release/examples/pipeline}
for depth in ${DEPTHS:-1 16}; do
for bin in "$@"; do
  d=$(mktemp -d)
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$d/cg.out \
    $bin --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --db $d/r.db --pbkdf2-iterations 1 --auth-rate 1000000 > $d/out 2>$d/err &
  vpid=$!
  for i in $(seq 300); do grep -q listening $d/out 2>/dev/null && break; sleep 0.1; done
  tcp=$(sed -n 's/.*tcp=\([^ ]*\).*/\1/p' $d/out)
  $PIPELINE --target registry --addr $tcp --pid $vpid --op ${OP:-ping} --conns 50 --depth $depth --secs 5 --warmup 4 > $d/pl 2>&1 &
  pl=$!
  sleep 4; callgrind_control -i on $vpid >/dev/null 2>&1; sleep 5; callgrind_control -i off $vpid >/dev/null 2>&1
  wait $pl
  kill $vpid; wait $vpid 2>/dev/null
  ir=$(grep -h '^totals:' $d/cg.out* | awk '{s+=$2} END {print s}')
  replies=$(sed -n 's/.* replies=\([0-9]*\) .*/\1/p' $d/pl)
  echo "depth=$depth bin=$bin replies_in_window=$replies instructions_per_request=$((ir / replies))"
  rm -rf $d
done
done
