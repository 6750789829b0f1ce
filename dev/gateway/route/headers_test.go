package route

import (
	"net/http"
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func setHdr(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

func addHdr(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD}
}

func TestHeaderChangeModes(t *testing.T) {
	h := http.Header{"X-A": {"1"}, "X-B": {"1"}, "X-Gone": {"1"}, "X-Keep": {"1"}}
	c := HeaderChanges{Remove: []string{"x-gone"}, Add: adds([]*corev3.HeaderValueOption{
		addHdr("x-a", "2"), setHdr("x-b", "2"), setHdr("x-new", "n"),
		{Header: &corev3.HeaderValue{Key: "x-keep", Value: "2"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
		{Header: &corev3.HeaderValue{Key: "x-absent", Value: "2"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS},
		{Header: &corev3.HeaderValue{Key: "x-legacy", Value: "l"}, Append: wrapperspb.Bool(false)},
		addHdr("x-empty", ""),
		{Header: &corev3.HeaderValue{Key: "x-kept-empty"}, KeepEmptyValue: true},
		addHdr("x-pct", "100%%"),
	})}
	c.Apply(h)
	want := http.Header{"X-A": {"1", "2"}, "X-B": {"2"}, "X-New": {"n"}, "X-Keep": {"1"}, "X-Legacy": {"l"},
		"X-Kept-Empty": {""}, "X-Pct": {"100%"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got %v\nwant %v", h, want)
	}
}

// Envoy applies the weighted cluster's changes, then the route's, the virtual host's and the
// route configuration's (removals before additions at each level), so by default the least
// specific `set` wins; most_specific_header_mutations_wins reverses the levels.
func TestDecideHeaderLevels(t *testing.T) {
	build := func(mostSpecificWins bool) (*routev3.RouteConfiguration, Request) {
		wc := &routev3.WeightedCluster_ClusterWeight{Name: "v1", Weight: wrapperspb.UInt32(1),
			RequestHeadersToAdd: []*corev3.HeaderValueOption{setHdr("x-level", "cluster"), addHdr("x-trail", "cluster")}}
		r := &routev3.Route{Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
				Clusters: []*routev3.WeightedCluster_ClusterWeight{wc}}}}},
			RequestHeadersToAdd:     []*corev3.HeaderValueOption{setHdr("x-level", "route"), addHdr("x-trail", "route")},
			RequestHeadersToRemove:  []string{"x-client"},
			ResponseHeadersToAdd:    []*corev3.HeaderValueOption{setHdr("x-resp", "route")},
			ResponseHeadersToRemove: []string{"x-app-secret"}}
		vh := &routev3.VirtualHost{Domains: []string{"*"}, Routes: []*routev3.Route{r},
			RequestHeadersToAdd: []*corev3.HeaderValueOption{setHdr("x-level", "vhost"), addHdr("x-trail", "vhost")}}
		rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{vh}, MostSpecificHeaderMutationsWins: mostSpecificWins,
			RequestHeadersToAdd:  []*corev3.HeaderValueOption{setHdr("x-level", "config"), addHdr("x-trail", "config")},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{addHdr("x-resp", "config")}}
		return rc, withHeaders("x-client", "c")
	}
	rc, req := build(false)
	d := Evaluate(rc, req)
	picked, _ := d.Pick(0)
	h := req.Headers.Clone()
	d.ApplyRequestHeaders(h, picked)
	want := http.Header{"X-Level": {"config"}, "X-Trail": {"cluster", "route", "vhost", "config"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("request: got %v, want %v", h, want)
	}
	resp := http.Header{"X-App-Secret": {"s"}}
	d.ApplyResponseHeaders(resp, picked)
	if want := (http.Header{"X-Resp": {"route", "config"}}); !reflect.DeepEqual(resp, want) {
		t.Errorf("response: got %v, want %v", resp, want)
	}
	rc, req = build(true)
	d = Evaluate(rc, req)
	h = req.Headers.Clone()
	d.ApplyRequestHeaders(h, picked)
	if got := h.Get("x-level"); got != "route" {
		t.Errorf("most specific wins: x-level %q, want route", got)
	}
}
