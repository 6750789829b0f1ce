package config

import (
	"fmt"
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// HTTPOptionsKey is where a cluster keeps its upstream HTTP protocol options.
const HTTPOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Cluster is an upstream cluster as the proxy uses it.
type Cluster struct {
	Name           string
	Type           string // EDS, STATIC, STRICT_DNS or LOGICAL_DNS
	EDSName        string // the ClusterLoadAssignment to ask for (EDS only)
	ConnectTimeout time.Duration
	LB             string  // ROUND_ROBIN, LEAST_REQUEST or RANDOM
	HTTP2          bool    // speak HTTP/2 (h2c) to the endpoints
	PanicPercent   float64 // below this share of healthy endpoints, use them all (Envoy's panic mode)

	tlsMatches []tlsMatch // transport_socket_matches, in order
	defaultTLS bool       // the cluster's own transport_socket is TLS

	// Endpoints: from load_assignment (STATIC, DNS), or from EDS, filled in by the snapshot.
	Endpoints []Endpoint
}

// Endpoint is one upstream address.
type Endpoint struct {
	Address string `json:"address"` // host:port
	Healthy bool   `json:"healthy"` // health_status HEALTHY or UNKNOWN
	Weight  uint32 `json:"weight"`
	// TLS: the cluster's transport socket for this endpoint is TLS (istiod's mTLS for Pods
	// labelled security.istio.io/tlsMode=istio). This gateway has no certificates, so such
	// an endpoint fails like an upstream that cannot be reached (503 UF).
	TLS bool `json:"tls,omitempty"`
}

type tlsMatch struct {
	match map[string]string
	tls   bool
}

// ParseCluster checks a Cluster and extracts what the proxy needs.
func ParseCluster(c *clusterv3.Cluster) (*Cluster, error) {
	if err := clusterRules.Check(c, ""); err != nil {
		return nil, err
	}
	out := &Cluster{Name: c.GetName(), Type: c.GetType().String(), LB: c.GetLbPolicy().String(),
		ConnectTimeout: 5 * time.Second, PanicPercent: 50}
	switch c.GetType() {
	case clusterv3.Cluster_EDS:
		out.EDSName = c.GetEdsClusterConfig().GetServiceName()
		if out.EDSName == "" {
			out.EDSName = c.GetName()
		}
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
	default:
		return nil, fmt.Errorf("type: %s clusters are not supported", c.GetType())
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_LEAST_REQUEST, clusterv3.Cluster_RANDOM:
	default:
		return nil, fmt.Errorf("lb_policy: %s is not supported", c.GetLbPolicy())
	}
	if t := c.GetConnectTimeout(); t != nil {
		out.ConnectTimeout = t.AsDuration()
	}
	if p := c.GetCommonLbConfig().GetHealthyPanicThreshold(); p != nil {
		out.PanicPercent = p.GetValue()
	}
	if err := checkCircuitBreakers(c.GetCircuitBreakers()); err != nil {
		return nil, err
	}
	var err error
	if out.HTTP2, err = http2(c); err != nil {
		return nil, err
	}
	if err := parseTransport(c, out); err != nil {
		return nil, err
	}
	if la := c.GetLoadAssignment(); la != nil {
		if out.Endpoints, err = out.ParseEndpoints(la, "load_assignment"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// unlimited is the smallest circuit breaker threshold treated as "no limit": istiod's
// defaults are 2^32-1, and the gateway does not count connections or requests.
const unlimited = 1 << 31

func checkCircuitBreakers(cb *clusterv3.CircuitBreakers) error {
	for i, t := range cb.GetThresholds() {
		for name, v := range map[string]uint32{
			"max_connections": t.GetMaxConnections().GetValue(), "max_pending_requests": t.GetMaxPendingRequests().GetValue(),
			"max_requests": t.GetMaxRequests().GetValue(), "max_retries": t.GetMaxRetries().GetValue(),
		} {
			if v != 0 && v < unlimited {
				return fmt.Errorf("circuit_breakers.thresholds[%d].%s: %d; limits are not enforced by this gateway", i, name, v)
			}
		}
	}
	return nil
}

// http2 says whether the cluster speaks HTTP/2 to its endpoints (istiod's choice for
// http2 and grpc ports); "use the downstream protocol" is HTTP/1.1 here, as clients are.
func http2(c *clusterv3.Cluster) (bool, error) {
	if c.GetHttp2ProtocolOptions() != nil {
		return true, nil
	}
	a, ok := c.GetTypedExtensionProtocolOptions()[HTTPOptionsKey]
	if !ok {
		return false, nil
	}
	var o httpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&o); err != nil {
		return false, fmt.Errorf("typed_extension_protocol_options[%q]: %v", HTTPOptionsKey, err)
	}
	if err := clusterRules.Check(&o, fmt.Sprintf("typed_extension_protocol_options[%q]", HTTPOptionsKey)); err != nil {
		return false, err
	}
	return o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil, nil
}

func parseTransport(c *clusterv3.Cluster, out *Cluster) error {
	isTLS := func(ts *corev3.TransportSocket, path string) (bool, error) {
		switch ts.GetName() {
		case "", "envoy.transport_sockets.raw_buffer", "raw_buffer":
			return false, nil
		case "envoy.transport_sockets.tls", "tls":
			return true, nil
		}
		return false, fmt.Errorf("%s.name: transport socket %q is not supported", path, ts.GetName())
	}
	var err error
	if out.defaultTLS, err = isTLS(c.GetTransportSocket(), "transport_socket"); err != nil {
		return err
	}
	for i, m := range c.GetTransportSocketMatches() {
		tm := tlsMatch{match: map[string]string{}}
		if tm.tls, err = isTLS(m.GetTransportSocket(), fmt.Sprintf("transport_socket_matches[%d].transport_socket", i)); err != nil {
			return err
		}
		for k, v := range m.GetMatch().GetFields() {
			tm.match[k] = structString(v)
		}
		out.tlsMatches = append(out.tlsMatches, tm)
	}
	return nil
}

// endpointTLS applies the transport socket matches to an endpoint's metadata.
func (c *Cluster) endpointTLS(md *corev3.Metadata) bool {
	fields := md.GetFilterMetadata()["envoy.transport_socket_match"].GetFields()
	for _, m := range c.tlsMatches {
		ok := true
		for k, v := range m.match {
			ok = ok && fields[k] != nil && structString(fields[k]) == v
		}
		if ok {
			return m.tls
		}
	}
	return c.defaultTLS
}

func structString(v *structpb.Value) string {
	if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
		return s.StringValue
	}
	return v.String()
}

// ParseEndpoints checks a ClusterLoadAssignment and returns its endpoints for c.
func (c *Cluster) ParseEndpoints(cla *endpointv3.ClusterLoadAssignment, path string) ([]Endpoint, error) {
	if err := claRules.Check(cla, path); err != nil {
		return nil, err
	}
	var out []Endpoint
	for i, le := range cla.GetEndpoints() {
		if le.GetPriority() != 0 {
			return nil, fmt.Errorf("%s.endpoints[%d].priority: only priority 0 is supported (no locality failover)", path, i)
		}
		for j, lb := range le.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || sa.GetPortValue() == 0 {
				return nil, fmt.Errorf("%s.endpoints[%d].lb_endpoints[%d].endpoint.address: a socket address with port_value is required", path, i, j)
			}
			hs := lb.GetHealthStatus()
			w := lb.GetLoadBalancingWeight().GetValue()
			if w == 0 {
				w = 1
			}
			out = append(out, Endpoint{
				Address: joinHostPort(sa.GetAddress(), sa.GetPortValue()),
				Healthy: hs == corev3.HealthStatus_HEALTHY || hs == corev3.HealthStatus_UNKNOWN,
				Weight:  w,
				TLS:     c.endpointTLS(lb.GetMetadata()),
			})
		}
	}
	return out, nil
}

func joinHostPort(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}
