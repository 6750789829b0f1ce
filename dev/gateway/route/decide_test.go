package route

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// decide routes req through a one-route virtual host ("*") of a gateway-like configuration.
func decide(r *routev3.Route, req Request) Decision {
	vh := &routev3.VirtualHost{Name: "goapp.dev:80", Domains: []string{"*"}, Routes: []*routev3.Route{r}}
	rc := &routev3.RouteConfiguration{Name: "http.80", VirtualHosts: []*routev3.VirtualHost{vh}, IgnorePortInHostMatching: true}
	return Evaluate(rc, req)
}

func action(m *routev3.RouteMatch, a *routev3.RouteAction) *routev3.Route {
	return &routev3.Route{Name: "r", Match: m, Action: &routev3.Route_Route{Route: a}}
}

func toCluster(name string) *routev3.RouteAction {
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}
}

func TestEvaluateNoVirtualHostAndNoRoute(t *testing.T) {
	rc := rcWith(true, []string{"goapp.dev"})
	rc.VirtualHosts[0].Routes = []*routev3.Route{named("api", prefix("/api"))}
	if d := Evaluate(rc, get("/api")); d.Action != Forward {
		t.Errorf("goapp.dev/api: %v", d.Action)
	}
	other := get("/api")
	other.Host = "other.dev"
	if d := Evaluate(rc, other); d.Action != NoVirtualHost || d.Status != 404 {
		t.Errorf("other host: %v %d, want no_virtual_host 404", d.Action, d.Status)
	}
	if d := Evaluate(rc, get("/web")); d.Action != NoRoute || d.Status != 404 || d.VirtualHost == nil {
		t.Errorf("no route: %v %d, want no_route 404", d.Action, d.Status)
	}
}

func TestDecideCluster(t *testing.T) {
	d := decide(action(prefix("/"), toCluster("outbound|80|v1|goapp.dev.svc.cluster.local")), get("/x?y=1"))
	if d.Action != Forward || len(d.Clusters) != 1 || d.Clusters[0].Name != "outbound|80|v1|goapp.dev.svc.cluster.local" {
		t.Fatalf("decision %+v", d)
	}
	if d.Path != "/x?y=1" || d.PathRewritten || d.Authority != "goapp.dev" || d.ClusterNotFoundStatus != 503 {
		t.Fatalf("path %q authority %q nc %d", d.Path, d.Authority, d.ClusterNotFoundStatus)
	}
	if c, ok := d.Pick(12345); !ok || c.Name != d.Clusters[0].Name {
		t.Fatalf("pick %v %v", c, ok)
	}
}

// Weighted clusters: a random number modulo the total weight selects the cluster whose
// cumulative weight exceeds it.
func TestDecideWeightedClustersPick(t *testing.T) {
	a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
		Clusters: []*routev3.WeightedCluster_ClusterWeight{
			{Name: "v1", Weight: wrapperspb.UInt32(90)}, {Name: "v2", Weight: wrapperspb.UInt32(10)},
		}}}}
	d := decide(action(prefix("/"), a), get("/"))
	if len(d.Clusters) != 2 || d.Clusters[0].Weight != 90 || d.Clusters[1].Weight != 10 {
		t.Fatalf("clusters %+v", d.Clusters)
	}
	counts := map[string]int{}
	for r := uint64(0); r < 1000; r++ {
		c, _ := d.Pick(r)
		counts[c.Name]++
	}
	if counts["v1"] != 900 || counts["v2"] != 100 {
		t.Fatalf("over every residue: %v, want v1 900, v2 100", counts)
	}
	for r, want := range map[uint64]string{0: "v1", 89: "v1", 90: "v2", 99: "v2", 100: "v1", 190: "v2"} {
		if c, _ := d.Pick(r); c.Name != want {
			t.Errorf("Pick(%d) = %s, want %s", r, c.Name, want)
		}
	}
}

func TestDecideDirectResponse(t *testing.T) {
	r := &routev3.Route{Match: prefix("/"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: 418, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "teapot"}}}}}
	if d := decide(r, get("/")); d.Action != DirectResponse || d.Status != 418 || d.Body != "teapot" {
		t.Fatalf("%+v", d)
	}
	r.GetDirectResponse().Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("b")}}
	if d := decide(r, get("/")); d.Body != "b" {
		t.Fatalf("inline bytes: %q", d.Body)
	}
	r.GetDirectResponse().Body = nil
	if d := decide(r, get("/")); d.Status != 418 || d.Body != "" {
		t.Fatalf("no body: %+v", d)
	}
}

// prefix_rewrite replaces the matched prefix (or the whole exact path) and keeps the query.
func TestDecidePrefixRewrite(t *testing.T) {
	cases := []struct {
		m           *routev3.RouteMatch
		rewrite     string
		path, want  string
		description string
	}{
		{prefix("/api/"), "/", "/api/users?x=1", "/users?x=1", "prefix"},
		{prefix("/api"), "/v2", "/api/users", "/v2/users", "prefix without slash"},
		{exact("/old"), "/new", "/old?q", "/new?q", "exact path"},
		{sepPrefix("/api"), "/svc", "/api/x", "/svc/x", "separated prefix"},
		{regex("/a.*"), "/z", "/abc?k=v", "/z?k=v", "regex route: whole path replaced"},
	}
	for _, c := range cases {
		a := toCluster("c")
		a.PrefixRewrite = c.rewrite
		d := decide(action(c.m, a), get(c.path))
		if d.Path != c.want || !d.PathRewritten {
			t.Errorf("%s: got %q, want %q", c.description, d.Path, c.want)
		}
	}
	m := prefix("/API")
	m.CaseSensitive = wrapperspb.Bool(false)
	a := toCluster("c")
	a.PrefixRewrite = "/v1"
	if d := decide(action(m, a), get("/api/x")); d.Path != "/v1/x" {
		t.Errorf("case-insensitive prefix: got %q", d.Path)
	}
}

// regex_rewrite substitutes every match in the path (RE2 \N groups) and keeps the query.
func TestDecideRegexRewrite(t *testing.T) {
	a := toCluster("c")
	a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
		Pattern: &matcherv3.RegexMatcher{Regex: "^/service/([^/]+)(/.*)$"}, Substitution: `\2/instance/\1`}
	if d := decide(action(prefix("/"), a), get("/service/foo/v1/api?x=$1")); d.Path != "/v1/api/instance/foo?x=$1" {
		t.Errorf("groups: got %q", d.Path)
	}
	a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "o"}, Substitution: "0$"}
	if d := decide(action(prefix("/"), a), get("/foo/boo")); d.Path != "/f0$0$/b0$0$" {
		t.Errorf("every match: got %q", d.Path)
	}
}

// host_rewrite_literal on the route wins over the weighted cluster entry's.
func TestDecideAuthorityRewrite(t *testing.T) {
	a := toCluster("c")
	a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "internal.svc"}
	d := decide(action(prefix("/"), a), get("/"))
	if got := d.AuthorityFor(d.Clusters[0]); got != "internal.svc" {
		t.Errorf("route rewrite: %q", got)
	}
	wa := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
		Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "v1", Weight: wrapperspb.UInt32(1),
			HostRewriteSpecifier: &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: "v1.svc"}}}}}}
	d = decide(action(prefix("/"), wa), get("/"))
	if got := d.AuthorityFor(d.Clusters[0]); got != "v1.svc" {
		t.Errorf("cluster rewrite: %q", got)
	}
	wa.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "route.svc"}
	d = decide(action(prefix("/"), wa), get("/"))
	if got := d.AuthorityFor(d.Clusters[0]); got != "route.svc" {
		t.Errorf("both: %q, want the route's", got)
	}
	if d := decide(action(prefix("/"), toCluster("c")), get("/")); d.AuthorityFor(d.Clusters[0]) != "goapp.dev" {
		t.Errorf("no rewrite: %q", d.Authority)
	}
}

// An unset route timeout is Envoy's 15 s; 0s (istiod's default) means none.
func TestDecideTimeout(t *testing.T) {
	a := toCluster("c")
	if d := decide(action(prefix("/"), a), get("/")); d.Timeout != 15*time.Second {
		t.Errorf("unset: %v", d.Timeout)
	}
	a.Timeout = durationpb.New(0)
	if d := decide(action(prefix("/"), a), get("/")); d.Timeout != 0 {
		t.Errorf("0s: %v", d.Timeout)
	}
	a.Timeout = durationpb.New(250 * time.Millisecond)
	if d := decide(action(prefix("/"), a), get("/")); d.Timeout != 250*time.Millisecond {
		t.Errorf("250ms: %v", d.Timeout)
	}
}

// With max_grpc_timeout (istiod sets it), a gRPC request's grpc-timeout header replaces the
// route timeout, capped by a non-zero maximum; other requests keep the route timeout.
func TestDecideGRPCTimeout(t *testing.T) {
	a := toCluster("c")
	a.Timeout = durationpb.New(2 * time.Second)
	a.MaxGrpcTimeout = durationpb.New(0)
	grpc := withHeaders("content-type", "application/grpc", "grpc-timeout", "500m")
	if d := decide(action(prefix("/"), a), grpc); d.Timeout != 500*time.Millisecond {
		t.Errorf("grpc-timeout: %v", d.Timeout)
	}
	if d := decide(action(prefix("/"), a), withHeaders("content-type", "application/grpc")); d.Timeout != 0 {
		t.Errorf("no grpc-timeout header: %v, want none", d.Timeout)
	}
	a.MaxGrpcTimeout = durationpb.New(100 * time.Millisecond)
	if d := decide(action(prefix("/"), a), grpc); d.Timeout != 100*time.Millisecond {
		t.Errorf("capped: %v", d.Timeout)
	}
	if d := decide(action(prefix("/"), a), get("/")); d.Timeout != 2*time.Second {
		t.Errorf("plain HTTP: %v", d.Timeout)
	}
}

// istiod's default retry policy.
func TestDecideRetryPolicy(t *testing.T) {
	a := toCluster("c")
	a.RetryPolicy = &routev3.RetryPolicy{
		RetryOn:              "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
		NumRetries:           wrapperspb.UInt32(2),
		RetriableStatusCodes: []uint32{503},
		RetryHostPredicate:   []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}},
	}
	p := decide(action(prefix("/"), a), get("/")).Retry
	if p == nil || p.NumRetries != 2 || !p.OtherHosts || len(p.On) != 5 {
		t.Fatalf("%+v", p)
	}
	for _, c := range []struct {
		a    Attempt
		want bool
	}{
		{Attempt{ConnectFailed: true}, true},
		{Attempt{Status: 503}, true},
		{Attempt{Status: 502}, false},
		{Attempt{Status: 200, GRPCStatus: "14"}, true},
		{Attempt{Status: 200}, false},
		{Attempt{Reset: true}, false},
	} {
		if got := p.ShouldRetry(c.a); got != c.want {
			t.Errorf("%+v: got %v", c.a, got)
		}
	}
	if decide(action(prefix("/"), toCluster("c")), get("/")).Retry != nil {
		t.Error("no policy: want nil")
	}
	if (*RetryPolicy)(nil).ShouldRetry(Attempt{ConnectFailed: true}) {
		t.Error("nil policy retried")
	}
}

func TestRetryConditions(t *testing.T) {
	for _, c := range []struct {
		on   string
		a    Attempt
		want bool
	}{
		{"5xx", Attempt{Status: 500}, true}, {"5xx", Attempt{Reset: true}, true}, {"5xx", Attempt{Status: 404}, false},
		{"gateway-error", Attempt{Status: 504}, true}, {"gateway-error", Attempt{Status: 500}, false},
		{"reset", Attempt{TimedOut: true}, true}, {"reset", Attempt{Status: 503}, false},
		{"retriable-4xx", Attempt{Status: 409}, true}, {"retriable-4xx", Attempt{Status: 404}, false},
		{"deadline-exceeded", Attempt{GRPCStatus: "4"}, true}, {"internal", Attempt{GRPCStatus: "14"}, false},
	} {
		p := &RetryPolicy{On: []string{c.on}}
		if got := p.ShouldRetry(c.a); got != c.want {
			t.Errorf("%s %+v: got %v", c.on, c.a, got)
		}
	}
}
