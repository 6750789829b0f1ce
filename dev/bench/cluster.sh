#!/usr/bin/env bash
# dev/bench/cluster.sh: the local control plane's own numbers: start time (median of 5 starts,
# each with the Istio CRDs installed and Established) and idle RSS of kube-apiserver + etcd
# after 30 s with nothing happening.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

dev/localcluster build >/dev/null
base=$(mktemp -d)
cleanup() {
	local d
	for d in "$base"/c*; do
		dev/localcluster stop "$d" >/dev/null 2>&1 || true
	done
	rm -rf "$base"
}
trap cleanup EXIT
times=()
for i in 1 2 3 4 5; do
	start=$(date +%s%N)
	dev/localcluster start "$base/c$i" >/dev/null 2>&1
	end=$(date +%s%N)
	times+=($(((end - start) / 1000000)))
	[[ $i == 5 ]] || dev/localcluster stop "$base/c$i" >/dev/null 2>&1
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "start with Istio CRDs Established: median $(sed -n 3p <<<"$sorted") ms (runs: ${times[*]} ms)"
sleep 30 # measuring idle memory means letting it idle
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
api=$(rss "$(cat "$base/c5/apiserver.pid")")
etcd=$(rss "$(cat "$base/c5/etcd.pid")")
echo "idle RSS after 30 s: kube-apiserver $((api / 1024)) MB + etcd $((etcd / 1024)) MB = $(((api + etcd) / 1024)) MB"
