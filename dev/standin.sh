#!/usr/bin/env bash
# dev/standin.sh: the ingress data path of the sample, on one machine, without Docker or Envoy.
#
# There is no Envoy here. Two stand-ins for the Istio ingress gateway's Envoy:
#
# - dev/gateway (--gateway istio, the default on a cluster started with `dev/localcluster
#   start --istio`): a Go program that takes its configuration from the real istiod over xDS,
#   as Envoy does, posing as the gateway chart's Pod (its name, namespace, labels and Pod IP in
#   the xDS node identity). It serves the listeners istiod sends on the cluster's gateway
#   address (DIR/gateway.ip of the cluster, the chart Service's load-balancer IP), so a
#   VirtualService that meshloop applies is what it routes by, after istiod's push. It does
#   not create cluster objects: the gateway chart made the Service and the Deployment.
# - nginx (--gateway nginx, the default on a cluster without Istio) routes by its own flags and
#   ignores every VirtualService. It stays for the tests that need a gateway that disagrees
#   with what was applied (a split the gateway does not serve, `reconfigure`), which a gateway
#   obeying istiod never does, and for clusters without istiod.
#
# nginx (Debian's nginx-light):
# it answers on a loopback port, sends Host goapp.dev to the app versions with a weighted
# split (a random pick per request, like Envoy's weighted clusters) and answers 404 with an
# empty body for any other Host (Envoy's "NR"). It does not read the VirtualServices: its
# routes and weights are the flags below. Its answers carry `x-standin: nginx`; answers from
# an app also carry `x-envoy-upstream-service-time` (milliseconds, as Envoy sends it), and a
# failed connection to an app is answered 503 with Envoy's "upstream connect error" text.
# The real gateway is `dev/up.sh` (kind + Istio) and `tilt up`.
#
# The app versions are dev/goapp processes, one per version, each in a network namespace this
# script creates, so they have pod-like, non-loopback addresses that the API server's service
# proxy accepts: version i listens on 10.250.i.2:8080 (10.250.i.1 is the host side of its veth
# pair; a second run at once gets 10.250.i.6, 10.250.i.10, ...). Traffic goes only between the
# host and those namespaces. Needs root (network namespaces) and Go (builds dev/goapp).
#
#   dev/standin.sh up DIR [--weights 90,10] [--versions v1,v2] [--host goapp.dev]
#                         [--namespace dev] [--app goapp] [--owner-pid PID]
#                         [--cluster CDIR] [--ingress-namespace istio-ingress]
#                         [--gateway istio|nginx|none]
#       --gateway istio: start the app versions (as below) and dev/gateway (built with
#       dev/gateway/build.sh), driven by the istiod of CDIR (CDIR/istiod.xds), posing as the
#       Pod of Deployment istio-ingress/istio-ingress; returns once it applied istiod's first
#       configuration; the last line printed is its address, GATEWAY_IP:80. --weights, --host
#       and --ingress-namespace are nginx's and ignored; --versions "" starts the gateway alone.
#       --gateway-api NAME (implies --gateway istio): dev/gateway poses instead as the Pod
#       istiod deploys for the Gateway API Gateway NAME of class istio in --namespace (Deployment
#       NAME-istio, label gateway.networking.k8s.io/gateway-name=NAME), and this plays the load
#       balancer of its Service NAME-istio: status.loadBalancer.ingress[0].ip is an address of
#       the cluster's own (dev/localcluster address), which istiod then writes into the
#       Gateway's status.addresses. Apply the Gateway first; this waits for its Pod.
#       --gateway none: the app versions only (several app namespaces share the one gateway of
#       an --istio cluster).
#       --gateway nginx:
#       build dev/goapp, start one process per version in its namespace, start nginx; write the
#       pod IP map DIR/podips for dev/fakelet.py (so the Pods of Deployment goapp-v1 get
#       10.250.1.2, and so on); when DIR/kubeconfig answers, create the `istio-ingress` Service
#       (see `service`). The last line printed is the ingress address, 127.0.0.1:PORT.
#       Start it before the app's Pods are created: a Pod keeps the IP it got first.
#       --cluster CDIR: the cluster directory (kubeconfig, podips) when it is not DIR, so that
#       several stand-ins (each with its own DIR, app namespace and ingress namespace) can
#       share one cluster.
#   dev/standin.sh down DIR               stop and remove all of it (processes, namespaces, veth
#                                         pairs, the DIR/podips lines, the cluster objects)
#   dev/standin.sh reconfigure DIR --weights A,B
#                                         new weights; nginx reloads, and this returns once the
#                                         new configuration answers
#   dev/standin.sh stop-version DIR V     stop the app process of version V (its namespace stays:
#                                         connections are refused, nginx answers 503; the Pod's
#                                         readiness probe fails, so dev/fakelet.py marks it
#                                         NotReady after failureThreshold (3) probes, ~3 s)
#   dev/standin.sh start-version DIR V    start it again
#   dev/standin.sh service DIR            (re)create in the cluster of DIR/kubeconfig: namespace
#                                         istio-ingress, Service istio-ingress (LoadBalancer,
#                                         ports status-port 15021, http2 PORT->80, https 443,
#                                         status.loadBalancer.ingress[0].ip 127.0.0.1, http2
#                                         nodePort = a second port nginx listens on), and a
#                                         Deployment istio-ingress (labels istio=ingress,
#                                         app=istio-ingress) whose Pod stands for the gateway
#                                         workload; no container runs for it
#   dev/standin.sh status DIR             what runs, where
#
# Port mapping: the Service's http2 `port` is nginx's port, so the address resolution meshloop
# does for a real cluster (status.loadBalancer.ingress[0].ip + the port named http2) gives
# 127.0.0.1:PORT without configuration; `targetPort: 80` matches the Gateway's server port 80,
# as with the Istio gateway chart. The NodePort variant works too: the Node of
# dev/fakelet.py has InternalIP 127.0.0.1, and nginx also listens on the http2 nodePort.
#
# --owner-pid PID: when PID exits, `down` runs (for test harnesses: nothing is left behind).
# DIR is usually the dev/localcluster directory; this script's files go to DIR/standin/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MESHLOOP_CACHE:-$HOME/.cache/meshloop}
SELF="$ROOT/dev/standin.sh"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
# The first two octets of the app addresses; 10.250.0.0/16 is neither the local cluster's
# service range (10.96.0.0/16) nor its pod range (10.244.0.0/24).
NET=${MESHLOOP_STANDIN_NET:-10.250}
APP_PORT=8080
MAX_SLOTS=64
LOCK=${TMPDIR:-/tmp}/meshloop-standin.lock

say() { printf 'standin: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
}

state_dir() {
	local d=${1:?DIR is required}
	mkdir -p "$d/standin"
	(cd "$d" && pwd)
}

# run_id DIR: six hex digits naming this run's namespaces and interfaces, from DIR's path, so
# `down` finds them even when the state file is gone.
run_id() { printf '%s' "$1" | sha1sum | cut -c1-6; }

ns_name() { printf 'ml-%s-%s' "$ID" "$1"; }  # network namespace of version $1
veth_name() { printf 'ml%s-%s' "$ID" "$1"; } # host side of version number $1 (<= 15 chars)
host_ip() { printf '%s.%s.%s' "$NET" "$1" $((4 * SLOT + 1)); }
app_ip() { printf '%s.%s.%s' "$NET" "$1" $((4 * SLOT + 2)); }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A free port in the Service NodePort range, for nginx's second listener.
free_node_port() {
	python3 - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(30000, 32767)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
EOF
}

save_state() {
	local f=$D/standin/state
	{
		printf 'ID=%q\nSLOT=%q\nPORT=%q\nNODEPORT=%q\nGEN=%q\n' "$ID" "$SLOT" "$PORT" "$NODEPORT" "$GEN"
		printf 'VERSIONS=%q\nWEIGHTS=%q\nHOSTS=%q\nNAMESPACE=%q\nAPP=%q\nC=%q\nINGRESS_NS=%q\n' \
			"$VERSIONS" "$WEIGHTS" "$HOSTS" "$NAMESPACE" "$APP" "$C" "$INGRESS_NS"
		printf 'GATEWAY=%q\nGW_ADDR=%q\nGW_ADMIN=%q\nGWAPI=%q\n' "$GATEWAY" "$GW_ADDR" "$GW_ADMIN" "$GWAPI"
	} >"$f.tmp"
	mv "$f.tmp" "$f"
}

load_state() {
	[[ -f $D/standin/state ]] || die "nothing is up in $D (dev/standin.sh up $D)"
	C=$D INGRESS_NS=istio-ingress GATEWAY=nginx GW_ADDR="" GW_ADMIN="" GWAPI=""
	# shellcheck source=/dev/null # written by save_state
	. "$D/standin/state"
}

versions() {
	[[ -z $VERSIONS ]] || tr ',' '\n' <<<"$VERSIONS"
}

# version_index V: 1 for the first of VERSIONS, ...
version_index() {
	local i=0 v
	while read -r v; do
		i=$((i + 1))
		[[ $v == "$1" ]] && {
			echo "$i"
			return 0
		}
	done < <(versions)
	die "unknown version $1 (versions: $VERSIONS)"
}

# proc_alive PID: running, and not a zombie. Where PID 1 is slow to reap orphans (some
# container runtimes), an exited server stays a zombie that `kill -0` still reports.
proc_alive() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st##*) }
	[[ ${st%% *} != Z ]]
}

pid_alive() { [[ -f $1 ]] && proc_alive "$(cat "$1")"; }

stop_pid() {
	local f=$1 pid i
	[[ -f $f ]] || return 0
	pid=$(cat "$f")
	if proc_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			proc_alive "$pid" || break
			sleep 0.1
		done
		if proc_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
	fi
	rm -f "$f"
}

# wait_until SECONDS COMMAND...: poll until COMMAND succeeds.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

curl_q() { curl --noproxy '*' -fsS --max-time 1 "$@"; }

# --- the app ---------------------------------------------------------------------------------

build_goapp() {
	command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH (needed to build dev/goapp)"
	local key out
	key=$(cat "$ROOT/dev/goapp/go.mod" "$ROOT"/dev/goapp/*.go | sha256sum | cut -c1-12)
	out=$CACHE/goapp/$key/goapp
	if [[ ! -x $out ]]; then
		mkdir -p "${out%/*}"
		(cd "$ROOT/dev/goapp" && CGO_ENABLED=0 go build -trimpath -o "$out.partial" .) ||
			die "go build in dev/goapp failed"
		mv "$out.partial" "$out"
	fi
	printf '%s\n' "$out"
}

start_version() {
	local v=$1 i ns ip pidf
	i=$(version_index "$v")
	ns=$(ns_name "$v")
	ip=$(app_ip "$i")
	pidf=$D/standin/goapp-$v.pid
	pid_alive "$pidf" && return 0
	# `ip netns exec` execs the command in the namespace: the recorded PID is goapp's.
	setsid ip netns exec "$ns" env LISTEN="$ip:$APP_PORT" VERSION="$v" "$D/standin/goapp" \
		>>"$D/standin/goapp-$v.log" 2>&1 </dev/null &
	echo $! >"$pidf"
	if ! wait_until 10 curl_q "http://$ip:$APP_PORT/healthz"; then
		tail -n 5 "$D/standin/goapp-$v.log" >&2
		return 1
	fi
}

# make_netns V: namespace + veth pair for version V, addresses up.
make_netns() {
	local v=$1 i ns veth
	i=$(version_index "$v")
	ns=$(ns_name "$v")
	veth=$(veth_name "$i")
	ip netns add "$ns"
	ip link add "$veth" type veth peer name eth0 netns "$ns"
	# IPv4 only: no IPv6 link-local addresses, router solicitations or DAD on these links.
	if [[ -e /proc/sys/net/ipv6/conf/$veth/disable_ipv6 ]]; then
		echo 1 >"/proc/sys/net/ipv6/conf/$veth/disable_ipv6"
		ip netns exec "$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6' || true
	fi
	ip addr add "$(host_ip "$i")/30" dev "$veth"
	ip link set "$veth" up
	ip -n "$ns" addr add "$(app_ip "$i")/30" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
}

# pick_slot: the first slot whose host address is not on any interface (under the lock).
pick_slot() {
	local s used
	used=$(ip -4 -o addr show | awk '{print $4}')
	for ((s = 0; s < MAX_SLOTS; s++)); do
		grep -qxF "$NET.1.$((4 * s + 1))/30" <<<"$used" || {
			echo "$s"
			return 0
		}
	done
	return 1
}

# --- the pod IP map (read by dev/fakelet.py) ---------------------------------------------------

# Edits of the shared CDIR/podips happen under a lock: stand-ins sharing a cluster may start
# and stop at once.
podips_locked() {
	local rc=0
	exec 8>"$C/podips.lock"
	flock 8
	"$@" || rc=$?
	flock -u 8
	exec 8>&-
	return "$rc"
}

podips_remove() { podips_locked podips_strip; }

podips_strip() {
	local f=$C/podips
	[[ -f $f ]] || return 0
	awk -v b="# begin dev/standin.sh $D" -v e="# end dev/standin.sh $D" \
		'$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' "$f" >"$f.tmp"
	if [[ -s $f.tmp ]]; then mv "$f.tmp" "$f"; else rm -f "$f.tmp" "$f"; fi
}

podips_write() { podips_locked podips_add; }

podips_add() {
	local f=$C/podips v i
	podips_strip
	{
		[[ -f $f ]] && cat "$f"
		printf '%s\n' "# begin dev/standin.sh $D"
		printf '# SELECTOR (namespace/label=value,...)  IP  [probe: the readiness probe runs]\n'
		i=0
		while read -r v; do
			i=$((i + 1))
			printf '%s/app=%s,version=%s %s probe\n' "$NAMESPACE" "$APP" "$v" "$(app_ip "$i")"
		done < <(versions)
		printf '%s\n' "# end dev/standin.sh $D"
	} >"$f.tmp"
	mv "$f.tmp" "$f"
}

# --- nginx ----------------------------------------------------------------------------------

need_nginx() {
	command -v nginx >/dev/null 2>&1 && return 0
	say "installing nginx-light (Debian) for the stand-in gateway"
	# Debian's postinst would start the system nginx where services may start; this script
	# never uses it and runs its own nginx with its own configuration.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; } ||
		die "could not install nginx-light"
}

nginx_cmd() {
	local n=$D/standin/nginx
	nginx -p "$n" -c "$n/nginx.conf" -e "$n/error.log" "$@"
}

# split_lines: split_clients lines from VERSIONS and WEIGHTS (weights are relative, as Istio
# reads them); empty when every weight is 0.
split_lines() {
	paste -d' ' <(versions) <(tr ',' '\n' <<<"$WEIGHTS") | awk '
		{ v[NR] = $1; w[NR] = $2; sum += $2; if ($2 > 0) last = NR }
		END {
			if (sum == 0) exit
			for (i = 1; i <= NR; i++) {
				if (w[i] == 0) continue
				if (i == last) { printf "        *       standin_%s;\n", v[i]; continue }
				p = int(w[i] * 10000 / sum) / 100
				if (p > 0) printf "        %.2f%%  standin_%s;\n", p, v[i]
			}
		}'
}

write_nginx_conf() {
	local n=$D/standin/nginx v i split listen
	mkdir -p "$n/tmp"
	: >"$n/empty"
	split=$(split_lines)
	listen="listen 127.0.0.1:$PORT"
	{
		cat <<EOF
# Generated by dev/standin.sh (configuration $GEN): nginx standing in for the Istio ingress
# gateway (Envoy). Hosts: $HOSTS; versions $VERSIONS; weights $WEIGHTS.
worker_processes 1;
daemon off;
pid $n/nginx.pid;
error_log $n/error.log notice;
events { worker_connections 1024; }
http {
    log_format standin '\$remote_addr "\$host" "\$request" \$status upstream=\$upstream_addr '
                       'time=\$request_time upstream_time=\$upstream_response_time id=\$request_id';
    access_log $n/access.log standin;
    client_body_temp_path $n/tmp/body;
    proxy_temp_path $n/tmp/proxy;
    fastcgi_temp_path $n/tmp/fastcgi;
    uwsgi_temp_path $n/tmp/uwsgi;
    scgi_temp_path $n/tmp/scgi;
    client_body_buffer_size 1m;
    client_max_body_size 2m;
    proxy_max_temp_file_size 0;
    server_tokens off;
    default_type text/plain;

EOF
		i=0
		while read -r v; do
			i=$((i + 1))
			printf '    upstream standin_%s { server %s:%s max_fails=0; keepalive 16; }\n' \
				"$v" "$(app_ip "$i")" "$APP_PORT"
		done < <(versions)
		cat <<EOF

    # One random pick per request (request_id is random), as Envoy picks a weighted cluster.
    split_clients "\${request_id}" \$standin_upstream {
$split
    }

    # Envoy's x-envoy-upstream-service-time: milliseconds until the app's response headers.
    map \$upstream_header_time \$standin_upstream_ms {
        "~^0\\.0{0,2}(?<ms>\\d+)\$"               \$ms;
        "~^(?<s>[1-9]\\d*)\\.(?<f>\\d{3})\$"       \$s\$f;
        default                                 "";
    }

    # Any other Host: 404 with an empty body, like Envoy's "no route" (NR).
    server {
        $listen default_server;
EOF
		[[ -n $NODEPORT ]] && printf '        listen 127.0.0.1:%s default_server;\n' "$NODEPORT"
		cat <<EOF
        server_name _;
        location / { return 404; }
        error_page 404 =404 /.standin-no-route;
        location = /.standin-no-route {
            internal;
            etag off;
            add_header x-standin nginx always;
            add_header x-standin-config $GEN always;
            alias $n/empty;
        }
    }

    server {
        $listen;
EOF
		[[ -n $NODEPORT ]] && printf '        listen 127.0.0.1:%s;\n' "$NODEPORT"
		printf '        server_name %s;\n' "${HOSTS//,/ }"
		if [[ -z $split ]]; then
			cat <<EOF
        # Every weight is 0: no destination gets traffic.
        location / {
            add_header x-standin nginx always;
            add_header x-standin-config $GEN always;
            return 503 "no healthy upstream";
        }
    }
}
EOF
		else
			cat <<EOF
        location / {
            proxy_pass http://\$standin_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header x-request-id \$request_id;
            proxy_set_header x-forwarded-proto \$scheme;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_next_upstream off;
            add_header x-standin nginx always;
            add_header x-standin-config $GEN always;
            add_header x-envoy-upstream-service-time \$standin_upstream_ms always;
            error_page 502 504 = @upstream_failure;
        }
        # The app refused the connection or did not answer: Envoy answers 503 (UF).
        location @upstream_failure {
            add_header x-standin nginx always;
            add_header x-standin-config $GEN always;
            return 503 "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
        }
    }
}
EOF
		fi
	} >"$n/nginx.conf.tmp"
	mv "$n/nginx.conf.tmp" "$n/nginx.conf"
}

# nginx_serves_gen: the running nginx answers with the current configuration.
nginx_serves_gen() {
	curl --noproxy '*' -sS --max-time 1 -o /dev/null -D - -H 'Host: standin.invalid' \
		"http://127.0.0.1:$PORT/" | tr -d '\r' | grep -qix "x-standin-config: $GEN"
}

old_workers_gone() {
	local p
	for p in $1; do
		proc_alive "$p" && return 1
	done
	return 0
}

start_nginx() {
	local n=$D/standin/nginx attempt
	for attempt in 1 2 3 4 5; do
		PORT=$(free_port)
		NODEPORT=$(free_node_port)
		write_nginx_conf
		setsid nginx -p "$n" -c "$n/nginx.conf" -e "$n/error.log" >"$n/stderr.log" 2>&1 </dev/null &
		echo $! >"$D/standin/nginx.pid"
		wait_until 10 nginx_serves_gen && return 0
		stop_pid "$D/standin/nginx.pid"
		if grep -q 'Address already in use' "$n/error.log" "$n/stderr.log" 2>/dev/null && ((attempt < 5)); then
			say "port taken, retrying with another"
			: >"$n/error.log"
			continue
		fi
		tail -n 10 "$n/error.log" "$n/stderr.log" >&2
		return 1
	done
}

# --- the cluster objects ----------------------------------------------------------------------

kube() { "$KUBECTL" --kubeconfig "$C/kubeconfig" --request-timeout=10s "$@"; }

cluster_up() {
	KUBECTL="$("$ROOT/dev/localcluster" bin)/kubectl"
	[[ -x $KUBECTL && -f $C/kubeconfig ]] &&
		"$KUBECTL" --kubeconfig "$C/kubeconfig" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

apply_service() {
	local nodeport_line=$1
	kube apply --server-side --force-conflicts --field-manager=dev-standin -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $INGRESS_NS
---
apiVersion: v1
kind: Service
metadata:
  name: istio-ingress
  namespace: $INGRESS_NS
  labels: {app: istio-ingress, istio: ingress, app.kubernetes.io/managed-by: dev-standin}
  annotations:
    meshloop.dev/standin: "nginx on 127.0.0.1:$PORT stands in for the Istio ingress gateway (dev/standin.sh)"
spec:
  type: LoadBalancer
  selector: {app: istio-ingress, istio: ingress}
  ports:
    - {name: status-port, port: 15021, targetPort: 15021, protocol: TCP}
    - {name: http2, port: $PORT, targetPort: 80, protocol: TCP$nodeport_line}
    - {name: https, port: 443, targetPort: 443, protocol: TCP}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istio-ingress
  namespace: $INGRESS_NS
  labels: {app: istio-ingress, istio: ingress, app.kubernetes.io/managed-by: dev-standin}
  annotations:
    meshloop.dev/standin: "no container runs for this Pod: nginx on 127.0.0.1:$PORT stands in for the gateway (dev/standin.sh)"
spec:
  replicas: 1
  selector:
    matchLabels: {app: istio-ingress, istio: ingress}
  template:
    metadata:
      labels: {app: istio-ingress, istio: ingress}
      annotations:
        meshloop.dev/standin: "no container runs for this Pod: nginx on 127.0.0.1:$PORT stands in for the gateway"
    spec:
      containers:
        - name: istio-proxy
          image: standin.invalid/nginx-standin:none
          ports:
            - {name: http-envoy-prom, containerPort: 15090}
            - {name: status-port, containerPort: 15021}
            - {name: http2, containerPort: 80}
            - {name: https, containerPort: 443}
EOF
}

cmd_service() {
	D=$(state_dir "${1:-}")
	load_state
	cluster_up || die "the cluster of $C/kubeconfig does not answer"
	if ! apply_service ", nodePort: $NODEPORT" 2>"$D/standin/service.err"; then
		say "nodePort $NODEPORT refused ($(tr '\n' ' ' <"$D/standin/service.err")); using an allocated one, which nginx does not serve"
		apply_service "" || die "creating Service $INGRESS_NS/istio-ingress failed"
	fi
	kube -n "$INGRESS_NS" patch service istio-ingress --subresource=status --type=merge \
		-p '{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.1","ipMode":"VIP"}]}}}' >/dev/null ||
		die "setting status.loadBalancer of istio-ingress/istio-ingress failed"
	say "Service $INGRESS_NS/istio-ingress: LoadBalancer 127.0.0.1, http2 port $PORT (nodePort $NODEPORT) -> nginx"
}

delete_service() {
	cluster_up || return 0
	kube -n "$INGRESS_NS" delete service/istio-ingress deployment/istio-ingress \
		--ignore-not-found --wait=false >/dev/null 2>&1 || true
}

# --- dev/gateway (--gateway istio) -------------------------------------------------------------

build_gateway() {
	[[ -x $ROOT/dev/gateway/build.sh ]] || die "dev/gateway/build.sh is missing"
	local out
	out=$("$ROOT/dev/gateway/build.sh" | tail -n 1) || die "dev/gateway/build.sh failed"
	[[ -x $out ]] || die "dev/gateway/build.sh printed no binary path (got: $out)"
	printf '%s\n' "$out"
}

# gateway_ns, gateway_selector: the namespace and labels of the Pods dev/gateway poses as: the
# gateway chart's, or those istiod deploys for the Gateway API Gateway $GWAPI.
gateway_ns() { if [[ -n $GWAPI ]]; then printf '%s\n' "$NAMESPACE"; else printf 'istio-ingress\n'; fi; }
gateway_selector() {
	if [[ -n $GWAPI ]]; then
		printf 'gateway.networking.k8s.io/gateway-name=%s\n' "$GWAPI"
	else
		printf 'app=istio-ingress,istio=ingress\n'
	fi
}

# gateway_pod: "NAME IP LABELS" of the gateway's Running Pod (labels as k=v,k=v).
gateway_pod() {
	# shellcheck disable=SC2016 # a Go template, not shell
	kube -n "$(gateway_ns)" get pods -l "$(gateway_selector)" \
		--field-selector=status.phase=Running -o go-template \
		--template '{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}} {{.status.podIP}} {{range $k, $v := .metadata.labels}}{{$k}}={{$v}},{{end}}{{"\n"}}{{end}}{{end}}' |
		sed 's/,$//' | head -n 1
}

gateway_ready() { curl_q "http://$GW_ADMIN/ready"; }

# play_load_balancer NS SVC IP: what a cloud load balancer does for a LoadBalancer Service:
# status.loadBalancer.ingress[0].ip, once the Service exists.
play_load_balancer() {
	local ns=$1 svc=$2 ip=$3
	wait_until 60 kube -n "$ns" get service "$svc" ||
		die "no Service $ns/$svc (istiod deploys it for the Gateway)"
	kube -n "$ns" patch service "$svc" --subresource=status --type=merge \
		-p "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"$ip\",\"ipMode\":\"VIP\"}]}}}" >/dev/null
}

# start_gateway: dev/gateway as the gateway chart's Pod, on CDIR/gateway.ip (the Service's
# load-balancer IP), fed by CDIR's istiod; waits for its first applied configuration.
start_gateway() {
	local bin pod name ip labels
	[[ -f $C/gateway.ip && -f $C/istiod.xds ]] ||
		die "--gateway istio needs a cluster started with dev/localcluster start --istio ($C has no istiod)"
	cluster_up || die "the cluster of $C/kubeconfig does not answer"
	bin=$(build_gateway)
	wait_until 60 test -n "$(gateway_pod)" || true
	pod=$(gateway_pod)
	[[ -n $pod ]] || die "no Running Pod labelled $(gateway_selector) in namespace $(gateway_ns) of $C"
	read -r name ip labels <<<"$pod"
	if [[ -n $GWAPI ]]; then
		GW_ADDR=$("$ROOT/dev/localcluster" address "$C" "gw-$NAMESPACE-$GWAPI")
		play_load_balancer "$NAMESPACE" "$GWAPI-istio" "$GW_ADDR"
	else
		GW_ADDR=$(cat "$C/gateway.ip")
	fi
	GW_ADMIN=127.0.0.1:$(free_port)
	setsid env -u HTTP_PROXY -u http_proxy -u HTTPS_PROXY -u https_proxy "$bin" \
		--xds "$(cat "$C/istiod.xds")" --pod "$name" --namespace "$(gateway_ns)" --ip "$ip" \
		--labels "$labels" --bind "$GW_ADDR" --admin "$GW_ADMIN" \
		--ready-file "$D/standin/gateway.ready" >>"$D/standin/gateway.log" 2>&1 </dev/null &
	echo $! >"$D/standin/gateway.pid"
	if ! wait_until 120 gateway_ready; then
		tail -n 20 "$D/standin/gateway.log" >&2
		return 1
	fi
	say "dev/gateway as Pod $(gateway_ns)/$name ($ip) on $GW_ADDR, xDS from istiod at $(cat "$C/istiod.xds"), admin http://$GW_ADMIN"
}

# --- commands -------------------------------------------------------------------------------

need_root() {
	[[ $(id -u) == 0 ]] || die "needs root for network namespaces (sudo dev/standin.sh ...)"
}

cmd_up() {
	local dir="" owner=""
	VERSIONS=v1,v2 WEIGHTS=90,10 HOSTS=goapp.dev NAMESPACE=dev APP=goapp GEN=1
	C="" INGRESS_NS=istio-ingress GATEWAY="" GW_ADDR="" GW_ADMIN="" GWAPI=""
	while (($#)); do
		case $1 in
		--weights | --versions | --host | --namespace | --app | --owner-pid | --cluster | --ingress-namespace | --gateway | --gateway-api)
			[[ $# -ge 2 ]] || die "$1 needs a value"
			case $1 in
			--weights) WEIGHTS=$2 ;;
			--versions) VERSIONS=$2 ;;
			--host) HOSTS=$2 ;;
			--namespace) NAMESPACE=$2 ;;
			--app) APP=$2 ;;
			--owner-pid) owner=$2 ;;
			--cluster) C=$2 ;;
			--ingress-namespace) INGRESS_NS=$2 ;;
			--gateway) GATEWAY=$2 ;;
			--gateway-api) GWAPI=$2 GATEWAY=istio ;;
			esac
			shift
			;;
		-*) die "up: unknown flag $1" ;;
		*) dir=$1 ;;
		esac
		shift
	done
	[[ -n $dir ]] || die "up: DIR is required"
	need_root
	D=$(state_dir "$dir")
	C=$(cd "${C:-$D}" && pwd) || die "--cluster: no such directory"
	[[ -f $D/standin/state ]] && die "already up in $D (dev/standin.sh down $D)"
	if [[ -z $GATEWAY ]]; then
		GATEWAY=nginx
		[[ -f $C/istiod.xds ]] && GATEWAY=istio
	fi
	case $GATEWAY in
	nginx) need_nginx ;;
	istio | none) ;;
	*) die "--gateway: istio, nginx or none (got $GATEWAY)" ;;
	esac
	check_lists
	command -v python3 >/dev/null 2>&1 || die "python3 is needed (free ports)"
	local t0=$SECONDS bin
	bin=$(build_goapp)
	cp "$bin" "$D/standin/goapp"
	ID=$(run_id "$D")
	PORT="" NODEPORT=""
	exec 9>"$LOCK"
	flock 9
	SLOT=$(pick_slot) || die "no free address slot under $NET (down other runs)"
	save_state
	trap 'say "up failed; cleaning up"; cmd_down "$D" >/dev/null 2>&1' EXIT
	local v
	while read -r v; do make_netns "$v"; done < <(versions)
	flock -u 9
	exec 9>&-
	while read -r v; do
		start_version "$v" || die "goapp $v did not answer on $(app_ip "$(version_index "$v")"):$APP_PORT"
	done < <(versions)
	podips_write
	case $GATEWAY in
	nginx)
		start_nginx || die "nginx did not start (logs under $D/standin/nginx)"
		save_state
		if cluster_up; then
			cmd_service "$D"
		else
			say "no cluster answers at $C/kubeconfig: run dev/standin.sh service $D once it does"
		fi
		;;
	istio)
		start_gateway || die "dev/gateway did not apply a configuration from istiod (log: $D/standin/gateway.log)"
		save_state
		;;
	none) save_state ;;
	esac
	trap - EXIT
	if [[ -n $owner ]]; then
		# shellcheck disable=SC2016 # expanded by the inner shell, from its arguments
		setsid bash -c 'tail --pid="$1" -f /dev/null; rm -f "$3/standin/owner-watch.pid"; "$2" down "$3"' \
			_ "$owner" "$SELF" "$D" \
			>/dev/null 2>&1 </dev/null &
		echo $! >"$D/standin/owner-watch.pid"
	fi
	local addrs="" i=0
	while read -r v; do
		i=$((i + 1))
		addrs+=" $v=$(app_ip "$i"):$APP_PORT"
	done < <(versions)
	case $GATEWAY in
	nginx)
		say "up in $((SECONDS - t0)) s: nginx (standing in for the Istio ingress gateway) on 127.0.0.1:$PORT and :$NODEPORT, Host ${HOSTS//,/ } ->$addrs, weights $WEIGHTS"
		printf '127.0.0.1:%s\n' "$PORT"
		;;
	istio)
		say "up in $((SECONDS - t0)) s: dev/gateway (routes from istiod) on $GW_ADDR:80, apps$addrs"
		printf '%s:80\n' "$GW_ADDR"
		;;
	none) say "up in $((SECONDS - t0)) s: apps$addrs" ;;
	esac
}

check_lists() {
	# No app at all: the gateway alone (apps come from other stand-ins sharing the cluster).
	[[ -z $VERSIONS && $GATEWAY == istio ]] && return 0
	[[ $VERSIONS =~ ^[a-z0-9]{1,8}(,[a-z0-9]{1,8})*$ ]] || die "--versions: lowercase names, comma separated"
	local nv nw
	nv=$(versions | wc -l)
	nw=$(tr ',' '\n' <<<"$WEIGHTS" | wc -l)
	[[ $WEIGHTS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--weights: whole numbers, comma separated (got $WEIGHTS)"
	((nv == nw)) || die "--weights needs $nv numbers, one per version ($VERSIONS)"
	((nv <= 8)) || die "at most 8 versions"
	[[ $HOSTS =~ ^[A-Za-z0-9.*-]+(,[A-Za-z0-9.*-]+)*$ ]] || die "--host: DNS names, comma separated"
}

cmd_down() {
	D=$(state_dir "${1:-}")
	ID=$(run_id "$D")
	C=$D INGRESS_NS=istio-ingress GATEWAY=nginx
	[[ -f $D/standin/state ]] && load_state
	# The --owner-pid watcher (bash and its tail) is a process group of its own.
	if pid_alive "$D/standin/owner-watch.pid"; then
		kill -TERM -- "-$(cat "$D/standin/owner-watch.pid")" 2>/dev/null || true
	fi
	rm -f "$D/standin/owner-watch.pid"
	stop_pid "$D/standin/nginx.pid"
	stop_pid "$D/standin/gateway.pid"
	local f ns l
	for f in "$D"/standin/goapp-*.pid; do
		[[ -e $f ]] && stop_pid "$f"
	done
	exec 9>"$LOCK"
	flock 9
	# Everything named after this run's id, even what a failed `up` left behind.
	for ns in $(ip netns list | awk -v p="ml-$ID-" 'index($1, p) == 1 {print $1}'); do
		for l in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$l" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^ml$ID-" || true); do
		ip link del "$l" 2>/dev/null || true
	done
	flock -u 9
	exec 9>&-
	podips_remove
	# The Service and Deployment of --gateway istio are the gateway chart's: they stay.
	[[ $GATEWAY == nginx ]] && delete_service
	rm -f "$D/standin/state" "$D/standin/gateway.ready"
	say "down: $D"
}

cmd_reconfigure() {
	local dir="" weights=""
	while (($#)); do
		case $1 in
		--weights)
			weights=${2:?--weights needs a value}
			shift
			;;
		-*) die "reconfigure: unknown flag $1" ;;
		*) dir=$1 ;;
		esac
		shift
	done
	[[ -n $dir && -n $weights ]] || die "usage: dev/standin.sh reconfigure DIR --weights A,B"
	D=$(state_dir "$dir")
	load_state
	[[ $GATEWAY == nginx ]] || die "reconfigure is for the nginx stand-in; dev/gateway takes its routes from istiod (edit the VirtualService)"
	pid_alive "$D/standin/nginx.pid" || die "nginx is not running in $D"
	WEIGHTS=$weights
	check_lists
	GEN=$((GEN + 1))
	write_nginx_conf
	nginx_cmd -t >/dev/null 2>&1 || die "the new nginx configuration is invalid: $(nginx_cmd -t 2>&1 | tail -2)"
	# A reload starts new workers and lets the old ones finish; wait until the old ones are
	# gone, so that every answer from now on comes from the new configuration.
	local master old
	master=$(cat "$D/standin/nginx.pid")
	old=$(pgrep -P "$master" | tr '\n' ' ' || true)
	nginx_cmd -s reload
	wait_until 10 old_workers_gone "$old" ||
		die "nginx's workers of the previous configuration did not exit within 10 s"
	wait_until 10 nginx_serves_gen || die "nginx did not take configuration $GEN within 10 s"
	save_state
	say "weights $VERSIONS = $WEIGHTS (configuration $GEN)"
}

cmd_stop_version() {
	D=$(state_dir "${1:-}")
	load_state
	version_index "${2:?stop-version DIR VERSION}" >/dev/null
	stop_pid "$D/standin/goapp-$2.pid"
	say "goapp $2 stopped"
}

cmd_start_version() {
	D=$(state_dir "${1:-}")
	load_state
	version_index "${2:?start-version DIR VERSION}" >/dev/null
	start_version "$2" || die "goapp $2 did not answer"
	say "goapp $2 running"
}

cmd_status() {
	D=$(state_dir "${1:-}")
	load_state
	local v i=0 st
	case $GATEWAY in
	nginx)
		pid_alive "$D/standin/nginx.pid" && st=running || st=stopped
		printf 'nginx (stand-in gateway): %s on 127.0.0.1:%s and :%s, hosts %s, weights %s = %s\n' \
			"$st" "$PORT" "$NODEPORT" "$HOSTS" "$VERSIONS" "$WEIGHTS"
		;;
	istio)
		pid_alive "$D/standin/gateway.pid" && st=running || st=stopped
		printf 'dev/gateway (routes from istiod): %s on %s:80, admin http://%s\n' "$st" "$GW_ADDR" "$GW_ADMIN"
		;;
	esac
	while read -r v; do
		i=$((i + 1))
		pid_alive "$D/standin/goapp-$v.pid" && st=running || st=stopped
		printf 'goapp %s: %s on %s:%s (netns %s)\n' "$v" "$st" "$(app_ip "$i")" "$APP_PORT" "$(ns_name "$v")"
	done < <(versions)
}

case ${1:-} in
up)
	shift
	cmd_up "$@"
	;;
down)
	[[ -n ${2:-} ]] || usage
	need_root
	cmd_down "$2"
	;;
reconfigure)
	shift
	cmd_reconfigure "$@"
	;;
stop-version) cmd_stop_version "${2:-}" "${3:-}" ;;
start-version)
	need_root
	cmd_start_version "${2:-}" "${3:-}"
	;;
service) cmd_service "${2:-}" ;;
status) cmd_status "${2:-}" ;;
*) usage ;;
esac
