#!/usr/bin/env bash
# dev/test.sh: the whole test suite, from a clean clone on a fresh machine.
#
# Installs what it needs (Debian packages: shellcheck, curl, openssl, gcc, nginx-light and
# iproute2 for the stand-in gateway of the verification tests, chromium for the status page's
# browser test; the npm package puppeteer-core, which drives it), builds the pinned
# control plane (etcd, kube-apiserver, kubectl, helm) into the cache outside the repo if it is
# not there yet (dev/localcluster build; 10-20 min cold, seconds warm), istiod (pilot-discovery
# from the pinned istio.io/istio, dev/localcluster build --istio; 10+ min cold) and dev/gateway
# (the Go stand-in for the gateway's Envoy, dev/gateway/build.sh), then runs:
# the static checks (cargo fmt, clippy, shellcheck, go vet, helm lint, the Tiltfile evaluated
# by a real Tilt built from its Go module and cached like the control plane) and every test
# (Rust unit and integration tests against real API servers, among them tests/tilt.rs, which
# runs the real Tilt built for the Tiltfile check, as root; the Go tests of the sample app and
# of the stand-in gateway dev/gateway), and dev/fidelity.sh (meshloop explain against
# Istio's own translation, with the oracle built once into the cache).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the checks and tests use; installed only when missing.
need_pkgs=()
for p in shellcheck:shellcheck curl:curl openssl:openssl gcc:gcc nginx:nginx-light ip:iproute2 chromium:chromium node:nodejs npm:npm; do
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

# The browser test's driver (tests/browser): puppeteer-core at the version of its lock file,
# reinstalled only when the lock file changed. It never downloads a browser of its own.
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.installed-lock.json; then
	step "npm ci (tests/browser: puppeteer-core)"
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	cp tests/browser/package-lock.json tests/browser/node_modules/.installed-lock.json
fi

step "control plane (dev/localcluster build)"
dev/localcluster build
BIN=$(dev/localcluster bin)
export MESHLOOP_HELM="$BIN/helm"

step "istiod (dev/localcluster build --istio) and dev/gateway (dev/gateway/build.sh)"
dev/localcluster build --istio
dev/gateway/build.sh >/dev/null

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "shellcheck"
shellcheck dev/*.sh dev/bench/*.sh dev/localcluster dev/oracle dev/gateway/build.sh

step "helm lint charts/goapp"
"$BIN/helm" lint --quiet charts/goapp
"$BIN/helm" lint --quiet charts/goapp -f charts/goapp/values-dev.yaml
"$BIN/helm" lint --quiet charts/goapp -f charts/goapp/values-dev.yaml --set routing.api=gateway

step "Tiltfile (tilt alpha tiltfile-result, Tilt built from its module)"
dev/check-tiltfile.sh

step "go vet and go test (dev/goapp)"
(cd dev/goapp && GOTOOLCHAIN=local go vet ./... && GOTOOLCHAIN=local go test -count=1 ./...)

step "go vet and go test (dev/gateway: route matcher, proxy, xDS client against go-control-plane's ADS server)"
(cd dev/gateway && GOTOOLCHAIN=local go vet ./... && GOTOOLCHAIN=local go test -count=1 ./...)

step "cargo test (unit and integration; the benchmarks run with dev/bench.sh)"
cargo test --lib --bins --tests

# The Gateway API conformance cases through `meshloop explain` (dev/conformance.py); the floor
# is the agreement reached when it was added, so a regression in the translation fails here.
step "Gateway API conformance cases through meshloop explain"
python3 dev/conformance.py --min-agree 221

step "fidelity: meshloop explain against Istio's own translation (dev/fidelity.sh, ${FIDELITY_N:-2000} generated scenarios)"
# The oracle links most of istiod: built once into the cache (10+ minutes cold).
dev/oracle --build >/dev/null
(cd dev/gomod/istio-oracle && GOTOOLCHAIN=local CGO_ENABLED=0 go vet -trimpath .)
(cd tests/fidelity/tool && GOTOOLCHAIN=local go vet .)
dev/fidelity.sh --n "${FIDELITY_N:-2000}"
