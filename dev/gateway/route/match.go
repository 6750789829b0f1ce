package route

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// Request is what routing sees of an HTTP request.
type Request struct {
	Host    string      // :authority as sent (port included)
	Path    string      // :path as sent (query included), after the listener's normalisation
	Method  string      // :method; "" is taken as GET
	Scheme  string      // :scheme; "" is taken as http
	Headers http.Header // other request headers; Host is not read from here
}

// Match returns the first route of vh that matches req, or nil (Envoy: 404 NR).
func Match(vh *routev3.VirtualHost, req Request) *routev3.Route {
	for _, r := range vh.GetRoutes() {
		if routeMatches(r.GetMatch(), req) {
			return r
		}
	}
	return nil
}

func routeMatches(m *routev3.RouteMatch, req Request) bool {
	if m == nil || !pathMatches(m, pathOnly(req.Path)) {
		return false
	}
	for _, h := range m.GetHeaders() {
		if !HeaderMatches(h, req) {
			return false
		}
	}
	if len(m.GetQueryParameters()) > 0 {
		q := queryParams(req.Path)
		for _, qm := range m.GetQueryParameters() {
			if !queryMatches(qm, q) {
				return false
			}
		}
	}
	return true
}

// pathOnly drops the query string and fragment: Envoy matches paths without them.
func pathOnly(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

func caseSensitive(m *routev3.RouteMatch) bool {
	return m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
}

func pathMatches(m *routev3.RouteMatch, path string) bool {
	cs := caseSensitive(m)
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		return hasPrefix(path, ps.Prefix, !cs)
	case *routev3.RouteMatch_Path:
		return equal(path, ps.Path, !cs)
	case *routev3.RouteMatch_PathSeparatedPrefix:
		p := ps.PathSeparatedPrefix
		return hasPrefix(path, p, !cs) && (len(path) == len(p) || path[len(p)] == '/')
	case *routev3.RouteMatch_SafeRegex:
		return fullMatch(ps.SafeRegex.GetRegex(), path)
	}
	return false
}

func hasPrefix(s, prefix string, ignoreCase bool) bool {
	if ignoreCase {
		return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
	}
	return strings.HasPrefix(s, prefix)
}

func equal(a, b string, ignoreCase bool) bool {
	if ignoreCase {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// headerValue returns the value a header matcher sees: pseudo-headers from the request line,
// other headers with all their values joined by "," (as Envoy does), and whether it is present.
func headerValue(name string, req Request) (string, bool) {
	switch strings.ToLower(name) {
	case ":authority":
		return req.Host, true
	case ":path":
		return req.Path, true
	case ":method":
		if req.Method == "" {
			return http.MethodGet, true
		}
		return req.Method, true
	case ":scheme":
		if req.Scheme == "" {
			return "http", true
		}
		return req.Scheme, true
	}
	vs := req.Headers.Values(name)
	if len(vs) == 0 {
		return "", false
	}
	return strings.Join(vs, ","), true
}

// HeaderMatches applies one HeaderMatcher to req with Envoy's rules, including the rule for an
// absent header: it fails every matcher whether inverted or not, except a presence test.
func HeaderMatches(h *routev3.HeaderMatcher, req Request) bool {
	v, present := headerValue(h.GetName(), req)
	// A matcher with no specifier tests presence, like present_match: true.
	spec := h.GetHeaderMatchSpecifier()
	wantPresent := spec == nil || h.GetPresentMatch()
	_, isPresence := spec.(*routev3.HeaderMatcher_PresentMatch)
	if !present && !h.GetTreatMissingHeaderAsEmpty() {
		if !isPresence && spec != nil {
			return false
		}
		return wantPresent == h.GetInvertMatch()
	}
	var ok bool
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case nil, *routev3.HeaderMatcher_PresentMatch:
		ok = present == wantPresent
	case *routev3.HeaderMatcher_StringMatch:
		ok = StringMatches(s.StringMatch, v)
	case *routev3.HeaderMatcher_ExactMatch:
		ok = v == s.ExactMatch
	case *routev3.HeaderMatcher_PrefixMatch:
		ok = strings.HasPrefix(v, s.PrefixMatch)
	case *routev3.HeaderMatcher_SuffixMatch:
		ok = strings.HasSuffix(v, s.SuffixMatch)
	case *routev3.HeaderMatcher_ContainsMatch:
		ok = strings.Contains(v, s.ContainsMatch)
	case *routev3.HeaderMatcher_SafeRegexMatch:
		ok = fullMatch(s.SafeRegexMatch.GetRegex(), v)
	case *routev3.HeaderMatcher_RangeMatch:
		n, err := strconv.ParseInt(v, 10, 64)
		ok = err == nil && n >= s.RangeMatch.GetStart() && n < s.RangeMatch.GetEnd()
	}
	return ok != h.GetInvertMatch()
}

// StringMatches applies a StringMatcher: exact, prefix, suffix and contains honour
// ignore_case; safe_regex must match the whole value.
func StringMatches(m *matcherv3.StringMatcher, v string) bool {
	ic := m.GetIgnoreCase()
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return equal(v, p.Exact, ic)
	case *matcherv3.StringMatcher_Prefix:
		return hasPrefix(v, p.Prefix, ic)
	case *matcherv3.StringMatcher_Suffix:
		return len(v) >= len(p.Suffix) && equal(v[len(v)-len(p.Suffix):], p.Suffix, ic)
	case *matcherv3.StringMatcher_Contains:
		if ic {
			return strings.Contains(strings.ToLower(v), strings.ToLower(p.Contains))
		}
		return strings.Contains(v, p.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), v)
	}
	return false
}

// queryParams parses the query of a path into first values, percent-decoded as Envoy does
// (a "+" stays a "+"); a parameter without "=" has the empty value.
func queryParams(path string) map[string]string {
	out := map[string]string{}
	i := strings.IndexByte(path, '?')
	if i < 0 {
		return out
	}
	q := path[i+1:]
	if j := strings.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	for _, kv := range strings.Split(q, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, v = unescape(k), unescape(v)
		if _, seen := out[k]; !seen {
			out[k] = v
		}
	}
	return out
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

func queryMatches(qm *routev3.QueryParameterMatcher, q map[string]string) bool {
	v, ok := q[qm.GetName()]
	if !ok {
		return false
	}
	if sm := qm.GetStringMatch(); sm != nil {
		return StringMatches(sm, v)
	}
	// present_match, or no specifier: presence is enough.
	return true
}

var regexCache sync.Map // regex source → *regexp.Regexp (or nil when invalid)

// compile returns the regexp anchored for a whole-string match (RE2 semantics, as Envoy's
// safe_regex), or nil when the expression does not compile; Check reports those.
func compile(expr string) *regexp.Regexp {
	if re, ok := regexCache.Load(expr); ok {
		return re.(*regexp.Regexp)
	}
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	if err != nil {
		re = nil
	}
	regexCache.Store(expr, re)
	return re
}

func fullMatch(expr, s string) bool {
	re := compile(expr)
	return re != nil && re.MatchString(s)
}
