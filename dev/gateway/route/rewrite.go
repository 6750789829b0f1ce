package route

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// matchedPath is the part of the request path that a prefix rewrite replaces: the route's
// prefix or path, or (for a regex route) the whole path without its query.
func matchedPath(m *routev3.RouteMatch, path string) string {
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		return ps.Prefix
	case *routev3.RouteMatch_Path:
		return ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		return ps.PathSeparatedPrefix
	}
	return pathOnly(path)
}

// rewritePath applies prefix_rewrite (the matched part is replaced, the query kept) or
// regex_rewrite (every match in the path without query is substituted, the query kept).
func rewritePath(path string, m *routev3.RouteMatch, prefix string, rx *matcherv3.RegexMatchAndSubstitute) string {
	if prefix != "" {
		mp := matchedPath(m, path)
		if len(mp) <= len(path) {
			return prefix + path[len(mp):]
		}
		return path
	}
	if rx != nil {
		re, err := regexp.Compile(rx.GetPattern().GetRegex())
		if err != nil {
			return path
		}
		p := pathOnly(path)
		return re.ReplaceAllString(p, substitution(rx.GetSubstitution())) + path[len(p):]
	}
	return path
}

// substitution turns RE2's `\1` back-references into Go's `${1}`, and escapes `$`.
func substitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '$':
			b.WriteString("$$")
		case s[i] == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			b.WriteString("${" + string(s[i+1]) + "}")
			i++
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func redirectStatus(r *routev3.RedirectAction) int {
	switch r.GetResponseCode() {
	case routev3.RedirectAction_FOUND:
		return http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		return http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		return http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		return http.StatusPermanentRedirect
	}
	return http.StatusMovedPermanently
}

// redirectURL builds the Location of a redirect as Envoy does: scheme (scheme_redirect,
// https_redirect, else the request's), host (host_redirect, else the request's Host, whose
// port is dropped when a new port is given or when the scheme changes and the port was the
// old scheme's default), `:port_redirect`, then the path (path_redirect, or the request path
// with prefix/regex rewrite) with the query kept unless strip_query.
func redirectURL(r *routev3.RedirectAction, m *routev3.RouteMatch, req Request) string {
	reqScheme := req.Scheme
	if reqScheme == "" {
		reqScheme = "http"
	}
	scheme := reqScheme
	if s := r.GetSchemeRedirect(); s != "" {
		scheme = s
	} else if r.GetHttpsRedirect() {
		scheme = "https"
	}
	port := ""
	if p := r.GetPortRedirect(); p != 0 {
		port = ":" + strconv.Itoa(int(p))
	}
	host := r.GetHostRedirect()
	if host == "" {
		host = redirectHost(req.Host, reqScheme, scheme, port != "")
	}
	return scheme + "://" + host + port + redirectPath(r, m, req.Path)
}

func redirectHost(host, oldScheme, newScheme string, newPort bool) string {
	h := StripPort(host)
	if h == host {
		return host
	}
	port := host[len(h):]
	drop := newPort
	if newScheme != oldScheme {
		drop = drop || (oldScheme == "https" && port == ":443") || (oldScheme == "http" && port == ":80")
	}
	if drop {
		return h
	}
	return host
}

func redirectPath(r *routev3.RedirectAction, m *routev3.RouteMatch, path string) string {
	query := path[len(pathOnly(path)):]
	if p := r.GetPathRedirect(); p != "" {
		if strings.Contains(p, "?") || r.GetStripQuery() {
			return p
		}
		return p + query
	}
	out := rewritePath(path, m, r.GetPrefixRewrite(), r.GetRegexRewrite())
	if r.GetStripQuery() {
		out = pathOnly(out)
	}
	return out
}
