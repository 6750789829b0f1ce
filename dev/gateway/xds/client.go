package xds

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"meshloop.dev/gateway/config"
)

// Type URLs of the four resource types the gateway asks for, in the order Envoy asks.
const (
	prefix       = "type.googleapis.com/"
	ClusterType  = prefix + "envoy.config.cluster.v3.Cluster"
	EndpointType = prefix + "envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = prefix + "envoy.config.listener.v3.Listener"
	RouteType    = prefix + "envoy.config.route.v3.RouteConfiguration"
)

// Backoff between reconnections: Envoy's gRPC mux defaults (500 ms doubling to 30 s, jittered).
const (
	backoffBase = 500 * time.Millisecond
	backoffMax  = 30 * time.Second
)

// Client keeps one ADS stream to istiod and the configuration it has accepted. The
// accepted configuration outlives the stream: while istiod is away, the last snapshot
// stays published, as Envoy keeps serving its last configuration.
type Client struct {
	addr    string
	node    *corev3.Node
	publish func(*config.Snapshot)
	log     *slog.Logger

	mu        sync.Mutex // guards the fields below
	listeners map[string]*config.Listener
	routes    map[string]*routev3.RouteConfiguration
	clusters  map[string]*config.Cluster
	endpoints map[string]*endpointv3.ClusterLoadAssignment
	versions  config.Versions
	nonces    map[string]string   // type URL → nonce of the last response
	names     map[string][]string // type URL → subscribed names (RDS, EDS)
	status    Status
}

// Status is what the admin endpoint shows about the stream.
type Status struct {
	Connected  bool      `json:"connected"`
	Connects   int       `json:"connects"`    // streams opened so far
	LastError  string    `json:"last_error"`  // why the last stream ended
	LastChange time.Time `json:"last_change"` // when a response was last accepted
	NACKs      []NACK    `json:"nacks"`       // the most recent rejections, newest last (at most maxNACKs)
}

// NACK records one rejected response.
type NACK struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Nonce   string    `json:"nonce"`
	Error   string    `json:"error"`
	Time    time.Time `json:"time"`
}

const maxNACKs = 20

// New returns a client for the ADS server at addr; publish receives every new snapshot.
func New(addr string, node *corev3.Node, publish func(*config.Snapshot), log *slog.Logger) *Client {
	return &Client{addr: addr, node: node, publish: publish, log: log,
		listeners: map[string]*config.Listener{}, routes: map[string]*routev3.RouteConfiguration{},
		clusters: map[string]*config.Cluster{}, endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
		nonces: map[string]string{}, names: map[string][]string{}}
}

// Status returns a copy of the stream's status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.NACKs = append([]NACK(nil), s.NACKs...)
	return s
}

// Run keeps a stream open until ctx ends, reconnecting with jittered exponential backoff.
func (c *Client) Run(ctx context.Context) error {
	delay := backoffBase
	for {
		got, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.mu.Lock()
		c.status.Connected, c.status.LastError = false, fmt.Sprint(err)
		c.mu.Unlock()
		if got {
			delay = backoffBase
		}
		wait := delay/2 + rand.N(delay/2+1)
		c.log.Warn("xds stream ended; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		delay = min(2*delay, backoffMax)
	}
}

// session runs one stream; it reports whether any response arrived.
func (c *Client) session(ctx context.Context) (bool, error) {
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	if err := c.subscribeAll(stream); err != nil {
		return false, err
	}
	c.mu.Lock()
	c.status.Connected = true
	c.status.Connects++
	c.mu.Unlock()
	c.log.Info("xds stream open", "addr", c.addr, "node", c.node.GetId())
	got := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			return got, err
		}
		got = true
		if err := c.handle(stream, resp); err != nil {
			return got, err
		}
	}
}

type sender interface {
	Send(*discoveryv3.DiscoveryRequest) error
}

// subscribeAll opens (or reopens) every subscription, with the versions already accepted,
// so that after a reconnection istiod knows what the gateway has.
func (c *Client) subscribeAll(s sender) error {
	c.mu.Lock()
	reqs := []*discoveryv3.DiscoveryRequest{
		c.request(ClusterType, c.versions.Clusters, "", nil),
		c.request(ListenerType, c.versions.Listeners, "", nil),
	}
	if n := c.names[EndpointType]; len(n) > 0 {
		reqs = append(reqs, c.request(EndpointType, c.versions.Endpoints, "", n))
	}
	if n := c.names[RouteType]; len(n) > 0 {
		reqs = append(reqs, c.request(RouteType, c.versions.Routes, "", n))
	}
	c.nonces = map[string]string{}
	c.mu.Unlock()
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) request(typeURL, version, nonce string, names []string) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: typeURL, VersionInfo: version,
		ResponseNonce: nonce, ResourceNames: names}
}
