package main

import (
	"fmt"
	"strings"
)

// A Gateway API scenario: one Gateway of class istio with one to three listeners, one to
// three HTTPRoutes attached to it from its own namespace or another, Services per version
// beside base.yaml's, and a meshloop.yaml that sends the requests to the Gateway. What the
// API server's validation (CEL) refuses is not generated: a redirect beside backends,
// ReplacePrefixMatch without a PathPrefix match, a Service backend without a port.

// gwListener is one generated listener.
type gwListener struct {
	name, hostname string
	port           int
}

func (g *generator) gatewayAPIScenario() (string, string, []request) {
	g.hosts = []string{"goapp.dev", "unknown.dev", "www.example.com"}
	g.paths = []string{"/", "/api/v1/users", "/fortune", "/API/v1", "/static/a.css", "/v2/x", "/api?debug=1"}
	gwNS := g.pick("istio-ingress", "dev", "dev")
	g.namespaces()
	listeners := g.k8sGateway(gwNS, "public")
	if g.chance(0.2) {
		// Another Gateway beside the ingress one: its listeners must not take the requests.
		g.k8sGateway(gwNS, "internal")
	}
	g.doc("apiVersion: v1\nkind: Service\nmetadata: {name: goapp-v1, namespace: dev}\nspec:\n  selector: {app: goapp, version: v1}\n  ports:\n    - {name: http, port: 8080, targetPort: http}\n")
	g.doc("apiVersion: v1\nkind: Service\nmetadata: {name: goapp-v2, namespace: dev}\nspec:\n  selector: {app: goapp, version: v2}\n  ports:\n    - {name: http, port: 8080, targetPort: http}\n")
	for i := range 1 + g.r.IntN(3) {
		if g.chance(0.15) {
			g.grpcRoute(i, gwNS)
		} else {
			g.httpRoute(i, gwNS, listeners)
		}
	}
	if g.chance(0.3) {
		g.doc("apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: from-dev, namespace: other}\nspec:\n  from:\n    - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: dev}\n  to:\n    - {group: \"\", kind: Service}\n")
	}
	config := fmt.Sprintf("ingress:\n  gateway: %s/public\n", gwNS)
	return g.b.String(), config, g.requests()
}

// namespaces labels the route namespaces at random, for allowedRoutes selectors.
func (g *generator) namespaces() {
	for _, ns := range []string{"dev", "other"} {
		if g.chance(0.5) {
			g.doc("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels: {routes: %q}\n", ns, g.pick("yes", "no"))
		}
	}
}

// k8sGateway writes the Gateway `name` in ns; listeners differ in port or hostname.
func (g *generator) k8sGateway(ns, name string) []gwListener {
	var out []gwListener
	var b strings.Builder
	seen := map[string]bool{}
	for i := range 1 + g.r.IntN(3) {
		l := gwListener{name: fmt.Sprintf("l%d", i), port: 80, hostname: g.pick("", "", "goapp.dev", "*.example.com", "www.example.com")}
		if g.chance(0.2) {
			l.port = 8080
		}
		key := fmt.Sprintf("%d %s", l.port, l.hostname)
		if seen[key] {
			continue
		}
		seen[key] = true
		fmt.Fprintf(&b, "    - name: %s\n      port: %d\n      protocol: HTTP\n", l.name, l.port)
		if l.hostname != "" {
			fmt.Fprintf(&b, "      hostname: %q\n", l.hostname)
			g.hosts = append(g.hosts, strings.Replace(l.hostname, "*", "a", 1))
		}
		switch {
		case g.chance(0.1):
			b.WriteString("      allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {routes: \"yes\"}}}}\n")
		case g.chance(0.5):
			fmt.Fprintf(&b, "      allowedRoutes: {namespaces: {from: %s}}\n", g.pick("All", "Same"))
		}
		out = append(out, l)
	}
	g.doc("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: %s, namespace: %s}\nspec:\n  gatewayClassName: istio\n  listeners:\n%s", name, ns, b.String())
	return out
}

func (g *generator) httpRoute(i int, gwNS string, listeners []gwListener) {
	ns := g.pick("dev", "dev", "dev", gwNS, "other")
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: route-%d, namespace: %s}\nspec:\n  parentRefs:\n", i, ns)
	for range 1 + g.r.IntN(2) {
		ref := "name: " + g.pick("public", "public", "public", "internal")
		if ns != gwNS || g.chance(0.3) {
			ref += ", namespace: " + gwNS
		}
		switch {
		case g.chance(0.3):
			ref += ", sectionName: " + listeners[g.r.IntN(len(listeners))].name
		case g.chance(0.1):
			ref += ", port: " + g.pick("80", "8080")
		}
		fmt.Fprintf(&b, "    - {%s}\n", ref)
	}
	if g.chance(0.8) {
		var hosts []string
		for range 1 + g.r.IntN(2) {
			h := g.pick("goapp.dev", "goapp.dev", "www.example.com", "api.example.com", "shop.dev", "*.example.com")
			hosts = append(hosts, fmt.Sprintf("%q", h))
			g.hosts = append(g.hosts, strings.Replace(h, "*", "b", 1))
		}
		fmt.Fprintf(&b, "  hostnames: [%s]\n", strings.Join(hosts, ", "))
	}
	if g.chance(0.05) {
		b.WriteString("  rules:\n    - backendRefs:\n        - {name: goapp, port: 8080}\n")
	} else {
		b.WriteString("  rules:\n")
		for range 1 + g.r.IntN(4) {
			g.httpRouteRule(&b, ns)
		}
	}
	g.doc("%s", b.String())
}

func (g *generator) httpRouteRule(b *strings.Builder, ns string) {
	b.WriteString("    - ")
	allPrefix := true
	if g.chance(0.8) {
		b.WriteString("matches:\n")
		for range 1 + g.r.IntN(2) {
			b.WriteString("        - ")
			allPrefix = g.httpRouteMatch(b) && allPrefix
		}
		b.WriteString("      ")
	}
	if g.chance(0.12) {
		path := "{type: ReplaceFullPath, replaceFullPath: /moved}"
		if allPrefix && g.chance(0.5) {
			path = "{type: ReplacePrefixMatch, replacePrefixMatch: /moved}"
		}
		extra := ""
		if g.chance(0.5) {
			extra += ", statusCode: " + g.pick("301", "302")
		}
		if g.chance(0.3) {
			extra += ", " + g.pick("scheme: https", "hostname: moved.dev", "port: 8443", "scheme: https, port: 443")
		}
		fmt.Fprintf(b, "filters:\n        - type: RequestRedirect\n          requestRedirect: {path: %s%s}\n", path, extra)
		return
	}
	switch {
	case g.chance(0.1):
		b.WriteString("filters:\n        - type: RequestHeaderModifier\n          requestHeaderModifier: {set: [{name: x-from, value: gateway}]}\n      ")
	case g.chance(0.1) && allPrefix:
		b.WriteString("filters:\n        - type: URLRewrite\n          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}\n      ")
	case g.chance(0.05):
		b.WriteString("filters:\n        - type: URLRewrite\n          urlRewrite: {hostname: rewritten.dev}\n      ")
	}
	b.WriteString("backendRefs:\n")
	g.backendRefs(b, ns)
}

// httpRouteMatch writes one match; it says whether the match is a PathPrefix one (the
// API server's default when the path is left out).
func (g *generator) httpRouteMatch(b *strings.Builder) bool {
	var conds []string
	prefix := true
	if g.chance(0.75) {
		kind := g.pick("Exact", "PathPrefix", "PathPrefix", "RegularExpression")
		prefix = kind == "PathPrefix"
		v := g.pathValue(!prefix, kind == "RegularExpression", "/api/")
		conds = append(conds, fmt.Sprintf("path: {type: %s, value: %q}", kind, v))
	}
	if g.chance(0.15) {
		conds = append(conds, fmt.Sprintf("method: %s", g.pick("GET", "POST")))
	}
	if g.chance(0.2) {
		conds = append(conds, fmt.Sprintf("headers: [{name: x-canary, %s}]", g.pick(`value: "1"`, `type: Exact, value: test`, `type: RegularExpression, value: "[a-z]+"`)))
	}
	if g.chance(0.1) {
		conds = append(conds, `queryParams: [{name: debug, value: "1"}]`)
	}
	fmt.Fprintf(b, "{%s}\n", strings.Join(conds, ", "))
	return prefix
}

func (g *generator) backendRefs(b *strings.Builder, ns string) {
	n := 1 + g.r.IntN(3)
	for range n {
		name := g.pick("goapp", "goapp-v1", "goapp-v2", "multi", "empty", "named", "api", "nosuch")
		port := map[string]string{"multi": "80", "empty": "80", "named": "80", "api": "80"}[name]
		if port == "" {
			port = "8080"
		}
		if g.chance(0.1) {
			port = "9999"
		}
		ref := fmt.Sprintf("name: %s, port: %s", name, port)
		if name == "api" && ns != "other" {
			ref += ", namespace: other"
		} else if strings.HasPrefix(name, "goapp") && ns != "dev" {
			ref += ", namespace: dev"
		}
		if n > 1 || g.chance(0.2) {
			ref += fmt.Sprintf(", weight: %d", g.r.IntN(4))
		}
		fmt.Fprintf(b, "        - {%s}\n", ref)
	}
}

// grpcRoute writes a GRPCRoute: method matches by service and method, service only, method
// only or regex, sometimes with a header match.
func (g *generator) grpcRoute(i int, gwNS string) {
	ns := g.pick("dev", "dev", "other")
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: grpc-%d, namespace: %s}\nspec:\n  parentRefs:\n    - {name: public, namespace: %s}\n", i, ns, gwNS)
	if g.chance(0.7) {
		h := g.pick("goapp.dev", "grpc.dev", "*.example.com")
		fmt.Fprintf(&b, "  hostnames: [%q]\n", h)
		g.hosts = append(g.hosts, strings.Replace(h, "*", "g", 1))
	}
	b.WriteString("  rules:\n")
	for range 1 + g.r.IntN(3) {
		method := g.pick("{service: pkg.Greeter, method: Hello}", "{service: pkg.Greeter}", "{method: Health}",
			`{type: RegularExpression, service: "pkg\\.Admin.*", method: "Get.*"}`)
		header := ""
		if g.chance(0.2) {
			header = `, headers: [{name: x-canary, value: "1"}]`
		}
		fmt.Fprintf(&b, "    - matches:\n        - {method: %s%s}\n      backendRefs:\n", method, header)
		g.backendRefs(&b, ns)
	}
	g.paths = append(g.paths, "/pkg.Greeter/Hello", "/pkg.Greeter/Bye", "/other.Svc/Health", "/pkg.AdminV1/GetUser")
	g.doc("%s", b.String())
}
