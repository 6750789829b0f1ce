package xds

import (
	"fmt"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"meshloop.dev/gateway/config"
	"meshloop.dev/gateway/route"
)

// handle checks and applies one response, then ACKs or NACKs it. A new set of listeners
// or clusters may change which route configurations or endpoints are needed; the new
// subscription is sent after the ACK.
func (c *Client) handle(s sender, resp *discoveryv3.DiscoveryResponse) error {
	c.mu.Lock()
	c.nonces[resp.GetTypeUrl()] = resp.GetNonce()
	var err error
	switch resp.GetTypeUrl() {
	case ListenerType:
		err = c.applyListeners(resp)
	case ClusterType:
		err = c.applyClusters(resp)
	case RouteType:
		err = c.applyRoutes(resp)
	case EndpointType:
		err = c.applyEndpoints(resp)
	default:
		err = fmt.Errorf("resource type %s is not supported by this gateway", resp.GetTypeUrl())
	}
	t := resp.GetTypeUrl()
	reply := c.request(t, c.version(t), resp.GetNonce(), c.names[t])
	if err != nil {
		reply.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		c.recordNACK(resp, err)
	} else {
		c.status.LastChange = time.Now()
	}
	follow := c.followUps(t)
	snap := c.snapshot()
	c.mu.Unlock()

	if err != nil {
		c.log.Warn("xds NACK", "type", shortType(t), "version", resp.GetVersionInfo(), "err", err)
	} else {
		c.log.Info("xds ACK", "type", shortType(t), "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
		c.publish(snap)
	}
	if err := s.Send(reply); err != nil {
		return err
	}
	for _, r := range follow {
		if err := s.Send(r); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) recordNACK(resp *discoveryv3.DiscoveryResponse, err error) {
	c.status.NACKs = append(c.status.NACKs, NACK{Type: shortType(resp.GetTypeUrl()), Version: resp.GetVersionInfo(),
		Nonce: resp.GetNonce(), Error: err.Error(), Time: time.Now()})
	if len(c.status.NACKs) > maxNACKs {
		c.status.NACKs = c.status.NACKs[len(c.status.NACKs)-maxNACKs:]
	}
}

// followUps returns the subscription changes a new listener or cluster set calls for:
// a request for the route configurations (or endpoints) now needed, sent with the last
// nonce of that type as the protocol asks. Resources no longer needed are forgotten.
func (c *Client) followUps(t string) []*discoveryv3.DiscoveryRequest {
	var dep string
	var want []string
	switch t {
	case ListenerType:
		dep, want = RouteType, config.RouteNames(c.listeners)
		for name := range c.routes {
			if !slices.Contains(want, name) {
				delete(c.routes, name)
			}
		}
	case ClusterType:
		dep, want = EndpointType, slices.Compact(config.EDSNames(c.clusters))
		for name := range c.endpoints {
			if !slices.Contains(want, name) {
				delete(c.endpoints, name)
			}
		}
	default:
		return nil
	}
	if slices.Equal(want, c.names[dep]) {
		return nil
	}
	c.names[dep] = want
	return []*discoveryv3.DiscoveryRequest{c.request(dep, c.version(dep), c.nonces[dep], want)}
}

func (c *Client) version(t string) string {
	switch t {
	case ListenerType:
		return c.versions.Listeners
	case ClusterType:
		return c.versions.Clusters
	case RouteType:
		return c.versions.Routes
	case EndpointType:
		return c.versions.Endpoints
	}
	return ""
}

func (c *Client) snapshot() *config.Snapshot {
	return config.Build(c.listeners, copyMap(c.routes), c.clusters, copyMap(c.endpoints), c.versions)
}

func copyMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// decode unpacks the resources of a response into fresh messages made by newMsg; istiod
// may wrap each in a discovery Resource.
func decode[M proto.Message](resp *discoveryv3.DiscoveryResponse, newMsg func() M) ([]M, error) {
	var out []M
	for i, a := range resp.GetResources() {
		var wrapped discoveryv3.Resource
		if a.MessageIs(&wrapped) {
			if err := a.UnmarshalTo(&wrapped); err != nil {
				return nil, fmt.Errorf("resources[%d]: %v", i, err)
			}
			a = wrapped.GetResource()
		}
		m := newMsg()
		if err := anypb.UnmarshalTo(a, m, proto.UnmarshalOptions{}); err != nil {
			return nil, fmt.Errorf("resources[%d]: %v", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// applyListeners replaces the listener set (state of the world: absent means removed).
func (c *Client) applyListeners(resp *discoveryv3.DiscoveryResponse) error {
	ls, err := decode(resp, func() *listenerv3.Listener { return &listenerv3.Listener{} })
	if err != nil {
		return err
	}
	next := map[string]*config.Listener{}
	for _, l := range ls {
		pl, err := config.ParseListener(l)
		if err != nil {
			return fmt.Errorf("listener %s: %w", l.GetName(), err)
		}
		next[l.GetName()] = pl
	}
	c.listeners, c.versions.Listeners = next, resp.GetVersionInfo()
	return nil
}

// applyClusters replaces the cluster set.
func (c *Client) applyClusters(resp *discoveryv3.DiscoveryResponse) error {
	cs, err := decode(resp, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
	if err != nil {
		return err
	}
	next := map[string]*config.Cluster{}
	for _, cl := range cs {
		pc, err := config.ParseCluster(cl)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", cl.GetName(), err)
		}
		next[cl.GetName()] = pc
	}
	c.clusters, c.versions.Clusters = next, resp.GetVersionInfo()
	return nil
}

// applyRoutes merges route configurations by name (a response may carry only some).
func (c *Client) applyRoutes(resp *discoveryv3.DiscoveryResponse) error {
	rcs, err := decode(resp, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
	if err != nil {
		return err
	}
	for _, rc := range rcs {
		if err := route.Check(rc); err != nil {
			return fmt.Errorf("route configuration %s: %w", rc.GetName(), err)
		}
	}
	for _, rc := range rcs {
		c.routes[rc.GetName()] = rc
	}
	c.versions.Routes = resp.GetVersionInfo()
	return nil
}

// applyEndpoints merges endpoint assignments by cluster name.
func (c *Client) applyEndpoints(resp *discoveryv3.DiscoveryResponse) error {
	clas, err := decode(resp, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} })
	if err != nil {
		return err
	}
	for _, cla := range clas {
		if err := config.CheckEndpoints(cla); err != nil {
			return fmt.Errorf("endpoints of %s: %w", cla.GetClusterName(), err)
		}
	}
	for _, cla := range clas {
		c.endpoints[cla.GetClusterName()] = cla
	}
	c.versions.Endpoints = resp.GetVersionInfo()
	return nil
}

func shortType(t string) string {
	return map[string]string{ListenerType: "LDS", ClusterType: "CDS", RouteType: "RDS", EndpointType: "EDS"}[t]
}
