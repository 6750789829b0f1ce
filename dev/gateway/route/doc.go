// Package route evaluates Envoy's HTTP routing for the route configurations istiod generates
// for an ingress gateway: which virtual host a request lands on, which route matches it, and
// what that route does with it. It is pure: no I/O, no clock, no randomness (callers pass the
// random numbers in), so that the gateway (live requests) and the fidelity oracle (decisions
// on paper) give the same answer for the same configuration.
//
// # API
//
//	SelectVirtualHost(rc, host) *VirtualHost   virtual host for a Host header, or nil (Envoy: 404 NR)
//	Match(vh, req) *Route                      first route of vh matching req, or nil (404 NR)
//	Decide(rc, vh, r, req) Decision            what the matched route does with req
//	Evaluate(rc, req) Decision                 the three steps above in one call
//	Check(rc) error                            nil, or the path of the first field this package
//	                                           cannot honour (the gateway NACKs such a config)
//	NormalizePath(path, normalize, merge) string  the connection manager's path normalisation
//	Decision.Pick(random) Cluster              the weighted cluster a random number selects
//	Decision.AuthorityFor(cluster) string      the upstream :authority after host rewrites
//	Decision.ApplyRequestHeaders(h, cluster)   header changes in Envoy's order (and Response...)
//	RetryPolicy.ShouldRetry(attempt) bool      whether an attempt's outcome is retried
//	Fault.Delays(random), Fault.Aborts(random) whether fault injection hits a request
//
// A Request carries the Host (":authority", as sent, port included), the Path (":path", query
// included), the Method and the other headers. Match uses Envoy's semantics:
//
//   - Virtual hosts: the Host is lower-cased, and its port is dropped when the route
//     configuration says ignore_port_in_host_matching (istiod sets it for gateways). Then, as
//     Envoy searches: an exact domain; else the longest suffix wildcard (`*.example.com`, the
//     `*` matching at least one character); else the longest prefix wildcard (`example.*`);
//     else the `*` virtual host; else none.
//   - Routes are tried in order; the first whose path, headers and query parameters all match wins.
//   - Path: the query string and fragment are removed first. prefix, path (exact) and
//     path_separated_prefix (the prefix, then end of path or `/`) honour case_sensitive
//     (default true); safe_regex must match the whole path.
//   - Headers: names are case-insensitive; several values of one header are joined with ",";
//     `:method`, `:authority`, `:path` and `:scheme` are the pseudo-headers. A header that is
//     absent fails every matcher, inverted or not, except present_match (present_match: false
//     with no invert matches an absent header, and so does present_match: true with invert),
//     unless treat_missing_header_as_empty.
//   - Query parameters: the first value of the parameter, percent-decoded; absent fails.
//
// A Decision has an Action: NoVirtualHost or NoRoute (Envoy answers 404 with an empty body),
// Forward (to Clusters, with weights; Pick chooses one from a random number as Envoy does),
// Redirect (Status and Location) or DirectResponse (Status and Body). For Forward it also
// carries the upstream Path and Authority after rewrites, the route Timeout, the RetryPolicy,
// the Fault to inject and the header changes in the order Envoy applies them
// (ApplyRequestHeaders, ApplyResponseHeaders).
package route
