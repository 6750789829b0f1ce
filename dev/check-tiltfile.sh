#!/usr/bin/env bash
# dev/check-tiltfile.sh: evaluate the Tiltfile with the real Tilt, without Docker or a cluster.
#
#   dev/check-tiltfile.sh [TILTFILE]     (default: the Tiltfile at the repository root)
#
#   dev/check-tiltfile.sh --build        (only build tilt if it is not cached, print its path)
#
# Builds tilt at the version pinned in dev/gomod/tilt/go.mod into
# ${MESHLOOP_CACHE:-~/.cache/meshloop}/tilt-<version>-notrim/bin/tilt if it is not there (5-15
# min cold on 2 cores, with cgo: tilt's Tiltfile language server needs it; cached afterwards),
# then runs `tilt alpha tiltfile-result`, which executes the Tiltfile (including `helm
# template` of the chart) and prints what Tilt would run, twice: as is, and in its Docker-free
# mode (`-- --demo`). It uses the helm that `dev/localcluster build` caches, or helm on PATH,
# and a throwaway kubeconfig whose contexts are kind-meshloop and localcluster (nothing
# connects to them), so the user's clusters are never read.
#
# Beyond "evaluates without error", it checks what the Tiltfile promises: no Istio object in
# anything Tilt applies, the app and meshloop resources present, meshloop with a readiness
# probe, and every UI button wired to a command; in demo mode also no image build and the
# workloads after the stand-in. Exit 0 and one OK line, or 1 with the reason.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD=$ROOT/dev/gomod/tilt
TILT_VERSION=$(sed -n 's|^require github.com/tilt-dev/tilt \(v[0-9][^ ]*\)$|\1|p' "$MOD/go.mod")
CACHE=${MESHLOOP_CACHE:-$HOME/.cache/meshloop}
# Without -trimpath: `tilt up`/`tilt ci` find the web UI's static files through the source
# path compiled into the binary (web.StaticPath uses runtime.Caller), and a -trimpath build
# exits with "Could not find Tilt web static files". The -notrim key keeps an older -trimpath
# build in the same cache from ever being reused.
TILT_BIN=$CACHE/tilt-$TILT_VERSION-notrim/bin
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=${GOFLAGS:--mod=readonly}

say() { printf 'check-tiltfile: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

[[ -n $TILT_VERSION ]] || die "no 'require github.com/tilt-dev/tilt vX.Y.Z' line in $MOD/go.mod"
BUILD_ONLY=0
if [[ ${1:-} == --build ]]; then
	BUILD_ONLY=1
	shift
fi
TILTFILE=$(cd "$(dirname "${1:-$ROOT/Tiltfile}")" && pwd)/$(basename "${1:-Tiltfile}")
[[ -f $TILTFILE ]] || die "no such file: $TILTFILE"

build_tilt() {
	command -v go >/dev/null 2>&1 ||
		die "no Go toolchain on PATH: install Go 1.26 or newer (https://go.dev/dl) and retry"
	command -v cc >/dev/null 2>&1 ||
		die "no C compiler (cc) on PATH: tilt needs cgo (apt-get install gcc, or Xcode's command line tools)"
	say "building tilt $TILT_VERSION into $TILT_BIN (cold: 5-15 min; cached afterwards)"
	local start=$SECONDS tmp log
	mkdir -p "$TILT_BIN"
	tmp=$(mktemp -d "$TILT_BIN/.partial.XXXXXX")
	log=$tmp/build.log
	if ! (cd "$MOD" && CGO_ENABLED=1 go build \
		-ldflags "-s -w -X main.version=${TILT_VERSION#v}" \
		-o "$tmp/tilt" github.com/tilt-dev/tilt/cmd/tilt) >"$log" 2>&1; then
		cat "$log" >&2
		rm -rf "$tmp"
		die "go build of tilt $TILT_VERSION failed (output above)"
	fi
	mv "$tmp/tilt" "$TILT_BIN/tilt"
	rm -rf "$tmp"
	say "built in $((SECONDS - start)) s"
}

[[ -x $TILT_BIN/tilt ]] || build_tilt
if ((BUILD_ONLY)); then
	echo "$TILT_BIN/tilt"
	exit 0
fi

helm_dir=$("$ROOT/dev/localcluster" bin)
if [[ -x $helm_dir/helm ]]; then
	export PATH="$helm_dir:$PATH"
elif ! command -v helm >/dev/null 2>&1; then
	die "no helm: run dev/localcluster build (or put helm on PATH)"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for ctx in kind-meshloop localcluster; do
	cat >"$work/kubeconfig-$ctx" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $ctx
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: $ctx
  user: {token: unused}
contexts:
- name: $ctx
  context: {cluster: $ctx, user: $ctx}
current-context: $ctx
EOF
done

# evaluate CONTEXT [TILTFILE ARGS...]: the result as JSON in $work/result.json.
evaluate() {
	local ctx=$1 rc=0
	shift
	(cd "$(dirname "$TILTFILE")" && KUBECONFIG="$work/kubeconfig-$ctx" MESHLOOP_CLUSTER=meshloop \
		TILT_DISABLE_ANALYTICS=1 "$TILT_BIN/tilt" alpha tiltfile-result -f "$TILTFILE" "$@") \
		>"$work/result.json" 2>"$work/stderr" || rc=$?
	if ((rc != 0)); then
		cat "$work/stderr" >&2
		case $rc in
		5) die "the Tiltfile does not evaluate${1:+ with $*} (tilt $TILT_VERSION, exit 5; message above)" ;;
		*) die "tilt alpha tiltfile-result failed (exit $rc; output above)" ;;
		esac
	fi
}

# check MODE: what the Tiltfile promises, from $work/result.json; prints a summary.
check() {
	python3 - "$work/result.json" "$1" <<'EOF'
import json
import re
import sys

result = json.load(open(sys.argv[1]))
demo = sys.argv[2] == "demo"
problems = []
manifests = {m["Name"]: m for m in result.get("Manifests") or []}

istio = re.compile(r"^apiVersion: *[a-z.]*istio\.io/", re.M)
for name, m in manifests.items():
    if istio.search((m.get("DeployTarget") or {}).get("yaml") or ""):
        problems.append(f"resource {name}: Tilt would apply Istio objects (they are meshloop's)")

for name in ("goapp-v1", "goapp-v2", "meshloop", "gateway-check"):
    if name not in manifests:
        problems.append(f"no resource {name}")
meshloop = (manifests.get("meshloop") or {}).get("DeployTarget") or {}
if meshloop and not meshloop.get("ReadinessProbe"):
    problems.append("resource meshloop has no readiness_probe")

objects = result.get("ObjectSet") or {}
buttons = objects.get("tilt.dev/v1alpha1, Resource=uibuttons") or {}
cmds = objects.get("tilt.dev/v1alpha1, Resource=cmds") or {}
started = {b for c in cmds.values() for b in ((c.get("spec") or {}).get("startOn") or {}).get("uiButtons") or []}
for b in sorted(buttons):
    if b not in started:
        problems.append(f"button {b} starts no command")
if len(buttons) < 3:
    problems.append(f"expected 3 buttons, found {len(buttons)}")
if demo:
    if "standin" not in manifests:
        problems.append("demo mode: no resource standin")
    for name, m in manifests.items():
        if m.get("ImageTargets"):
            problems.append(f"demo mode: resource {name} builds an image (no Docker here)")
    for name in ("goapp-v1", "goapp-v2"):
        if "standin" not in ((manifests.get(name) or {}).get("ResourceDependencies") or []):
            problems.append(f"demo mode: {name} does not wait for the stand-in (its Pods need their addresses)")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"resources: {' '.join(manifests)}; buttons: {', '.join(sorted(b['spec'].get('text', n) for n, b in buttons.items()))}")
EOF
}

evaluate kind-meshloop
summary=$(check real) || die "$(printf 'the Tiltfile evaluates, but:\n%s' "$summary")"
evaluate localcluster -- --demo
demo=$(check demo) || die "$(printf 'the Tiltfile evaluates with -- --demo, but:\n%s' "$demo")"

say "OK: $(basename "$TILTFILE") evaluates with tilt $TILT_VERSION ($summary); with -- --demo ($demo)"
