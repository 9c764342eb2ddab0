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
# lists every container uid). Needs wrk; run as in load.sh. "server µs/req" is the server's
# CPU (utime + stime from /proc) over the wrk run divided by the requests answered: the
# figure least moved by wrk sharing the machine's cores. WRITES=N (default 0) changes the
# fixture customer's data N times a second during every wrk run (a GraphQL mutation through
# curl), so that answers kept by the gateway go stale as they would under use.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

DURATION="${DURATION:-6s}"
CONNECTIONS="${CONNECTIONS:-50}"
CONTAINERS="${CONTAINERS:-100}"
ROUTES="${ROUTES:-healthz typename me page}"
WRITES="${WRITES:-0}"
# shellcheck source=benches/common.sh
. benches/common.sh

"${NICE[@]}" cargo bench -q -p berth-benches --bench seed --no-run >&2
BIN="$1" seed_containers "$CONTAINERS"

# Changes the customer's company WRITES times a second until killed.
writer() {
    local pause i=0
    pause="$(awk -v w="$WRITES" 'BEGIN { printf "%.4f", 1 / w }')"
    while :; do
        i=$((i + 1))
        curl -s -o /dev/null -X POST -H "Authorization: $AUTH" -H 'Content-Type: application/json' \
            --data "{\"query\":\"mutation { updateMe(input: { company: \\\"write $i\\\" }) { company } }\"}" \
            "http://$addr/graphql"
        sleep "$pause"
    done
}

# utime + stime of the server, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

echo "| build | route | requests/s | p50 ms | p99 ms | server µs/req |"
echo "|---|---|---:|---:|---:|---:|"
for _ in 1 2; do
    for bin in "$@"; do
        BIN="$bin" start_berth
        for route in $ROUTES; do
            case "$route" in
                healthz) method=GET; path=/healthz; body=""; a="" ;;
                typename) method=POST; path=/graphql; body='{"query":"{ __typename }"}'; a="$AUTH" ;;
                me) method=POST; path=/graphql; body='{"query":"{ me { company } }"}'; a="$AUTH" ;;
                page) method=POST; path=/graphql; body="{\"query\":\"$PAGE_QUERY\"}"; a="$AUTH" ;;
                restme) method=GET; path=/api/me; body=""; a="$AUTH" ;;
                *) echo "unknown route $route" >&2; exit 2 ;;
            esac
            writer_pid=""
            if [ "$WRITES" != 0 ]; then writer & writer_pid=$!; fi
            before="$(cpu_ticks)"
            line="$(WRK_METHOD="$method" WRK_BODY="$body" WRK_AUTH="$a" "${NICE[@]}" wrk -t2 -c"$CONNECTIONS" \
                -d"$DURATION" --timeout 10s --latency -s benches/wrk/request.lua "http://$addr$path" | grep '^WRKRESULT')"
            after="$(cpu_ticks)"
            if [ -n "$writer_pid" ]; then kill "$writer_pid" 2>/dev/null || true; wait "$writer_pid" 2>/dev/null || true; fi
            get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
            per_request="$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$(get requests)" \
                'BEGIN { printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0) }')"
            echo "| $bin | $route | $(get rps) | $(get p50_ms) | $(get p99_ms) | $per_request |"
        done
        stop_berth
    done
done
