package route

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func redirect(m *routev3.RouteMatch, r *routev3.RedirectAction) *routev3.Route {
	return &routev3.Route{Match: m, Action: &routev3.Route_Redirect{Redirect: r}}
}

func TestDecideRedirect(t *testing.T) {
	cases := []struct {
		name       string
		r          *routev3.RedirectAction
		m          *routev3.RouteMatch
		host, path string
		status     int
		location   string
	}{
		{"path, default 301, query kept", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}},
			prefix("/"), "goapp.dev", "/old?a=1", 301, "http://goapp.dev/new?a=1"},
		{"path with its own query", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new?b=2"}},
			prefix("/"), "goapp.dev", "/old?a=1", 301, "http://goapp.dev/new?b=2"},
		{"strip_query", &routev3.RedirectAction{StripQuery: true, PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}},
			prefix("/"), "goapp.dev", "/old?a=1", 301, "http://goapp.dev/new"},
		{"https drops the default http port", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}},
			prefix("/"), "goapp.dev:80", "/p", 301, "https://goapp.dev/p"},
		{"https keeps another port", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}},
			prefix("/"), "goapp.dev:8080", "/p", 301, "https://goapp.dev:8080/p"},
		{"scheme_redirect", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"}},
			prefix("/"), "goapp.dev", "/p", 301, "https://goapp.dev/p"},
		{"port replaces the request's", &routev3.RedirectAction{PortRedirect: 8443, SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}},
			prefix("/"), "goapp.dev:8080", "/p", 301, "https://goapp.dev:8443/p"},
		{"host (request port dropped)", &routev3.RedirectAction{HostRedirect: "new.dev", ResponseCode: routev3.RedirectAction_FOUND},
			prefix("/"), "goapp.dev:8080", "/p", 302, "http://new.dev/p"},
		{"host and port", &routev3.RedirectAction{HostRedirect: "new.dev", PortRedirect: 81, ResponseCode: routev3.RedirectAction_SEE_OTHER},
			prefix("/"), "goapp.dev", "/p", 303, "http://new.dev:81/p"},
		{"prefix rewrite", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/v2/"},
			ResponseCode: routev3.RedirectAction_TEMPORARY_REDIRECT}, prefix("/v1/"), "goapp.dev", "/v1/x?q", 307, "http://goapp.dev/v2/x?q"},
		{"regex rewrite", &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_RegexRewrite{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{
			Pattern: &matcherv3.RegexMatcher{Regex: "^/(.*)$"}, Substitution: `/new/\1`}}, ResponseCode: routev3.RedirectAction_PERMANENT_REDIRECT},
			prefix("/"), "goapp.dev", "/a/b", 308, "http://goapp.dev/new/a/b"},
		{"only scheme: path and query kept", &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}},
			prefix("/"), "goapp.dev", "/x?y=1", 301, "https://goapp.dev/x?y=1"},
	}
	for _, c := range cases {
		req := get(c.path)
		req.Host = c.host
		d := decide(redirect(c.m, c.r), req)
		if d.Action != Redirect || d.Status != c.status || d.Location != c.location {
			t.Errorf("%s: %v %d %q, want %d %q", c.name, d.Action, d.Status, d.Location, c.status, c.location)
		}
	}
}
