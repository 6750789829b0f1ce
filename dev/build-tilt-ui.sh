#!/usr/bin/env bash
# dev/build-tilt-ui.sh: a Tilt with its web UI, built from its module (optional; not in CI).
#
#   dev/build-tilt-ui.sh        prints the path of the binary last
#
# A Tilt built from its Go module has no web assets (pkg/assets/build holds only a
# placeholder; releases build the JavaScript first). This copies the module pinned in
# dev/gomod/tilt to ${MESHLOOP_CACHE:-~/.cache/meshloop}/tilt-<version>-ui/src, builds the UI
# in its web/ with the yarn release Tilt ships (packages from the npm registry that `npm config
# get registry` names), copies it into pkg/assets/build and builds tilt there. Run it with
#
#   MESHLOOP_TILT=<printed path> dev/tilt.sh up --web-mode=precompiled -- --demo
#
# Needs Node.js (18 or newer), Go and a C compiler; cold: the npm install and the webpack build
# (several minutes and ~1 GB in node_modules), plus the Go build (mostly cached after
# dev/check-tiltfile.sh). The UI loads its fonts from a CDN: offline they fall back.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD=$ROOT/dev/gomod/tilt
TILT_VERSION=$(sed -n 's|^require github.com/tilt-dev/tilt \(v[0-9][^ ]*\)$|\1|p' "$MOD/go.mod")
CACHE=${MESHLOOP_CACHE:-$HOME/.cache/meshloop}
OUT=$CACHE/tilt-$TILT_VERSION-ui
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

say() { printf 'build-tilt-ui: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

[[ -n $TILT_VERSION ]] || die "no tilt version in $MOD/go.mod"
if [[ -x $OUT/bin/tilt ]]; then
	echo "$OUT/bin/tilt"
	exit 0
fi
for tool in node go cc; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

module=$(cd "$MOD" && GOFLAGS=-mod=mod go mod download -json github.com/tilt-dev/tilt |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $module/web ]] || die "no web/ in the tilt module ($module)"

src=$OUT/src
if [[ ! -f $src/.copied ]]; then
	say "copying the tilt module to $src"
	rm -rf "$src"
	mkdir -p "$OUT"
	cp -r "$module" "$src"
	chmod -R u+w "$src"
	touch "$src/.copied"
fi

say "building the web UI in $src/web (yarn $(ls "$src/web/.yarn/releases"))"
yarn_js=$(ls "$src"/web/.yarn/releases/yarn-*.cjs)
(
	cd "$src/web"
	export YARN_NPM_REGISTRY_SERVER=${YARN_NPM_REGISTRY_SERVER:-$(npm config get registry)}
	export YARN_ENABLE_TELEMETRY=0 CI=false GENERATE_SOURCEMAP=false
	node "$yarn_js" install
	node "$yarn_js" run build
)
cp -r "$src/web/build/." "$src/pkg/assets/build/"

say "building tilt with the UI embedded"
mkdir -p "$OUT/bin"
(cd "$src" && CGO_ENABLED=1 go build -ldflags "-X main.version=${TILT_VERSION#v}" \
	-o "$OUT/bin/tilt.partial" ./cmd/tilt)
mv "$OUT/bin/tilt.partial" "$OUT/bin/tilt"
echo "$OUT/bin/tilt"
