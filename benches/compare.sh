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
# shellcheck source=benches/common.sh
. benches/common.sh

"${NICE[@]}" cargo bench -q -p berth-benches --bench seed --no-run >&2
BIN="$1" seed_containers "$CONTAINERS"

echo "| build | route | requests/s | p50 ms | p99 ms |"
echo "|---|---|---:|---:|---:|"
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
            line="$(WRK_METHOD="$method" WRK_BODY="$body" WRK_AUTH="$a" "${NICE[@]}" wrk -t2 -c"$CONNECTIONS" \
                -d"$DURATION" --timeout 10s --latency -s benches/wrk/request.lua "http://$addr$path" | grep '^WRKRESULT')"
            get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
            echo "| $bin | $route | $(get rps) | $(get p50_ms) | $(get p99_ms) |"
        done
        stop_berth
    done
done
