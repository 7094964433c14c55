#!/usr/bin/env bash
# Memory per online peer of one or more registry binaries, in one run: for each peer count N,
# a fresh registry, N accounts registered first (their connections closed), the resident set
# read, then N sessions logged in, each on its own TCP connection that stays open, and the
# resident set read again (bench/examples/hbflood.rs --rss-only --register-first). The
# difference per session is what an online peer costs in user space; the kernel's socket
# buffers are not in the resident set. A second figure per N includes the account cache
# (registration inside the measured window, as the issue's first measurement did).
#
#   cargo build --release -p p2pchat-registry --bin p2pchat-registry
#   cargo build --release -p p2pchat-bench --example hbflood
#   bench/memory.sh target/release/p2pchat-registry [OTHER-REGISTRY-BINARY ...]
#
# The registry runs with a one-hour heartbeat timeout: the tool sends no heartbeats, and with
# the default 20 s the first sessions expired (and their connections closed) before the reading
# whenever the logins took longer than that (19,000 always did), which made those figures low.
#
# Environment: PEERS ("2000 5000 10000 19000"), MODES ("--register-first all": accounts
# registered before the first reading, then registered inside the measured window), HBFLOOD
# (the example binary), SMAPS (a
# directory: keep the registry's /proc/PID/smaps at both readings of each figure, in
# SMAPS/regK-N[-rf]/, for bench/smaps-diff.py).
# Needs an open-file limit above the largest N for this shell (both processes inherit it).
set -euo pipefail

PEERS=${PEERS:-2000 5000 10000 19000}
MODES=${MODES:---register-first all}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
HBFLOOD=${HBFLOOD:-$TARGET_DIR/release/examples/hbflood}
[ $# -ge 1 ] || { echo "usage: $0 REGISTRY-BINARY [MORE ...]" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $PEERS; do
    k=0
    for bin in "$@"; do
        k=$((k + 1))
        for mode in $MODES; do
            [ "$mode" = all ] && mode=""
            name="reg$k-$n${mode:+-rf}"
            start_registry "$bin" "$name" --max-clients 20000 --max-per-source 20000 \
                --heartbeat-timeout 1h
            smaps=()
            if [ -n "${SMAPS:-}" ]; then
                mkdir -p "$SMAPS/$name"
                smaps=(--smaps "$SMAPS/$name")
            fi
            line=$("$HBFLOOD" --tcp "$reg_tcp" --udp "$reg_udp" --pid "$reg_pid" \
                --sessions "$n" --rss-only $mode "${smaps[@]}")
            if [ -n "$mode" ]; then where=registered-before; else where=registered-inside; fi
            echo "bin=$bin accounts=$where $line"
            stop_registry
        done
    done
done
