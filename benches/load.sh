#!/usr/bin/env bash
# HTTP load runs with wrk against the release `berth serve` (issue 3). Measures, in ONE run
# and with the same wrk settings, the static route and the API routes, and prints a Markdown
# table with requests/s, latency p50/p99 and the ratio of each route's requests/s to /healthz.
#
#   benches/load.sh                          # -t2 -c50 -d10s, 10,000 containers
#   DURATION=20s CONNECTIONS=50 THREADS=2 CONTAINERS=10000 benches/load.sh
#   ROUTES='healthz|company' benches/load.sh   # only the routes whose name matches (grep -E)
#   BIN=/tmp/berth-old benches/load.sh       # measure another build of the server
#   HOLD=1 benches/load.sh                   # keep the server up afterwards (for perf), until Enter
#
# Needs `wrk` (Debian: apt-get install -y wrk). Builds once (cargo build --release -p berth,
# plus the seeding helper benches/seed.rs), everything under `nice -n 10`: this is a shared
# 2-core machine. The server gets a temporary state dir, removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
CONTAINERS="${CONTAINERS:-10000}"
WRK_SETTINGS=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s --latency)
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
# shellcheck source=benches/common.sh
. benches/common.sh

echo "== build (once)" >&2
# BIN=path/to/berth measures another build of the server (side-by-side comparisons).
[ -n "${BIN:-}" ] || "${NICE[@]}" cargo build --release -p berth >&2
"${NICE[@]}" cargo bench -p berth-benches --bench seed --no-run >&2
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/berth}"

echo "== fixtures: 1 customer, 1 server, $CONTAINERS containers with relations" >&2
seed_containers "$CONTAINERS"

echo "== serve" >&2
start_berth
base="http://$addr"
auth="$AUTH"
me_body='{"query":"{ me { company } }"}'
page_body="{\"query\":\"$PAGE_QUERY\"}"

echo "== sanity: every route answers what we think it does" >&2
curl -fsS "$base/healthz" >/dev/null
curl -fsS -H "Authorization: $auth" -d "$me_body" "$base/graphql" | grep -q '"company":"God of war"'
page="$(curl -fsS -H "Authorization: $auth" -H 'Content-Type: application/json' -d "$page_body" "$base/graphql")"
if grep -q '"errors"' <<<"$page"; then echo "$page" | head -c 500 >&2; exit 1; fi
nodes="$(grep -o '"uid":' <<<"$page" | wc -l)"
[ "$nodes" -eq 100 ] || { echo "nested page has $nodes nodes, expected 100" >&2; exit 1; }
grep -q '"domains":\[{"name"' <<<"$page" || { echo "nested page has no domains" >&2; exit 1; }
curl -fsS -H "Authorization: $auth" "$base/api/me" | grep -q '"company"'
listed="$(curl -fsS -H "Authorization: $auth" "$base/api/containers" | grep -o '"uid":' | wc -l)"
echo "REST /api/containers lists $listed containers" >&2
[ "$listed" -eq "$CONTAINERS" ] || { echo "expected $CONTAINERS" >&2; exit 1; }

# name | method | path | body | auth
routes=(
    "GET /healthz (static)|GET|/healthz||"
    "GraphQL { me { company } }|POST|/graphql|$me_body|$auth"
    "GraphQL nested 100-container page|POST|/graphql|$page_body|$auth"
    "REST GET /api/me|GET|/api/me||$auth"
    "REST GET /api/containers ($CONTAINERS rows)|GET|/api/containers||$auth"
)

results=()
for r in "${routes[@]}"; do
    IFS='|' read -r name method path body a <<<"$r"
    if [ -n "${ROUTES:-}" ] && ! grep -qiE "$ROUTES" <<<"$name"; then continue; fi
    echo "== wrk ${WRK_SETTINGS[*]} $method $path" >&2
    out="$(WRK_METHOD="$method" WRK_BODY="$body" WRK_AUTH="$a" \
        "${NICE[@]}" wrk "${WRK_SETTINGS[@]}" -s benches/wrk/request.lua "$base$path")"
    echo "$out" >&2
    line="$(grep '^WRKRESULT' <<<"$out")"
    results+=("$name|$line")
    sleep 2
done

if [ -n "${HOLD:-}" ]; then echo "server pid $server_pid at $base; Enter ends" >&2; read -r _; fi
rss="$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")"
slow_acquires="$(grep -c "time to acquire exceeded" "$work/serve.log" || true)"
echo
echo "wrk ${WRK_SETTINGS[*]}; server VmRSS after the runs: ${rss} KiB; sqlx pool waits over 2 s logged: ${slow_acquires}"
echo
echo "| route | requests/s | p50 ms | p99 ms | max ms | errors (socket/non-2xx) | req/s ÷ /healthz |"
echo "|---|---:|---:|---:|---:|---:|---:|"
base_rps=""
for r in "${results[@]}"; do
    name="${r%%|*}"; line="${r#*|}"
    get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
    rps="$(get rps)"; [ -n "$base_rps" ] || base_rps="$rps"
    ratio="$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { printf "%.3f", a / b }')"
    echo "| $name | $rps | $(get p50_ms) | $(get p99_ms) | $(get max_ms) | $(get socket_errors)/$(get non2xx) | $ratio |"
done
