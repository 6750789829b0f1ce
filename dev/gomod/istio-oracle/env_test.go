package oracle_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pilot/test/xdstest"
	"istio.io/istio/pkg/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// env is one scenario translated by Istio: the gateway proxy's listeners, routes and
// clusters, and the healthy endpoints of each cluster.
type env struct {
	in *input
	// derived: the VirtualServices istiod's Gateway API controller made from the routes.
	derived map[string]*config.Config
	proxy   *model.Proxy
	sim     *simulation.Simulation
	rds     map[string]*route.RouteConfiguration
	cds     map[string]*cluster.Cluster
	healthy map[string]int
	gw      gatewayWorkload
}

// gatewayWorkload is the ingress gateway the requests arrive at: the Pods behind meshloop's
// configured ingress Service.
type gatewayWorkload struct {
	namespace string
	labels    map[string]string
	// service is the ingress Service, when the files define it (it translates server ports
	// into the target ports the listeners bind).
	service *corev1.Service
	pod     *corev1.PodSpec
	// ip is the proxy's address: a Gateway API gateway's Pod IP, which makes the proxy an
	// endpoint of the Gateway's Service (istiod applies a Gateway's listeners only there).
	ip string
}

const defaultIngress = "istio-ingress/istio-ingress"

func newEnv(t *testing.T, s *xds.FakeDiscoveryServer, in *input, sc scenario) *env {
	gw := findGateway(in, sc.Ingress)
	if sc.Gateway != "" {
		gw = findK8sGateway(in, sc.Gateway)
	}
	proxy := s.SetupProxy(&model.Proxy{
		Type:            model.Router,
		ID:              "istio-ingress-oracle." + gw.namespace,
		ConfigNamespace: gw.namespace,
		IPAddresses:     []string{gw.ip},
		Labels:          gw.labels,
		Metadata: &model.NodeMetadata{
			Namespace:    gw.namespace,
			Labels:       gw.labels,
			IstioVersion: "1.31.0",
			ClusterID:    "Kubernetes",
		},
	})
	sim := simulation.NewSimulation(t, s, proxy)
	return &env{
		in:      in,
		derived: derivedVirtualServices(s),
		proxy:   proxy,
		sim:     sim,
		rds:     xdstest.ExtractRouteConfigurations(sim.Routes),
		cds:     xdstest.ExtractClusters(sim.Clusters),
		healthy: stableHealthy(t, s, proxy),
		gw:      gw,
	}
}

// stableHealthy counts the healthy endpoints of each EDS cluster. Endpoints reach the
// discovery server through informers, so the count is read until two reads agree (Istio's
// own tests retry the same way).
func stableHealthy(t *testing.T, s *xds.FakeDiscoveryServer, p *model.Proxy) map[string]int {
	prev := healthyEndpoints(s, p)
	for range 50 {
		time.Sleep(2 * time.Millisecond)
		s.EnsureSynced(t)
		cur := healthyEndpoints(s, p)
		if reflect.DeepEqual(prev, cur) {
			return cur
		}
		prev = cur
	}
	return prev
}

func healthyEndpoints(s *xds.FakeDiscoveryServer, p *model.Proxy) map[string]int {
	out := map[string]int{}
	for _, cla := range s.Endpoints(p) {
		for _, l := range cla.Endpoints {
			for _, e := range l.LbEndpoints {
				if hs := e.GetHealthStatus(); hs == core.HealthStatus_HEALTHY || hs == core.HealthStatus_UNKNOWN {
					out[cla.ClusterName]++
				}
			}
		}
	}
	return out
}

// findGateway reads the ingress Pods' labels from the files: the Deployment behind the
// ingress Service, or the Service's selector; without either, the labels Istio's samples use.
func findGateway(in *input, ingress string) gatewayWorkload {
	if ingress == "" {
		ingress = defaultIngress
	}
	ns, name, _ := strings.Cut(ingress, "/")
	gw := gatewayWorkload{namespace: ns, labels: map[string]string{"istio": "ingressgateway"}, ip: "10.255.255.1"}
	for _, o := range in.kube {
		if s, ok := o.(*corev1.Service); ok && s.Namespace == ns && s.Name == name && len(s.Spec.Selector) > 0 {
			gw.service = s
			gw.labels = s.Spec.Selector
		}
	}
	for _, o := range in.kube {
		d, ok := o.(*appsv1.Deployment)
		if !ok || d.Namespace != ns {
			continue
		}
		l := d.Spec.Template.Labels
		if (gw.service != nil && selects(gw.service.Spec.Selector, l)) || (gw.service == nil && l["istio"] != "" && l["istio"] != "pilot") {
			gw.labels = l
			gw.pod = &d.Spec.Template.Spec
			break
		}
	}
	return gw
}

// listenPort is the port Istio's listener binds for a server port: the target port of the
// ingress Service port with that number (port translation), else the number itself.
func (g gatewayWorkload) listenPort(serverPort uint32) int {
	if g.service == nil {
		return int(serverPort)
	}
	for _, sp := range g.service.Spec.Ports {
		if uint32(sp.Port) != serverPort {
			continue
		}
		if sp.TargetPort.Type == intstr.String && g.pod != nil {
			if p, ok := targetPort(sp, &corev1.Pod{Spec: *g.pod}); ok {
				return int(p)
			}
		}
		if sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0 {
			return int(sp.TargetPort.IntVal)
		}
		return int(serverPort)
	}
	return int(serverPort)
}

// serverFor finds the Gateway server that put a virtual host with `domain` on the route
// configuration `rds` for a VirtualService in namespace ns with hosts vsHosts (resolved):
// the first server (in Istio's merge order) whose Gateway is in gws and one of whose hosts,
// as seen from ns, intersects a VirtualService host in exactly that domain.
func (e *env) serverFor(rds, domain, ns string, gws map[string]bool, vsHosts []string) (string, uint32) {
	mg := e.proxy.MergedGateway
	if mg == nil {
		return "", 0
	}
	for _, srv := range mg.ServersByRouteName[rds] {
		name := mg.GatewayNameForServer[srv]
		if !gws[name] {
			continue
		}
		for _, h := range srv.Hosts {
			hns, hh, found := strings.Cut(h, "/")
			if !found {
				hh, hns = h, "*"
			}
			if hns != "*" && hns != ns {
				continue
			}
			for _, vh := range vsHosts {
				if intersection(hh, vh) == domain {
					return name, srv.Port.GetNumber()
				}
			}
		}
	}
	return "", 0
}

// redirectServerFor finds the first server with httpsRedirect that covers `domain`.
func (e *env) redirectServerFor(rds, domain string) (string, uint32) {
	mg := e.proxy.MergedGateway
	if mg == nil {
		return "", 0
	}
	// The virtual host of a domain that a redirecting server names exactly is that server's
	// (Envoy prefers the exact domain); only then one whose host covers the domain.
	for _, exact := range []bool{true, false} {
		for _, srv := range mg.ServersByRouteName[rds] {
			if !srv.GetTls().GetHttpsRedirect() {
				continue
			}
			for _, h := range srv.Hosts {
				// A namespaced host (`dev/goapp.dev`) redirects the domains it makes with a
				// VirtualService of that namespace.
				if _, name, found := strings.Cut(h, "/"); found {
					h = name
				}
				h = strings.ToLower(h)
				if h == domain || (!exact && (subsetOf(domain, h) || subsetOf(h, domain))) {
					return mg.GatewayNameForServer[srv], srv.Port.GetNumber()
				}
			}
		}
	}
	return "", 0
}

// intersection is the narrower of two hosts when one covers the other (Istio's
// host.Names.Intersection for one pair), else "".
func intersection(a, b string) string {
	a, b = strings.ToLower(a), strings.ToLower(b)
	switch {
	case subsetOf(a, b):
		return a
	case subsetOf(b, a):
		return b
	}
	return ""
}

// subsetOf: every name a covers, b covers (Istio's host.Name.SubsetOf).
func subsetOf(a, b string) bool {
	if b == "*" || a == b {
		return true
	}
	if !strings.HasPrefix(b, "*") {
		return false
	}
	if strings.HasPrefix(a, "*") {
		return strings.HasSuffix(a[1:], b[1:])
	}
	return strings.HasSuffix(a, b[1:])
}

// resolveHosts expands short names as Istio does for a VirtualService in namespace ns.
func resolveHosts(ns string, hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if h != "*" && !strings.Contains(h, ".") {
			h = h + "." + ns + ".svc.cluster.local"
		}
		out = append(out, h)
	}
	return out
}

// vsGateways resolves a VirtualService's `gateways` the way istiod does.
func vsGateways(ns string, gws []string) map[string]bool {
	out := map[string]bool{}
	for _, g := range gws {
		switch {
		case strings.HasPrefix(g, "./"):
			out[ns+"/"+g[2:]] = true
		case strings.Contains(g, "/"):
			out[g] = true
		case strings.Contains(g, "."):
			name, rest, _ := strings.Cut(g, ".")
			gns, _, _ := strings.Cut(rest, ".")
			out[gns+"/"+name] = true
		default:
			out[ns+"/"+g] = true
		}
	}
	return out
}

func vsKeyFromMetadata(r *route.Route) string {
	f := r.GetMetadata().GetFilterMetadata()["istio"].GetFields()["config"].GetStringValue()
	// /apis/networking.istio.io/v1/namespaces/<ns>/virtual-service/<name>
	parts := strings.Split(f, "/")
	for i := range parts {
		if parts[i] == "namespaces" && i+3 < len(parts) {
			return fmt.Sprintf("%s/%s", parts[i+1], parts[i+3])
		}
	}
	return ""
}
