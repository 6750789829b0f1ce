package route

import (
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// SelectVirtualHost returns the virtual host of rc that serves host (the Host header or
// :authority as the client sent it), or nil when none does: Envoy then answers 404 (NR).
//
// Envoy's search order: exact domain; longest suffix wildcard (`*.example.com`, `*-b.com`);
// longest prefix wildcard (`example.*`); `*`. Domains compare case-insensitively, and the
// host's port is ignored when rc.ignore_port_in_host_matching is set.
func SelectVirtualHost(rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	host = strings.ToLower(host)
	if rc.GetIgnorePortInHostMatching() {
		host = StripPort(host)
	}
	var suffix, prefix, any *routev3.VirtualHost
	suffixLen, prefixLen := 0, 0
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if any == nil {
					any = vh
				}
			case d == host:
				return vh
			case strings.HasPrefix(d, "*"):
				// The wildcard must stand for at least one character.
				s := d[1:]
				if len(s) > suffixLen && len(host) > len(s) && strings.HasSuffix(host, s) {
					suffix, suffixLen = vh, len(s)
				}
			case strings.HasSuffix(d, "*"):
				p := d[:len(d)-1]
				if len(p) > prefixLen && len(host) > len(p) && strings.HasPrefix(host, p) {
					prefix, prefixLen = vh, len(p)
				}
			}
		}
	}
	switch {
	case suffix != nil:
		return suffix
	case prefix != nil:
		return prefix
	}
	return any
}

// StripPort removes a trailing numeric `:port` from a host (IPv6 literals keep their
// brackets: `[::1]:80` gives `[::1]`).
func StripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	bracketed := strings.HasPrefix(host, "[")
	if i < 0 || (bracketed && !strings.HasSuffix(host[:i], "]")) ||
		(!bracketed && strings.IndexByte(host, ':') != i) { // an IPv6 literal without a port
		return host
	}
	port := host[i+1:]
	if port == "" {
		return host
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return host
		}
	}
	return host[:i]
}
