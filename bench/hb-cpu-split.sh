#!/usr/bin/env bash
# Where a heartbeat's CPU goes, the kernel's share or ours (docs/performance.md, "Heartbeat
# intake", third and fourth passes). For each receiver, ROUNDS rounds (default 2), alternating:
# a fresh registry with 10,000 sessions logged in by hbflood, which then sends their valid
# heartbeats at 200k/s for 10 s from 2 threads; the receiver's user and system CPU are read from
# /proc/PID/stat over 6 s inside the flood and divided by the datagrams sent in that window
# (hbflood's rate x 6 s; its loss was 0 in every run documented). hbflood's own summary line
# follows on each line. /proc splits user and system time by tick sampling, so the split is
# noisier than the sum. With perf, the receiver's recvmmsg and epoll_wait calls and context
# switches in the window are counted too.
#
# A receiver is a registry binary, or `floor:MODE` (MODE block, epoll or spin, optionally
# `floor:MODE:FLAGS` with extra udp_floor flags joined by commas): then the registry only logs
# the sessions in (with a 1 h heartbeat timeout so it does no expiry work during the flood) and
# the heartbeats go to `udp_floor --mode MODE`, which receives them as the registry does and does
# nothing else; its own getrusage line ends the output line after `||`.
#
#   cargo build --release -p p2pchat-registry --bin p2pchat-registry \
#       -p p2pchat-bench --example hbflood --example udp_floor
#   bench/hb-cpu-split.sh target/release/p2pchat-registry [floor:epoll floor:block ...]
set -u
HB=${HBFLOOD:-${CARGO_TARGET_DIR:-target}/release/examples/hbflood}
FLOOR=${UDP_FLOOR:-${CARGO_TARGET_DIR:-target}/release/examples/udp_floor}
REGISTRY=${REGISTRY:-${CARGO_TARGET_DIR:-target}/release/p2pchat-registry}
tck=$(getconf CLK_TCK)
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "${ROUNDS:-2}"); do
for bin in "$@"; do
  d=$(mktemp -d)
  reg=$bin; extra=(); floor_pid=
  case $bin in floor:*) reg=$REGISTRY; extra=(--heartbeat-timeout 1h);; esac
  $reg --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --db $d/r.db --pbkdf2-iterations 1 --auth-rate 1000000 --max-clients 20000 --max-per-source 20000 "${extra[@]}" > $d/out 2>/dev/null &
  pid=$!
  for i in $(seq 50); do grep -q listening $d/out 2>/dev/null && break; sleep 0.1; done
  tcp=$(sed -n 's/.*tcp=\([^ ]*\).*/\1/p' $d/out); udp=$(sed -n 's/.*udp=\([^ ]*\).*/\1/p' $d/out)
  target=$pid
  case $bin in floor:*)
    IFS=: read -r _ mode flags <<< "$bin"
    # shellcheck disable=SC2086 # the flags are meant to split
    $FLOOR --mode "$mode" ${flags//,/ } > $d/floor.txt 2>&1 &
    floor_pid=$!
    for i in $(seq 50); do grep -q port= $d/floor.txt 2>/dev/null && break; sleep 0.1; done
    udp=127.0.0.1:$(sed -n 's/^port=\([0-9]*\).*/\1/p' $d/floor.txt)
    target=$floor_pid;;
  esac
  $HB --tcp $tcp --udp $udp --pid $target --sessions 10000 --threads 2 --rate 200000 --secs 10 > $d/hb.txt 2>&1 &
  hb=$!
  for i in $(seq 600); do grep -q signed $d/hb.txt 2>/dev/null && break; sleep 0.1; done
  sleep 2
  read u0 s0 < <(awk '{print $14, $15}' /proc/$target/stat)
  # The window, with the receiver's recvmmsg and epoll_wait calls counted (tracepoints,
  # tens of ns each) unless PERF=0 or perf is missing.
  if [ "${PERF:-1}" = 1 ] && command -v perf >/dev/null; then
    perf stat -x, -e syscalls:sys_enter_recvmmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,context-switches -p $target -o $d/perf.txt -- sleep 6 2>/dev/null
  else
    sleep 6
  fi
  read u1 s1 < <(awk '{print $14, $15}' /proc/$target/stat)
  wait $hb
  line=$(tail -1 $d/hb.txt)
  own=
  if [ -n "$floor_pid" ]; then wait $floor_pid; own="|| $(tail -1 $d/floor.txt)"; fi
  calls=$(awk -F, '/recvmmsg/ {r=$1} /epoll/ {w+=$1} /context-switches/ {c=$1} END {if (r != "") printf "recvmmsg=%s epoll_waits=%s context_switches=%s", r, w, c}' $d/perf.txt 2>/dev/null)
  rate=$(echo "$line" | sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p')
  awk -v b="$bin" -v r=$round -v u=$((u1-u0)) -v s=$((s1-s0)) -v hz=$tck -v rate=$rate -v l="$line $own" -v load="$(cut -d' ' -f1 /proc/loadavg)" -v calls="$calls" 'BEGIN {
    n = rate * 6; printf "round=%d bin=%s load=%s user_us=%.3f sys_us=%.3f total_us=%.3f per datagram %s | %s\n", r, b, load, u/hz*1e6/n, s/hz*1e6/n, (u+s)/hz*1e6/n, calls, l }'
  kill $pid; wait $pid 2>/dev/null; rm -rf $d
done
done
