#!/usr/bin/env bash
# dev/gateway/build.sh: build the stand-in gateway once per source version, print its path.
#
# The binary goes to ${MESHLOOP_CACHE:-~/.cache/meshloop}/gateway-<hash>/gateway, where
# <hash> covers the module's Go sources (tests excluded), go.mod and go.sum; when that file
# exists nothing is built. The last line printed is the binary's path (callers use
# `bin=$(dev/gateway/build.sh | tail -n1)`); progress goes to stderr. Cold: about a minute on
# 2 cores with an empty Go build cache (gRPC and the Envoy API protos); warm: instant.
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${MESHLOOP_CACHE:-$HOME/.cache/meshloop}
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS=${GOFLAGS:--mod=readonly}

say() { printf 'gateway build: %s\n' "$*" >&2; }

command -v go >/dev/null 2>&1 ||
	{ say "error: no Go toolchain on PATH: install Go 1.26 or newer (https://go.dev/dl) and retry"; exit 1; }

hash=$(cd "$DIR" &&
	find . \( -name '*.go' ! -name '*_test.go' \) -o -name go.mod -o -name go.sum | LC_ALL=C sort |
	xargs sha256sum | sha256sum | cut -c1-12)
out=$CACHE/gateway-$hash
if [[ ! -x $out/gateway ]]; then
	say "building into $out"
	mkdir -p "$out"
	tmp=$(mktemp -d "$out/.partial.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$DIR" && go build -trimpath -o "$tmp/gateway" .)
	mv "$tmp/gateway" "$out/gateway"
fi
echo "$out/gateway"
