#!/usr/bin/env bash
# dev/down.sh: delete the kind cluster dev/up.sh made, and everything in it (Istio, the app).
#
#   dev/down.sh              delete the cluster; keep the local registry (its images and other
#                            clusters that use it survive)
#   dev/down.sh --registry   also delete the registry container dev/up.sh started without
#                            ctlptl (kind-registry); ctlptl's registry is left to
#                            `ctlptl delete registry ctlptl-registry`
#
# MESHLOOP_CLUSTER names the cluster as for dev/up.sh (default meshloop). Deleting a cluster
# that does not exist is not an error. Needs docker and kind; uses ctlptl when installed.
set -euo pipefail

CLUSTER_NAME=${MESHLOOP_CLUSTER:-meshloop}
CONTEXT=kind-$CLUSTER_NAME
REGISTRY_NAME=kind-registry

say() { printf 'down: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

usage() {
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

delete_registry=0
while (($#)); do
	case $1 in
	--registry) delete_registry=1 ;;
	-h | --help) usage ;;
	*)
		say "unknown argument: $1"
		usage
		;;
	esac
	shift
done

missing=()
for t in docker kind; do
	have "$t" || missing+=("$t")
done
if ((${#missing[@]})); then
	die "missing tools: ${missing[*]} (install them and put them on PATH)"
fi
docker info >/dev/null 2>&1 ||
	die "docker is installed but its daemon does not answer ('docker info' failed): start Docker and retry"

if kind get clusters 2>/dev/null | grep -qx -- "$CLUSTER_NAME"; then
	say "deleting cluster $CONTEXT"
	if have ctlptl; then
		ctlptl delete cluster "$CONTEXT"
	else
		kind delete cluster --name "$CLUSTER_NAME"
	fi
else
	say "no kind cluster named $CLUSTER_NAME; nothing to delete"
fi

if ((delete_registry)); then
	if docker inspect "$REGISTRY_NAME" >/dev/null 2>&1; then
		say "deleting registry container $REGISTRY_NAME"
		docker rm -f "$REGISTRY_NAME" >/dev/null
	else
		say "no registry container $REGISTRY_NAME"
	fi
fi
