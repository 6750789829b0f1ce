#!/usr/bin/env bash
# dev/bench.sh [SCENARIO...]: the benchmarks, against a local API server started for the run.
#
# Scenarios: ssa sync save idle verify events (default: all), see benches/loop.rs. `verify` needs root
# (dev/standin.sh runs the sample app in network namespaces). Each prints medians and
# p99, with its anchor (kubectl, an inotifywait loop) run against the same API server in the
# same run. Numbers are for reading, not for passing or failing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v inotifywait >/dev/null 2>&1 || {
	echo "bench: installing inotify-tools (the anchor of the save scenario)" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq inotify-tools >/dev/null
}
dev/localcluster build
DIR=target/bench-cluster-$$
MESHLOOP_BENCH_KUBECONFIG=$(dev/localcluster start "$DIR" --workloads --owner-pid $$ | tail -n 1)
export MESHLOOP_BENCH_KUBECONFIG
trap 'dev/localcluster stop "$DIR" >/dev/null 2>&1' EXIT
echo "API server: $(dev/localcluster bin)/kube-apiserver on $(grep server: "$MESHLOOP_BENCH_KUBECONFIG" | awk '{print $2}')"
cargo bench --quiet --bench loop -- "$@"
