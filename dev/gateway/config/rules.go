package config

import "meshloop.dev/gateway/fieldcheck"

const (
	w = fieldcheck.Walk
	h = fieldcheck.Whole
)

// listenerRules and hcmRules: the Listener and connection manager fields a gateway's HTTP
// listener may set. Accepted as harmless (they do not change answers): names, metadata,
// statistics and access logs, tracing, buffer limits, timeouts of idle connections and
// streams, drain and close timing, HTTP/1 and HTTP/2 codec options, client certificate
// forwarding (there is no TLS here), request ID extensions and internal address ranges
// (which only decide whether internal x-envoy-* headers are trusted).
var listenerRules = fieldcheck.Rules{
	"envoy.config.listener.v3.Listener": {
		"name": h, "address": w, "filter_chains": w, "traffic_direction": h, "metadata": h,
		"per_connection_buffer_limit_bytes": h, "access_log": h, "stat_prefix": h,
		"continue_on_listener_filters_timeout": h, "listener_filters_timeout": h,
		"bind_to_port": h, "max_connections_to_accept_per_socket_event": h,
	},
	"envoy.config.core.v3.Address":       {"socket_address": w},
	"envoy.config.core.v3.SocketAddress": {"address": h, "port_value": h, "protocol": h, "ipv4_compat": h},
	"envoy.config.listener.v3.FilterChain": {
		"filters": w, "name": h, "metadata": h,
	},
	"envoy.config.listener.v3.Filter": {"name": h, "typed_config": h},
}

var hcmRules = fieldcheck.Rules{
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"codec_type": h, "stat_prefix": h, "rds": w, "http_filters": h, "tracing": h,
		"common_http_protocol_options": h, "http_protocol_options": h, "http2_protocol_options": h,
		"server_name": h, "server_header_transformation": h, "max_request_headers_kb": h,
		"stream_idle_timeout": h, "request_headers_timeout": h, "drain_timeout": h,
		"delayed_close_timeout": h, "access_log": h, "access_log_options": h,
		"use_remote_address": h, "xff_num_trusted_hops": h, "internal_address_config": h,
		"generate_request_id": h, "preserve_external_request_id": h,
		"forward_client_cert_details": h, "set_current_client_cert_details": h,
		"upgrade_configs": h, "normalize_path": h, "merge_slashes": h,
		"path_with_escaped_slashes_action": h, "request_id_extension": h,
		"stream_error_on_invalid_http_message": h, "proxy_100_continue": h,
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds": {
		"config_source": h, "route_config_name": h,
	},
}

// routerRules: the router filter's fields. start_child_span and upstream_log only trace and log.
var routerRules = fieldcheck.Rules{
	"envoy.extensions.filters.http.router.v3.Router": {
		"suppress_envoy_headers": h, "start_child_span": h, "upstream_log": h, "dynamic_stats": h,
	},
}

// clusterRules: the Cluster fields accepted. Harmless: names, metadata, statistics,
// alt_stat_name, DNS refresh settings, TCP keepalive and buffer limits, connection pool idle
// timeouts and per-connection request limits (they recycle connections, not answers),
// istiod's upstream network filters (peer metadata exchange for telemetry), locality
// weighting (weights only matter between localities; istiod gives one per zone) and
// upstream_http_protocol_options (SNI and Host checks for TLS, which is not used).
var clusterRules = fieldcheck.Rules{
	"envoy.config.cluster.v3.Cluster": {
		"name": h, "type": h, "eds_cluster_config": h, "connect_timeout": h, "lb_policy": h,
		"load_assignment": h, "circuit_breakers": h, "common_lb_config": w, "http2_protocol_options": h,
		"typed_extension_protocol_options": h, "transport_socket": h, "transport_socket_matches": h,
		"metadata": h, "alt_stat_name": h, "filters": h, "dns_lookup_family": h, "dns_refresh_rate": h,
		"respect_dns_ttl": h, "upstream_connection_options": h, "cleanup_interval": h,
		"per_connection_buffer_limit_bytes": h, "max_requests_per_connection": h,
		"track_cluster_stats": h, "dns_jitter": h, "least_request_lb_config": h, "round_robin_lb_config": h,
	},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig": {
		"healthy_panic_threshold": h, "locality_weighted_lb_config": h,
	},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
		"explicit_http_config": h, "use_downstream_protocol_config": h,
		"common_http_protocol_options": h, "upstream_http_protocol_options": h,
	},
}

// claRules: the ClusterLoadAssignment fields accepted. Harmless: localities (names only),
// health check settings of an endpoint (this gateway does no active health checking;
// istiod's health_status is what counts), hostnames, and the overprovisioning factor
// (it matters only between priorities, and only priority 0 is accepted).
var claRules = fieldcheck.Rules{
	"envoy.config.endpoint.v3.ClusterLoadAssignment":        {"cluster_name": h, "endpoints": w, "policy": w},
	"envoy.config.endpoint.v3.ClusterLoadAssignment.Policy": {"overprovisioning_factor": h},
	"envoy.config.endpoint.v3.LocalityLbEndpoints": {
		"locality": h, "lb_endpoints": w, "load_balancing_weight": h, "priority": h,
	},
	"envoy.config.endpoint.v3.LbEndpoint": {
		"endpoint": w, "health_status": h, "metadata": h, "load_balancing_weight": h,
	},
	"envoy.config.endpoint.v3.Endpoint":  {"address": w, "health_check_config": h, "hostname": h},
	"envoy.config.core.v3.Address":       {"socket_address": w},
	"envoy.config.core.v3.SocketAddress": {"address": h, "port_value": h, "protocol": h, "ipv4_compat": h},
}
