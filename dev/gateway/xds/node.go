// Package xds is the gateway's xDS client: one ADS stream (state of the world) to istiod,
// over which it receives listeners, clusters, route configurations and endpoints, checks
// them, ACKs what it applies and NACKs (naming the field) what it cannot honour, and
// publishes each new consistent configuration as a config.Snapshot.
package xds

import (
	"fmt"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// IstioVersion is the proxy version the gateway announces: the release line of the pinned
// istio.io/istio module, so istiod generates the configuration it would for its own proxies.
const IstioVersion = "1.31.0"

// Identity is who the gateway says it is: the ingress gateway Pod.
type Identity struct {
	Pod, Namespace, IP string
	Labels             map[string]string
}

// Node returns the node istiod sees, as pilot-agent's Envoy bootstrap describes a router:
// ID `router~IP~POD.NS~NS.svc.cluster.local` and the metadata istiod reads
// (pilot/pkg/model NodeMetadata): labels, namespace, instance IPs, cluster and mesh IDs.
func (id Identity) Node() *corev3.Node {
	workload := id.Labels["app"]
	if workload == "" {
		workload = id.Pod
	}
	labels := map[string]any{}
	for k, v := range id.Labels {
		labels[k] = v
	}
	md, err := structpb.NewStruct(map[string]any{
		"ISTIO_VERSION":         IstioVersion,
		"LABELS":                labels,
		"NAMESPACE":             id.Namespace,
		"INSTANCE_IPS":          id.IP,
		"NAME":                  id.Pod,
		"WORKLOAD_NAME":         workload,
		"OWNER":                 "kubernetes://apis/apps/v1/namespaces/" + id.Namespace + "/deployments/" + workload,
		"SERVICE_ACCOUNT":       workload,
		"CLUSTER_ID":            "Kubernetes",
		"MESH_ID":               "cluster.local",
		"INTERCEPTION_MODE":     "REDIRECT",
		"ENVOY_STATUS_PORT":     15021,
		"ENVOY_PROMETHEUS_PORT": 15090,
	})
	if err != nil { // only plain strings and numbers above
		panic(err)
	}
	return &corev3.Node{
		Id:            strings.Join([]string{"router", id.IP, id.Pod + "." + id.Namespace, id.Namespace + ".svc.cluster.local"}, "~"),
		Cluster:       workload + "." + id.Namespace,
		Metadata:      md,
		UserAgentName: "envoy",
	}
}

// ParseLabels reads `k=v,k2=v2`.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: expected key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
