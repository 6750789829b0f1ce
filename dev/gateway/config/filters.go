package config

import (
	"fmt"
	"strings"

	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// httpFilters are the HTTP filters a gateway's connection manager may have, and why each is
// acceptable:
var httpFilters = map[string]string{
	"envoy.filters.http.router": "implemented: forwards to the route's cluster",
	"envoy.filters.http.fault":  "implemented: per-route delays and aborts",
	// Without a per-route CORS policy (package route rejects one) the filter does nothing.
	"envoy.filters.http.cors": "no effect without a CORS policy",
	// Telemetry: statistics and peer metadata exchange, which do not change answers.
	"istio.stats":                   "statistics only",
	"istio.metadata_exchange":       "telemetry headers only",
	"envoy.filters.http.grpc_stats": "statistics only",
	"istio.alpn":                    "upstream ALPN for mTLS, which is not used",
	"envoy.filters.http.grpc_web":   "acts only on grpc-web requests, which this gateway does not translate",
}

// parseHTTPFilters accepts the filters above and reads the router's settings; any other
// filter (authorization, JWT, Wasm, Lua, rate limits...) is rejected by name.
func parseHTTPFilters(h *hcmv3.HttpConnectionManager, out *Listener, path string) error {
	sawRouter := false
	for i, f := range h.GetHttpFilters() {
		p := fmt.Sprintf("%s.http_filters[%d]", path, i)
		if f.GetDisabled() {
			continue
		}
		if httpFilters[f.GetName()] == "" {
			return fmt.Errorf("%s: HTTP filter %q is not supported by this gateway", p, f.GetName())
		}
		switch f.GetName() {
		case "envoy.filters.http.fault":
			out.FaultFilter = true
		case "envoy.filters.http.router":
			sawRouter = true
			var r routerv3.Router
			if tc := f.GetTypedConfig(); tc != nil {
				if err := tc.UnmarshalTo(&r); err != nil {
					return fmt.Errorf("%s.typed_config: %v", p, err)
				}
			}
			if err := routerRules.Check(&r, p+".typed_config"); err != nil {
				return err
			}
			out.SuppressEnvoyHd = r.GetSuppressEnvoyHeaders()
		}
	}
	if !sawRouter {
		return fmt.Errorf("%s.http_filters: no envoy.filters.http.router", path)
	}
	return nil
}

func lower(s string) string { return strings.ToLower(s) }
