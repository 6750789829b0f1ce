#!/usr/bin/env bash
# dev/test.sh: the whole test suite, from a clean clone on a fresh machine.
#
# Installs what it needs (Debian packages: shellcheck, curl, openssl, gcc, and nginx-light and
# iproute2 for the stand-in gateway of the verification tests), builds the pinned
# control plane (etcd, kube-apiserver, kubectl, helm) into the cache outside the repo if it is
# not there yet (dev/localcluster build; 10-20 min cold, seconds warm), then runs:
# the static checks (cargo fmt, clippy, shellcheck, go vet, helm lint, the Tiltfile evaluated
# by a real Tilt built from its Go module and cached like the control plane) and every test
# (Rust unit and integration tests against real API servers, the sample app's Go tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the checks and tests use; installed only when missing.
need_pkgs=()
for p in shellcheck:shellcheck curl:curl openssl:openssl gcc:gcc nginx:nginx-light ip:iproute2; do
	command -v "${p%%:*}" >/dev/null 2>&1 || need_pkgs+=("${p##*:}")
done
if ((${#need_pkgs[@]})); then
	step "installing ${need_pkgs[*]}"
	if [[ $(id -u) == 0 ]]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
	else
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
	fi
fi

step "control plane (dev/localcluster build)"
dev/localcluster build
BIN=$(dev/localcluster bin)
export MESHLOOP_HELM="$BIN/helm"

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "shellcheck"
shellcheck dev/*.sh dev/bench/*.sh dev/localcluster

step "helm lint charts/goapp"
"$BIN/helm" lint --quiet charts/goapp
"$BIN/helm" lint --quiet charts/goapp -f charts/goapp/values-dev.yaml
"$BIN/helm" lint --quiet charts/goapp -f charts/goapp/values-dev.yaml --set routing.api=gateway

step "Tiltfile (tilt alpha tiltfile-result, Tilt built from its module)"
dev/check-tiltfile.sh

step "go vet and go test (dev/goapp)"
(cd dev/goapp && GOTOOLCHAIN=local go vet ./... && GOTOOLCHAIN=local go test -count=1 ./...)

step "cargo test (unit and integration; the benchmarks run with dev/bench.sh)"
cargo test --lib --bins --tests

# The Gateway API conformance cases through `meshloop explain` (dev/conformance.py); the floor
# is the agreement reached when it was added, so a regression in the translation fails here.
step "Gateway API conformance cases through meshloop explain"
python3 dev/conformance.py --min-agree 221
