// Package proxy serves HTTP on the listeners of the current configuration snapshot, as
// Envoy does for what istiod generates for an ingress gateway: it routes each request with
// package route and answers locally (404, redirects, direct responses, faults, 503/504) or
// forwards it to an endpoint of the chosen cluster. A new snapshot takes effect for the
// next request, atomically; listeners open and close as the snapshot's ports change.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"meshloop.dev/gateway/config"
)

// Proxy owns the listening sockets and the upstream connection pools.
type Proxy struct {
	bind    string            // address the listener ports bind on
	portMap map[uint32]uint32 // listener port → local port
	log     *slog.Logger

	snap     atomic.Pointer[config.Snapshot]
	balancer balancer
	pools    pools

	mu      sync.Mutex // guards servers and bound
	servers map[uint32]*http.Server
	bound   map[uint32]string // listener port → local address it is bound on (or "error: ...")
}

// New returns a proxy that binds listener ports on bind, translated through portMap.
func New(bind string, portMap map[uint32]uint32, log *slog.Logger) *Proxy {
	return &Proxy{bind: bind, portMap: portMap, log: log,
		servers: map[uint32]*http.Server{}, bound: map[uint32]string{}}
}

// Snapshot returns the configuration being served (nil before the first).
func (p *Proxy) Snapshot() *config.Snapshot { return p.snap.Load() }

// Bound returns, for each listener port, the address it is served on (or the bind error).
func (p *Proxy) Bound() map[uint32]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[uint32]string, len(p.bound))
	for k, v := range p.bound {
		out[k] = v
	}
	return out
}

// Apply swaps in a new snapshot and opens or closes listeners to match its ports.
func (p *Proxy) Apply(s *config.Snapshot) {
	p.snap.Store(s)
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[uint32]bool{}
	for _, l := range s.Listeners {
		want[l.Port] = true
		if _, ok := p.servers[l.Port]; !ok {
			p.listen(l.Port)
		}
	}
	for port, srv := range p.servers {
		if !want[port] {
			// In-flight requests finish on the old configuration; the port stops accepting.
			go shutdown(srv)
			delete(p.servers, port)
			delete(p.bound, port)
		}
	}
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

func (p *Proxy) localAddr(port uint32) string {
	local := port
	if m, ok := p.portMap[port]; ok {
		local = m
	}
	return net.JoinHostPort(p.bind, strconv.FormatUint(uint64(local), 10))
}

// listen binds a listener port; a failure is recorded (and retried on the next snapshot).
func (p *Proxy) listen(port uint32) {
	addr := p.localAddr(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.bound[port] = "error: " + err.Error()
		p.log.Error("cannot bind listener", "port", port, "addr", addr, "err", err)
		return
	}
	srv := &http.Server{Handler: &handler{p: p, port: port}, ReadHeaderTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)}
	p.servers[port], p.bound[port] = srv, ln.Addr().String()
	p.log.Info("listening", "port", port, "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("listener stopped", "port", port, "err", err)
		}
	}()
}

// Close stops every listener at once (in-flight requests are cut).
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for port, srv := range p.servers {
		_ = srv.Close()
		delete(p.servers, port)
	}
	p.pools.closeIdle()
}

// ParsePortMap reads `80=18080,443=18443`.
func ParsePortMap(s string) (map[uint32]uint32, error) {
	out := map[uint32]uint32{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(kv), "=")
		from, err1 := strconv.ParseUint(a, 10, 16)
		to, err2 := strconv.ParseUint(b, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("port map entry %q: expected LISTENER_PORT=LOCAL_PORT", kv)
		}
		out[uint32(from)] = uint32(to)
	}
	return out, nil
}
