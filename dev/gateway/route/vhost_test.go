package route

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// rcWith builds a route configuration with one virtual host per domain list, named after
// its first domain.
func rcWith(ignorePort bool, domains ...[]string) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: "http.80", IgnorePortInHostMatching: ignorePort}
	for _, ds := range domains {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: ds[0], Domains: ds})
	}
	return rc
}

func vhName(vh *routev3.VirtualHost) string {
	if vh == nil {
		return "<none>"
	}
	return vh.GetName()
}

// Envoy's search order: exact, then suffix wildcards (longest first), then prefix wildcards
// (longest first), then "*".
func TestSelectVirtualHostSearchOrder(t *testing.T) {
	rc := rcWith(true,
		[]string{"*"},
		[]string{"foo.example.com"},
		[]string{"*.example.com"},
		[]string{"*.bar.example.com"},
		[]string{"foo.*"},
		[]string{"foo.example.*"},
	)
	cases := map[string]string{
		"foo.example.com":     "foo.example.com",   // exact beats every wildcard
		"x.example.com":       "*.example.com",     // suffix
		"x.bar.example.com":   "*.bar.example.com", // longest suffix wins
		"foo.example.org":     "foo.example.*",     // longest prefix wins
		"foo.other":           "foo.*",             // prefix
		"x.bar.example.foo.*": "*",
		"other.net":           "*", // the default
	}
	for host, want := range cases {
		if got := vhName(SelectVirtualHost(rc, host)); got != want {
			t.Errorf("host %q: got %s, want %s", host, got, want)
		}
	}
}

// A suffix wildcard beats a prefix wildcard even when the prefix is longer.
func TestSelectVirtualHostSuffixBeatsPrefix(t *testing.T) {
	rc := rcWith(true, []string{"very.long.prefix.*"}, []string{"*.com"})
	if got := vhName(SelectVirtualHost(rc, "very.long.prefix.com")); got != "*.com" {
		t.Fatalf("got %s, want *.com", got)
	}
}

// The wildcard stands for at least one character: *.example.com does not serve example.com.
func TestSelectVirtualHostWildcardNeedsACharacter(t *testing.T) {
	rc := rcWith(true, []string{"*.example.com"}, []string{"api.*"})
	if got := SelectVirtualHost(rc, "example.com"); got != nil {
		t.Errorf("example.com matched %s", vhName(got))
	}
	if got := SelectVirtualHost(rc, "api."); got != nil {
		t.Errorf("api. matched %s (the wildcard must match a character)", vhName(got))
	}
}

func TestSelectVirtualHostNoneWithoutStar(t *testing.T) {
	rc := rcWith(true, []string{"goapp.dev"})
	if got := SelectVirtualHost(rc, "other.dev"); got != nil {
		t.Fatalf("got %s, want none (404 NR)", vhName(got))
	}
}

func TestSelectVirtualHostCaseInsensitive(t *testing.T) {
	rc := rcWith(true, []string{"GoApp.Dev"}, []string{"*.Example.COM"})
	if got := vhName(SelectVirtualHost(rc, "GOAPP.dev")); got != "GoApp.Dev" {
		t.Errorf("exact: got %s", got)
	}
	if got := vhName(SelectVirtualHost(rc, "A.EXAMPLE.com")); got != "*.Example.COM" {
		t.Errorf("suffix: got %s", got)
	}
}

// With ignore_port_in_host_matching (istiod sets it for gateways) the port is dropped;
// without it, host:port is compared as a whole.
func TestSelectVirtualHostPort(t *testing.T) {
	if got := vhName(SelectVirtualHost(rcWith(true, []string{"goapp.dev"}), "goapp.dev:8080")); got != "goapp.dev" {
		t.Errorf("ignore port: got %s", got)
	}
	if got := SelectVirtualHost(rcWith(false, []string{"goapp.dev"}), "goapp.dev:8080"); got != nil {
		t.Errorf("port kept: got %s, want none", vhName(got))
	}
	if got := vhName(SelectVirtualHost(rcWith(false, []string{"goapp.dev:*"}), "goapp.dev:8080")); got != "goapp.dev:*" {
		t.Errorf("port kept, prefix wildcard: got %s", got)
	}
}

func TestStripPort(t *testing.T) {
	cases := map[string]string{
		"a.b:80": "a.b", "a.b": "a.b", "[::1]:80": "[::1]", "[::1]": "[::1]", "::1": "::1",
		"a.b:": "a.b:", "a.b:x": "a.b:x",
	}
	for in, want := range cases {
		if got := StripPort(in); got != want {
			t.Errorf("StripPort(%q) = %q, want %q", in, got, want)
		}
	}
}
