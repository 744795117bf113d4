#!/usr/bin/env bash
# The peer comparison of issue 13 in one command: evloop beside tokio
# (`current_thread`, `LocalSet`), calloop and smol, one markdown table of medians,
# then the memory table.
#
#   bash benches/compare.sh                 # ~3-4 min (after the build)
#   ROUNDS=3 TCP_ROUNDS=3 bash benches/compare.sh
#   SKIP_TCP=1 bash benches/compare.sh      # without the tcp_echo row
#
# 1. tcp_echo: `echo_protocol`, `peer_tokio_echo` (a LocalSet) and `peer_calloop_echo`
#    served in turn (TCP_ROUNDS rounds, interleaved), pinned to core 0, each driven
#    by `bench_echo_client` pinned to core 1 (64-byte messages, 50 connections,
#    1 s warm-up + 3 s); the row is the median of the server's CPU per request.
# 2. `benches/compare.rs` (cargo bench --bench compare): the in-process workloads,
#    ROUNDS rounds interleaved across peers, medians; prints the table with the
#    tcp_echo row added.
# 3. `benches/memory.rs` (cargo bench --bench memory): heap bytes per item.
# Raw results go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
TCP_ROUNDS="${TCP_ROUNDS:-5}"
WARMUP="${WARMUP:-1}"
DURATION="${DURATION:-3}"

cargo build --quiet --release --example echo_protocol --example peer_tokio_echo \
    --example peer_calloop_echo --example bench_echo_client
cargo bench --quiet --no-run --bench compare --bench memory 2>/dev/null

echo "## evloop vs peers, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "$(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1);" \
    "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

TCP="$(mktemp)"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -f "$TCP" "$TCP.raw"
}
trap cleanup EXIT

field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

PIN_SERVER=()
PIN_CLIENT=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 0)
    PIN_CLIENT=(taskset -c 1)
fi

# tcp_echo_round EXAMPLE PEER: one measurement, appended to $TCP.raw as "PEER ns".
tcp_echo_round() {
    local name="$1" peer="$2" out addr line bin=target/release/examples
    out="$(mktemp)"
    "${PIN_SERVER[@]}" "$bin/$name" 127.0.0.1:0 >"$out" 2>/dev/null &
    SERVER_PID=$!
    addr=
    for _ in $(seq 200); do
        addr="$(sed -n 's/^listening on //p' "$out")"
        [ -n "$addr" ] && break
        sleep 0.05
    done
    rm -f "$out"
    [ -n "$addr" ] || { echo "$name did not print its address" >&2; exit 1; }
    line="$("${PIN_CLIENT[@]}" "$bin/bench_echo_client" "$addr" --conns 50 --size 64 \
        --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SERVER_PID")"
    echo "tcp_echo $peer: $line" >&2
    echo "$peer $(field server_cpu_ns_per_req "$line")" >>"$TCP.raw"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

TCP_ARGS=()
if [ -z "${SKIP_TCP:-}" ]; then
    : >"$TCP.raw"
    for round in $(seq "$TCP_ROUNDS"); do
        tcp_echo_round echo_protocol "evloop"
        tcp_echo_round peer_tokio_echo "tokio LocalSet"
        tcp_echo_round peer_calloop_echo "calloop"
        echo "tcp_echo round $round/$TCP_ROUNDS done" >&2
    done
    for peer in "evloop" "tokio LocalSet" "calloop"; do
        med="$(grep "^$peer [0-9]" "$TCP.raw" | awk '{ print $NF }' | sort -g |
            awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
        echo "$peer $med" >>"$TCP"
    done
    TCP_ARGS=(--tcp-echo "$TCP")
fi

cargo bench --quiet --bench compare -- --rounds "$ROUNDS" "${TCP_ARGS[@]}"
echo
echo "tcp_echo: server pinned to core 0, client (bench_echo_client) to core 1; median of"
echo "$TCP_ROUNDS rounds of ${DURATION} s."
echo
echo "## Memory"
echo
cargo bench --quiet --bench memory
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
