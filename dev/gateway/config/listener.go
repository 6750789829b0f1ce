// Package config turns the Listener, Cluster and ClusterLoadAssignment resources istiod
// sends into the small, checked structures the proxy serves from, and assembles them with
// the route configurations into immutable snapshots. Like package route it rejects (names)
// every field it does not honour, so the xDS client can NACK instead of ignoring it.
package config

import (
	"fmt"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// HCMFilter is the network filter every HTTP listener of a gateway has.
const HCMFilter = "envoy.filters.network.http_connection_manager"

// Listener is an HTTP listener: a port, and the connection manager's settings that change
// answers.
type Listener struct {
	Name      string
	Port      uint32
	RouteName string // the RDS route configuration that serves it

	ServerName      string // `server` header of answers; "" when passed through
	ServerOverwrite bool   // overwrite the upstream's `server` header (Envoy's default)
	NormalizePath   bool
	MergeSlashes    bool
	UseRemoteAddr   bool          // set x-forwarded-for from the peer (edge proxy)
	GenerateID      bool          // add x-request-id when absent
	Upgrades        []string      // Upgrade types (lower case) passed through, e.g. websocket
	StreamIdle      time.Duration // informational
	FaultFilter     bool          // the fault filter is in the chain (per-route faults apply)
	SuppressEnvoyHd bool          // router's suppress_envoy_headers: no x-envoy-* headers added
}

// ParseListener checks a Listener and extracts what the proxy needs.
func ParseListener(l *listenerv3.Listener) (*Listener, error) {
	if err := listenerRules.Check(l, ""); err != nil {
		return nil, err
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil || sa.GetPortValue() == 0 {
		return nil, fmt.Errorf("address: a TCP socket address with port_value is required")
	}
	if len(l.GetFilterChains()) != 1 {
		return nil, fmt.Errorf("filter_chains: exactly one filter chain is supported, got %d", len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	if len(fc.GetFilters()) != 1 || fc.GetFilters()[0].GetName() != HCMFilter {
		return nil, fmt.Errorf("filter_chains[0].filters: only one %s filter is supported", HCMFilter)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return nil, fmt.Errorf("filter_chains[0].filters[0].typed_config: %v", err)
	}
	out, err := parseHCM(&hcm, "filter_chains[0].filters[0].typed_config")
	if err != nil {
		return nil, err
	}
	out.Name, out.Port = l.GetName(), sa.GetPortValue()
	return out, nil
}

func parseHCM(h *hcmv3.HttpConnectionManager, path string) (*Listener, error) {
	if err := hcmRules.Check(h, path); err != nil {
		return nil, err
	}
	if h.GetRds().GetRouteConfigName() == "" {
		return nil, fmt.Errorf("%s.rds.route_config_name: required (inline route_config is not supported)", path)
	}
	if a := h.GetPathWithEscapedSlashesAction(); a != hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT &&
		a != hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
		return nil, fmt.Errorf("%s.path_with_escaped_slashes_action: only KEEP_UNCHANGED is supported", path)
	}
	out := &Listener{
		RouteName:       h.GetRds().GetRouteConfigName(),
		ServerName:      h.GetServerName(),
		ServerOverwrite: h.GetServerHeaderTransformation() == hcmv3.HttpConnectionManager_OVERWRITE,
		NormalizePath:   h.GetNormalizePath().GetValue(),
		MergeSlashes:    h.GetMergeSlashes(),
		UseRemoteAddr:   h.GetUseRemoteAddress().GetValue(),
		GenerateID:      h.GetGenerateRequestId() == nil || h.GetGenerateRequestId().GetValue(),
		StreamIdle:      h.GetStreamIdleTimeout().AsDuration(),
	}
	if out.ServerName == "" {
		out.ServerName = "envoy"
	}
	if h.GetServerHeaderTransformation() == hcmv3.HttpConnectionManager_APPEND_IF_ABSENT {
		out.ServerOverwrite = false
	} else if h.GetServerHeaderTransformation() == hcmv3.HttpConnectionManager_PASS_THROUGH {
		out.ServerName = ""
	}
	for _, u := range h.GetUpgradeConfigs() {
		if u.GetEnabled() == nil || u.GetEnabled().GetValue() {
			out.Upgrades = append(out.Upgrades, lower(u.GetUpgradeType()))
		}
	}
	if err := parseHTTPFilters(h, out, path); err != nil {
		return nil, err
	}
	return out, nil
}
