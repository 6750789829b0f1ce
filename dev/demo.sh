#!/usr/bin/env bash
# dev/demo.sh: the Docker-free demo on this machine (Linux, root for network namespaces).
#
# Starts, from scratch and all on this machine:
#   - the local control plane with workloads (etcd, kube-apiserver, kube-controller-manager,
#     kube-scheduler, and dev/fakelet.py as the kubelet; see dev/localcluster), built from the
#     pinned upstream modules, with Istio installed from its own Helm charts by
#     `dev/up.sh --no-kind` and the real istiod (pilot-discovery) running against it;
#   - the sample app dev/goapp as two processes, v1 and v2, and dev/gateway standing in for
#     the ingress gateway's Envoy (dev/standin.sh). Real istiod computes the gateway's
#     configuration from what meshloop applies; dev/gateway is a Go stand-in that obeys it
#     over xDS, NOT Envoy. The real thing is dev/up.sh + tilt up;
#   - the chart's workloads (Deployments, Service) in namespace dev, as Tilt would apply them;
#   - `meshloop up` with the sample routing from charts/goapp (meshloop.yaml).
# Then prints the status URL and the first verification report, and keeps running until
# Ctrl-C, which stops everything it started.
#
#   dev/demo.sh --gateway-api   the same with the chart's Gateway API routing (routing.api:
#                        gateway: a Gateway of class istio and an HTTPRoute): istiod deploys the
#                        gateway (goapp-gateway-istio) and dev/gateway poses as its Pod; meshloop
#                        verifies at the address istiod writes into the Gateway's status
#   dev/demo.sh --tilt   the same under the real Tilt (built from its module, dev/tilt.sh):
#                        `tilt up --stream -- --demo` starts the stand-in, applies the workloads
#                        and runs meshloop, with Tilt's log streamed here; Ctrl-C stops Tilt,
#                        then `tilt down -- --demo` and `meshloop down` clear the cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[[ $(id -u) == 0 ]] || {
	echo "dev/demo.sh needs root (the app versions run in network namespaces): sudo dev/demo.sh" >&2
	exit 1
}

DIR=${MESHLOOP_DEMO_DIR:-target/demo-cluster}
TILT=0 GWAPI=0
case ${1:-} in
--tilt) TILT=1 ;;
--gateway-api) GWAPI=1 ;;
"") ;;
*)
	echo "usage: sudo dev/demo.sh [--tilt | --gateway-api]" >&2
	exit 2
	;;
esac
CONFIG=meshloop.yaml
LISTEN=127.0.0.1:8787
MPID=""
cleanup() {
	trap - EXIT INT TERM
	say "stopping"
	if [[ -n $MPID ]] && kill -INT "$MPID" 2>/dev/null; then
		wait "$MPID" 2>/dev/null || true
	fi
	dev/standin.sh down "$DIR/gateway-api" >/dev/null 2>&1 || true
	dev/standin.sh down "$DIR" >/dev/null 2>&1 || true
	dev/localcluster stop "$DIR" || true
}
trap cleanup EXIT

# The demo under `tilt up` (--tilt): Tilt starts the stand-in, applies the workloads and runs
# meshloop (Tiltfile, --demo). When Tilt stops, the teardown Tilt does not do: the routing
# objects are meshloop's.
tilt_demo() {
	say "tilt up --stream -- --demo (Tilt built from its module; Ctrl-C stops it)"
	cat <<EOF
Status:        http://$LISTEN/status     (readiness: http://$LISTEN/readyz)
Tilt's API:    dev/tilt.sh get uiresources; dev/tilt.sh logs meshloop
Try:           edit charts/goapp/templates/virtualservice.yaml and save: Tilt's log shows the
               apply and the verification that follows; break the YAML: meshloop turns not
               ready with the file:line:col, and the fix makes it Ready again
EOF
	local rc=0
	trap ':' INT # Ctrl-C is Tilt's; the teardown below still runs
	MESHLOOP_DEMO_DIR=$DIR dev/tilt.sh up --stream -- --demo || rc=$?
	say "tilt down -- --demo, meshloop down"
	MESHLOOP_DEMO_DIR=$DIR dev/tilt.sh down -- --demo || true
	target/release/meshloop down || true
	exit "$rc"
}
# --gateway-api: the chart's Services per version (the HTTPRoute's backends, which Tilt
# applies), and meshloop's config with the chart's Gateway API routing and that Gateway as the
# ingress.
gateway_api_setup() {
	"$BIN/helm" template goapp charts/goapp -n dev -f charts/goapp/values-dev.yaml \
		--set routing.api=gateway --show-only templates/gateway-api.yaml |
		python3 -c 'import sys
docs = sys.stdin.read().split("\n---\n")
print("\n---\n".join(d for d in docs if "\nkind: Service\n" in d))' |
		"$BIN/kubectl" apply -n dev -f -
	CONFIG=$DIR/meshloop-gateway-api.yaml
	sed -e "s|^  - chart: charts/goapp|  - chart: $PWD/charts/goapp|" \
		-e "s|values: \[charts/goapp/values-dev.yaml\]|values: [$PWD/charts/goapp/values-dev.yaml]\n    set: {routing.api: gateway}|" \
		-e "s|^watch: \[dev/goapp\]|watch: [$PWD/dev/goapp]|" \
		-e "s|^ingress: .*|ingress: {namespace: dev, gateway: goapp-gateway}|" meshloop.yaml >"$CONFIG"
}

# --gateway-api, once meshloop applied the Gateway: dev/gateway as the Pod istiod deploys for it.
gateway_api_gateway() {
	say "dev/gateway as the Pod istiod deploys for Gateway dev/goapp-gateway"
	mkdir -p "$DIR/gateway-api"
	INGRESS=$(dev/standin.sh up "$DIR/gateway-api" --cluster "$DIR" --gateway-api goapp-gateway \
		--namespace dev --versions "" | tail -n 1)
}
trap 'exit 0' INT TERM

say "building meshloop and the control plane (cached after the first run)"
cargo build --release --quiet
dev/localcluster build
dev/localcluster build --istio
BIN=$(dev/localcluster bin)
export MESHLOOP_HELM="$BIN/helm"

say "local cluster with workloads, Istio's charts and the real istiod"
KUBECONFIG=$(dev/localcluster start "$DIR" --istio | tail -n 1)
export KUBECONFIG
((TILT)) && tilt_demo

say "app v1 and v2, dev/gateway (routes from istiod) standing in for the gateway's Envoy"
INGRESS=$(dev/standin.sh up "$DIR" --gateway istio | tail -n 1)

say "the chart's workloads in namespace dev (what Tilt applies)"
"$BIN/kubectl" get namespace dev >/dev/null 2>&1 || "$BIN/kubectl" create namespace dev >/dev/null
"$BIN/kubectl" label namespace dev istio-injection=enabled --overwrite >/dev/null
"$BIN/helm" template goapp charts/goapp -n dev -f charts/goapp/values-dev.yaml \
	--show-only templates/deployment.yaml --show-only templates/service.yaml |
	"$BIN/kubectl" apply -n dev -f -
"$BIN/kubectl" -n dev rollout status deployment/goapp-v1 deployment/goapp-v2 --timeout=60s
((GWAPI)) && gateway_api_setup

say "meshloop up (the routing objects from charts/goapp)"
target/release/meshloop --config "$CONFIG" up --listen "$LISTEN" &
MPID=$!
for _ in $(seq 100); do
	curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break
	kill -0 "$MPID" 2>/dev/null || exit 1
	sleep 0.1
done
((GWAPI)) && gateway_api_gateway

say "meshloop verify (asks the daemon)"
target/release/meshloop --config "$CONFIG" verify --wait 30 || true

GWDIR=$DIR ML=target/release/meshloop
((GWAPI)) && GWDIR=$DIR/gateway-api ML="$ML --config $CONFIG"
cat <<EOF

Status:        http://$LISTEN/status     (readiness: http://$LISTEN/readyz)
By hand:       curl -H "Host: goapp.dev" http://$INGRESS/fortune
Gateway:       what istiod pushed to it: curl http://$(dev/standin.sh status "$GWDIR" | sed -n 's/.*admin http:\/\///p')/config
Try:           add "weights: {v1: 50, v2: 50}" to charts/goapp/values-dev.yaml and save: meshloop
               applies it, istiod pushes it to the gateway, and the next verification in the log
               passes with the new split (GET http://$LISTEN/status shows it);
               dev/standin.sh stop-version $DIR v2, then: $ML verify
               (v2 is down: the broken hop is named; start-version $DIR v2 brings it back);
               dev/localcluster istiod-stop $DIR, save a change, then: $ML verify
               (the gateway keeps its last routes; the change needs a push: the diagnosis names
               istiod; dev/localcluster istiod-start $DIR brings it back)
Ctrl-C stops everything.
EOF
wait "$MPID" || true
MPID=""
