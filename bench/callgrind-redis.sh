#!/usr/bin/env bash
# Instructions per request of redis-server (user space, all threads) under callgrind, the
# reference for bench/callgrind-requests.sh: redis-server runs under valgrind with
# instrumentation off, redis-benchmark drives it (50 connections, PING as a multi-bulk command,
# -P DEPTH, over TLS with each suite in SUITES and in the clear), instrumentation is on for
# 5 s, and the instructions counted (callgrind's `totals`) are divided by the commands Redis
# processed in that window (`total_commands_processed` from INFO, read on the clear port).
# The kernel's work is not counted.
#
#   bench/callgrind-redis.sh
#
# Environment: DEPTHS ("1 16"), SUITES ("TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 plain").
set -u
DEPTHS=${DEPTHS:-1 16}
SUITES=${SUITES:-TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 plain}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
commands() { redis-cli -p "$1" info stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'; }
for depth in $DEPTHS; do
for suite in $SUITES; do
    rport=$(free_port); tport=$(free_port)
    rm -f "$work"/cg.out*
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
        redis-server --bind 127.0.0.1 --port "$rport" --tls-port "$tport" \
        --tls-cert-file "$work/cert.pem" --tls-key-file "$work/key.pem" \
        --tls-ca-cert-file "$work/cert.pem" --tls-auth-clients no \
        --save '' --appendonly no --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
    vpid=$!
    for _ in $(seq 300); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    if [ "$suite" = plain ]; then
        flags=(-p "$rport")
    else
        flags=(-p "$tport" --tls --cacert "$work/cert.pem" --tls-ciphersuites "$suite")
    fi
    redis-benchmark -h 127.0.0.1 -c 50 -n 100000000 -P "$depth" -t ping_mbulk -q "${flags[@]}" \
        >/dev/null 2>&1 &
    bpid=$!
    sleep 4
    c0=$(commands "$rport")
    callgrind_control -i on "$vpid" >/dev/null 2>&1
    sleep 5
    callgrind_control -i off "$vpid" >/dev/null 2>&1
    c1=$(commands "$rport")
    kill "$bpid"; wait "$bpid" 2>/dev/null
    redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1
    wait "$vpid" 2>/dev/null
    ir=$(grep -h '^totals:' "$work"/cg.out* | awk '{s+=$2} END {print s}')
    n=$((c1 - c0 - 1))
    echo "depth=$depth server=redis suite=$suite commands_in_window=$n instructions_per_request=$((ir / n))"
done
done
