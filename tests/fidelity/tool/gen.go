package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// gen writes n Istio scenarios and gw Gateway API ones (routing.yaml + requests.json, and a
// meshloop.yaml for the Gateway API ones) under out: random routing that Istio accepts,
// over the workloads of tests/fidelity/base.yaml, and requests aimed at its hosts and
// paths. Scenario i is a function of (seed, kind, i) alone, so one scenario can be
// regenerated and a run reproduced from its seed.
func gen(out string, n, gw int, seed uint64) error {
	for i := range n {
		g := &generator{r: rand.New(rand.NewPCG(seed, uint64(i)))}
		yaml, reqs := g.scenario()
		if err := write(filepath.Join(out, fmt.Sprintf("gen-%d-%05d", seed, i)), yaml, "", reqs); err != nil {
			return err
		}
	}
	for i := range gw {
		g := &generator{r: rand.New(rand.NewPCG(seed, uint64(i)|1<<63))}
		yaml, config, reqs := g.gatewayAPIScenario()
		if err := write(filepath.Join(out, fmt.Sprintf("gen-gw-%d-%05d", seed, i)), yaml, config, reqs); err != nil {
			return err
		}
	}
	return nil
}

func write(dir, yaml, config string, reqs []request) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "routing.yaml"), []byte(yaml), 0o644); err != nil {
		return err
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, "meshloop.yaml"), []byte(config), 0o644); err != nil {
			return err
		}
	}
	raw, _ := json.MarshalIndent(reqs, "", "  ")
	return os.WriteFile(filepath.Join(dir, "requests.json"), raw, 0o644)
}

type generator struct {
	r     *rand.Rand
	b     strings.Builder
	hosts []string // request hosts worth trying
	paths []string
}

func (g *generator) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }
func (g *generator) chance(p float64) bool    { return g.r.Float64() < p }

func (g *generator) scenario() (string, []request) {
	g.hosts = []string{"goapp.dev", "unknown.dev", "www.example.com"}
	g.paths = []string{"/", "/api/v1/users", "/fortune", "/API/v1", "/static/a.css", "/v2/x", "/api?debug=1"}
	gws := g.gateways()
	for i := range 1 + g.r.IntN(3) {
		g.virtualService(i, gws)
	}
	if g.chance(0.8) {
		g.destinationRule("goapp", "dev", []string{"v1", "v2", "v3"})
	}
	if g.chance(0.3) {
		g.destinationRule("api", "other", []string{"v1"})
	}
	return g.b.String(), g.requests()
}

func (g *generator) doc(format string, args ...any) {
	g.b.WriteString("---\n")
	fmt.Fprintf(&g.b, format, args...)
}

// gateways writes one or two Gateways and returns their references, as seen from the
// namespace "dev" and in the `ns/name` form.
func (g *generator) gateways() []string {
	var refs []string
	for i := range 1 + g.r.IntN(2) {
		name := fmt.Sprintf("gw-%d", i)
		ns := g.pick("istio-ingress", "istio-ingress", "dev")
		selector := "istio: ingress"
		if g.chance(0.05) {
			selector = "istio: ingressgateway" // the Helm chart's famous mismatch: selects nothing
		}
		var servers strings.Builder
		for j := range 1 + g.r.IntN(2) {
			port := 80
			if g.chance(0.15) {
				port = 8080
			}
			hosts := []string{g.serverHost()}
			if g.chance(0.3) {
				hosts = append(hosts, g.serverHost())
			}
			redirect := ""
			if g.chance(0.05) {
				redirect = "\n      tls: {httpsRedirect: true}"
			}
			fmt.Fprintf(&servers, "    - port: {number: %d, name: http-%d, protocol: HTTP}\n      hosts: [%s]%s\n",
				port, j, strings.Join(quote(hosts), ", "), redirect)
		}
		g.doc("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: %s, namespace: %s}\nspec:\n  selector: {%s}\n  servers:\n%s",
			name, ns, selector, servers.String())
		refs = append(refs, ns+"/"+name)
	}
	return refs
}

func (g *generator) serverHost() string {
	h := g.pick("goapp.dev", "*.example.com", "*", "dev/goapp.dev", "other/*.example.com", "*/www.example.com", "*.dev", "api.example.com")
	return h
}

func quote(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

func (g *generator) virtualService(i int, gws []string) {
	ns := g.pick("dev", "dev", "dev", "other")
	var gateways []string
	for _, ref := range gws {
		if !g.chance(0.8) {
			continue
		}
		gwns, name, _ := strings.Cut(ref, "/")
		// Istio accepts `name` (own namespace) and `ns/name`; it rejects `./name`.
		if gwns == ns && g.chance(0.5) {
			gateways = append(gateways, name)
		} else {
			gateways = append(gateways, ref)
		}
	}
	bound := len(gateways) > 0
	hosts := []string{g.vsHost(bound)}
	if g.chance(0.25) {
		// Istio rejects overlapping hosts in one VirtualService.
		if h := g.vsHost(bound); !overlap(h, hosts[0]) {
			hosts = append(hosts, h)
		}
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h, "*") && strings.Contains(h, ".") {
			g.hosts = append(g.hosts, h)
		} else if strings.HasPrefix(h, "*.") {
			g.hosts = append(g.hosts, "a"+h[1:])
		} else if h == "goapp" {
			g.hosts = append(g.hosts, "goapp."+ns+".svc.cluster.local")
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs-%d, namespace: %s}\nspec:\n  hosts: [%s]\n",
		i, ns, strings.Join(quote(hosts), ", "))
	if bound {
		fmt.Fprintf(&b, "  gateways: [%s]\n", strings.Join(quote(gateways), ", "))
	}
	switch {
	case g.chance(0.08):
		b.WriteString("  exportTo: [\".\"]\n")
	case g.chance(0.05):
		b.WriteString("  exportTo: [istio-ingress]\n")
	}
	b.WriteString("  http:\n")
	for range 1 + g.r.IntN(4) {
		g.rule(&b)
	}
	g.doc("%s", b.String())
}

func (g *generator) vsHost(bound bool) string {
	if bound && g.chance(0.1) {
		return "*"
	}
	return g.pick("goapp.dev", "goapp.dev", "*.example.com", "www.example.com", "api.example.com", "goapp", "shop.dev")
}

func (g *generator) rule(b *strings.Builder) {
	b.WriteString("    - ")
	if !g.chance(0.25) {
		b.WriteString("match:\n")
		for range 1 + g.r.IntN(2) {
			b.WriteString("        - ")
			g.match(b)
		}
		b.WriteString("      ")
	}
	switch {
	case g.chance(0.12):
		fmt.Fprintf(b, "redirect: {uri: /moved, redirectCode: %s}\n", g.pick("301", "302", "308"))
	case g.chance(0.12):
		fmt.Fprintf(b, "directResponse: {status: %s}\n", g.pick("200", "418", "503"))
	default:
		b.WriteString("route:\n")
		g.destinations(b)
	}
}

func (g *generator) match(b *strings.Builder) {
	var conds []string
	if g.chance(0.75) {
		kind := g.pick("exact", "prefix", "prefix", "regex")
		v := g.pathValue(kind != "prefix", kind == "regex")
		conds = append(conds, fmt.Sprintf("uri: {%s: %q}", kind, v))
	}
	if g.chance(0.15) {
		conds = append(conds, "ignoreUriCase: true")
	}
	if g.chance(0.15) {
		conds = append(conds, fmt.Sprintf("method: {exact: %s}", g.pick("GET", "POST")))
	}
	if g.chance(0.15) {
		conds = append(conds, fmt.Sprintf("headers: {x-canary: {%s}}", g.pick(`exact: "1"`, `prefix: "t"`, `regex: "[a-z]+"`)))
	}
	if g.chance(0.1) {
		conds = append(conds, `queryParams: {debug: {exact: "1"}}`)
	}
	if g.chance(0.05) {
		conds = append(conds, `withoutHeaders: {x-block: {exact: "1"}}`)
	}
	if g.chance(0.05) {
		conds = append(conds, fmt.Sprintf("port: %s", g.pick("80", "8080")))
	}
	if len(conds) == 0 {
		conds = append(conds, `uri: {prefix: "/"}`)
	}
	fmt.Fprintf(b, "{%s}\n", strings.Join(conds, ", "))
}

// pathValue picks a path to match (exact, prefix or regex; `prefixes` adds to the prefixes)
// and remembers a request path it matches.
func (g *generator) pathValue(exact, regex bool, prefixes ...string) string {
	var v string
	switch {
	case regex:
		v = g.pick("/api/.*", "/v[0-9]+/.*", ".*", "/fortune", "/api")
	case exact:
		v = g.pick("/fortune", "/", "/api/v1/users", "/API/v1")
	default:
		v = g.pick(append([]string{"/", "/api", "/api/v1", "/static", "/API", "/fortune"}, prefixes...)...)
	}
	g.paths = append(g.paths, strings.ReplaceAll(strings.ReplaceAll(v, ".*", "/x"), "[0-9]+", "3"))
	return v
}

func (g *generator) destinations(b *strings.Builder) {
	n := 1 + g.r.IntN(3)
	weights := make([]int, n)
	sum := 0
	for i := range weights {
		weights[i] = g.r.IntN(4) * 25
		sum += weights[i]
	}
	if sum == 0 {
		weights[0] = 100
	}
	for i := range n {
		host := g.pick("goapp", "goapp", "goapp.dev.svc.cluster.local", "multi", "empty", "named", "api.other.svc.cluster.local", "nosuch")
		dest := fmt.Sprintf("host: %s", host)
		if strings.HasPrefix(host, "goapp") && g.chance(0.6) {
			dest += ", subset: " + g.pick("v1", "v1", "v2", "v3")
		}
		if strings.HasPrefix(host, "api") && g.chance(0.3) {
			dest += ", subset: v1"
		}
		if g.chance(0.3) {
			dest += fmt.Sprintf(", port: {number: %s}", g.pick("8080", "80", "9090"))
		}
		fmt.Fprintf(b, "        - destination: {%s}\n", dest)
		if n > 1 || g.chance(0.2) {
			fmt.Fprintf(b, "          weight: %d\n", weights[i])
		}
	}
}

func (g *generator) destinationRule(svc, ns string, subsets []string) {
	var b strings.Builder
	host := svc
	if g.chance(0.3) {
		host = svc + "." + ns + ".svc.cluster.local"
	}
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: %s, namespace: %s}\nspec:\n  host: %s\n", svc, ns, host)
	if g.chance(0.1) {
		b.WriteString("  exportTo: [\".\"]\n")
	}
	b.WriteString("  subsets:\n")
	for _, s := range subsets {
		if g.chance(0.8) {
			fmt.Fprintf(&b, "    - {name: %s, labels: {version: %s}}\n", s, s)
		}
	}
	if !strings.HasSuffix(b.String(), "}\n") {
		fmt.Fprintf(&b, "    - {name: %s, labels: {version: %s}}\n", subsets[0], subsets[0])
	}
	g.doc("%s", b.String())
}

type request struct {
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Port    int               `json:"port"`
}

func (g *generator) requests() []request {
	var out []request
	for range 8 {
		rq := request{Host: g.pick(g.hosts...), Path: g.pick(g.paths...), Method: "GET", Headers: map[string]string{}, Port: 80}
		if g.chance(0.1) {
			rq.Host = strings.ToUpper(rq.Host[:1]) + rq.Host[1:]
		}
		if g.chance(0.05) {
			rq.Host += ":80"
		}
		if g.chance(0.25) {
			rq.Method = "POST"
		}
		if g.chance(0.3) {
			rq.Headers["x-canary"] = g.pick("1", "test", "TEST")
		}
		if g.chance(0.1) {
			if !strings.Contains(rq.Path, "?") {
				rq.Path += "?debug=1"
			}
		}
		if g.chance(0.1) {
			rq.Port = 8080
		}
		out = append(out, rq)
	}
	return out
}

// overlap: the same name, or a wildcard covering the other (Istio's host.Name.Matches).
func overlap(a, b string) bool {
	covers := func(p, h string) bool {
		return p == h || p == "*" || (strings.HasPrefix(p, "*") && strings.HasSuffix(h, p[1:]))
	}
	return covers(a, b) || covers(b, a)
}
