#!/usr/bin/env bash
# dev/up.sh: a local Kubernetes cluster with Istio, ready for `tilt up`.
#
#   dev/up.sh                       create (or reuse) the cluster, install or upgrade Istio
#   ISTIO_VERSION=x.y.z dev/up.sh   the same with another Istio version (upgrades in place)
#   dev/up.sh --no-kind             no kind cluster, no registry: install or upgrade Istio on
#                                   the cluster of the current kubeconfig context (step 2 and 3
#                                   only; dev/localcluster start --istio runs it this way)
#
# Every step is idempotent; running it again upgrades in place and changes nothing else:
# 1. A kind cluster "meshloop" (kubectl context kind-meshloop), created through ctlptl when it
#    is installed and with kind otherwise, with a local image registry that Tilt finds through
#    the kube-public/local-registry-hosting ConfigMap, and the ingress gateway's fixed NodePort
#    (the nodePort in dev/istio-values.yaml) mapped to 127.0.0.1:$INGRESS_HOST_PORT on the host,
#    which works on Linux, macOS and Windows alike.
# 2. Istio with Helm, as the upstream Helm install guide does: the istio chart repository, the
#    `base` and `istiod` charts in istio-system, the `gateway` chart as release istio-ingress in
#    namespace istio-ingress with dev/istio-values.yaml. istiod uses Istio's `demo` profile
#    (small resource requests, Envoy access logs on stdout, so `kubectl logs` on the gateway
#    shows each request with its response flags).
# 3. The Gateway API CRDs (standard channel, the release's standard-install.yaml), before
#    istiod, so istiod's gateway controller serves Gateway + HTTPRoute from its start.
# 4. Namespace dev, labelled istio-injection=enabled.
#
# Environment:
#   ISTIO_VERSION       Istio chart version (default: the pin below)
#   MESHLOOP_CLUSTER    kind cluster name (default meshloop; context kind-$MESHLOOP_CLUSTER;
#                       the Tiltfile reads the same variable)
#   INGRESS_HOST_PORT   host port for the gateway's http2 port (default: the nodePort itself,
#                       30080, so 127.0.0.1:<nodePort> reaches the gateway on every OS, which is
#                       where `meshloop verify` looks after the node's own address; applies
#                       when the cluster is created, run dev/down.sh first to change it)
#   REGISTRY_PORT       host port of the registry set up without ctlptl (default 5001)
#   KIND_NODE_IMAGE     kindest/node image for a new cluster (default: the one kind picks)
#   MESHLOOP_NO_CTLPTL  set to 1 to use kind even when ctlptl is installed
#   ISTIO_CHARTS        a directory laid out as Istio's manifests/charts (base,
#                       istio-control/istio-discovery, gateway): install those charts instead
#                       of the chart repository's (no network; the version is the charts')
#   ISTIO_VALUES        the gateway chart's values file (default dev/istio-values.yaml)
#   GATEWAY_API_CRDS    a file or directory of the Gateway API CRDs to apply instead of the
#                       release's standard-install.yaml (no network)
#   ISTIO_EXTRA_VALUES  a directory whose base.yaml, istiod.yaml and gateway.yaml (each
#                       optional) are given to that chart after the values above
#   ISTIO_DEFAULT_REVISION  the base chart's defaultRevision (default: default)
#
# Needs docker (with a running daemon), kind, helm and kubectl; ctlptl is optional (it drives
# kind); with --no-kind only helm and kubectl. Runs with the bash 3.2 of macOS. dev/down.sh
# deletes the cluster.
set -euo pipefail

# The Istio version, pinned here only. The Docker-free tests use the CRDs of the same release
# (istio.io/api, pinned in dev/localcluster).
ISTIO_VERSION=${ISTIO_VERSION:-1.32.0}
ISTIO_REPO=https://istio-release.storage.googleapis.com/charts
# The Gateway API CRD bundle; the same release as dev/localcluster's GATEWAY_API_VERSION.
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.6.3}
GATEWAY_API_URL=https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml
GATEWAY_API_CRDS=${GATEWAY_API_CRDS:-$GATEWAY_API_URL}

CLUSTER_NAME=${MESHLOOP_CLUSTER:-meshloop}
CONTEXT=kind-$CLUSTER_NAME
INGRESS_HOST_PORT=${INGRESS_HOST_PORT:-}
REGISTRY_NAME=kind-registry
REGISTRY_PORT=${REGISTRY_PORT:-5001}
APP_NAMESPACE=dev

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VALUES=${ISTIO_VALUES:-$ROOT/dev/istio-values.yaml}
EXTRA=${ISTIO_EXTRA_VALUES:-}
CHARTS=${ISTIO_CHARTS:-}
NO_KIND=0

say() { printf 'up: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# All missing tools are named at once, each with where to get it.
check_tools() {
	local missing=() t want=(docker kind helm kubectl)
	((NO_KIND)) && want=(helm kubectl)
	for t in "${want[@]}"; do
		have "$t" || missing+=("$t")
	done
	if ((${#missing[@]})); then
		say "missing tools: ${missing[*]}"
		for t in "${missing[@]}"; do
			case $t in
			docker) printf '  %-8s %s\n' docker "Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/" ;;
			kind) printf '  %-8s %s\n' kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation (needed with ctlptl too)" ;;
			helm) printf '  %-8s %s\n' helm "https://helm.sh/docs/intro/install/" ;;
			kubectl) printf '  %-8s %s\n' kubectl "https://kubernetes.io/docs/tasks/tools/" ;;
			esac
		done >&2
		say "install them, put them on PATH and run dev/up.sh again"
		exit 1
	fi
	((NO_KIND)) && return 0
	docker info >/dev/null 2>&1 ||
		die "docker is installed but its daemon does not answer ('docker info' failed): start Docker and retry"
}

# With --no-kind, the current context of the kubeconfig (KUBECONFIG or ~/.kube/config).
k() {
	if ((NO_KIND)); then kubectl "$@"; else kubectl --context "$CONTEXT" "$@"; fi
}
h() {
	if ((NO_KIND)); then helm "$@"; else helm --kube-context "$CONTEXT" "$@"; fi
}

# The gateway's http2 nodePort, from dev/istio-values.yaml (its one nodePort).
node_port() {
	local p
	p=$(sed -n 's/^[[:space:]]*nodePort:[[:space:]]*\([0-9][0-9]*\).*$/\1/p' "$VALUES" | head -n1)
	[[ -n $p ]] || die "no nodePort found in $VALUES"
	printf '%s\n' "$p"
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx -- "$CLUSTER_NAME"; }

# The kind node list of the cluster: one control-plane node whose ingress NodePort is
# published on the host's loopback only.
kind_nodes_yaml() {
	printf 'nodes:\n'
	printf '  - role: control-plane\n'
	if [[ -n ${KIND_NODE_IMAGE:-} ]]; then
		printf '    image: %s\n' "$KIND_NODE_IMAGE"
	fi
	printf '    extraPortMappings:\n'
	printf '      - containerPort: %s\n' "$NODE_PORT"
	printf '        hostPort: %s\n' "$INGRESS_HOST_PORT"
	printf '        listenAddress: "127.0.0.1"\n'
	printf '        protocol: TCP\n'
}

# ctlptl creates the cluster, the registry container ctlptl-registry (if missing), wires them
# together and writes kube-public/local-registry-hosting itself.
create_with_ctlptl() {
	say "creating cluster $CONTEXT with ctlptl (registry ctlptl-registry)"
	{
		printf 'apiVersion: ctlptl.dev/v1alpha1\nkind: Cluster\nproduct: kind\n'
		printf 'name: %s\nregistry: ctlptl-registry\nkindV1Alpha4Cluster:\n' "$CONTEXT"
		kind_nodes_yaml | sed 's/^/  /'
	} | ctlptl apply -f -
}

# kind's documented local-registry setup: containerd reads per-registry hosts.toml files.
create_with_kind() {
	say "creating cluster $CONTEXT with kind"
	{
		printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n'
		printf 'containerdConfigPatches:\n'
		printf '  - |-\n'
		printf '    [plugins."io.containerd.grpc.v1.cri".registry]\n'
		printf '      config_path = "/etc/containerd/certs.d"\n'
		kind_nodes_yaml
	} | kind create cluster --name "$CLUSTER_NAME" --config=- --wait 120s
}

# A registry container on 127.0.0.1:$REGISTRY_PORT, reachable from the nodes as
# localhost:$REGISTRY_PORT, and the ConfigMap that tells Tilt to push there.
setup_kind_registry() {
	local running
	running=$(docker inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true)
	if [[ $running == false ]]; then
		docker start "$REGISTRY_NAME" >/dev/null
	elif [[ $running != true ]]; then
		say "starting registry $REGISTRY_NAME on 127.0.0.1:$REGISTRY_PORT"
		docker run -d --restart=always -p "127.0.0.1:$REGISTRY_PORT:5000" --network bridge \
			--name "$REGISTRY_NAME" registry:3 >/dev/null
	fi
	# An existing registry container keeps the port it was created with.
	local port
	port=$(docker port "$REGISTRY_NAME" 5000/tcp | head -n1 | sed 's/.*://')
	[[ -n $port ]] || die "registry container $REGISTRY_NAME publishes no port for 5000/tcp"
	local dir="/etc/containerd/certs.d/localhost:$port" node
	for node in $(kind get nodes --name "$CLUSTER_NAME"); do
		docker exec "$node" mkdir -p "$dir"
		printf '[host."http://%s:5000"]\n' "$REGISTRY_NAME" |
			docker exec -i "$node" cp /dev/stdin "$dir/hosts.toml"
	done
	if [[ $(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REGISTRY_NAME") == null ]]; then
		docker network connect kind "$REGISTRY_NAME"
	fi
	k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:$port"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
EOF
}

ensure_cluster() {
	if cluster_exists; then
		say "cluster $CONTEXT exists; reusing it"
		local node=$CLUSTER_NAME-control-plane
		if [[ $(docker inspect -f '{{.State.Running}}' "$node" 2>/dev/null || true) == false ]]; then
			say "starting stopped node $node"
			docker start "$node" >/dev/null
		fi
		# Makes kind-$CLUSTER_NAME the current context, as creating the cluster does.
		kind export kubeconfig --name "$CLUSTER_NAME" >/dev/null ||
			die "kind export kubeconfig --name $CLUSTER_NAME failed"
	elif [[ ${MESHLOOP_NO_CTLPTL:-0} != 1 ]] && have ctlptl; then
		create_with_ctlptl
	else
		create_with_kind
	fi
	k wait --for=condition=Ready nodes --all --timeout=180s >/dev/null ||
		die "the nodes of $CONTEXT did not become Ready within 180 s (kubectl --context $CONTEXT get nodes)"
	# A registry is configured once; ctlptl or an earlier run may have done it.
	if ! k -n kube-public get configmap local-registry-hosting >/dev/null 2>&1; then
		setup_kind_registry
	fi
}

# Where the ingress answers on the host; the mapping is fixed when the cluster is created.
ingress_address() {
	local mapped
	mapped=$(docker port "$CLUSTER_NAME-control-plane" "$NODE_PORT/tcp" 2>/dev/null | head -n1 || true)
	if [[ -z $mapped ]]; then
		say "warning: cluster $CONTEXT does not publish NodePort $NODE_PORT on the host (it was not created by dev/up.sh);"
		say "warning: the gateway is not reachable on 127.0.0.1; recreate it: dev/down.sh && dev/up.sh"
		return 0
	fi
	if [[ ${mapped##*:} != "$INGRESS_HOST_PORT" ]]; then
		say "note: the cluster was created with host port ${mapped##*:}, not $INGRESS_HOST_PORT; dev/down.sh first to change it"
	fi
	printf 'http://%s\n' "$mapped"
}

installed_istio_version() {
	h list -n istio-system --filter '^istiod$' -o json 2>/dev/null |
		sed -n 's/.*"app_version":"\([^"]*\)".*/\1/p'
}

# chart NAME: where the chart comes from (repository chart, or ISTIO_CHARTS's directory).
chart() {
	if [[ -z $CHARTS ]]; then
		printf 'istio/%s\n' "$1"
		return
	fi
	case $1 in
	base) printf '%s/base\n' "$CHARTS" ;;
	istiod) printf '%s/istio-control/istio-discovery\n' "$CHARTS" ;;
	gateway) printf '%s/gateway\n' "$CHARTS" ;;
	esac
}

# chart_args NAME: sets ARGS to --version for the repository's chart, and the extra values
# file of that chart.
chart_args() {
	ARGS=()
	[[ -z $CHARTS ]] && ARGS+=(--version "$ISTIO_VERSION")
	if [[ -n $EXTRA && -f $EXTRA/$1.yaml ]]; then
		ARGS+=(--values "$EXTRA/$1.yaml")
	fi
	return 0
}

# Server-side: the HTTPRoute CRD is larger than client-side apply's annotation allows.
install_gateway_api() {
	say "installing the Gateway API CRDs $GATEWAY_API_VERSION (standard channel)"
	k apply --server-side --field-manager=meshloop-up -f "$GATEWAY_API_CRDS" >/dev/null
	k wait --for condition=Established --timeout=120s \
		crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io >/dev/null
}

install_istio() {
	local before
	before=$(installed_istio_version || true)
	if [[ -z $before ]]; then
		say "installing Istio $ISTIO_VERSION with Helm"
	elif [[ $before == "$ISTIO_VERSION" ]]; then
		say "Istio $ISTIO_VERSION is installed; upgrading in place (no-op when nothing changed)"
	else
		say "upgrading Istio $before -> $ISTIO_VERSION"
	fi
	if [[ -z $CHARTS ]]; then
		if ! helm repo add istio "$ISTIO_REPO" >/dev/null; then
			die "helm repo 'istio' exists with another URL: helm repo remove istio (or point it at $ISTIO_REPO)"
		fi
		helm repo update istio >/dev/null
	fi
	# Order matters on upgrade too: CRDs (base), then the control plane, then the gateway.
	local t=$SECONDS
	chart_args base
	h upgrade --install istio-base "$(chart base)" --namespace istio-system --create-namespace \
		${ARGS[@]+"${ARGS[@]}"} --set "defaultRevision=${ISTIO_DEFAULT_REVISION-default}" --wait --timeout 5m
	say "istio-base: $((SECONDS - t)) s"
	t=$SECONDS
	chart_args istiod
	h upgrade --install istiod "$(chart istiod)" --namespace istio-system \
		${ARGS[@]+"${ARGS[@]}"} --set profile=demo --wait --timeout 5m
	say "istiod: $((SECONDS - t)) s"
	t=$SECONDS
	chart_args gateway
	h upgrade --install istio-ingress "$(chart gateway)" --namespace istio-ingress --create-namespace \
		--values "$VALUES" ${ARGS[@]+"${ARGS[@]}"} --wait --timeout 5m
	say "istio-ingress: $((SECONDS - t)) s"
	if [[ -n $before && $before != "$ISTIO_VERSION" ]]; then
		# Gateway proxies are injected when their Pods are created: restart to get the new one.
		k -n istio-ingress rollout restart deployment/istio-ingress >/dev/null
		k -n istio-ingress rollout status deployment/istio-ingress --timeout=180s >/dev/null
		say "app sidecars keep the old proxy until their Pods restart: kubectl${CONTEXT:+ --context $CONTEXT} -n $APP_NAMESPACE rollout restart deployment"
	fi
}

ensure_app_namespace() {
	k create namespace "$APP_NAMESPACE" --dry-run=client -o yaml | k apply -f - >/dev/null
	k label namespace "$APP_NAMESPACE" istio-injection=enabled --overwrite >/dev/null
}

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

# charts_version: the appVersion of ISTIO_CHARTS's istiod chart, what Helm records.
charts_version() {
	local f
	f=$(chart istiod)/Chart.yaml
	[[ -f $f ]] || die "ISTIO_CHARTS=$CHARTS: no $f (want the layout of Istio's manifests/charts)"
	sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$f"
}

# The gateway Service's address as meshloop verify reads it (load balancer, else none).
service_address() {
	k -n istio-ingress get service istio-ingress \
		-o jsonpath='{.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}' 2>/dev/null || true
}

main() {
	while (($#)); do
		case $1 in
		--no-kind) NO_KIND=1 ;;
		-h | --help)
			usage
			exit 0
			;;
		*)
			say "unknown argument: $1 (settings are environment variables)"
			usage
			exit 2
			;;
		esac
		shift
	done
	local t0=$SECONDS
	check_tools
	[[ -n $CHARTS ]] && ISTIO_VERSION=$(charts_version)
	if ((NO_KIND)); then
		CONTEXT=""
		install_gateway_api
		install_istio
		ensure_app_namespace
		say "ready in $((SECONDS - t0)) s"
		printf '  %-10s %s\n' \
			cluster "$(kubectl config current-context 2>/dev/null || echo '?') (current kubectl context)" \
			istio "$ISTIO_VERSION${CHARTS:+ (charts from $CHARTS)} (base, istiod in istio-system; gateway istio-ingress in istio-ingress)" \
			ingress "$(service_address) (Service istio-ingress/istio-ingress port http2)" \
			namespace "$APP_NAMESPACE (istio-injection=enabled)"
		return 0
	fi
	NODE_PORT=$(node_port)
	INGRESS_HOST_PORT=${INGRESS_HOST_PORT:-$NODE_PORT}
	ensure_cluster
	install_gateway_api
	install_istio
	ensure_app_namespace
	local ingress registry
	ingress=$(ingress_address)
	registry=$(k -n kube-public get configmap local-registry-hosting \
		-o jsonpath='{.data.localRegistryHosting\.v1}' 2>/dev/null | sed -n 's/^host: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p')
	say "ready in $((SECONDS - t0)) s"
	printf '  %-10s %s\n' \
		cluster "$CONTEXT (current kubectl context)" \
		registry "${registry:-unknown}" \
		istio "$ISTIO_VERSION${CHARTS:+ (charts from $CHARTS)} (base, istiod in istio-system; gateway istio-ingress in istio-ingress)" \
		ingress "${ingress:-not published} (NodePort $NODE_PORT, Service istio-ingress/istio-ingress port http2)" \
		namespace "$APP_NAMESPACE (istio-injection=enabled)"
	printf '\nnext: tilt up\n'
	if [[ -n $ingress ]]; then
		printf "then: curl -H 'Host: goapp.dev' %s/fortune\n" "$ingress"
	fi
}

main "$@"
