package route

import (
	"net/http"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func named(name string, m *routev3.RouteMatch) *routev3.Route {
	return &routev3.Route{Name: name, Match: m, Action: &routev3.Route_Route{
		Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func exact(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}}
}

func sepPrefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: p}}
}

func regex(re string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func get(path string) Request {
	return Request{Host: "goapp.dev", Path: path, Method: "GET", Headers: http.Header{}}
}

func matched(vh *routev3.VirtualHost, req Request) string {
	r := Match(vh, req)
	if r == nil {
		return "<none>"
	}
	return r.GetName()
}

// expectMatches checks, for one route match, which paths it accepts.
func expectMatches(t *testing.T, m *routev3.RouteMatch, yes, no []string) {
	t.Helper()
	vh := &routev3.VirtualHost{Routes: []*routev3.Route{named("r", m)}}
	for _, p := range yes {
		if Match(vh, get(p)) == nil {
			t.Errorf("%q should match", p)
		}
	}
	for _, p := range no {
		if Match(vh, get(p)) != nil {
			t.Errorf("%q should not match", p)
		}
	}
}

func TestMatchFirstRouteInOrderWins(t *testing.T) {
	vh := &routev3.VirtualHost{Routes: []*routev3.Route{
		named("fortune", exact("/fortune")), named("default", prefix("/")), named("never", exact("/x")),
	}}
	for path, want := range map[string]string{"/fortune": "fortune", "/": "default", "/x": "default"} {
		if got := matched(vh, get(path)); got != want {
			t.Errorf("%s: got %s, want %s", path, got, want)
		}
	}
}

func TestMatchNoRoute(t *testing.T) {
	vh := &routev3.VirtualHost{Routes: []*routev3.Route{named("api", prefix("/api"))}}
	if got := matched(vh, get("/web")); got != "<none>" {
		t.Fatalf("got %s, want no route (404 NR)", got)
	}
}

func TestMatchPrefix(t *testing.T) {
	expectMatches(t, prefix("/api"), []string{"/api", "/api/", "/apix", "/api?x=1"}, []string{"/ap", "/API", "/v/api"})
}

func TestMatchExactPath(t *testing.T) {
	expectMatches(t, exact("/fortune"), []string{"/fortune", "/fortune?q=1", "/fortune#f"}, []string{"/fortune/", "/fortunes", "/Fortune"})
}

// path_separated_prefix: the prefix, then the end of the path or a "/" (the query is ignored).
func TestMatchPathSeparatedPrefix(t *testing.T) {
	expectMatches(t, sepPrefix("/api"), []string{"/api", "/api/", "/api/v1", "/api?x=1"}, []string{"/apix", "/ap", "/API/v1"})
}

// safe_regex must match the whole path (without the query), not a part of it.
func TestMatchSafeRegexWholePath(t *testing.T) {
	expectMatches(t, regex("/v[0-9]+/.*"), []string{"/v1/x", "/v12/", "/v1/x?y=1"}, []string{"/api/v1/x", "/v1", "x/v1/x"})
	expectMatches(t, regex("/a|/b"), []string{"/a", "/b"}, []string{"/ab", "/a/b"})
}

// case_sensitive: false makes prefix, exact and separated-prefix matching ignore ASCII case.
func TestMatchCaseInsensitive(t *testing.T) {
	m := prefix("/API")
	m.CaseSensitive = wrapperspb.Bool(false)
	expectMatches(t, m, []string{"/api/x", "/Api", "/API"}, []string{"/ap"})
	m = exact("/api")
	m.CaseSensitive = wrapperspb.Bool(false)
	expectMatches(t, m, []string{"/API", "/aPi?x"}, []string{"/api/"})
	m = sepPrefix("/Api")
	m.CaseSensitive = wrapperspb.Bool(false)
	expectMatches(t, m, []string{"/API/x", "/api"}, []string{"/apix"})
	m = prefix("/API")
	m.CaseSensitive = wrapperspb.Bool(true)
	expectMatches(t, m, []string{"/API"}, []string{"/api"})
}

// The query string is not part of the path that prefix, exact and regex routes see.
func TestMatchQueryStrippedBeforePath(t *testing.T) {
	expectMatches(t, regex("/search"), []string{"/search?q=a/b"}, nil)
	expectMatches(t, prefix("/search?q"), nil, []string{"/search?q=1"})
}
