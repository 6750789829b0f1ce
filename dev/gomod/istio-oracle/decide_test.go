package oracle_test

import (
	"errors"
	"math"
	"strings"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
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
	// HealthyEndpoints is -1 when the cluster does not exist (503 NC).
	HealthyEndpoints int `json:"healthy_endpoints"`
}

func ptr[T any](v T) *T { return &v }

func (e *env) decide(rq Request) Decision {
	d := Decision{Request: rq, Destinations: []Destination{}}
	host := strings.ToLower(rq.Host)
	if h, p, ok := strings.Cut(host, ":"); ok && p != "" && strings.Trim(p, "0123456789") == "" {
		host = h
	}
	res := e.sim.Run(simulation.Call{
		Port:       e.gw.listenPort(rq.Port),
		HostHeader: host,
		Path:       "/",
		Protocol:   simulation.HTTP,
		CallMode:   simulation.CallModeGateway,
	})
	rds := res.RouteConfigMatched
	switch {
	case rds == "" || errors.Is(res.Error, simulation.ErrNoListener) || errors.Is(res.Error, simulation.ErrNoFilterChain):
		d.Outcome = "no_listener"
		return d
	case errors.Is(res.Error, simulation.ErrTLSRedirect):
		vh := selectVirtualHost(e.rds[rds], host)
		d.Outcome, d.Status = "redirect", ptr(301)
		if vh != nil {
			gw, port := e.serverFor(rds, vh.Domains[0], "", nil)
			d.Gateway, d.ServerPort = &gw, &port
		}
		return d
	}
	vh := selectVirtualHost(e.rds[rds], host)
	if vh == nil {
		d.Outcome, d.Status = "404", ptr(404)
		return d
	}
	r := matchRoute(vh, rq)
	if r == nil {
		d.Outcome, d.Status = "404", ptr(404)
		return d
	}
	e.describeRoute(&d, rds, vh, r)
	e.act(&d, r)
	return d
}

// describeRoute names the VirtualService, rule and Gateway server a route came from.
func (e *env) describeRoute(d *Decision, rds string, vh *route.VirtualHost, r *route.Route) {
	key := vsKeyFromMetadata(r)
	cfg := e.in.vs[key]
	if cfg == nil {
		return
	}
	vs := cfg.Spec.(*networking.VirtualService)
	d.VirtualService = &key
	d.Rule = ptr(ruleIndex(vs, r.Name))
	gw, port := e.serverFor(rds, vh.Domains[0], cfg.Namespace, vsGateways(cfg.Namespace, vs.Gateways))
	if gw != "" {
		d.Gateway, d.ServerPort = &gw, &port
	}
}

// act reads the route's action: a redirect, a direct response, or clusters with weights
// (a route fails with 503 when none of its clusters exists with a healthy endpoint).
func (e *env) act(d *Decision, r *route.Route) {
	switch a := r.Action.(type) {
	case *route.Route_Redirect:
		d.Outcome, d.Status = "redirect", ptr(redirectStatus(a.Redirect))
		return
	case *route.Route_DirectResponse:
		d.Outcome, d.Status = "direct", ptr(int(a.DirectResponse.GetStatus()))
		return
	case *route.Route_Route:
		type wc struct {
			name   string
			weight uint32
		}
		var ws []wc
		if c := a.Route.GetCluster(); c != "" {
			ws = append(ws, wc{c, 1})
		}
		var total uint32
		for _, w := range a.Route.GetWeightedClusters().GetClusters() {
			ws = append(ws, wc{w.Name, w.GetWeight().GetValue()})
		}
		for _, w := range ws {
			total += w.weight
		}
		ok := false
		for _, w := range ws {
			_, subset, h, port := model.ParseSubsetKey(w.name)
			dst := Destination{Host: string(h), Port: uint32(port), HealthyEndpoints: -1}
			if subset != "" {
				dst.Subset = &subset
			}
			if total > 0 {
				dst.Weight = math.Round(float64(w.weight)*10000/float64(total)) / 100
			}
			if _, exists := e.cds[w.name]; exists {
				dst.HealthyEndpoints = e.healthy[w.name]
				ok = ok || (dst.HealthyEndpoints > 0 && dst.Weight > 0)
			}
			d.Destinations = append(d.Destinations, dst)
		}
		if ok {
			d.Outcome = "routed"
		} else {
			d.Outcome, d.Status = "503", ptr(503)
		}
	default:
		d.Outcome, d.Status = "404", ptr(404)
	}
}

func redirectStatus(r *route.RedirectAction) int {
	switch r.GetResponseCode() {
	case route.RedirectAction_FOUND:
		return 302
	case route.RedirectAction_SEE_OTHER:
		return 303
	case route.RedirectAction_TEMPORARY_REDIRECT:
		return 307
	case route.RedirectAction_PERMANENT_REDIRECT:
		return 308
	default:
		return 301
	}
}
