#!/usr/bin/env bash
# dev/bench/check.sh: the `meshloop check --offline` benchmark of issue 5.
#
# Generates 1,000 objects in 50 files (tests/analyze_bench.rs), reports the median wall time
# of loading and analyzing them in process (release build, 21 runs), then, when the meshloop
# binary has the `check` command, the median wall time of `meshloop check --offline DIR` as a
# process (21 runs), which adds process start-up, and in the same run `istioctl analyze
# --use-kube=false -A` over the same files (11 runs; istioctl is built once from the
# istio.io/istio module pinned in dev/gomod/istio into the cache, several minutes cold; set
# MESHLOOP_BENCH_NO_ISTIOCTL=1 to leave it out), with the findings of both tallied by code.
# MESHLOOP_BENCH_KIND=httproute does the same over 1,000 Gateway API HTTPRoutes in 50 files
# (with their Gateways and Services) instead of the Istio objects.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

bench=bench_check_offline
[[ ${MESHLOOP_BENCH_KIND:-} == httproute ]] && bench=bench_check_offline_httproutes
MESHLOOP_BENCH_DIR="$dir/routing" cargo test --release --quiet --test analyze_bench \
	-- --ignored --nocapture --exact "$bench" 2>&1 | grep -E '^check --offline'

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
printf 'meshloop findings by code: %s\n' "$("$bin" check --offline --output json "$dir/routing" |
	python3 -c 'import json,sys,collections; c=collections.Counter(f["code"] for f in json.load(sys.stdin)); print(", ".join(f"{k} x{v}" for k,v in sorted(c.items())) or "none")')"

[[ ${MESHLOOP_BENCH_NO_ISTIOCTL:-} == 1 ]] && exit 0
mod=$(awk '$1 == "require" && $2 == "istio.io/istio" {print $3}' dev/gomod/istio/go.mod)
istioctl=${MESHLOOP_CACHE:-$HOME/.cache/meshloop}/istioctl-${mod##*-}/istioctl
if [[ ! -x $istioctl ]]; then
	echo "building istioctl from istio.io/istio $mod (once; several minutes)"
	mkdir -p "$(dirname "$istioctl")"
	(cd dev/gomod/istio && GOTOOLCHAIN=local go build -trimpath -o "$istioctl.tmp" istio.io/istio/istioctl/cmd/istioctl)
	mv "$istioctl.tmp" "$istioctl"
fi
times=()
for _ in $(seq 11); do
	start=$(date +%s%N)
	"$istioctl" analyze --use-kube=false -A "$dir/routing" >"$dir/istioctl.out" 2>&1 || true
	end=$(date +%s%N)
	times+=($(((end - start) / 1000)))
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 6p)
printf 'istioctl analyze --use-kube=false -A (process, istio.io/istio %s): median %d.%03d ms over 11 runs\n' \
	"$mod" $((median / 1000)) $((median % 1000))
printf 'istioctl findings by code: %s\n' "$(grep -oE '^(Error|Warning|Info) \[IST[0-9]+\]' "$dir/istioctl.out" |
	awk '{print $2}' | tr -d '[]' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')"
grep -q 'No validation issues' "$dir/istioctl.out" && echo "istioctl: no validation issues found"
