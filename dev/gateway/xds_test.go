package main

// An xDS-level test: the gateway's client against go-control-plane's own ADS server
// (snapshot cache), in process, on loopback, with real HTTP upstreams.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"meshloop.dev/gateway/xds"
)

// upstream is an app version: it answers its name.
func upstream(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "app")
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// gatewayListener is shaped like istiod's listener for a gateway's HTTP port 80.
func gatewayListener(t *testing.T) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "outbound_0.0.0.0_80",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "http.80",
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, &routerv3.Router{})}}},
		ServerName: "istio-envoy", UseRemoteAddress: wrapperspb.Bool(true), NormalizePath: wrapperspb.Bool(true),
	}
	return &listenerv3.Listener{Name: "0.0.0.0_80",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, hcm)}}}}}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: name,
			EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		ConnectTimeout: durationpb.New(time.Second), LbPolicy: clusterv3.Cluster_LEAST_REQUEST}
}

func endpoints(name, addr string) *endpointv3.ClusterLoadAssignment {
	host, port, _ := net.SplitHostPort(addr)
	var p uint32
	for _, c := range port {
		p = p*10 + uint32(c-'0')
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}}}},
			HealthStatus: corev3.HealthStatus_HEALTHY}}}}}
}

func routesTo(cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "http.80", IgnorePortInHostMatching: true,
		VirtualHosts: []*routev3.VirtualHost{{Name: "goapp.dev:80", Domains: []string{"goapp.dev"}, Routes: []*routev3.Route{{
			Name: "default", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}, Timeout: durationpb.New(0)}}}}}}}
}

// controlPlane is go-control-plane's ADS server with a snapshot cache, and a record of the
// requests the gateway sends (its ACKs and NACKs).
type controlPlane struct {
	cache    cachev3.SnapshotCache
	grpc     *grpc.Server
	addr     string
	requests chan *discoveryv3.DiscoveryRequest
}

func startControlPlane(t *testing.T, addr string, cache cachev3.SnapshotCache, requests chan *discoveryv3.DiscoveryRequest) *controlPlane {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		requests <- r
		return nil
	}}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(context.Background(), cache, cb))
	go func() { _ = gs.Serve(ln) }()
	cp := &controlPlane{cache: cache, grpc: gs, addr: ln.Addr().String(), requests: requests}
	t.Cleanup(gs.Stop)
	return cp
}

func (cp *controlPlane) push(t *testing.T, nodeID, version string, rc *routev3.RouteConfiguration, lis *listenerv3.Listener, cls []*clusterv3.Cluster, eps []*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	res := map[string][]types.Resource{resourcev3.ListenerType: {lis}, resourcev3.RouteType: {rc}}
	for _, c := range cls {
		res[resourcev3.ClusterType] = append(res[resourcev3.ClusterType], c)
	}
	for _, e := range eps {
		res[resourcev3.EndpointType] = append(res[resourcev3.EndpointType], e)
	}
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		t.Fatal(err)
	}
}

// awaitRequest waits for the gateway's request of type typeURL that satisfies ok.
func (cp *controlPlane) awaitRequest(t *testing.T, typeURL string, ok func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case r := <-cp.requests:
			if r.GetTypeUrl() == typeURL && ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("no %s request as expected within 30s", typeURL)
		}
	}
}

func acked(version string) func(*discoveryv3.DiscoveryRequest) bool {
	return func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetVersionInfo() == version && r.GetErrorDetail() == nil && r.GetResponseNonce() != ""
	}
}

func get(t *testing.T, addr, host string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// awaitFile waits for the gateway's ready file and returns the address port 80 is served on.
func awaitReadyFile(t *testing.T, path string, done <-chan error) string {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			var rf struct{ Ports map[string]string }
			if err := json.Unmarshal(b, &rf); err != nil {
				t.Fatal(err)
			}
			return rf.Ports["80"]
		}
		select {
		case err := <-done:
			t.Fatalf("gateway stopped: %v", err)
		case <-deadline:
			t.Fatal("gateway not ready within 30s")
		case <-tick.C:
		}
	}
}

// A push takes effect without a restart; a route configuration with a feature the gateway
// does not implement is NACKed (naming the field) and the last one keeps serving; when the
// control plane goes away the gateway keeps serving, reconnects, and takes the next push.
func TestXDSPushNACKAndControlPlaneLoss(t *testing.T) {
	v1, v2, v3 := upstream(t, "v1"), upstream(t, "v2"), upstream(t, "v3")
	c1, c2, c3 := "outbound|80|v1|goapp.dev.svc.cluster.local", "outbound|80|v2|goapp.dev.svc.cluster.local", "outbound|80|v3|goapp.dev.svc.cluster.local"
	clusters := []*clusterv3.Cluster{edsCluster(c1), edsCluster(c2), edsCluster(c3)}
	eps := []*endpointv3.ClusterLoadAssignment{endpoints(c1, v1), endpoints(c2, v2), endpoints(c3, v3)}

	id := xds.Identity{Pod: "istio-ingress-0", Namespace: "istio-ingress", IP: "10.250.0.9",
		Labels: map[string]string{"istio": "ingress"}}
	requests := make(chan *discoveryv3.DiscoveryRequest, 1024)
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	cp := startControlPlane(t, "127.0.0.1:0", cache, requests)
	cp.push(t, id.Node().GetId(), "1", routesTo(c1), gatewayListener(t), clusters, eps)

	ready := filepath.Join(t.TempDir(), "ready.json")
	o := options{xdsAddr: cp.addr, bind: "127.0.0.1", portMap: map[uint32]uint32{80: 0}, readyFile: ready, id: id}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := awaitReadyFile(t, ready, done)

	resp, body := get(t, addr, "goapp.dev")
	if resp.StatusCode != 200 || body != "v1" || resp.Header.Get("Server") != "istio-envoy" ||
		resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
		t.Fatalf("first config: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, _ := get(t, addr, "other.dev"); resp.StatusCode != 404 {
		t.Fatalf("unknown host: %d, want 404", resp.StatusCode)
	}

	// A push: the route now goes to v2.
	cp.push(t, id.Node().GetId(), "2", routesTo(c2), gatewayListener(t), clusters, eps)
	cp.awaitRequest(t, xds.RouteType, acked("2"))
	if _, body := get(t, addr, "goapp.dev"); body != "v2" {
		t.Fatalf("after push 2: %q, want v2", body)
	}

	// A feature the gateway cannot honour: NACKed with the field, the last routes kept.
	bad := routesTo(c3)
	bad.VirtualHosts[0].Routes[0].GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: c1}}
	cp.push(t, id.Node().GetId(), "3", bad, gatewayListener(t), clusters, eps)
	nack := cp.awaitRequest(t, xds.RouteType, func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	if msg := nack.GetErrorDetail().GetMessage(); !strings.Contains(msg, "virtual_hosts[0].routes[0].route.request_mirror_policies") {
		t.Fatalf("NACK message %q does not name the field", msg)
	}
	if nack.GetVersionInfo() != "2" {
		t.Fatalf("NACK carries version %q, want the last accepted, 2", nack.GetVersionInfo())
	}
	if _, body := get(t, addr, "goapp.dev"); body != "v2" {
		t.Fatalf("after the NACK: %q, want v2 still", body)
	}

	// The control plane goes away: the gateway keeps serving its last configuration.
	cp.grpc.Stop()
	if _, body := get(t, addr, "goapp.dev"); body != "v2" {
		t.Fatalf("control plane down: %q, want v2 still", body)
	}
	// It comes back on the same address with a new configuration: the gateway reconnects.
	cp2 := startControlPlane(t, cp.addr, cache, requests)
	cp2.push(t, id.Node().GetId(), "4", routesTo(c3), gatewayListener(t), clusters, eps)
	cp2.awaitRequest(t, xds.RouteType, acked("4"))
	if _, body := get(t, addr, "goapp.dev"); body != "v3" {
		t.Fatalf("after reconnecting: %q, want v3", body)
	}
}
