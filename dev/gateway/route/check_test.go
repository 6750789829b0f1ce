package route

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// gatewayRoutes is shaped like istiod's route configuration for the sample chart's gateway.
func gatewayRoutes(t *testing.T) *routev3.RouteConfiguration {
	meta, err := structpb.NewStruct(map[string]any{"config": "/apis/networking.istio.io/v1/namespaces/dev/virtual-service/goapp"})
	if err != nil {
		t.Fatal(err)
	}
	a := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
			Clusters: []*routev3.WeightedCluster_ClusterWeight{
				{Name: "outbound|80|v1|goapp.dev.svc.cluster.local", Weight: wrapperspb.UInt32(90)},
				{Name: "outbound|80|v2|goapp.dev.svc.cluster.local", Weight: wrapperspb.UInt32(10)}}}},
		Timeout:        durationpb.New(0),
		MaxGrpcTimeout: durationpb.New(0),
		RetryPolicy: &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
			NumRetries: wrapperspb.UInt32(2), RetriableStatusCodes: []uint32{503}, HostSelectionRetryMaxAttempts: 5,
			RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}}},
	}
	r := &routev3.Route{Name: "default", Match: prefix("/"), Action: &routev3.Route_Route{Route: a},
		Metadata:  &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": meta}},
		Decorator: &routev3.Decorator{Operation: "goapp:80/*"}}
	r.Match.CaseSensitive = wrapperspb.Bool(true)
	vh := &routev3.VirtualHost{Name: "goapp.dev:80", Domains: []string{"goapp.dev"}, Routes: []*routev3.Route{r},
		IncludeRequestAttemptCount: true}
	return &routev3.RouteConfiguration{Name: "http.80", VirtualHosts: []*routev3.VirtualHost{vh},
		ValidateClusters: wrapperspb.Bool(false), IgnorePortInHostMatching: true}
}

func TestCheckAcceptsIstioGatewayRoutes(t *testing.T) {
	rc := gatewayRoutes(t)
	rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: mustAny(t, istioFault())}
	if err := Check(rc); err != nil {
		t.Fatal(err)
	}
}

// Each unsupported feature is rejected with the path of its field.
func TestCheckRejectsUnsupported(t *testing.T) {
	cases := []struct {
		name   string
		change func(rc *routev3.RouteConfiguration)
		want   string
	}{
		{"mirror", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "m"}}
		}, "virtual_hosts[0].routes[0].route.request_mirror_policies: field not supported"},
		{"dynamic metadata match (JWT claims)", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match.DynamicMetadata = []*matcherv3.MetadataMatcher{{Filter: "jwt"}}
		}, "virtual_hosts[0].routes[0].match.dynamic_metadata"},
		{"cors per route", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.cors": mustAny(t, &corsv3.CorsPolicy{})}
		}, `virtual_hosts[0].routes[0].typed_per_filter_config["envoy.filters.http.cors"]: filter not supported`},
		{"fault with a header-controlled abort", func(rc *routev3.RouteConfiguration) {
			hf := istioFault()
			hf.Abort.ErrorType = &faultv3.FaultAbort_HeaderAbort_{HeaderAbort: &faultv3.FaultAbort_HeaderAbort{}}
			rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: mustAny(t, hf)}
		}, `typed_per_filter_config["envoy.filters.http.fault"].abort.header_abort`},
		{"unknown retry condition", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy.RetryOn = "5xx,retriable-headers"
		}, `route.retry_policy.retry_on: condition "retriable-headers"`},
		{"regex that does not compile", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(["}}
		}, "virtual_hosts[0].routes[0].match.safe_regex.regex"},
		{"header value with a % command", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].RequestHeadersToAdd = []*corev3.HeaderValueOption{setHdr("x-ip", "%DOWNSTREAM_REMOTE_ADDRESS%")}
		}, "request_headers_to_add[0].header.value"},
		{"duplicate domain", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "dup", Domains: []string{"GOAPP.dev"}})
		}, `virtual_hosts[1].domains: "GOAPP.dev" is also a domain of virtual_hosts[0]`},
		{"require_tls", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].RequireTls = routev3.VirtualHost_ALL
		}, "virtual_hosts[0].require_tls"},
		{"max_stream_duration", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(1e9)}
		}, "route.max_stream_duration.max_stream_duration"},
		{"route without action", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Action = nil
		}, "virtual_hosts[0].routes[0]: a route needs"},
		{"direct response body from a file", func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/passwd"}}}}
		}, "direct_response.body.filename"},
	}
	for _, c := range cases {
		rc := gatewayRoutes(t)
		c.change(rc)
		err := Check(rc)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
