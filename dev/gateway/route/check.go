package route

import (
	"fmt"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"meshloop.dev/gateway/fieldcheck"
)

// W and H abbreviate the two policies in the tables below.
const (
	W = fieldcheck.Walk
	H = fieldcheck.Whole
)

// rules lists every route configuration field this package honours. Fields marked
// "harmless" are accepted without being implemented because they cannot change an answer:
//   - name, metadata, decorator, tracing, stat_prefix: names, tracing and statistics only.
//   - validate_clusters: istiod sets false; a missing cluster is answered at request time (NC).
//   - max_direct_response_body_size_bytes: a limit on configuration size, not on answers.
//   - hash_policy: used only by ring-hash and Maglev load balancing, which clusters may not use.
//   - priority: routing priority picks circuit breaker thresholds, which are not enforced
//     and must be unlimited (see the cluster rules).
//   - retry_back_off, host_selection_retry_max_attempts: the timing and persistence of retries.
//   - google_re2: a deprecated, empty marker.
//   - upgrade_configs: read by the gateway, not by routing (it decides whether an Upgrade
//     request, such as a WebSocket, is passed through).
var rules = fieldcheck.Rules{
	"envoy.config.route.v3.RouteConfiguration": {
		"name": H, "virtual_hosts": W, "validate_clusters": H, "most_specific_header_mutations_wins": H,
		"ignore_port_in_host_matching": H, "max_direct_response_body_size_bytes": H,
		"request_headers_to_add": W, "request_headers_to_remove": H,
		"response_headers_to_add": W, "response_headers_to_remove": H,
	},
	"envoy.config.route.v3.VirtualHost": {
		"name": H, "domains": H, "routes": W, "require_tls": H, "retry_policy": W,
		"include_request_attempt_count": H, "typed_per_filter_config": H, "metadata": H,
		"request_headers_to_add": W, "request_headers_to_remove": H,
		"response_headers_to_add": W, "response_headers_to_remove": H,
	},
	"envoy.config.route.v3.Route": {
		"name": H, "match": W, "route": W, "redirect": W, "direct_response": W, "metadata": H,
		"decorator": H, "tracing": H, "stat_prefix": H, "typed_per_filter_config": H,
		"request_headers_to_add": W, "request_headers_to_remove": H,
		"response_headers_to_add": W, "response_headers_to_remove": H,
	},
	"envoy.config.route.v3.RouteMatch": {
		"prefix": H, "path": H, "safe_regex": W, "path_separated_prefix": H, "case_sensitive": H,
		"headers": W, "query_parameters": W,
	},
	"envoy.config.route.v3.HeaderMatcher": {
		"name": H, "exact_match": H, "safe_regex_match": W, "range_match": H, "present_match": H,
		"prefix_match": H, "suffix_match": H, "contains_match": H, "string_match": W,
		"invert_match": H, "treat_missing_header_as_empty": H,
	},
	"envoy.config.route.v3.QueryParameterMatcher": {"name": H, "string_match": W, "present_match": H},
	"envoy.type.matcher.v3.StringMatcher": {
		"exact": H, "prefix": H, "suffix": H, "contains": H, "safe_regex": W, "ignore_case": H,
	},
	"envoy.type.matcher.v3.RegexMatcher":            {"regex": H, "google_re2": H},
	"envoy.type.matcher.v3.RegexMatchAndSubstitute": {"pattern": W, "substitution": H},
	"envoy.config.route.v3.RouteAction": {
		"cluster": H, "weighted_clusters": W, "cluster_not_found_response_code": H,
		"prefix_rewrite": H, "regex_rewrite": W, "host_rewrite_literal": H, "timeout": H,
		"retry_policy": W, "max_grpc_timeout": H, "max_stream_duration": W, "hash_policy": H,
		"priority": H, "upgrade_configs": H,
	},
	"envoy.config.route.v3.RouteAction.MaxStreamDuration": {"max_stream_duration": H, "grpc_timeout_header_max": H},
	"envoy.config.route.v3.WeightedCluster":               {"clusters": W, "total_weight": H},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight": {
		"name": H, "weight": H, "host_rewrite_literal": H,
		"request_headers_to_add": W, "request_headers_to_remove": H,
		"response_headers_to_add": W, "response_headers_to_remove": H,
	},
	"envoy.config.route.v3.RetryPolicy": {
		"retry_on": H, "num_retries": H, "per_try_timeout": H, "retry_host_predicate": W,
		"host_selection_retry_max_attempts": H, "retriable_status_codes": H, "retry_back_off": H,
	},
	"envoy.config.route.v3.RetryPolicy.RetryHostPredicate": {"name": H, "typed_config": H},
	"envoy.config.route.v3.RedirectAction": {
		"scheme_redirect": H, "https_redirect": H, "host_redirect": H, "port_redirect": H,
		"path_redirect": H, "prefix_rewrite": H, "regex_rewrite": W, "response_code": H, "strip_query": H,
	},
	"envoy.config.route.v3.DirectResponseAction": {"status": H, "body": W},
	"envoy.config.core.v3.DataSource":            {"inline_string": H, "inline_bytes": H},
	"envoy.config.core.v3.HeaderValueOption": {
		"header": W, "append": H, "append_action": H, "keep_empty_value": H,
	},
	"envoy.config.core.v3.HeaderValue": {"key": H, "value": H, "raw_value": H},
	// Fault injection (typed_per_filter_config "envoy.filters.http.fault").
	"envoy.extensions.filters.http.fault.v3.HTTPFault":    {"delay": W, "abort": W},
	"envoy.extensions.filters.common.fault.v3.FaultDelay": {"fixed_delay": H, "percentage": H},
	"envoy.extensions.filters.http.fault.v3.FaultAbort":   {"http_status": H, "grpc_status": H, "percentage": H},
	"envoy.config.route.v3.FilterConfig":                  {"config": H, "disabled": H},
}

// Check returns nil when every field set in rc is one this package honours with Envoy's
// semantics, else an error naming the first field that is not (the gateway NACKs the
// configuration with it), such as
// `virtual_hosts[0].routes[1].route.request_mirror_policies: field not supported by this gateway`.
func Check(rc *routev3.RouteConfiguration) error {
	if err := rules.Check(rc, ""); err != nil {
		return err
	}
	seen := map[string]string{}
	for i, vh := range rc.GetVirtualHosts() {
		p := fmt.Sprintf("virtual_hosts[%d]", i)
		for _, d := range vh.GetDomains() {
			if prev, dup := seen[strings.ToLower(d)]; dup {
				return fmt.Errorf("%s.domains: %q is also a domain of %s", p, d, prev)
			}
			seen[strings.ToLower(d)] = p
		}
		if err := checkVirtualHost(vh, p); err != nil {
			return err
		}
	}
	return checkValues(rc)
}

func checkVirtualHost(vh *routev3.VirtualHost, path string) error {
	if vh.GetRequireTls() != routev3.VirtualHost_NONE {
		return fmt.Errorf("%s.require_tls: only NONE is supported", path)
	}
	if err := checkFilterConfigs(vh.GetTypedPerFilterConfig(), path); err != nil {
		return err
	}
	if err := checkRetry(vh.GetRetryPolicy(), path+".retry_policy"); err != nil {
		return err
	}
	for j, r := range vh.GetRoutes() {
		if err := checkRoute(r, fmt.Sprintf("%s.routes[%d]", path, j)); err != nil {
			return err
		}
	}
	return nil
}

func checkRoute(r *routev3.Route, path string) error {
	if r.GetAction() == nil {
		return fmt.Errorf("%s: a route needs route, redirect or direct_response", path)
	}
	if r.GetMatch().GetPathSpecifier() == nil {
		return fmt.Errorf("%s.match: no path specifier (prefix, path, safe_regex or path_separated_prefix)", path)
	}
	if err := checkFilterConfigs(r.GetTypedPerFilterConfig(), path); err != nil {
		return err
	}
	a := r.GetRoute()
	if a == nil {
		return nil
	}
	if a.GetCluster() == "" && a.GetWeightedClusters() == nil {
		return fmt.Errorf("%s.route: cluster or weighted_clusters is required", path)
	}
	if msd := a.GetMaxStreamDuration().GetMaxStreamDuration(); msd.AsDuration() != 0 {
		return fmt.Errorf("%s.route.max_stream_duration.max_stream_duration: only 0 (none) is supported", path)
	}
	return checkRetry(a.GetRetryPolicy(), path+".route.retry_policy")
}

func checkRetry(p *routev3.RetryPolicy, path string) error {
	for _, on := range strings.Split(p.GetRetryOn(), ",") {
		if on = strings.TrimSpace(on); on == "" {
			continue
		}
		if _, ok := RetryOn[on]; !ok {
			return fmt.Errorf("%s.retry_on: condition %q is not supported", path, on)
		}
	}
	for i, pred := range p.GetRetryHostPredicate() {
		if pred.GetName() != "envoy.retry_host_predicates.previous_hosts" {
			return fmt.Errorf("%s.retry_host_predicate[%d]: %q is not supported", path, i, pred.GetName())
		}
	}
	return nil
}

// checkValues rejects values the gateway would read differently from Envoy: regular
// expressions that do not compile, and header values with `%` commands (Envoy expands
// them; only the `%%` escape is understood here).
func checkValues(rc *routev3.RouteConfiguration) error {
	return fieldcheck.Visit(rc, "", func(m protoreflect.Message, path string) error {
		switch v := m.Interface().(type) {
		case *matcherv3.RegexMatcher:
			if _, err := regexp.Compile(v.GetRegex()); err != nil {
				return fmt.Errorf("%s.regex: %v", path, err)
			}
		case *corev3.HeaderValue:
			if strings.Contains(strings.ReplaceAll(v.GetValue(), "%%", ""), "%") {
				return fmt.Errorf("%s.value: %%-commands are not supported: %q", path, v.GetValue())
			}
		}
		return nil
	})
}

// checkFilterConfigs accepts only the fault filter's per-route configuration.
func checkFilterConfigs(cfgs map[string]*anypb.Any, path string) error {
	for name, a := range cfgs {
		p := fmt.Sprintf("%s.typed_per_filter_config[%q]", path, name)
		if name != FaultFilter {
			return fmt.Errorf("%s: filter not supported by this gateway", p)
		}
		var fc routev3.FilterConfig
		if a.MessageIs(&fc) {
			if err := a.UnmarshalTo(&fc); err != nil {
				return fmt.Errorf("%s: %v", p, err)
			}
			if err := rules.Check(&fc, p); err != nil {
				return err
			}
			p, a = p+".config", fc.GetConfig()
		}
		hf, err := faultConfig(a)
		if err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		if err := rules.Check(hf, p); err != nil {
			return err
		}
	}
	return nil
}
