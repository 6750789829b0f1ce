package proxy

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"meshloop.dev/gateway/config"
	"meshloop.dev/gateway/route"
)

// upgrade passes an Upgrade request (a WebSocket, say) allowed by the listener through to
// one endpoint, then splices the two connections, as Envoy does for upgrade_configs.
// Retries, timeouts and faults do not apply to the upgraded stream.
func (p *Proxy) upgrade(rw *replyWriter, r *http.Request, d route.Decision, picked route.Cluster,
	c *config.Cluster, eps []config.Endpoint,
) {
	ep, _ := p.balancer.pick(c, eps, nil)
	if ep.TLS {
		rw.local(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: "+tlsFailure, nil)
		return
	}
	release := p.balancer.track(c.Name, ep.Address)
	defer release()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", ep.Address
			pr.Out.URL.Path, pr.Out.URL.RawPath, pr.Out.URL.RawQuery = splitPath(d.Path)
			pr.Out.Host = d.AuthorityFor(picked)
			d.ApplyRequestHeaders(pr.Out.Header, picked)
		},
		Transport: p.pools.get(&config.Cluster{ConnectTimeout: c.ConnectTimeout}),
		ModifyResponse: func(resp *http.Response) error {
			d.ApplyResponseHeaders(resp.Header, picked)
			if rw.l.ServerName != "" {
				resp.Header.Set("Server", rw.l.ServerName)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			rw.local(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: "+connectFailure, nil)
		},
	}
	rp.ServeHTTP(rw.ResponseWriter, r)
}

// splitPath splits a raw :path into the URL fields.
func splitPath(raw string) (path, rawPath, query string) {
	rawPath, query, _ = strings.Cut(raw, "?")
	path = rawPath
	if u, err := url.PathUnescape(rawPath); err == nil {
		path = u
	}
	if path == rawPath {
		rawPath = ""
	}
	return path, rawPath, query
}

func splitTokens(v string) []string {
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
