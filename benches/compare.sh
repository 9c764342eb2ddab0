#!/usr/bin/env bash
# Side-by-side comparison of server builds: the same wrk runs against each binary in turn,
# twice over (A B A B), on one fixture database. For "did this change help?" questions;
# load.sh is the full measurement of one build.
#
#   benches/compare.sh /tmp/berth-before target/release/berth
#   DURATION=6s ROUTES="typename me page" CONTAINERS=100 benches/compare.sh A B
#
# Routes: healthz (static), typename ({ __typename }: GraphQL without SQL), me
# ({ me { company } }), page (the nested 100-container page), restme (REST GET /api/me, which
# lists every container uid). Needs wrk; run as in load.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

DURATION="${DURATION:-6s}"
CONNECTIONS="${CONNECTIONS:-50}"
CONTAINERS="${CONTAINERS:-100}"
ROUTES="${ROUTES:-healthz typename me page}"
NICE=(nice -n 10)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d /tmp/berth-compare.XXXXXX)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
state="$work/state"

"${NICE[@]}" cargo bench -q -p berth-benches --bench seed --no-run >&2
"$1" admin --state-dir "$state" customer add --username kratos --password deimos --company "God of war" >/dev/null
"$1" admin --state-dir "$state" server add --name server1 --address 192.0.2.10 --memory 100000000 \
    --storage 100000000 --owner kratos >/dev/null
"${NICE[@]}" cargo bench -q -p berth-benches --bench seed -- --database "sqlite://$state/berth.db" \
    --customer kratos --server server1 --containers "$CONTAINERS" >&2

auth="Basic $(printf 'kratos:deimos' | base64)"
page_query='{ containers(first: 100) { edges { node { uid name server { name } distro { name } tags loopboxes { filename } linkedTo domains { name } } } } }'
echo "| build | route | requests/s | p50 ms | p99 ms |"
echo "|---|---|---:|---:|---:|"
for _ in 1 2; do
    for bin in "$@"; do
        "${NICE[@]}" "$bin" serve --state-dir "$state" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
        server_pid=$!
        for _ in $(seq 1 100); do grep -q "berth listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
        addr="$(sed -n 's#^berth listening on http://##p' "$work/serve.out")"
        [ -n "$addr" ] || { cat "$work/serve.log" >&2; exit 1; }
        for route in $ROUTES; do
            case "$route" in
                healthz) method=GET; path=/healthz; body=""; a="" ;;
                typename) method=POST; path=/graphql; body='{"query":"{ __typename }"}'; a="$auth" ;;
                me) method=POST; path=/graphql; body='{"query":"{ me { company } }"}'; a="$auth" ;;
                page) method=POST; path=/graphql; body="{\"query\":\"$page_query\"}"; a="$auth" ;;
                restme) method=GET; path=/api/me; body=""; a="$auth" ;;
                *) echo "unknown route $route" >&2; exit 2 ;;
            esac
            line="$(WRK_METHOD="$method" WRK_BODY="$body" WRK_AUTH="$a" "${NICE[@]}" wrk -t2 -c"$CONNECTIONS" \
                -d"$DURATION" --timeout 10s --latency -s benches/wrk/request.lua "http://$addr$path" | grep '^WRKRESULT')"
            get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
            echo "| $bin | $route | $(get rps) | $(get p50_ms) | $(get p99_ms) |"
        done
        kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    done
done
