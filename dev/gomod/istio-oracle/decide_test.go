package oracle_test

import (
	"errors"
	"math"
	"net/http"
	"strings"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	gwroute "meshloop.dev/gateway/route"
)

// Request is one request to decide (the fields of `meshloop explain`).
type Request struct {
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	// Port is the gateway server port the request arrives on (default 80).
	Port uint32 `json:"port"`
}

func (r *Request) fillDefaults() {
	if r.Path == "" {
		r.Path = "/"
	}
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Port == 0 {
		r.Port = 80
	}
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
}

// Decision is where the gateway sends one request; the same fields as `meshloop explain -o json`.
type Decision struct {
	Request Request `json:"request"`
	// Outcome: routed, 404, 503, redirect, direct, no_listener.
	Outcome        string        `json:"outcome"`
	Status         *int          `json:"status"`
	Gateway        *string       `json:"gateway"`
	Listener       *string       `json:"listener,omitempty"`
	ServerPort     *uint32       `json:"server_port"`
	VirtualService *string       `json:"virtual_service"`
	Rule           *int          `json:"rule"`
	Destinations   []Destination `json:"destinations"`
}

// Destination is one weighted cluster of the chosen route.
type Destination struct {
	Host   string  `json:"host"`
	Subset *string `json:"subset"`
	Port   uint32  `json:"port"`
	// Weight is the share of the route's traffic in percent.
	Weight float64 `json:"weight"`
	// HealthyEndpoints is 0 when the cluster does not exist (503 NC).
	HealthyEndpoints int `json:"healthy_endpoints"`
}

func ptr[T any](v T) *T { return &v }

// decide: Istio's simulation finds the listener and its route configuration for the port,
// then Envoy's routing (meshloop.dev/gateway/route) picks the virtual host and the route.
func (e *env) decide(rq Request) Decision {
	d := Decision{Request: rq, Destinations: []Destination{}}
	res := e.sim.Run(simulation.Call{
		Port:       e.gw.listenPort(rq.Port),
		HostHeader: gwroute.StripPort(strings.ToLower(rq.Host)),
		Path:       "/",
		Protocol:   simulation.HTTP,
		CallMode:   simulation.CallModeGateway,
	})
	rds := res.RouteConfigMatched
	if rds == "" || errors.Is(res.Error, simulation.ErrNoListener) || errors.Is(res.Error, simulation.ErrNoFilterChain) {
		d.Outcome = "no_listener"
		return d
	}
	rc := e.rds[rds]
	req := routeRequest(rq)
	vh := gwroute.SelectVirtualHost(rc, req.Host)
	if vh == nil {
		d.Outcome, d.Status = "404", ptr(404)
		return d
	}
	if vh.GetRequireTls() == route.VirtualHost_ALL {
		// Plain HTTP to a virtual host that requires TLS: Envoy redirects to https (301).
		d.Outcome, d.Status = "redirect", ptr(301)
		gw, port := e.redirectServerFor(rds, vh.Domains[0])
		nameGateway(&d, gw, port)
		return d
	}
	r := gwroute.Match(vh, req)
	if r == nil {
		d.Outcome, d.Status = "404", ptr(404)
		return d
	}
	e.describeRoute(&d, rds, vh, r)
	e.act(&d, gwroute.Decide(rc, vh, r, req))
	return d
}

// routeRequest is the request as Envoy's router sees it: the path normalised as istiod's
// connection manager asks (normalize_path on, merge_slashes off).
func routeRequest(rq Request) gwroute.Request {
	h := http.Header{}
	for k, v := range rq.Headers {
		h.Add(k, v)
	}
	return gwroute.Request{
		Host:    rq.Host,
		Path:    gwroute.NormalizePath(rq.Path, true, false),
		Method:  strings.ToUpper(rq.Method),
		Scheme:  "http",
		Headers: h,
	}
}

// describeRoute names the VirtualService, rule and Gateway server a route came from.
func (e *env) describeRoute(d *Decision, rds string, vh *route.VirtualHost, r *route.Route) {
	key := vsKeyFromMetadata(r)
	cfg := e.in.vs[key]
	if cfg == nil {
		e.describeDerived(d, rds, vh, r, key)
		return
	}
	vs := cfg.Spec.(*networking.VirtualService)
	d.VirtualService = &key
	d.Rule = ptr(ruleIndex(vs, r.Name))
	gw, port := e.serverFor(rds, vh.Domains[0], cfg.Namespace, vsGateways(cfg.Namespace, vs.Gateways), resolveHosts(cfg.Namespace, vs.Hosts))
	nameGateway(d, gw, port)
}

// act reads the route's decision: a redirect, a direct response, or clusters with weights
// (a route fails with 503 when none of its clusters exists with a healthy endpoint, or with
// the route's cluster-not-found status when none exists at all).
func (e *env) act(d *Decision, gd gwroute.Decision) {
	switch gd.Action {
	case gwroute.Redirect:
		d.Outcome, d.Status = "redirect", ptr(gd.Status)
		return
	case gwroute.DirectResponse:
		d.Outcome, d.Status = "direct", ptr(gd.Status)
		return
	case gwroute.Forward:
	default:
		d.Outcome, d.Status = "404", ptr(404)
		return
	}
	var total uint32
	for _, c := range gd.Clusters {
		total += c.Weight
	}
	ok, found := false, false
	for _, c := range gd.Clusters {
		_, subset, h, port := model.ParseSubsetKey(c.Name)
		dst := Destination{Host: string(h), Port: uint32(port)}
		if subset != "" {
			dst.Subset = &subset
		}
		if total > 0 {
			dst.Weight = math.Round(float64(c.Weight)*10000/float64(total)) / 100
		}
		if _, exists := e.cds[c.Name]; exists {
			found = true
			dst.HealthyEndpoints = e.healthy[c.Name]
			ok = ok || (dst.HealthyEndpoints > 0 && dst.Weight > 0)
		}
		d.Destinations = append(d.Destinations, dst)
	}
	switch {
	case ok:
		d.Outcome = "routed"
	case !found && gd.ClusterNotFoundStatus != 503:
		// None of the clusters exists and the route answers that itself (istiod asks 500
		// for Gateway API routes: their backends are invalid).
		d.Outcome, d.Status = "direct", ptr(gd.ClusterNotFoundStatus)
	default:
		d.Outcome, d.Status = "503", ptr(503)
	}
}
