package oracle_test

// TEMPORARY: a stand-in for meshloop.dev/gateway/route (Envoy's virtual host selection and
// route matching, shared with dev/gateway) until that package is on main. Delete this file
// and call the package instead; nothing else in the oracle depends on how matching is done.

import (
	"net/url"
	"regexp"
	"strings"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// selectVirtualHost: exact domain, then the longest `*.suffix`, then the longest `prefix*`,
// then `*` (Envoy's order; the port is ignored as Istio's RouteConfiguration asks).
func selectVirtualHost(rc *route.RouteConfiguration, host string) *route.VirtualHost {
	if rc == nil {
		return nil
	}
	type cand struct {
		vh   *route.VirtualHost
		rank int
		n    int
	}
	var best *cand
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			var c *cand
			switch {
			case d == host:
				c = &cand{vh, 0, len(d)}
			case d == "*":
				c = &cand{vh, 3, 0}
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				c = &cand{vh, 1, len(d)}
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				c = &cand{vh, 2, len(d)}
			}
			if c != nil && (best == nil || c.rank < best.rank || (c.rank == best.rank && c.n > best.n)) {
				best = c
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.vh
}

// matchRoute returns the first route whose path, headers and query parameters all match.
func matchRoute(vh *route.VirtualHost, rq Request) *route.Route {
	path, rawq, _ := strings.Cut(rq.Path, "?")
	q, _ := url.ParseQuery(rawq)
	hdr := map[string]string{}
	for k, v := range rq.Headers {
		hdr[strings.ToLower(k)] = v
	}
	hdr[":method"] = strings.ToUpper(rq.Method)
	hdr[":authority"] = rq.Host
	hdr[":scheme"] = "http"
	hdr[":path"] = rq.Path
	for _, r := range vh.GetRoutes() {
		if routeMatches(r.Match, path, q, hdr) {
			return r
		}
	}
	return nil
}

func routeMatches(m *route.RouteMatch, path string, q url.Values, hdr map[string]string) bool {
	cs := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	fold := func(s string) string {
		if cs {
			return s
		}
		return strings.ToLower(s)
	}
	ok := false
	switch ps := m.PathSpecifier.(type) {
	case *route.RouteMatch_Prefix:
		ok = strings.HasPrefix(fold(path), fold(ps.Prefix))
	case *route.RouteMatch_Path:
		ok = fold(path) == fold(ps.Path)
	case *route.RouteMatch_PathSeparatedPrefix:
		x := ps.PathSeparatedPrefix
		ok = strings.HasPrefix(fold(path), fold(x)) && (len(path) == len(x) || path[len(x)] == '/')
	case *route.RouteMatch_SafeRegex:
		ok = fullMatch(ps.SafeRegex.GetRegex(), path)
	}
	for _, h := range m.Headers {
		ok = ok && headerMatches(h, hdr)
	}
	for _, qp := range m.QueryParameters {
		v, has := q[qp.Name]
		if !has {
			ok = false
			continue
		}
		ok = ok && (qp.GetPresentMatch() || stringMatches(qp.GetStringMatch(), v[0]))
	}
	return ok && len(m.DynamicMetadata) == 0
}

func headerMatches(h *route.HeaderMatcher, hdr map[string]string) bool {
	v, has := hdr[strings.ToLower(h.Name)]
	if !has && !h.TreatMissingHeaderAsEmpty {
		// Envoy: an absent header matches only a present_match that asks for absence.
		_, isPresent := h.HeaderMatchSpecifier.(*route.HeaderMatcher_PresentMatch)
		return isPresent && h.GetPresentMatch() == h.InvertMatch
	}
	var res bool
	switch {
	case h.GetStringMatch() != nil:
		res = stringMatches(h.GetStringMatch(), v)
	case h.GetPresentMatch():
		res = true
	case h.GetExactMatch() != "":
		res = v == h.GetExactMatch()
	case h.GetPrefixMatch() != "":
		res = strings.HasPrefix(v, h.GetPrefixMatch())
	case h.GetSafeRegexMatch() != nil:
		res = fullMatch(h.GetSafeRegexMatch().GetRegex(), v)
	default:
		res = true
	}
	return res != h.InvertMatch
}

func stringMatches(sm *matcher.StringMatcher, v string) bool {
	if sm == nil {
		return true
	}
	if sm.IgnoreCase {
		v = strings.ToLower(v)
	}
	low := func(s string) string {
		if sm.IgnoreCase {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := sm.MatchPattern.(type) {
	case *matcher.StringMatcher_Exact:
		return v == low(p.Exact)
	case *matcher.StringMatcher_Prefix:
		return strings.HasPrefix(v, low(p.Prefix))
	case *matcher.StringMatcher_Suffix:
		return strings.HasSuffix(v, low(p.Suffix))
	case *matcher.StringMatcher_Contains:
		return strings.Contains(v, low(p.Contains))
	case *matcher.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), v)
	}
	return true
}

func fullMatch(re, v string) bool {
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	if err != nil {
		return false
	}
	return r.MatchString(v)
}
