#!/usr/bin/env bash
# dev/bench.sh [SCENARIO...]: the benchmarks, against a local API server started for the run.
#
# Scenarios: ssa sync save idle verify istio events (default: all), see benches/loop.rs.
# `verify` and `istio` need root (dev/standin.sh runs the sample app in network namespaces;
# dev/gateway serves port 80). The cluster is started with --istio (Istio's charts, the real
# istiod; the Helm install times are printed, and a no-op `dev/up.sh --no-kind` is timed), and
# dev/gateway stands in for the gateway's Envoy for `istio`. Each prints medians and
# p99, with its anchor (kubectl, an inotifywait loop) run against the same API server in the
# same run. Numbers are for reading, not for passing or failing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v inotifywait >/dev/null 2>&1 || {
	echo "bench: installing inotify-tools (the anchor of the save scenario)" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq inotify-tools >/dev/null
}
dev/localcluster build
dev/localcluster build --istio
DIR=target/bench-cluster-$$
t0=$(date +%s%N)
MESHLOOP_BENCH_KUBECONFIG=$(dev/localcluster start "$DIR" --istio --owner-pid $$ | tail -n 1)
export MESHLOOP_BENCH_KUBECONFIG
trap 'dev/standin.sh down "$DIR/gateway" >/dev/null 2>&1; dev/localcluster stop "$DIR" >/dev/null 2>&1' EXIT
echo "cluster with Istio started in $((($(date +%s%N) - t0) / 1000000)) ms; helm installs (dev/up.sh --no-kind):"
grep -E '^up: (istio-base|istiod|istio-ingress):' "$DIR/up.log" | sed 's/^/  /'
t0=$(date +%s%N)
dev/localcluster istio-install "$DIR" 2>/dev/null
echo "no-op upgrade (dev/up.sh --no-kind again): $((($(date +%s%N) - t0) / 1000000)) ms"
mkdir -p "$DIR/gateway"
MESHLOOP_BENCH_GATEWAY=$(dev/standin.sh up "$DIR/gateway" --cluster "$DIR" --gateway istio --versions "" | tail -n 1)
export MESHLOOP_BENCH_GATEWAY
echo "API server: $(dev/localcluster bin)/kube-apiserver on $(grep server: "$MESHLOOP_BENCH_KUBECONFIG" | awk '{print $2}')"
cargo bench --quiet --bench loop -- "$@"
