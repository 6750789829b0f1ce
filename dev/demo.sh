#!/usr/bin/env bash
# dev/demo.sh: the Docker-free demo on this machine.
#
# Starts the local control plane (a real etcd + kube-apiserver with the Istio CRDs, built from
# the pinned upstream modules; see dev/localcluster), applies the sample's routing objects
# from charts/goapp with `meshloop apply`, shows them, shows that a second apply changes
# nothing, and stops the cluster on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dev/localcluster build
DIR=${MESHLOOP_DEMO_DIR:-target/demo-cluster}
KUBECONFIG=$(dev/localcluster start "$DIR" | tail -n 1)
export KUBECONFIG
trap 'dev/localcluster stop "$DIR"' EXIT
BIN=$(dev/localcluster bin)
export MESHLOOP_HELM="$BIN/helm"

cargo build --release --quiet
echo
echo "\$ meshloop apply"
target/release/meshloop apply
echo
echo "\$ kubectl get gateways,virtualservices,destinationrules -n dev -L meshloop.dev/instance"
"$BIN/kubectl" get gateways,virtualservices,destinationrules -n dev -L meshloop.dev/instance
echo
echo "\$ meshloop apply   # again: nothing changed, nothing is sent"
target/release/meshloop apply
