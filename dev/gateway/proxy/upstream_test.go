package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"meshloop.dev/gateway/config"
)

// istiodRetries is istiod's default retry policy.
func istiodRetries(a *routev3.RouteAction) *routev3.RouteAction {
	a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
		NumRetries: wrapperspb.UInt32(2), RetriableStatusCodes: []uint32{503},
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts"}}}
	return a
}

func TestConnectFailureWithoutRetryIs503(t *testing.T) {
	_, addr := serve(t, []*routev3.Route{rt("/", toCluster("c"))}, cluster("c", deadAddr(t)))
	resp, body := do(t, addr, "GET", "goapp.dev", "/")
	if resp.StatusCode != 503 || !strings.HasPrefix(body, "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// With istiod's retry policy a refused connection or a 503 is retried on another endpoint,
// so every request reaches the healthy one, whichever endpoint the first try picks.
func TestRetriesGoToAnotherHost(t *testing.T) {
	for name, bad := range map[string]string{"refused": deadAddr(t), "503": app(t, "overloaded", 503, nil)} {
		_, addr := serve(t, []*routev3.Route{rt("/", istiodRetries(toCluster("c")))}, cluster("c", bad, app(t, "ok", 200, nil)))
		for i := 0; i < 6; i++ {
			if resp, body := do(t, addr, "GET", "goapp.dev", "/"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%s, request %d: %d %q", name, i, resp.StatusCode, body)
			}
		}
	}
}

// When every try fails with a retriable status, the last answer is relayed.
func TestRetriesExhaustedRelayLastAnswer(t *testing.T) {
	_, addr := serve(t, []*routev3.Route{rt("/", istiodRetries(toCluster("c")))}, cluster("c", app(t, "busy", 503, nil)))
	resp, body := do(t, addr, "GET", "goapp.dev", "/")
	if resp.StatusCode != 503 || body != "busy" || resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// An endpoint that istiod marks for mTLS cannot be reached by this gateway: 503 UF.
func TestTLSEndpointFails(t *testing.T) {
	c := cluster("c", app(t, "v1", 200, nil))
	c.Endpoints[0].TLS = true
	_, addr := serve(t, []*routev3.Route{rt("/", toCluster("c"))}, c)
	resp, body := do(t, addr, "GET", "goapp.dev", "/")
	if resp.StatusCode != 503 || !strings.Contains(body, "mTLS") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// Envoy's panic mode: with fewer healthy endpoints than the threshold, all are used.
func TestPanicMode(t *testing.T) {
	c := cluster("c", app(t, "v1", 200, nil))
	c.Endpoints[0].Healthy = false
	p, addr := serve(t, []*routev3.Route{rt("/", toCluster("c"))}, c)
	resp, body := do(t, addr, "GET", "goapp.dev", "/")
	expect(t, resp, body, 200, "v1")
	c2 := *c
	c2.PanicPercent = 0
	p.Apply(snapshot([]*routev3.Route{rt("/", toCluster("c"))}, &c2))
	resp, body = do(t, addr, "GET", "goapp.dev", "/")
	expect(t, resp, body, 503, "no healthy upstream")
}

// A port that leaves the configuration stops accepting connections.
func TestListenerClosesWhenRemoved(t *testing.T) {
	p, addr := serve(t, []*routev3.Route{rt("/", toCluster("c"))}, cluster("c", app(t, "v1", 200, nil)))
	p.Apply(&config.Snapshot{Complete: true})
	if len(p.Bound()) != 0 {
		t.Fatalf("still bound: %v", p.Bound())
	}
	// Shutdown closes the listening socket before returning from its first step, but it
	// runs in the background: wait for the refusal, which must come.
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
	}
}

// An Upgrade request is passed through when the listener allows its type, else 403.
func TestUpgrade(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // answer 101, then echo one line
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				fmt.Fprint(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				line, _ := br.ReadString('\n')
				fmt.Fprint(c, "echo "+line)
			}()
		}
	}()
	_, addr := serve(t, []*routev3.Route{rt("/", toCluster("c"))}, cluster("c", ln.Addr().String()))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: goapp.dev\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(c, "hello\n")
	if line, _ := br.ReadString('\n'); line != "echo hello\n" {
		t.Fatalf("after upgrade: %q", line)
	}
	resp2, body := do(t, addr, "GET", "goapp.dev", "/", "Connection", "Upgrade", "Upgrade", "h2c-not-allowed")
	expect(t, resp2, body, 403, "")
}
