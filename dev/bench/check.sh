#!/usr/bin/env bash
# dev/bench/check.sh: the `meshloop check --offline` benchmark of issue 5.
#
# Generates 1,000 objects in 50 files (tests/analyze_bench.rs), reports the median wall time
# of loading and analyzing them in process (release build, 21 runs), then, when the meshloop
# binary has the `check` command, the median wall time of `meshloop check --offline DIR` as a
# process (21 runs), which adds process start-up. istioctl is not part of this run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

MESHLOOP_BENCH_DIR="$dir/routing" cargo test --release --quiet --test analyze_bench \
	-- --ignored --nocapture bench_check_offline 2>&1 | grep -E '^check --offline'

cargo build --release --quiet --bin meshloop
bin="${CARGO_TARGET_DIR:-target}/release/meshloop"
if ! "$bin" check --help >/dev/null 2>&1; then
	echo "meshloop binary has no check command yet: process timing skipped"
	exit 0
fi
times=()
for _ in $(seq 21); do
	start=$(date +%s%N)
	"$bin" check --offline --output json "$dir/routing" >/dev/null || true
	end=$(date +%s%N)
	times+=($(((end - start) / 1000)))
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 11p)
printf 'meshloop check --offline (process): median %d.%03d ms over 21 runs\n' $((median / 1000)) $((median % 1000))
