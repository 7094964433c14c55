#!/usr/bin/env bash
# Where a heartbeat's CPU goes, the kernel's share or ours (docs/performance.md, "Heartbeat
# intake", third pass). For each registry binary, two rounds: a fresh registry with 10,000
# sessions logged in by hbflood, which then sends their valid heartbeats at 200k/s for 10 s from
# 2 threads; the registry's user and system CPU are read from /proc/PID/stat over 6 s inside
# the flood and divided by the datagrams sent in that window (hbflood's rate x 6 s; its loss
# was 0 in every run documented). hbflood's own summary line follows on each line. /proc splits
# user and system time by tick sampling, so the split is noisier than the sum.
#
#   cargo build --release -p p2pchat-registry --bin p2pchat-registry -p p2pchat-bench --example hbflood
#   bench/hb-cpu-split.sh target/release/p2pchat-registry [OTHER-REGISTRY-BINARY ...]
set -u
HB=${HBFLOOD:-${CARGO_TARGET_DIR:-target}/release/examples/hbflood}
tck=$(getconf CLK_TCK)
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2; do
for bin in "$@"; do
  d=$(mktemp -d)
  $bin --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --db $d/r.db --pbkdf2-iterations 1 --auth-rate 1000000 --max-clients 20000 --max-per-source 20000 > $d/out 2>/dev/null &
  pid=$!
  for i in $(seq 50); do grep -q listening $d/out 2>/dev/null && break; sleep 0.1; done
  tcp=$(sed -n 's/.*tcp=\([^ ]*\).*/\1/p' $d/out); udp=$(sed -n 's/.*udp=\([^ ]*\).*/\1/p' $d/out)
  $HB --tcp $tcp --udp $udp --pid $pid --sessions 10000 --threads 2 --rate 200000 --secs 10 > $d/hb.txt 2>&1 &
  hb=$!
  for i in $(seq 600); do grep -q signed $d/hb.txt 2>/dev/null && break; sleep 0.1; done
  sleep 2
  read u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
  sleep 6
  read u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
  wait $hb
  line=$(tail -1 $d/hb.txt)
  rate=$(echo "$line" | sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p')
  awk -v b="$bin" -v r=$round -v u=$((u1-u0)) -v s=$((s1-s0)) -v hz=$tck -v rate=$rate -v l="$line" 'BEGIN {
    n = rate * 6; printf "round=%d bin=%s user_us=%.3f sys_us=%.3f per datagram | %s\n", r, b, u/hz*1e6/n, s/hz*1e6/n, l }'
  kill $pid; wait $pid 2>/dev/null; rm -rf $d
done
done
