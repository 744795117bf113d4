#!/usr/bin/env bash
# LoopGroup scaling: `multicore_echo` with a CPU-bound handler (about WORK_US µs of
# CPU burnt per message, 50 by default) on 1 loop and on 2 loops, driven by the light
# closed-loop client of `benches/net_echo.sh` (`bench_echo_client`: mio on one thread,
# 50 connections, 64-byte messages). Target: 2 loops serve >= 1.7x the requests per
# second of 1 loop.
#
#   benches/loop_group.sh                      # ~30 s: 2 rounds of 1 s warm-up + 4 s each
#   ROUNDS=3 DURATION=5 LOOPS="1 2" benches/loop_group.sh
#
# Nothing is pinned: the server's loops and the client share the machine's cores (the
# client takes a few µs of CPU per request, a small share next to the handler's 50).
# Rounds are interleaved (1 loop, 2 loops, 1 loop, ...); each row is the best round
# (noise on a shared machine only lowers rates). `noise` is the CPU time other
# processes took meanwhile, in % of one core; the load average is printed too. Every
# raw result goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-2}"
WARMUP="${WARMUP:-1}"
DURATION="${DURATION:-4}"
WORK_US="${WORK_US:-50}"
LOOPS="${LOOPS:-1 2}"
CONNS="${CONNS:-50}"

cargo build --quiet --release --example multicore_echo --example bench_echo_client
bin=target/release/examples

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

field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

run() {
    local loops="$1" round="$2" out addr line
    out="$(mktemp)"
    "$bin/multicore_echo" 127.0.0.1:0 --loops "$loops" --work-us "$WORK_US" >"$out" 2>/dev/null &
    SERVER_PID=$!
    addr=
    for _ in $(seq 200); do
        addr="$(sed -n 's/^listening on //p' "$out")"
        [ -n "$addr" ] && break
        sleep 0.05
    done
    rm -f "$out"
    [ -n "$addr" ] || { echo "multicore_echo did not print its address" >&2; exit 1; }
    line="$("$bin/bench_echo_client" "$addr" --conns "$CONNS" --size 64 \
        --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SERVER_PID")"
    echo "round $round loops=$loops: $line" >&2
    echo "$loops $line" >>"$RESULTS"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

echo "$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); uptime: $(uptime)" >&2
for round in $(seq "$ROUNDS"); do
    for l in $LOOPS; do run "$l" "$round"; done
done

best() {
    grep "^$1 " "$RESULTS" | while read -r line; do
        echo "$(field rps "$line") $line"
    done | sort -g | tail -1 | cut -d' ' -f3-
}

echo
echo "multicore_echo, ${WORK_US} µs of CPU per 64-byte message, ${CONNS} connections;"
echo "best of $ROUNDS rounds; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| loops | req/s | vs 1 loop | server CPU | server CPU ns/req | client CPU | noise |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
base=
for l in $LOOPS; do
    b="$(best "$l")"
    rps="$(field rps "$b")"
    [ -z "$base" ] && base="$rps"
    printf '| %s | %s | %s× | %s %% | %s | %s %% | %s %% |\n' "$l" "$rps" \
        "$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.2f", a / b }')" \
        "$(field server_cpu_pct "$b")" "$(field server_cpu_ns_per_req "$b")" \
        "$(field client_cpu_pct "$b")" "$(field noise_pct "$b")"
done
