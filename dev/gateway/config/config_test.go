package config

import (
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
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func hcm(t *testing.T) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_80",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "http.80"}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.fault"},
			{Name: "istio.stats"},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}},
		ServerName: "istio-envoy", UseRemoteAddress: wrapperspb.Bool(true), NormalizePath: wrapperspb.Bool(true),
		UpgradeConfigs: []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}}
}

func listener(t *testing.T, filter string, typed proto.Message) *listenerv3.Listener {
	return &listenerv3.Listener{Name: "0.0.0.0_80",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: filter,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, typed)}}}}}}
}

func TestParseListener(t *testing.T) {
	l, err := ParseListener(listener(t, HCMFilter, hcm(t)))
	if err != nil {
		t.Fatal(err)
	}
	if l.Port != 80 || l.RouteName != "http.80" || l.ServerName != "istio-envoy" || !l.ServerOverwrite ||
		!l.UseRemoteAddr || !l.NormalizePath || !l.FaultFilter || len(l.Upgrades) != 1 || l.Upgrades[0] != "websocket" {
		t.Fatalf("%+v", l)
	}
}

func TestParseListenerRejects(t *testing.T) {
	withFilter := func(name string) *hcmv3.HttpConnectionManager {
		h := hcm(t)
		h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: name}}, h.HttpFilters...)
		return h
	}
	tlsChain := listener(t, HCMFilter, hcm(t))
	tlsChain.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls"}
	inline := hcm(t)
	inline.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{}}
	cases := []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"TCP gateway server", listener(t, "envoy.filters.network.tcp_proxy", &tcpv3.TcpProxy{StatPrefix: "x"}), "only one envoy.filters.network.http_connection_manager"},
		{"TLS", tlsChain, "filter_chains[0].transport_socket: field not supported"},
		{"RBAC filter", listener(t, HCMFilter, withFilter("envoy.filters.http.rbac")), `http_filters[0]: HTTP filter "envoy.filters.http.rbac" is not supported`},
		{"inline routes", listener(t, HCMFilter, inline), "typed_config.route_config: field not supported"},
	}
	for _, c := range cases {
		if _, err := ParseListener(c.l); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

// istiodCluster is shaped like istiod's outbound cluster for a gateway, with its
// per-endpoint mTLS transport socket match.
func istiodCluster(t *testing.T) *clusterv3.Cluster {
	match, _ := structpb.NewStruct(map[string]any{"tlsMode": "istio"})
	return &clusterv3.Cluster{Name: "outbound|80|v1|goapp.dev.svc.cluster.local",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: "outbound|80|v1|goapp.dev.svc.cluster.local"},
		ConnectTimeout:       durationpb.New(10 * time.Second), LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(4294967295), MaxRequests: wrapperspb.UInt32(4294967295)}}},
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{HTTPOptionsKey: mustAny(t, &httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{}}})},
		TransportSocketMatches: []*clusterv3.Cluster_TransportSocketMatch{
			{Name: "tlsMode-istio", Match: match, TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{})}}},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer"}}},
	}
}

func lbEndpoint(ip string, tlsMode string, hs corev3.HealthStatus) *endpointv3.LbEndpoint {
	e := &endpointv3.LbEndpoint{HealthStatus: hs, HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}}}
	if tlsMode != "" {
		md, _ := structpb.NewStruct(map[string]any{"tlsMode": tlsMode})
		e.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.transport_socket_match": md}}
	}
	return e
}

func TestParseClusterAndEndpoints(t *testing.T) {
	c, err := ParseCluster(istiodCluster(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != "EDS" || c.LB != "LEAST_REQUEST" || c.HTTP2 || c.ConnectTimeout != 10*time.Second || c.PanicPercent != 50 {
		t.Fatalf("%+v", c)
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: c.EDSName, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{
			lbEndpoint("10.250.1.2", "", corev3.HealthStatus_HEALTHY),
			lbEndpoint("10.250.1.3", "istio", corev3.HealthStatus_HEALTHY),
			lbEndpoint("10.250.1.4", "disabled", corev3.HealthStatus_UNHEALTHY)}}}}
	eps, err := c.ParseEndpoints(cla, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Endpoint{{"10.250.1.2:8080", true, 1, false}, {"10.250.1.3:8080", true, 1, true}, {"10.250.1.4:8080", false, 1, false}}
	for i := range want {
		if eps[i] != want[i] {
			t.Errorf("endpoint %d: %+v, want %+v", i, eps[i], want[i])
		}
	}
}

func TestParseClusterHTTP2(t *testing.T) {
	cl := istiodCluster(t)
	cl.TypedExtensionProtocolOptions[HTTPOptionsKey] = mustAny(t, &httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})
	if c, err := ParseCluster(cl); err != nil || !c.HTTP2 {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestParseClusterRejects(t *testing.T) {
	cases := []struct {
		name   string
		change func(*clusterv3.Cluster)
		want   string
	}{
		{"outlier detection", func(c *clusterv3.Cluster) { c.OutlierDetection = &clusterv3.OutlierDetection{} }, "outlier_detection: field not supported"},
		{"ring hash", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RING_HASH }, "lb_policy: RING_HASH"},
		{"original destination", func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		}, "type: ORIGINAL_DST"},
		{"a real connection limit", func(c *clusterv3.Cluster) {
			c.CircuitBreakers.Thresholds[0].MaxConnections = wrapperspb.UInt32(10)
		}, "circuit_breakers.thresholds[0].max_connections: 10"},
	}
	for _, c := range cases {
		cl := istiodCluster(t)
		c.change(cl)
		if _, err := ParseCluster(cl); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

// A listener waits for its routes and an EDS cluster for its endpoints (Envoy's warming).
func TestBuildWarming(t *testing.T) {
	l, _ := ParseListener(listener(t, HCMFilter, hcm(t)))
	c, _ := ParseCluster(istiodCluster(t))
	ls, cs := map[string]*Listener{l.Name: l}, map[string]*Cluster{c.Name: c}
	s := Build(ls, map[string]*routev3.RouteConfiguration{}, cs, map[string]*endpointv3.ClusterLoadAssignment{}, Versions{})
	if s.Complete || len(s.Listeners) != 0 || len(s.Clusters) != 0 {
		t.Fatalf("nothing warm yet: %+v", s)
	}
	s = Build(ls, map[string]*routev3.RouteConfiguration{"http.80": {Name: "http.80"}}, cs,
		map[string]*endpointv3.ClusterLoadAssignment{c.EDSName: {ClusterName: c.EDSName}}, Versions{})
	if !s.Complete || len(s.Listeners) != 1 || len(s.Clusters) != 1 {
		t.Fatalf("all warm: %+v", s)
	}
}
