package route

import (
	"net/http"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func hm(name string, sm *matcherv3.StringMatcher) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

func sExact(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

func sPrefix(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v}}
}

func sSuffix(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v}}
}

func sContains(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: v}}
}

func sRegex(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}}
}

func present(name string, want bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: want}}
}

func inverted(h *routev3.HeaderMatcher) *routev3.HeaderMatcher {
	h.InvertMatch = true
	return h
}

// withHeaders returns a GET / with the given header lines (name, value, name, value...).
func withHeaders(kv ...string) Request {
	req := get("/")
	for i := 0; i < len(kv); i += 2 {
		req.Headers.Add(kv[i], kv[i+1])
	}
	return req
}

type headerCase struct {
	name string
	h    *routev3.HeaderMatcher
	req  Request
	want bool
}

func runHeaderCases(t *testing.T, cases []headerCase) {
	t.Helper()
	for _, c := range cases {
		if got := HeaderMatches(c.h, c.req); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestHeaderStringMatchers(t *testing.T) {
	ic := sExact("BLUE")
	ic.IgnoreCase = true
	runHeaderCases(t, []headerCase{
		{"exact", hm("x-user", sExact("jason")), withHeaders("X-User", "jason"), true},
		{"exact differs", hm("x-user", sExact("jason")), withHeaders("x-user", "jasonx"), false},
		{"exact is case-sensitive", hm("x-user", sExact("jason")), withHeaders("x-user", "Jason"), false},
		{"ignore_case", hm("x-color", ic), withHeaders("x-color", "blue"), true},
		{"prefix", hm("x-v", sPrefix("v1")), withHeaders("x-v", "v1.2"), true},
		{"prefix differs", hm("x-v", sPrefix("v1")), withHeaders("x-v", "v2.1"), false},
		{"suffix", hm("x-v", sSuffix(".beta")), withHeaders("x-v", "2.beta"), true},
		{"suffix differs", hm("x-v", sSuffix(".beta")), withHeaders("x-v", "beta.2"), false},
		{"contains", hm("user-agent", sContains("Firefox")), withHeaders("User-Agent", "Mozilla Firefox/1"), true},
		{"contains differs", hm("user-agent", sContains("Firefox")), withHeaders("User-Agent", "curl/8"), false},
		{"regex whole value", hm("x-id", sRegex("[0-9]+")), withHeaders("x-id", "123"), true},
		{"regex is anchored", hm("x-id", sRegex("[0-9]+")), withHeaders("x-id", "a123"), false},
		{"values joined by comma", hm("x-tag", sExact("a,b")), withHeaders("x-tag", "a", "x-tag", "b"), true},
	})
}

// present_match true tests presence, false tests absence; invert_match flips the result.
func TestHeaderPresentAndInvert(t *testing.T) {
	runHeaderCases(t, []headerCase{
		{"present, there", present("x-debug", true), withHeaders("x-debug", ""), true},
		{"present, absent", present("x-debug", true), withHeaders(), false},
		{"absent wanted, absent", present("x-debug", false), withHeaders(), true},
		{"absent wanted, there", present("x-debug", false), withHeaders("x-debug", "1"), false},
		{"inverted present, absent", inverted(present("x-debug", true)), withHeaders(), true},
		{"inverted present, there", inverted(present("x-debug", true)), withHeaders("x-debug", "1"), false},
		{"inverted exact, other value", inverted(hm("x-user", sExact("jason"))), withHeaders("x-user", "bob"), true},
		{"inverted exact, same value", inverted(hm("x-user", sExact("jason"))), withHeaders("x-user", "jason"), false},
	})
}

// Envoy: a header that is absent fails a value matcher even when it is inverted, unless
// treat_missing_header_as_empty (istiod sets it for withoutHeaders).
func TestHeaderMissingRule(t *testing.T) {
	asEmpty := inverted(hm("x-user", sExact("jason")))
	asEmpty.TreatMissingHeaderAsEmpty = true
	emptyPrefix := hm("x-user", sPrefix(""))
	emptyPrefix.TreatMissingHeaderAsEmpty = true
	runHeaderCases(t, []headerCase{
		{"exact, absent", hm("x-user", sExact("jason")), withHeaders(), false},
		{"inverted exact, absent", inverted(hm("x-user", sExact("jason"))), withHeaders(), false},
		{"inverted regex, absent", inverted(hm("x-user", sRegex(".*"))), withHeaders(), false},
		{"inverted exact, absent, treated as empty", asEmpty, withHeaders(), true},
		{"empty prefix, absent, treated as empty", emptyPrefix, withHeaders(), true},
	})
}

// :method, :authority, :scheme and :path are matched as headers (istiod's method,
// authority and scheme matches).
func TestHeaderPseudoHeaders(t *testing.T) {
	post := withHeaders()
	post.Method = "POST"
	post.Host = "goapp.dev:8080"
	runHeaderCases(t, []headerCase{
		{":method", hm(":method", sExact("POST")), post, true},
		{":method differs", hm(":method", sExact("POST")), withHeaders(), false},
		{":method defaults to GET", hm(":method", sExact("GET")), Request{Headers: http.Header{}}, true},
		{":authority keeps the port", hm(":authority", sExact("goapp.dev:8080")), post, true},
		{":authority prefix", hm(":authority", sPrefix("goapp")), post, true},
		{":scheme", hm(":scheme", sExact("http")), post, true},
		{":scheme https", hm(":scheme", sExact("https")), post, false},
		{":path has the query", hm(":path", sExact("/a?b=c")), get("/a?b=c"), true},
	})
}

// All header matchers of a route must match.
func TestMatchHeadersAreANDed(t *testing.T) {
	m := prefix("/")
	m.Headers = []*routev3.HeaderMatcher{hm("x-a", sExact("1")), hm(":method", sExact("GET"))}
	vh := &routev3.VirtualHost{Routes: []*routev3.Route{named("both", m), named("rest", prefix("/"))}}
	if got := matched(vh, withHeaders("x-a", "1")); got != "both" {
		t.Errorf("both match: got %s", got)
	}
	req := withHeaders("x-a", "1")
	req.Method = "POST"
	if got := matched(vh, req); got != "rest" {
		t.Errorf("method differs: got %s", got)
	}
}

func TestMatchQueryParameters(t *testing.T) {
	qp := func(name string, sm *matcherv3.StringMatcher) *routev3.RouteMatch {
		m := prefix("/")
		q := &routev3.QueryParameterMatcher{Name: name}
		if sm == nil {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}
		}
		m.QueryParameters = []*routev3.QueryParameterMatcher{q}
		return m
	}
	expectMatches(t, qp("v", sExact("2")), []string{"/?v=2", "/x?a=1&v=2", "/?v=2&v=3"}, []string{"/?v=3", "/", "/?v=3&v=2", "/?vv=2"})
	expectMatches(t, qp("q", sExact("a b")), []string{"/?q=a%20b"}, []string{"/?q=a+b"})
	expectMatches(t, qp("debug", nil), []string{"/?debug", "/?debug=", "/?x&debug=1"}, []string{"/?nodebug=1", "/"})
	expectMatches(t, qp("v", sRegex("[0-9]")), []string{"/?v=7"}, []string{"/?v=77"})
}
