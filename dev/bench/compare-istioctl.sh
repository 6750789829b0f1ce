#!/usr/bin/env bash
# dev/bench/compare-istioctl.sh: meshloop's findings next to istioctl's, fixture by fixture.
#
# For every analyzer fixture under tests/fixtures/analyze, prints the codes `meshloop check
# --offline` reports (with the IST codes they correspond to) and the codes `istioctl analyze
# --use-kube=false -A` reports on the same file. Uses the istioctl that dev/bench/check.sh
# builds into the cache (run that first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

mod=$(awk '$1 == "require" && $2 == "istio.io/istio" {print $3}' dev/gomod/istio/go.mod)
istioctl=${MESHLOOP_CACHE:-$HOME/.cache/meshloop}/istioctl-${mod##*-}/istioctl
[[ -x $istioctl ]] || {
	echo "no istioctl at $istioctl: run dev/bench/check.sh first (it builds it)" >&2
	exit 1
}
cargo build --release --quiet --bin meshloop
bin="${CARGO_TARGET_DIR:-target}/release/meshloop"
codes='import json, sys
try:
    fs = json.load(sys.stdin)
except ValueError:
    fs = []
out = set()
for f in fs:
    ist = [e for e in f.get("equivalent", []) if e.startswith("IST")]
    out.add(f["code"] + ("(" + "/".join(ist) + ")" if ist else ""))
print(" ".join(sorted(out)) or "-")'
printf '%-8s %-28s %-40s %s\n' fixture file meshloop istioctl
for f in tests/fixtures/analyze/*/*.yaml; do
	ml=$({ "$bin" check --offline -o json "$f" 2>/dev/null || true; } | python3 -c "$codes")
	ist=$("$istioctl" analyze --use-kube=false -A "$f" 2>&1 |
		grep -oE '^(Error|Warning|Info) \[IST[0-9]+\]' | awk '{print $2}' | tr -d '[]' | sort -u | tr '\n' ' ' || true)
	printf '%-8s %-28s %-40s %s\n' "$(basename "$(dirname "$f")")" "$(basename "$f")" "$ml" "${ist:--}"
done
