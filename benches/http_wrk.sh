#!/usr/bin/env bash
# HTTP hello-world throughput: evloop's `http_hello` example against a tokio
# current-thread server doing the same work (`peer_tokio_http`, same parser and
# response), each measured by wrk in the same run.
#
#   benches/http_wrk.sh            # ~35 s: 2 rounds, 1 s warm-up + 5 s per server, 50 connections
#   ROUNDS=3 DURATION=10 CONNECTIONS=100 benches/http_wrk.sh
#   SERVERS="a b" FEATURES=f benches/http_wrk.sh   # other example servers (see hyper_wrk.sh)
#
# The server is pinned to core 0 and wrk (one thread) to core 1, so that they do not
# compete for a core; on a machine with one core both share it and the numbers mean
# little. Servers are measured in turn, ROUNDS times over; each row of the table is a
# server's round with the most requests/s (noise on a shared machine only ever
# lowers it), with wrk's p50 and p99 latency, the server's CPU time per request (from
# /proc/PID/stat, all threads) and `noise`: CPU time other processes took on the
# machine meanwhile, in % of one core (near 0 on a quiet machine). Every round's
# result is printed on stderr as it comes.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-2}"
WARMUP="${WARMUP:-1}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-50}"
SERVERS="${SERVERS:-http_hello peer_tokio_http}"
# Cargo features the servers need (benches/hyper_wrk.sh sets `hyper`).
FEATURES="${FEATURES:-}"

if ! command -v wrk >/dev/null; then
    echo "wrk is missing: installing it with apt-get" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; }
    else
        sudo apt-get install -y wrk >&2 || { sudo apt-get update >&2 && sudo apt-get install -y wrk >&2; }
    fi
fi

PIN_SERVER=()
PIN_CLIENT=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 0)
    PIN_CLIENT=(taskset -c 1)
else
    echo "note: fewer than 2 cores or no taskset: server and wrk are not pinned" >&2
fi

examples=()
for s in $SERVERS; do examples+=(--example "$s"); done
cargo build --quiet --release ${FEATURES:+--features "$FEATURES"} "${examples[@]}"

SERVER_PID=
RESULTS="$(mktemp)"
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -f "$RESULTS"
}
trap cleanup EXIT

HZ="$(getconf CLK_TCK)"
# CPU ticks (utime + stime) of process $1; fields counted after the `(comm)` field.
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# Ticks all cores spent running tasks: user + nice + system + steal.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat; }
# to_ms LATENCY: wrk's "812.00us" / "7.42ms" / "1.02s" in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000
        printf "%.2f", n
    }'
}

# bench NAME ROUND: starts NAME, runs wrk against it, appends a result line.
bench() {
    local name="$1" round="$2" out addr report rps p50 p99 s0 s1 m0 m1 wrk_cpu line
    out="$(mktemp)"
    "${PIN_SERVER[@]}" "target/release/examples/$name" 127.0.0.1:0 >"$out" 2>/dev/null &
    SERVER_PID=$!
    addr=
    for _ in $(seq 100); do
        addr="$(sed -n 's/^listening on //p' "$out")"
        [ -n "$addr" ] && break
        sleep 0.05
    done
    if [ -z "$addr" ]; then
        echo "$name did not print its address" >&2
        exit 1
    fi
    "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "http://$addr/" >/dev/null
    s0="$(proc_ticks "$SERVER_PID")"
    m0="$(machine_ticks)"
    wrk_cpu="$( { TIMEFORMAT='%3U %3S'; time "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" \
        -d"${DURATION}s" --latency "http://$addr/" >"$out"; } 2>&1 | awk '{print $1 + $2}')"
    s1="$(proc_ticks "$SERVER_PID")"
    m1="$(machine_ticks)"
    report="$(cat "$out")"
    rm -f "$out"
    if grep -q "Non-2xx\|Socket errors" <<<"$report"; then
        echo "$report" >&2
    fi
    rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$report")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$report")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$report")")"
    line="$(awk -v rps="$rps" -v d="$DURATION" -v hz="$HZ" -v s="$((s1 - s0))" \
        -v m="$((m1 - m0))" -v w="$wrk_cpu" 'BEGIN {
        server = s / hz
        noise = m / hz - server - w
        if (noise < 0) noise = 0
        printf "rps=%d ns_per_req=%.0f server_cpu_pct=%.0f wrk_cpu_pct=%.0f noise_pct=%.0f",
            rps, server * 1e9 / (rps * d), server / d * 100, w / d * 100, noise / d * 100
    }') p50_ms=$p50 p99_ms=$p99"
    echo "round $round $name: $line" >&2
    echo "$name $line" >>"$RESULTS"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds of" \
    "wrk -t1 -c$CONNECTIONS, ${WARMUP} s warm-up + ${DURATION} s; server on core 0, wrk on core 1" >&2
for round in $(seq "$ROUNDS"); do
    for s in $SERVERS; do bench "$s" "$round"; done
done

field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
# pick NAME: the result line of NAME's round with the most requests/s.
pick() {
    grep "^$1 " "$RESULTS" | while read -r line; do
        echo "$(field rps "$line") $line"
    done | sort -g | tail -1 | cut -d' ' -f2-
}

echo
echo "HTTP hello, wrk -t1 -c$CONNECTIONS -d${DURATION}s, server on core 0, wrk on core 1;"
echo "each row is the server's best of $ROUNDS rounds (most requests/s); noise: CPU other"
echo "processes took meanwhile, in % of one core (the fewer, the more the row means):"
echo
echo "| server | req/s | p50 ms | p99 ms | server CPU ns/req | server CPU | wrk CPU | noise |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|"
for s in $SERVERS; do
    l="$(pick "$s")"
    printf '| %s | %s | %s | %s | %s | %s %% | %s %% | %s %% |\n' "$s" "$(field rps "$l")" \
        "$(field p50_ms "$l")" "$(field p99_ms "$l")" "$(field ns_per_req "$l")" \
        "$(field server_cpu_pct "$l")" "$(field wrk_cpu_pct "$l")" "$(field noise_pct "$l")"
done
