# Shared by load.sh, compare.sh and fanout.sh (sourced, not run): a temporary state dir
# removed at exit, the fixtures, and starting/stopping a `berth serve` on a free port.
# Everything runs under `nice -n 10`: this is a shared 2-core machine.

NICE=(nice -n 10)
# The fixture customer, and the nested page every HTTP run measures.
AUTH="Basic $(printf 'kratos:deimos' | base64)"
PAGE_QUERY='{ containers(first: 100) { edges { node { uid name server { name } distro { name } tags loopboxes { filename } linkedTo domains { name } } } } }'

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d "/tmp/berth-$(basename "$0" .sh).XXXXXX")"
state="$work/state"
server_pid=""
cleanup() {
    stop_berth
    rm -rf "$work"
}
trap cleanup EXIT

# `berth admin` against the temporary state, as the given build.
admin() { "$BIN" admin --state-dir "$state" "$@"; }

# One customer (kratos) and one server it owns.
add_customer_and_server() {
    admin customer add --username kratos --password deimos --company "God of war" >/dev/null
    admin server add --name server1 --address 192.0.2.10 --memory 100000000 --storage 100000000 --owner kratos >/dev/null
}

# add_customer_and_server, then N containers with every relation (benches/seed.rs).
seed_containers() {
    add_customer_and_server
    "${NICE[@]}" cargo bench -q -p berth-benches --bench seed -- --database "sqlite://$state/berth.db" \
        --customer kratos --server server1 --containers "$1" >&2
}

# Starts "$BIN" serve on a free loopback port; sets server_pid and addr.
start_berth() {
    "${NICE[@]}" "$BIN" serve --state-dir "$state" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
    server_pid=$!
    for _ in $(seq 1 100); do
        grep -q "berth listening on" "$work/serve.out" 2>/dev/null && break
        sleep 0.1
    done
    addr="$(sed -n 's#^berth listening on http://##p' "$work/serve.out")"
    [ -n "$addr" ] || { cat "$work/serve.log" >&2; echo "server did not start" >&2; exit 1; }
}

stop_berth() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    server_pid=""
}
