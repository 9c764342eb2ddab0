#!/usr/bin/env bash
# create→running latency: Berth's jail backend vs a raw unshare + pivot_root jail of the
# same busybox rootfs, side by side in one run (root; see BENCHMARKS.md).
#   bash benches/jail_start.sh            # 25 runs each
#   RUNS=50 bash benches/jail_start.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "jail_start.sh: needs root" >&2; exit 1; }
cargo build --release -q -p berth-jail --bin berth-jail-helper
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BERTH_JAIL_HELPER="$target_dir/release/berth-jail-helper" cargo bench -q -p berth-benches --bench jail_start
