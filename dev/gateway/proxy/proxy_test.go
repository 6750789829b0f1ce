package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"meshloop.dev/gateway/config"
	"meshloop.dev/gateway/route"
)

// seen is what an upstream received.
type seen struct {
	host, path string
	header     http.Header
}

// app starts an upstream that answers `name` (and records each request on the channel).
func app(t *testing.T, name string, status int, got chan<- seen) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got != nil {
			got <- seen{host: r.Host, path: r.RequestURI, header: r.Header.Clone()}
		}
		w.Header().Set("Server", "app")
		w.Header().Set("X-App", name)
		w.WriteHeader(status)
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func cluster(name string, addrs ...string) *config.Cluster {
	c := &config.Cluster{Name: name, Type: "EDS", LB: "ROUND_ROBIN", ConnectTimeout: time.Second, PanicPercent: 50}
	for _, a := range addrs {
		c.Endpoints = append(c.Endpoints, config.Endpoint{Address: a, Healthy: true, Weight: 1})
	}
	return c
}

func toCluster(name string) *routev3.RouteAction {
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}, Timeout: durationpb.New(0)}
}

func rt(prefix string, a *routev3.RouteAction) *routev3.Route {
	return &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: a}}
}

// serve starts a proxy on one listener (port 80 on an ephemeral loopback port) whose
// goapp.dev virtual host has the given routes, and returns its address.
func serve(t *testing.T, routes []*routev3.Route, clusters ...*config.Cluster) (*Proxy, string) {
	t.Helper()
	p := New("127.0.0.1", map[uint32]uint32{80: 0}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(p.Close)
	p.Apply(snapshot(routes, clusters...))
	return p, p.Bound()[80]
}

func snapshot(routes []*routev3.Route, clusters ...*config.Cluster) *config.Snapshot {
	rc := &routev3.RouteConfiguration{Name: "http.80", IgnorePortInHostMatching: true,
		VirtualHosts: []*routev3.VirtualHost{{Name: "goapp.dev:80", Domains: []string{"goapp.dev"}, Routes: routes}}}
	s := &config.Snapshot{Complete: true, Routes: map[string]*routev3.RouteConfiguration{"http.80": rc},
		Clusters: map[string]*config.Cluster{},
		Listeners: []*config.Listener{{Name: "0.0.0.0_80", Port: 80, RouteName: "http.80", ServerName: "istio-envoy",
			ServerOverwrite: true, NormalizePath: true, UseRemoteAddr: true, GenerateID: true, FaultFilter: true,
			Upgrades: []string{"websocket"}}}}
	for _, c := range clusters {
		s.Clusters[c.Name] = c
	}
	return s
}

func do(t *testing.T, addr, method, host, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func expect(t *testing.T, resp *http.Response, body string, status int, wantBody string) {
	t.Helper()
	if resp.StatusCode != status || body != wantBody {
		t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, status, wantBody)
	}
	if s := resp.Header.Get("Server"); s != "istio-envoy" {
		t.Fatalf("server header %q, want istio-envoy", s)
	}
}

func TestNoVirtualHostOrRouteIs404WithEmptyBody(t *testing.T) {
	_, addr := serve(t, []*routev3.Route{rt("/api", toCluster("c"))}, cluster("c", app(t, "v1", 200, nil)))
	resp, body := do(t, addr, "GET", "other.dev", "/api")
	expect(t, resp, body, 404, "")
	resp, body = do(t, addr, "GET", "goapp.dev", "/web")
	expect(t, resp, body, 404, "")
	if resp.Header.Get("X-Envoy-Upstream-Service-Time") != "" {
		t.Fatal("a local reply carries x-envoy-upstream-service-time")
	}
}

func TestUnknownClusterIs503EmptyAndNoEndpointIsNoHealthyUpstream(t *testing.T) {
	_, addr := serve(t, []*routev3.Route{rt("/missing", toCluster("nowhere")), rt("/", toCluster("empty"))}, cluster("empty"))
	resp, body := do(t, addr, "GET", "goapp.dev", "/missing")
	expect(t, resp, body, 503, "")
	resp, body = do(t, addr, "GET", "goapp.dev", "/")
	expect(t, resp, body, 503, "no healthy upstream")
}

func TestUpstreamAnswerAndRequestHeaders(t *testing.T) {
	got := make(chan seen, 1)
	_, addr := serve(t, []*routev3.Route{rt("/", toCluster("c"))}, cluster("c", app(t, "v1", 200, got)))
	resp, body := do(t, addr, "GET", "goapp.dev:80", "/a/./b/../c?q=1", "Connection", "keep-alive, X-Hop", "X-Hop", "1")
	expect(t, resp, body, 200, "v1")
	if resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" || resp.Header.Get("X-App") != "v1" {
		t.Fatalf("headers %v", resp.Header)
	}
	s := <-got
	if s.host != "goapp.dev:80" || s.path != "/a/c?q=1" {
		t.Fatalf("upstream saw host %q path %q", s.host, s.path)
	}
	if s.header.Get("X-Forwarded-For") != "127.0.0.1" || s.header.Get("X-Forwarded-Proto") != "http" ||
		len(s.header.Get("X-Request-Id")) != 36 || s.header.Get("X-Hop") != "" {
		t.Fatalf("upstream headers %v", s.header)
	}
}

// Round robin takes the endpoints in turn.
func TestRoundRobin(t *testing.T) {
	_, addr := serve(t, []*routev3.Route{rt("/", toCluster("c"))}, cluster("c", app(t, "a", 200, nil), app(t, "b", 200, nil)))
	_, first := do(t, addr, "GET", "goapp.dev", "/")
	for i := 0; i < 6; i++ {
		_, body := do(t, addr, "GET", "goapp.dev", "/")
		if (body == first) != (i%2 == 1) {
			t.Fatalf("request %d went to %s after %s first: not alternating", i+2, body, first)
		}
	}
}

// Weighted clusters: every request goes by weight, so a weight-0 cluster gets none.
func TestWeightedClusters(t *testing.T) {
	weighted := func(w1, w2 uint32) *routev3.RouteAction {
		return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
			Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "v1", Weight: wrapperspb.UInt32(w1)},
				{Name: "v2", Weight: wrapperspb.UInt32(w2)}}}}}
	}
	c1, c2 := cluster("v1", app(t, "v1", 200, nil)), cluster("v2", app(t, "v2", 200, nil))
	p, addr := serve(t, []*routev3.Route{rt("/", weighted(1, 0))}, c1, c2)
	for i := 0; i < 20; i++ {
		if _, body := do(t, addr, "GET", "goapp.dev", "/"); body != "v1" {
			t.Fatalf("weights 1/0: %s", body)
		}
	}
	// A new snapshot takes effect for the next request.
	p.Apply(snapshot([]*routev3.Route{rt("/", weighted(0, 1))}, c1, c2))
	for i := 0; i < 20; i++ {
		if _, body := do(t, addr, "GET", "goapp.dev", "/"); body != "v2" {
			t.Fatalf("weights 0/1: %s", body)
		}
	}
}

func TestRedirectAndDirectResponse(t *testing.T) {
	redirect := &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/old"}},
		Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
			PathRewriteSpecifier:   &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-why", Value: "moved"}}}}
	direct := &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 418,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "short and stout"}}}}}
	_, addr := serve(t, []*routev3.Route{redirect, direct})
	resp, body := do(t, addr, "GET", "goapp.dev", "/old?x=1")
	expect(t, resp, body, 301, "")
	if loc := resp.Header.Get("Location"); loc != "https://goapp.dev/new?x=1" || resp.Header.Get("X-Why") != "moved" {
		t.Fatalf("location %q, headers %v", loc, resp.Header)
	}
	resp, body = do(t, addr, "GET", "goapp.dev", "/tea")
	expect(t, resp, body, 418, "short and stout")
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
		t.Fatalf("content-type %q", ct)
	}
}

func TestRewritesAndHeaderChanges(t *testing.T) {
	got := make(chan seen, 1)
	a := toCluster("c")
	a.PrefixRewrite = "/v2/"
	a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "internal.svc"}
	r := rt("/api/", a)
	r.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-added", Value: "yes"},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}}
	r.RequestHeadersToRemove = []string{"x-secret"}
	r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-resp", Value: "r"}}}
	r.ResponseHeadersToRemove = []string{"x-app"}
	_, addr := serve(t, []*routev3.Route{r}, cluster("c", app(t, "v1", 200, got)))
	resp, body := do(t, addr, "GET", "goapp.dev", "/api/users?id=7", "x-secret", "s", "x-added", "client")
	expect(t, resp, body, 200, "v1")
	if resp.Header.Get("X-Resp") != "r" || resp.Header.Get("X-App") != "" {
		t.Fatalf("response headers %v", resp.Header)
	}
	s := <-got
	if s.path != "/v2/users?id=7" || s.host != "internal.svc" || s.header.Get("X-Envoy-Original-Path") != "/api/users?id=7" ||
		s.header.Get("X-Added") != "yes" || s.header.Get("X-Secret") != "" {
		t.Fatalf("upstream saw host %q path %q headers %v", s.host, s.path, s.header)
	}
}

// The route timeout answers 504 when the upstream has not answered in time.
func TestRouteTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); slow.Close() })
	a := toCluster("slow")
	a.Timeout = durationpb.New(50 * time.Millisecond)
	_, addr := serve(t, []*routev3.Route{rt("/", a)}, cluster("slow", strings.TrimPrefix(slow.URL, "http://")))
	resp, body := do(t, addr, "GET", "goapp.dev", "/")
	expect(t, resp, body, 504, "upstream request timeout")
}

func faultRoute(t *testing.T, f *faultv3.HTTPFault) *routev3.Route {
	a, err := anypb.New(f)
	if err != nil {
		t.Fatal(err)
	}
	r := rt("/", toCluster("c"))
	r.TypedPerFilterConfig = map[string]*anypb.Any{route.FaultFilter: a}
	return r
}

func TestFaultAbortAndDelay(t *testing.T) {
	all := &typev3.FractionalPercent{Numerator: 100}
	abort := faultRoute(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
		ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: all}})
	p, addr := serve(t, []*routev3.Route{abort}, cluster("c", app(t, "v1", 200, nil)))
	resp, body := do(t, addr, "GET", "goapp.dev", "/")
	expect(t, resp, body, 503, "fault filter abort")
	never := faultRoute(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
		ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: &typev3.FractionalPercent{}}})
	p.Apply(snapshot([]*routev3.Route{never}, cluster("c", app(t, "v1", 200, nil))))
	resp, body = do(t, addr, "GET", "goapp.dev", "/")
	expect(t, resp, body, 200, "v1")
	delay := faultRoute(t, &faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{Percentage: all,
		FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Millisecond)}}})
	p.Apply(snapshot([]*routev3.Route{delay}, cluster("c", app(t, "v1", 200, nil))))
	resp, body = do(t, addr, "GET", "goapp.dev", "/")
	expect(t, resp, body, 200, "v1")
}
