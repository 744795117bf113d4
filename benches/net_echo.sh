#!/usr/bin/env bash
# TCP echo on loopback: evloop's protocol and stream echo servers beside tokio and
# calloop echo servers, measured by one closed-loop client (`bench_echo_client`, mio
# on one thread, not evloop) in the same run.
#
#   benches/net_echo.sh                       # ~1.7 min: 3 rounds, 1 s warm-up + 3 s each
#   ROUNDS=3 DURATION=5 benches/net_echo.sh
#   SERVERS="echo_protocol peer_tokio_echo" benches/net_echo.sh
#   MODE=streams benches/net_echo.sh          # the streams API against the protocol path
#   MODE=streams CALLGRIND=1 benches/net_echo.sh   # ... plus instructions per request
#
# Workloads, each against every server:
# - `64 B x 50`: 50 connections, each sending 64 bytes and waiting for their echo
#   before sending again. Reported: round trips/s, the server's CPU time per round
#   trip (all its threads, read around the measured window) and the part of it spent
#   in user space (the rest is the kernel: the TCP work every server does, plus
#   whatever syscalls a server makes beyond one read and one write per message), and
#   how busy the server and the client were (share of one core; a client near 100 %
#   sets the pace).
# - `64 KiB x 10`: 10 connections, 64 KiB messages. Reported: echoed MB/s (10^6
#   bytes/s, one direction) and the server's CPU time per message.
#
# `MODE=streams` measures the streams API (`echo_streams_api`: `echo_streams
# --start-server --exactly SIZE`, i.e. `start_server` + `readexactly` / `write` +
# `drain`) beside the protocol path (`echo_protocol`) and prints the ratio of their
# server CPU per request (the issue's bound: streams at most 1.2x the protocol
# path), and the same ratio for uvloop's asyncio streams and protocol servers
# (`benches/support/uvloop_echo.py`; uvloop is installed with pip if missing, and
# left out if it cannot be). With `CALLGRIND=1` it also counts the user-space instructions each server
# executes per 64-byte round trip under valgrind's callgrind (a server's run minus
# its idle start-up, divided by the round trips served): a figure the load of a
# shared machine does not move.
#
# `benches/http_wrk.sh` is the HTTP counterpart (wrk against `http_hello` and tokio).
#
# The server is pinned to core 0 and the client to core 1 (`taskset`). Servers are
# measured in turn, ROUNDS times over (interleaved, so that a burst of noise from
# other processes hits one round of each rather than every round of one); each row of
# the table is the server's round with the highest rate, since noise on a shared
# machine only ever lowers rates. Its `noise` column is the CPU time other processes
# took on the machine during that window: near 0 on a quiet machine. Every raw result
# is printed on stderr as it comes.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-1}"
DURATION="${DURATION:-3}"
MODE="${MODE:-all}"
if [ "$MODE" = streams ]; then
    # uvloop's two paths beside evloop's, when python3 has uvloop (pip installs it if
    # it can: PyPI is all this needs).
    if ! python3 -c 'import uvloop' 2>/dev/null; then
        python3 -m pip install --quiet --user uvloop 2>/dev/null ||
            python3 -m pip install --quiet --break-system-packages uvloop 2>/dev/null || true
    fi
    if python3 -c 'import uvloop' 2>/dev/null; then
        SERVERS="${SERVERS:-echo_protocol echo_streams_api uvloop_protocol uvloop_streams}"
    else
        echo "note: no uvloop for python3: its servers are left out" >&2
        SERVERS="${SERVERS:-echo_protocol echo_streams_api}"
    fi
else
    SERVERS="${SERVERS:-echo_protocol echo_streams peer_tokio_echo peer_calloop_echo}"
fi
CALLGRIND="${CALLGRIND:-0}"
CG_DURATION="${CG_DURATION:-10}"
# The issue's targets, in ns of server CPU per 64-byte round trip, and the tokio
# number measured beside them (to scale the targets to this machine).
TARGET_PROTOCOL=2800
TARGET_STREAMS=3300
TARGET_TOKIO_REF=3930

PIN_SERVER=()
PIN_CLIENT=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 0)
    PIN_CLIENT=(taskset -c 1)
else
    echo "note: fewer than 2 cores or no taskset: server and client are not pinned" >&2
fi

# server_cmd NAME SIZE: the example and arguments of server NAME for SIZE-byte
# messages.
server_cmd() {
    case "$1" in
        echo_streams_api) echo "echo_streams 127.0.0.1:0 --start-server --exactly $2" ;;
        uvloop_protocol) echo "python3 benches/support/uvloop_echo.py protocol 127.0.0.1:0 $2" ;;
        uvloop_streams) echo "python3 benches/support/uvloop_echo.py streams 127.0.0.1:0 $2" ;;
        *) echo "$1 127.0.0.1:0" ;;
    esac
}

examples=(--example bench_echo_client)
for s in $SERVERS; do
    read -r ex _ <<<"$(server_cmd "$s" 64)"
    [ "$ex" = python3 ] || examples+=(--example "$ex")
done
cargo build --quiet --release "${examples[@]}"
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

# field KEY LINE: the value of KEY=value in LINE.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

# start_server NAME SIZE [WRAPPER...]: starts server NAME (under WRAPPER, e.g.
# valgrind), sets SERVER_PID and ADDR.
start_server() {
    local name="$1" size="$2" out cmd
    shift 2
    out="$(mktemp)"
    read -r -a cmd <<<"$(server_cmd "$name" "$size")"
    [ "${cmd[0]}" = python3 ] || cmd[0]="$bin/${cmd[0]}"
    "$@" "${cmd[@]}" >"$out" 2>/dev/null &
    SERVER_PID=$!
    ADDR=
    for _ in $(seq 1200); do
        ADDR="$(sed -n 's/^listening on //p' "$out")"
        [ -n "$ADDR" ] && break
        sleep 0.05
    done
    rm -f "$out"
    if [ -z "$ADDR" ]; then
        echo "$name did not print its address" >&2
        exit 1
    fi
}

stop_server() {
    kill -"${1:-TERM}" "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# run_server NAME ROUND: runs both workloads against NAME (started afresh for each,
# as a server may be told the message size), appends to $RESULTS.
run_server() {
    local name="$1" round="$2" line workload conns size
    for workload in "50 64" "10 65536"; do
        read -r conns size <<<"$workload"
        start_server "$name" "$size" "${PIN_SERVER[@]}"
        line="$("${PIN_CLIENT[@]}" "$bin/bench_echo_client" "$ADDR" --conns "$conns" --size "$size" \
            --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SERVER_PID")"
        echo "round $round $name: $line" >&2
        echo "$name $line" >>"$RESULTS"
        stop_server
    done
}

# callgrind_total NAME SECONDS: instructions server NAME executes under callgrind,
# serving the 64 B x 50 workload for SECONDS (0: none, start-up only); prints
# "INSTRUCTIONS REQUESTS".
callgrind_total() {
    local name="$1" secs="$2" cg requests=0 line
    cg="$(mktemp)"
    start_server "$name" 64 "${PIN_SERVER[@]}" valgrind --tool=callgrind --callgrind-out-file="$cg"
    if [ "$secs" != 0 ]; then
        line="$("${PIN_CLIENT[@]}" "$bin/bench_echo_client" "$ADDR" --conns 50 --size 64 \
            --warmup 0 --duration "$secs")"
        requests="$(field requests "$line")"
    fi
    stop_server TERM # callgrind writes its counts when the process ends, by a signal too
    echo "$(sed -n 's/^summary: //p' "$cg") $requests"
    rm -f "$cg"
}

echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds of" \
    "${WARMUP} s warm-up + ${DURATION} s per workload; server on core 0, client on core 1" >&2
for round in $(seq "$ROUNDS"); do
    for s in $SERVERS; do run_server "$s" "$round"; done
done

# pick NAME SIZE: the result line of NAME's round with the highest rate at SIZE.
pick() {
    grep "^$1 " "$RESULTS" | grep " size=$2 " | while read -r line; do
        echo "$(field rps "$line") $line"
    done | sort -g | tail -1 | cut -d' ' -f2-
}

echo
echo "TCP echo on loopback, server on core 0, client on core 1; each row is the"
echo "server's best of $ROUNDS rounds (highest rate); noise: CPU other processes took"
echo "meanwhile, in % of one core (the fewer, the more the row means):"
echo
echo "| server | 64 B × 50: req/s | server CPU ns/req | of which user | server CPU | client CPU | noise | 64 KiB × 10: MB/s | server CPU ns/msg | noise |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for s in $SERVERS; do
    a="$(pick "$s" 64)"
    b="$(pick "$s" 65536)"
    printf '| %s | %s | %s | %s | %s %% | %s %% | %s %% | %s | %s | %s %% |\n' "$s" \
        "$(field rps "$a")" "$(field server_cpu_ns_per_req "$a")" "$(field server_user_ns_per_req "$a")" \
        "$(field server_cpu_pct "$a")" "$(field client_cpu_pct "$a")" "$(field noise_pct "$a")" \
        "$(field mbps "$b")" "$(field server_cpu_ns_per_req "$b")" "$(field noise_pct "$b")"
done

# The streams API against the protocol path.
if [ "$MODE" = streams ] && grep -q "^echo_protocol " "$RESULTS" && grep -q "^echo_streams_api " "$RESULTS"; then
    p="$(pick echo_protocol 64)"
    q="$(pick echo_streams_api 64)"
    p64k="$(pick echo_protocol 65536)"
    q64k="$(pick echo_streams_api 65536)"
    echo
    echo "Streams API (start_server + readexactly / write + drain) vs the protocol path, server CPU per request:"
    echo
    awk -v pn="$(field server_cpu_ns_per_req "$p")" -v qn="$(field server_cpu_ns_per_req "$q")" \
        -v pu="$(field server_user_ns_per_req "$p")" -v qu="$(field server_user_ns_per_req "$q")" \
        -v pk="$(field server_cpu_ns_per_req "$p64k")" -v qk="$(field server_cpu_ns_per_req "$q64k")" 'BEGIN {
        printf "- 64 B x 50: %d ns vs %d ns = %.2fx (target <= 1.2x: %s); user space %d vs %d ns = %.2fx\n", qn, pn, qn / pn, (qn <= 1.2 * pn ? "met" : "NOT met"), qu, pu, (pu > 0 ? qu / pu : 0)
        printf "- 64 KiB x 10: %d ns vs %d ns per message = %.2fx\n", qk, pk, qk / pk
    }'
    if grep -q "^uvloop_protocol " "$RESULTS" && grep -q "^uvloop_streams " "$RESULTS"; then
        echo
        echo "uvloop, same run (asyncio.start_server + readexactly / write + drain vs an asyncio.Protocol):"
        echo
        awk -v pn="$(field server_cpu_ns_per_req "$(pick uvloop_protocol 64)")" \
            -v qn="$(field server_cpu_ns_per_req "$(pick uvloop_streams 64)")" \
            -v pk="$(field server_cpu_ns_per_req "$(pick uvloop_protocol 65536)")" \
            -v qk="$(field server_cpu_ns_per_req "$(pick uvloop_streams 65536)")" \
            -v en="$(field server_cpu_ns_per_req "$q")" 'BEGIN {
            printf "- 64 B x 50: %d ns vs %d ns = %.2fx (evloop streams: %.2fx of uvloop streams)\n", qn, pn, qn / pn, en / qn
            printf "- 64 KiB x 10: %d ns vs %d ns per message = %.2fx\n", qk, pk, qk / pk
        }'
    fi
    if [ "$CALLGRIND" = 1 ]; then
        echo
        echo "Instructions per 64 B round trip under callgrind (user space; ${CG_DURATION} s run minus idle start-up):"
        echo
        for s in echo_protocol echo_streams_api; do
            read -r base _ <<<"$(callgrind_total "$s" 0)"
            read -r total reqs <<<"$(callgrind_total "$s" "$CG_DURATION")"
            echo "$s $base $total $reqs" >&2
            eval "ir_$s=\$(( (total - base) / reqs ))"
            echo "- $s: $(( (total - base) / reqs )) instructions/request ($reqs requests)"
        done
        awk -v p="$ir_echo_protocol" -v q="$ir_echo_streams_api" 'BEGIN {
            printf "- ratio streams / protocol: %.2fx (target <= 1.2x: %s)\n", q / p, (q <= 1.2 * p ? "met" : "NOT met")
        }'
    fi
fi

# Verdict against the issue's targets, when tokio was measured.
if grep -q "^peer_tokio_echo " "$RESULTS"; then
    tokio_ns="$(field server_cpu_ns_per_req "$(pick peer_tokio_echo 64)")"
    tokio_user="$(field server_user_ns_per_req "$(pick peer_tokio_echo 64)")"
    tokio_rps="$(field rps "$(pick peer_tokio_echo 64)")"
    tokio_mbps="$(field mbps "$(pick peer_tokio_echo 65536)")"
    echo
    echo "Targets (absolute ones were set on a machine where tokio took ${TARGET_TOKIO_REF} ns/req;"
    echo "here tokio takes ${tokio_ns}, so the scaled target is target × ${tokio_ns} / ${TARGET_TOKIO_REF}):"
    echo
    for s in echo_protocol echo_streams; do
        grep -q "^$s " "$RESULTS" || continue
        target=$TARGET_PROTOCOL
        [ "$s" = echo_streams ] && target=$TARGET_STREAMS
        ns="$(field server_cpu_ns_per_req "$(pick "$s" 64)")"
        user="$(field server_user_ns_per_req "$(pick "$s" 64)")"
        rps="$(field rps "$(pick "$s" 64)")"
        mbps="$(field mbps "$(pick "$s" 65536)")"
        awk -v s="$s" -v ns="$ns" -v t="$target" -v tn="$tokio_ns" -v ref="$TARGET_TOKIO_REF" \
            -v rps="$rps" -v trps="$tokio_rps" -v mbps="$mbps" -v tmbps="$tokio_mbps" \
            -v user="${user:-0}" -v tuser="${tokio_user:-0}" 'BEGIN {
            scaled = t * tn / ref
            printf "- %s\n", s
            printf "  - CPU per 64 B round trip: %d ns = %.2f × tokio (target ≤ %d, scaled ≤ %d): %s\n", ns, ns / tn, t, scaled, (ns <= scaled ? "met" : "NOT met")
            printf "    (user space: %d ns, tokio %d ns)\n", user, tuser
            printf "  - 64 B round trips/s: %d vs tokio %d: %s\n", rps, trps, (rps >= trps ? "met" : "NOT met")
            printf "  - 64 KiB MB/s: %.1f vs tokio %.1f: %s\n", mbps, tmbps, (mbps >= tmbps ? "met" : "NOT met")
        }'
    done
fi
