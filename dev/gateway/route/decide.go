package route

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Action is what the gateway does with a request.
type Action int

const (
	NoVirtualHost  Action = iota // no virtual host serves the Host: 404, empty body (NR)
	NoRoute                      // the virtual host has no matching route: 404, empty body (NR)
	Forward                      // proxy to one of Clusters
	Redirect                     // answer Status with a Location header
	DirectResponse               // answer Status with Body
)

func (a Action) String() string {
	return [...]string{"no_virtual_host", "no_route", "forward", "redirect", "direct_response"}[a]
}

// DefaultTimeout is Envoy's route timeout when a route sets none (istiod sets 0s, "none").
const DefaultTimeout = 15 * time.Second

// Cluster is one destination of a Forward decision.
type Cluster struct {
	Name   string
	Weight uint32 // relative weight; 1 for a single cluster
	// HostRewrite is the entry's host_rewrite_literal; the route's own rewrite wins over it.
	HostRewrite string
	// Header changes of a weighted_clusters entry; applied before the route's.
	RequestHeaders, ResponseHeaders HeaderChanges
}

// Decision is what a route does with a request.
type Decision struct {
	Action      Action
	VirtualHost *routev3.VirtualHost // nil for NoVirtualHost
	Route       *routev3.Route       // nil unless a route matched

	Status   int    // 404 (no virtual host or route), redirect code, direct response status
	Location string // Redirect: the new URL
	Body     string // DirectResponse: the body ("" for none)

	Clusters []Cluster // Forward: candidates with weights (see Pick)
	// ClusterNotFoundStatus is the answer when the picked cluster is not in CDS (Envoy: NC).
	ClusterNotFoundStatus int
	Path                  string        // Forward: upstream :path after prefix/regex rewrite
	Authority             string        // Forward: upstream :authority (see AuthorityFor)
	HostRewritten         bool          // Authority comes from the route's host_rewrite_literal
	PathRewritten         bool          // Path differs from the request: x-envoy-original-path
	Timeout               time.Duration // route timeout; 0 means none
	Retry                 *RetryPolicy  // nil: no retries
	Fault                 *Fault        // any matched route: fault injection (nil: none)
	AttemptCount          bool          // send x-envoy-attempt-count upstream

	// Header changes of the route, its virtual host and the route configuration, in the
	// order Envoy applies them (after the picked cluster's own).
	RequestHeaders, ResponseHeaders []HeaderChanges
}

// RetryPolicy is a route's (or its virtual host's) retry_policy.
type RetryPolicy struct {
	On                   []string // retry_on conditions, e.g. connect-failure, retriable-status-codes
	NumRetries           uint32
	PerTryTimeout        time.Duration // 0: the route timeout only
	RetriableStatusCodes []uint32
	OtherHosts           bool // retry_host_predicate previous_hosts: retry on another endpoint
}

// Evaluate routes req through rc: virtual host, route, decision.
func Evaluate(rc *routev3.RouteConfiguration, req Request) Decision {
	vh := SelectVirtualHost(rc, req.Host)
	if vh == nil {
		return Decision{Action: NoVirtualHost, Status: http.StatusNotFound}
	}
	r := Match(vh, req)
	if r == nil {
		return Decision{Action: NoRoute, VirtualHost: vh, Status: http.StatusNotFound}
	}
	return Decide(rc, vh, r, req)
}

// Decide says what route r (matched in vh of rc) does with req.
func Decide(rc *routev3.RouteConfiguration, vh *routev3.VirtualHost, r *routev3.Route, req Request) Decision {
	// The fault filter runs before the router, whatever the route's action.
	d := Decision{VirtualHost: vh, Route: r, Fault: faultFor(r, vh)}
	d.RequestHeaders = levelChanges(rc.GetMostSpecificHeaderMutationsWins(),
		requestChanges(r), requestChanges(vh), requestChanges(rc))
	d.ResponseHeaders = levelChanges(rc.GetMostSpecificHeaderMutationsWins(),
		responseChanges(r), responseChanges(vh), responseChanges(rc))
	switch a := r.GetAction().(type) {
	case *routev3.Route_Redirect:
		d.Action, d.Status, d.Location = Redirect, redirectStatus(a.Redirect), redirectURL(a.Redirect, r.GetMatch(), req)
	case *routev3.Route_DirectResponse:
		d.Action, d.Status, d.Body = DirectResponse, int(a.DirectResponse.GetStatus()), dataString(a.DirectResponse.GetBody())
	case *routev3.Route_Route:
		d.Action = Forward
		forward(&d, vh, r, a.Route, req)
	}
	return d
}

func forward(d *Decision, vh *routev3.VirtualHost, r *routev3.Route, a *routev3.RouteAction, req Request) {
	if c := a.GetCluster(); c != "" {
		d.Clusters = []Cluster{{Name: c, Weight: 1}}
	}
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		d.Clusters = append(d.Clusters, Cluster{
			Name:            wc.GetName(),
			Weight:          wc.GetWeight().GetValue(),
			HostRewrite:     wc.GetHostRewriteLiteral(),
			RequestHeaders:  HeaderChanges{Remove: wc.GetRequestHeadersToRemove(), Add: adds(wc.GetRequestHeadersToAdd())},
			ResponseHeaders: HeaderChanges{Remove: wc.GetResponseHeadersToRemove(), Add: adds(wc.GetResponseHeadersToAdd())},
		})
	}
	d.ClusterNotFoundStatus = http.StatusServiceUnavailable
	if a.GetClusterNotFoundResponseCode() == routev3.RouteAction_NOT_FOUND {
		d.ClusterNotFoundStatus = http.StatusNotFound
	} else if a.GetClusterNotFoundResponseCode() == routev3.RouteAction_INTERNAL_SERVER_ERROR {
		d.ClusterNotFoundStatus = http.StatusInternalServerError
	}
	d.Path = rewritePath(req.Path, r.GetMatch(), a.GetPrefixRewrite(), a.GetRegexRewrite())
	d.PathRewritten = d.Path != req.Path
	d.Authority = req.Host
	if h := a.GetHostRewriteLiteral(); h != "" {
		d.Authority, d.HostRewritten = h, true
	}
	d.Timeout = timeout(a, req)
	d.Retry = retryPolicy(a.GetRetryPolicy())
	if d.Retry == nil {
		d.Retry = retryPolicy(vh.GetRetryPolicy())
	}
	d.AttemptCount = vh.GetIncludeRequestAttemptCount()
}

// AuthorityFor returns the upstream :authority when c is the picked cluster: the route's
// host rewrite, else the cluster entry's, else the request's Host.
func (d Decision) AuthorityFor(c Cluster) string {
	if !d.HostRewritten && c.HostRewrite != "" {
		return c.HostRewrite
	}
	return d.Authority
}

// timeout is the route timeout (DefaultTimeout when unset, 0 for none), except for a gRPC
// request on a route with max_grpc_timeout or max_stream_duration.grpc_timeout_header_max:
// then the request's grpc-timeout header (none when absent), capped by that maximum unless 0.
func timeout(a *routev3.RouteAction, req Request) time.Duration {
	t := DefaultTimeout
	if a.GetTimeout() != nil {
		t = a.GetTimeout().AsDuration()
	}
	limit := a.GetMaxStreamDuration().GetGrpcTimeoutHeaderMax()
	if limit == nil {
		limit = a.GetMaxGrpcTimeout()
	}
	if limit == nil || !strings.HasPrefix(req.Headers.Get("content-type"), "application/grpc") {
		return t
	}
	t = grpcTimeout(req.Headers.Get("grpc-timeout"))
	if max := limit.AsDuration(); max > 0 && (t == 0 || t > max) {
		t = max
	}
	return t
}

// grpcTimeout parses a grpc-timeout header ("100m", "5S"); 0 when absent or malformed.
func grpcTimeout(v string) time.Duration {
	if len(v) < 2 {
		return 0
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	return time.Duration(n) * unit
}

// Pick returns the cluster for a random number, as Envoy picks among weighted clusters:
// r modulo the total weight, then the first cluster whose cumulative weight exceeds it.
func (d Decision) Pick(r uint64) (Cluster, bool) {
	var total uint64
	for _, c := range d.Clusters {
		total += uint64(c.Weight)
	}
	if total == 0 {
		return Cluster{}, false
	}
	v, end := r%total, uint64(0)
	for _, c := range d.Clusters {
		end += uint64(c.Weight)
		if v < end {
			return c, true
		}
	}
	return Cluster{}, false
}

func retryPolicy(p *routev3.RetryPolicy) *RetryPolicy {
	if p == nil {
		return nil
	}
	out := &RetryPolicy{NumRetries: 1, RetriableStatusCodes: p.GetRetriableStatusCodes()}
	for _, on := range strings.Split(p.GetRetryOn(), ",") {
		if on = strings.TrimSpace(on); on != "" {
			out.On = append(out.On, on)
		}
	}
	if n := p.GetNumRetries(); n != nil {
		out.NumRetries = n.GetValue()
	}
	if t := p.GetPerTryTimeout(); t != nil {
		out.PerTryTimeout = t.AsDuration()
	}
	for _, pred := range p.GetRetryHostPredicate() {
		if pred.GetName() == "envoy.retry_host_predicates.previous_hosts" {
			out.OtherHosts = true
		}
	}
	return out
}

// dataString returns an inline DataSource's text (Check rejects files and environment).
func dataString(ds *corev3.DataSource) string {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return s.InlineString
	case *corev3.DataSource_InlineBytes:
		return string(s.InlineBytes)
	}
	return ""
}
