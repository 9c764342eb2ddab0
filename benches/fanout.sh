#!/usr/bin/env bash
# WebSocket fan-out (issue 4): N graphql-transport-ws subscriptions `subscription { alarms
# { id } }` of one customer on the release `berth serve`; ONE alarm raised per round through
# POST /graphql; time until every subscriber has it (p50/p99), and server RSS per idle
# subscriber.
#
#   benches/fanout.sh                        # 10,000 subscribers, 20 measured rounds
#   SUBSCRIBERS=10000 ROUNDS=20 SOURCES=8 benches/fanout.sh
#
# Builds once (cargo build --release -p berth and the tool benches/fanout.rs), all under
# `nice -n 10` (shared 2-core machine). Raises the open-file limit for both processes (each
# subscription is one socket on each side) and spreads the client side over SOURCES loopback
# addresses 127.0.0.2.. so ephemeral ports never run short.
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS="${SUBSCRIBERS:-10000}"
ROUNDS="${ROUNDS:-20}"
SOURCES="${SOURCES:-8}"
NICE=(nice -n 10)

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((SUBSCRIBERS + 1000)) ] || { echo "open-file limit $(ulimit -n) too low" >&2; exit 1; }

echo "== build (once)" >&2
# BIN=path/to/berth measures another build of the server (side-by-side comparisons).
[ -n "${BIN:-}" ] || "${NICE[@]}" cargo build --release -p berth >&2
"${NICE[@]}" cargo bench -p berth-benches --bench fanout --no-run >&2
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/berth}"

work="$(mktemp -d /tmp/berth-fanout.XXXXXX)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
state="$work/state"

admin() { "$BIN" admin --state-dir "$state" "$@"; }
admin customer add --username kratos --password deimos --company "God of war" >/dev/null
admin server add --name server1 --address 192.0.2.10 --memory 100000 --storage 100000 --owner kratos >/dev/null
uid="$(admin container add --customer kratos --server server1 --name hydra --memory 500 --storage 5000 \
    | sed -n 's/.*"uid":\([0-9]*\).*/\1/p')"
[ -n "$uid" ] || { echo "no container uid" >&2; exit 1; }

"${NICE[@]}" "$BIN" serve --state-dir "$state" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 1 100); do
    grep -q "berth listening on" "$work/serve.out" 2>/dev/null && break
    sleep 0.1
done
addr="$(sed -n 's#^berth listening on http://##p' "$work/serve.out")"
[ -n "$addr" ] || { cat "$work/serve.log" >&2; echo "server did not start" >&2; exit 1; }
echo "== berth serve pid $server_pid on $addr; fd limit $(ulimit -n)" >&2

"${NICE[@]}" cargo bench -q -p berth-benches --bench fanout -- --addr "$addr" --user kratos --password deimos \
    --container "$uid" --subscribers "$SUBSCRIBERS" --rounds "$ROUNDS" --server-pid "$server_pid" --sources "$SOURCES" \
    --client-threads "${CLIENT_THREADS:-0}"
if grep -qiE "lagged|error" "$work/serve.log"; then
    echo "== server log mentions errors:" >&2
    grep -iE "lagged|error" "$work/serve.log" | head -20 >&2
fi
