#!/usr/bin/env bash
# WebSocket fan-out (issue 4): N graphql-transport-ws subscriptions `subscription { alarms
# { id } }` of one customer on the release `berth serve`; ONE alarm raised per round through
# POST /graphql; time until every subscriber has it (p50/p99), and server RSS per idle
# subscriber.
#
#   benches/fanout.sh                        # 10,000 subscribers, 60 measured rounds
#   SUBSCRIBERS=10000 ROUNDS=60 SOURCES=8 benches/fanout.sh
#   BIN=/tmp/berth-a CLIENT=/tmp/fanout-b CLIENT_THREADS=1 benches/fanout.sh   # other builds
#
# The measuring client runs one worker thread by default: it shares the two cores with the
# server, and a second thread cost it half as much CPU again in cross-thread wake-ups.
#
# Builds once (cargo build --release -p berth and the tool benches/fanout.rs), all under
# `nice -n 10` (shared 2-core machine). Raises the open-file limit for both processes (each
# subscription is one socket on each side) and spreads the client side over SOURCES loopback
# addresses 127.0.0.2.. so ephemeral ports never run short.
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS="${SUBSCRIBERS:-10000}"
# 60 rounds: a round in which Linux kept both server workers on one CPU takes ~1.5 times as
# long (BENCHMARKS §3, 2026-12-04); with 20, two such rounds decided the p99 alone.
ROUNDS="${ROUNDS:-60}"
SOURCES="${SOURCES:-8}"
# shellcheck source=benches/common.sh
. benches/common.sh
[ "$(ulimit -n)" -gt $((SUBSCRIBERS + 1000)) ] || { echo "open-file limit $(ulimit -n) too low" >&2; exit 1; }

echo "== build (once)" >&2
# BIN=path/to/berth measures another build of the server (side-by-side comparisons).
[ -n "${BIN:-}" ] || "${NICE[@]}" cargo build --release -p berth >&2
[ -n "${CLIENT:-}" ] || "${NICE[@]}" cargo bench -p berth-benches --bench fanout --no-run >&2
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/berth}"

add_customer_and_server
uid="$(admin container add --customer kratos --server server1 --name hydra --memory 500 --storage 5000 \
    | sed -n 's/.*"uid":\([0-9]*\).*/\1/p')"
[ -n "$uid" ] || { echo "no container uid" >&2; exit 1; }

# All subscribers are one customer's: the operator of such a customer raises its socket limit.
export BERTH_MAX_WEBSOCKETS_PER_CUSTOMER="${BERTH_MAX_WEBSOCKETS_PER_CUSTOMER:-$SUBSCRIBERS}"
start_berth
echo "== berth serve pid $server_pid on $addr; fd limit $(ulimit -n)" >&2

# CLIENT=path/to/fanout-<hash> measures with another build of the measuring client.
client=(cargo bench -q -p berth-benches --bench fanout --)
[ -z "${CLIENT:-}" ] || client=("$CLIENT")
"${NICE[@]}" "${client[@]}" --addr "$addr" --user kratos --password deimos \
    --container "$uid" --subscribers "$SUBSCRIBERS" --rounds "$ROUNDS" --server-pid "$server_pid" --sources "$SOURCES" \
    --client-threads "${CLIENT_THREADS:-1}"
if grep -qiE "lagged|error" "$work/serve.log"; then
    echo "== server log mentions errors:" >&2
    grep -iE "lagged|error" "$work/serve.log" | head -20 >&2
fi
