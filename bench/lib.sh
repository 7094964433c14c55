# Shared by the bench scripts (sourced): a scratch directory and the processes started in it,
# removed and stopped on exit; a free loopback port; a registry started on port 0 and stopped;
# Redis started (plain, or with TLS and a throwaway certificate) and waited for; `pipeline` against each registry binary in turn.

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

start_registry() { # BIN NAME [FLAGS ...] -> sets reg_pid, reg_tcp, reg_udp
    local bin=$1 name=$2
    shift 2
    "$bin" --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --db "$work/$name.db" \
        --pbkdf2-iterations 1 --auth-rate 1000000 "$@" >"$work/$name.out" 2>"$work/$name.err" &
    reg_pid=$!
    pids+=("$reg_pid")
    for _ in $(seq 100); do
        grep -q listening "$work/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    reg_tcp=$(sed -n 's/.*tcp=\([^ ]*\).*/\1/p' "$work/$name.out")
    reg_udp=$(sed -n 's/.*udp=\([^ ]*\).*/\1/p' "$work/$name.out")
}

stop_registry() {
    kill "$reg_pid"
    wait "$reg_pid" 2>/dev/null || true
}

pipeline_registries() { # ROUND DEPTH LABEL OPS BIN... -> one line per binary and op
    local round=$1 depth=$2 label=$3 ops=$4 n=0 bin op
    shift 4
    for bin in "$@"; do
        n=$((n + 1))
        start_registry "$bin" "reg$n-$round-$depth"
        for op in $ops; do
            "$PIPELINE" --target registry --addr "$reg_tcp" --pid "$reg_pid" --op "$op" \
                --conns "$CONNS" --depth "$depth" --secs "$SECS" |
                sed "s|^|round=$round server=$bin$label |"
        done
        stop_registry
    done
}

start_redis() { # PORT [FLAGS ...] -> sets redis_pid; exits if it does not answer
    local port=$1
    shift
    redis-server --bind 127.0.0.1 --port "$port" "$@" \
        --save '' --appendonly no --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null || { cat "$work/redis.log"; exit 1; }
}

start_redis_tls() { # -> sets redis_pid, rport (plain), tport (TLS), $work/cert.pem for clients
    # A throwaway self-signed P-256 certificate: an ECDSA handshake costs the server ~0.1 ms,
    # so a few dozen handshakes are noise against a run.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    rport=$(free_port)
    tport=$(free_port)
    start_redis "$rport" --tls-port "$tport" \
        --tls-cert-file "$work/cert.pem" --tls-key-file "$work/key.pem" \
        --tls-ca-cert-file "$work/cert.pem" --tls-auth-clients no
}
