package proxy

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"meshloop.dev/gateway/config"
)

// balancer keeps per-cluster load balancing state across snapshots.
type balancer struct {
	clusters sync.Map // cluster name → *lbState
}

type lbState struct {
	next   atomic.Uint64
	active sync.Map // endpoint address → *atomic.Int64 (requests in flight)
}

// candidates returns the endpoints a cluster may use: the healthy ones, or all of them in
// Envoy's panic mode (fewer healthy than the cluster's panic threshold, in percent).
func candidates(c *config.Cluster) []config.Endpoint {
	var healthy []config.Endpoint
	for _, e := range c.Endpoints {
		if e.Healthy {
			healthy = append(healthy, e)
		}
	}
	total := len(c.Endpoints)
	if total > 0 && c.PanicPercent > 0 && float64(100*len(healthy)) < c.PanicPercent*float64(total) {
		return c.Endpoints
	}
	return healthy
}

// pick chooses an endpoint by the cluster's policy, avoiding the addresses in exclude while
// others remain (a retry goes to another host). ok is false when there is none.
func (b *balancer) pick(c *config.Cluster, eps []config.Endpoint, exclude map[string]bool) (config.Endpoint, bool) {
	if len(exclude) > 0 {
		var rest []config.Endpoint
		for _, e := range eps {
			if !exclude[e.Address] {
				rest = append(rest, e)
			}
		}
		if len(rest) > 0 {
			eps = rest
		}
	}
	if len(eps) == 0 {
		return config.Endpoint{}, false
	}
	v, _ := b.clusters.LoadOrStore(c.Name, &lbState{})
	st := v.(*lbState)
	if !equalWeights(eps) {
		return weightedRandom(eps), true
	}
	switch c.LB {
	case "RANDOM":
		return eps[rand.IntN(len(eps))], true
	case "LEAST_REQUEST":
		// Envoy's default: the less loaded of two random choices.
		a, b2 := eps[rand.IntN(len(eps))], eps[rand.IntN(len(eps))]
		if st.load(b2.Address) < st.load(a.Address) {
			return b2, true
		}
		return a, true
	}
	return eps[int(st.next.Add(1)-1)%len(eps)], true
}

func (st *lbState) counter(addr string) *atomic.Int64 {
	v, _ := st.active.LoadOrStore(addr, new(atomic.Int64))
	return v.(*atomic.Int64)
}

func (st *lbState) load(addr string) int64 { return st.counter(addr).Load() }

// track counts a request in flight to an endpoint; call the returned function when done.
func (b *balancer) track(cluster, addr string) func() {
	v, _ := b.clusters.LoadOrStore(cluster, &lbState{})
	c := v.(*lbState).counter(addr)
	c.Add(1)
	return func() { c.Add(-1) }
}

func equalWeights(eps []config.Endpoint) bool {
	for _, e := range eps[1:] {
		if e.Weight != eps[0].Weight {
			return false
		}
	}
	return true
}

func weightedRandom(eps []config.Endpoint) config.Endpoint {
	var total uint64
	for _, e := range eps {
		total += uint64(e.Weight)
	}
	r := rand.Uint64N(total)
	for _, e := range eps {
		if r < uint64(e.Weight) {
			return e
		}
		r -= uint64(e.Weight)
	}
	return eps[len(eps)-1]
}
