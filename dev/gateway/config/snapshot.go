package config

import (
	"sort"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Snapshot is one consistent configuration the proxy serves from. It is never modified
// after Build; a push makes a new one, which the proxy swaps in atomically.
type Snapshot struct {
	Listeners []*Listener // sorted by port; only listeners whose route configuration arrived
	Routes    map[string]*routev3.RouteConfiguration
	Clusters  map[string]*Cluster // only clusters that are warm (EDS clusters with endpoints)
	Versions  Versions
	// Complete: every listener has its route configuration and every EDS cluster its
	// endpoints (Envoy's listeners and clusters have all warmed).
	Complete bool
}

// Versions are the version_info of the last accepted response of each type.
type Versions struct {
	Listeners string `json:"listeners"`
	Routes    string `json:"routes"`
	Clusters  string `json:"clusters"`
	Endpoints string `json:"endpoints"`
}

// Build assembles a snapshot. Resources that have not all arrived are left out, as Envoy
// keeps a listener or cluster warming until its routes or endpoints arrive: a listener
// without its routes is not served, and a request for a cluster without endpoints is
// answered as for an unknown cluster.
func Build(listeners map[string]*Listener, routes map[string]*routev3.RouteConfiguration,
	clusters map[string]*Cluster, endpoints map[string]*endpointv3.ClusterLoadAssignment, v Versions,
) *Snapshot {
	s := &Snapshot{Routes: routes, Clusters: map[string]*Cluster{}, Versions: v, Complete: true}
	for _, l := range listeners {
		if _, ok := routes[l.RouteName]; !ok {
			s.Complete = false
			continue
		}
		s.Listeners = append(s.Listeners, l)
	}
	sort.Slice(s.Listeners, func(i, j int) bool { return s.Listeners[i].Port < s.Listeners[j].Port })
	for name, c := range clusters {
		if c.Type == "EDS" {
			cla, ok := endpoints[c.EDSName]
			if !ok {
				s.Complete = false
				continue
			}
			eps, err := c.ParseEndpoints(cla, "")
			if err != nil { // checked when it arrived; cannot fail here
				continue
			}
			cc := *c
			cc.Endpoints = eps
			c = &cc
		}
		s.Clusters[name] = c
	}
	return s
}

// EDSNames returns the ClusterLoadAssignments the clusters need, sorted.
func EDSNames(clusters map[string]*Cluster) []string {
	var out []string
	for _, c := range clusters {
		if c.Type == "EDS" {
			out = append(out, c.EDSName)
		}
	}
	sort.Strings(out)
	return out
}

// RouteNames returns the route configurations the listeners need, sorted, without duplicates.
func RouteNames(listeners map[string]*Listener) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range listeners {
		if !seen[l.RouteName] {
			seen[l.RouteName] = true
			out = append(out, l.RouteName)
		}
	}
	sort.Strings(out)
	return out
}

// CheckEndpoints checks a ClusterLoadAssignment on arrival (before its cluster is known).
func CheckEndpoints(cla *endpointv3.ClusterLoadAssignment) error {
	_, err := (&Cluster{}).ParseEndpoints(cla, "")
	return err
}
