#!/usr/bin/env bash
# hyper 1.x hello-world throughput and latency: the `hyper_server` example (hyper on
# evloop through `evloop::compat`, feature `hyper`) against the same hyper server on
# tokio's current-thread runtime (`peer_tokio_hyper`), each loaded by `wrk -t1 -c50`
# in the same run, server pinned to core 0 and wrk to core 1. Reports req/s and
# p50/p99 latency for both (plus CPU per request and machine noise).
#
#   benches/hyper_wrk.sh                      # ~35 s: 2 rounds of 1 s warm-up + 5 s each
#   ROUNDS=3 DURATION=10 benches/hyper_wrk.sh
#
# The measuring is benches/http_wrk.sh's (see there for what each column means);
# this script only names the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVERS="hyper_server peer_tokio_hyper" FEATURES=hyper exec benches/http_wrk.sh "$@"
