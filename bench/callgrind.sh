#!/usr/bin/env bash
# Instruction counts of the hot paths under callgrind (valgrind), immune to a noisy machine:
# each op runs ITERS and 2*ITERS times after the same setup, and the difference divided by
# ITERS is the cost of one operation (setup cancels). See bench/examples/hotops.rs.
#
#   cargo build --release -p p2pchat-bench --example hotops
#   bench/callgrind.sh            # prints one line per op: instructions per operation
#
# Environment: ITERS (2000), HOTOPS (the example binary), OPS (all five).
set -euo pipefail
ITERS=${ITERS:-2000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
HOTOPS=${HOTOPS:-$TARGET_DIR/release/examples/hotops}
OPS=${OPS:-decode framer encode search heartbeat}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

count() { # OP N -> total instructions (Ir)
    valgrind --tool=callgrind --callgrind-out-file="$work/out" "$HOTOPS" "$1" "$2" $((2 * ITERS)) \
        >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$work/out"
}

for op in $OPS; do
    one=$(count "$op" "$ITERS")
    two=$(count "$op" $((2 * ITERS)))
    echo "op=$op instructions_per_op=$(( (two - one) / ITERS ))"
done
