package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"meshloop.dev/gateway/config"
)

// pools holds one HTTP transport (connection pool) per upstream protocol and connect timeout.
type pools struct {
	mu sync.Mutex
	m  map[poolKey]*http.Transport
}

type poolKey struct {
	http2   bool
	connect time.Duration
}

func (p *pools) get(c *config.Cluster) *http.Transport {
	k := poolKey{http2: c.HTTP2, connect: c.ConnectTimeout}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.m[k]; ok {
		return t
	}
	if p.m == nil {
		p.m = map[poolKey]*http.Transport{}
	}
	d := &net.Dialer{Timeout: k.connect, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:         func(ctx context.Context, n, a string) (net.Conn, error) { return d.DialContext(ctx, n, a) },
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     time.Hour, // istiod's default upstream idle timeout
		// A proxy passes bodies and encodings through untouched.
		DisableCompression: true,
	}
	if k.http2 {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	p.m[k] = t
	return t
}

func (p *pools) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.m {
		t.CloseIdleConnections()
	}
}
