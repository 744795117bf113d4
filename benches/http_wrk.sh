#!/usr/bin/env bash
# HTTP hello-world throughput: evloop's `http_hello` example against a tokio
# current-thread server doing the same work (`peer_tokio_http`, same parser and
# response), each measured by wrk.
#
#   benches/http_wrk.sh            # 5 s per server, 50 connections
#   DURATION=10s CONNECTIONS=100 benches/http_wrk.sh
#
# The server is pinned to core 0 and wrk (one thread) to core 1, so that they do not
# compete for a core; on a machine with one core both share it and the numbers mean
# little. Prints requests/s and the 99th percentile latency of each server.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-50}"

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

cargo build --quiet --release --example http_hello --example peer_tokio_http

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# bench NAME: starts target/release/examples/NAME, runs wrk against it, prints a line.
bench() {
    local name="$1" out addr report rps p99
    out="$(mktemp)"
    "${PIN_SERVER[@]}" "target/release/examples/$name" 127.0.0.1:0 >"$out" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        addr="$(sed -n 's/^listening on //p' "$out")"
        [ -n "$addr" ] && break
        sleep 0.05
    done
    rm -f "$out"
    if [ -z "$addr" ]; then
        echo "$name did not print its address" >&2
        exit 1
    fi
    report="$("${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://$addr/")"
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$report")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$report")"
    if grep -q "Non-2xx\|Socket errors" <<<"$report"; then
        echo "$report" >&2
    fi
    printf '%-16s %12s req/s   p99 %s\n' "$name" "$rps" "$p99"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

echo "wrk -t1 -c$CONNECTIONS -d$DURATION, server on core 0, wrk on core 1"
bench http_hello
bench peer_tokio_http
