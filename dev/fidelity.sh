#!/usr/bin/env bash
# dev/fidelity.sh: does `meshloop explain` send requests where Istio's own translation does?
#
#   dev/fidelity.sh [--n N] [--seed S] [--show K] [--keep]
#
# Runs every scenario of the corpus (tests/fidelity/NAME/: *.yaml + requests.json, with
# tests/fidelity/base.yaml's workloads; expect.json lists the differences meshloop makes on
# purpose; a meshloop.yaml naming `ingress.gateway` sends the requests to that Gateway API
# Gateway, in both tools), N Istio scenarios of the seeded generator (tests/fidelity/tool;
# default N=2000, FIDELITY_N) and N/4 Gateway API ones (FIDELITY_GATEWAY_API), through both `meshloop explain --offline -o json --requests` and dev/oracle
# (Istio's config generator + Envoy's route semantics), then prints the agreement per
# decision field, each disagreement with the objects involved, and the precision and
# recall of the error findings that predict 404/503 (`meshloop check`), and the time per
# scenario of both tools. Exits 1 on a corpus disagreement that is not expected, a scenario
# that fails to run, or a field under FIDELITY_MIN percent (99.5) over generated requests.
# The oracle is built once into the cache (dev/oracle; 10+ minutes cold).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

n=${FIDELITY_N:-2000}
gateway_api=${FIDELITY_GATEWAY_API:-$((n / 4))}
seed=${FIDELITY_SEED:-1}
show=20
keep=
while (($#)); do
	case $1 in
	--n) n=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--show) show=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "dev/fidelity.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

work=$(mktemp -d)
if [[ -n $keep ]]; then
	echo "keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/out" "$work/cwd"

cargo build --quiet --bin meshloop
meshloop=$root/target/debug/meshloop
(cd tests/fidelity/tool && GOTOOLCHAIN=local go build -o "$work/fidelity" .)
"$work/fidelity" gen --out "$work/gen" --n "$n" --gateway-api "$gateway_api" --seed "$seed"
dev/oracle --build >/dev/null

# The scenario list: the oracle's batch, and the runs the comparison reads.
python3 - "$root/tests/fidelity" "$work" >"$work/runs.json" <<'EOF'
import glob, json, os, re, sys
corpus, work = sys.argv[1], sys.argv[2]
base = os.path.join(corpus, "base.yaml")
runs, batch = [], []
dirs = [("corpus", d) for d in sorted(glob.glob(corpus + "/*/")) if os.path.exists(d + "requests.json")]
dirs += [("generated", d) for d in sorted(glob.glob(work + "/gen/*/"))]
for kind, d in dirs:
    name = os.path.basename(d.rstrip("/"))
    config = d + "meshloop.yaml"
    files = [base] + sorted(f for f in glob.glob(d + "*.yaml") if f != config)
    out = os.path.join(work, "out", name)
    expect = d + "expect.json"
    runs.append({"name": name, "kind": kind, "files": files, "requests": d + "requests.json",
                 "oracle": out + ".oracle.json", "meshloop": out + ".meshloop.json",
                 "check": out + ".check.json", "expect": expect if os.path.exists(expect) else "",
                 "config": config if os.path.exists(config) else "-"})
    sc = {"name": name, "files": files, "requests": d + "requests.json", "out": out + ".oracle.json"}
    gateway = re.search(r"^\s+gateway:\s*(\S+)", open(config).read(), re.M) if os.path.exists(config) else None
    if gateway:
        sc["gateway"] = gateway.group(1)
    batch.append(sc)
json.dump(batch, open(os.path.join(work, "batch.json"), "w"))
json.dump(runs, sys.stdout)
EOF
count=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/runs.json")

now() { date +%s%N; }
t0=$(now)
ORACLE_LOG=$work/oracle.log dev/oracle --batch "$work/batch.json"
t1=$(now)
# meshloop runs where no meshloop.yaml is (the scenario's files are all it reads), unless
# the scenario has its own ("-": none).
python3 -c '
import json, sys
for r in json.load(open(sys.argv[1])):
    print(r["requests"], r["meshloop"], r["check"], r["config"], *r["files"], sep="\t")' "$work/runs.json" >"$work/list.tsv"
each() { # each explain|check LIST: one meshloop process per scenario
	while IFS=$'\t' read -r requests out check config files; do
		read -r -a f <<<"${files//$'\t'/ }"
		local c=()
		[[ $config == - ]] || c=(--config "$config")
		if [[ $1 == explain ]]; then
			(cd "$work/cwd" && "$meshloop" explain "${c[@]}" --offline -o json --requests "$requests" "${f[@]}" >"$out" 2>>"$work/meshloop.log") || true
		else
			(cd "$work/cwd" && "$meshloop" check "${c[@]}" --offline -o json "${f[@]}" >"$check" 2>>"$work/meshloop.log") || true
		fi
	done <"$2"
}
# As many meshloop processes at once as the oracle has workers.
jobs=${ORACLE_WORKERS:-$(nproc)}
split -n "l/$jobs" "$work/list.tsv" "$work/part."
parallel() {
	for part in "$work"/part.*; do
		each "$1" "$part" &
	done
	wait
}
parallel explain
t2=$(now)
parallel check

status=0
"$work/fidelity" compare --runs "$work/runs.json" --min "${FIDELITY_MIN:-99.5}" --show "$show" || status=$?
awk -v n="$count" -v w="${ORACLE_WORKERS:-$(nproc)}" -v o=$((t1 - t0)) -v m=$((t2 - t1)) 'BEGIN {
	printf "\ntime per scenario (%d scenarios, wall clock): oracle %.1f ms (one process for all, %d workers), meshloop explain %.1f ms (one process per scenario, %d at once)\n", n, o / n / 1e6, w, m / n / 1e6, w }'
exit "$status"
