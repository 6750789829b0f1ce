package proxy

import (
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"meshloop.dev/gateway/config"
	"meshloop.dev/gateway/route"
)

// handler serves one listener port from whatever snapshot is current.
type handler struct {
	p    *Proxy
	port uint32
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snap := h.p.snap.Load()
	l := listenerFor(snap, h.port)
	if l == nil { // the listener is being removed: Envoy would no longer accept
		panic(http.ErrAbortHandler)
	}
	rw := &replyWriter{ResponseWriter: w, l: l}
	prepareRequest(r, l)
	req := route.Request{Host: r.Host, Path: requestPath(r, l), Method: r.Method, Scheme: "http", Headers: r.Header}
	// The connection manager refuses an Upgrade it is not configured for, before routing.
	if isUpgrade(r) && !upgradeAllowed(r, l) {
		rw.local(http.StatusForbidden, "", nil)
		return
	}
	d := route.Evaluate(snap.Routes[l.RouteName], req)
	if d.Action == route.NoVirtualHost || d.Action == route.NoRoute {
		rw.local(http.StatusNotFound, "", nil)
		return
	}
	if l.FaultFilter && h.injectFault(rw, r, d) {
		return
	}
	switch d.Action {
	case route.Redirect:
		rw.local(d.Status, "", func(hd http.Header) {
			hd.Set("Location", d.Location)
			d.ApplyResponseHeaders(hd, route.Cluster{})
		})
	case route.DirectResponse:
		rw.local(d.Status, d.Body, func(hd http.Header) { d.ApplyResponseHeaders(hd, route.Cluster{}) })
	case route.Forward:
		h.p.forward(rw, r, req, d, snap)
	}
}

func listenerFor(s *config.Snapshot, port uint32) *config.Listener {
	if s == nil {
		return nil
	}
	for _, l := range s.Listeners {
		if l.Port == port {
			return l
		}
	}
	return nil
}

// requestPath is the :path as the client sent it (Envoy routes on the raw, still
// percent-encoded path), normalised as the connection manager is configured to.
func requestPath(r *http.Request, l *config.Listener) string {
	p := r.RequestURI
	if !strings.HasPrefix(p, "/") {
		p = r.URL.RequestURI() // absolute-form request line
	}
	return route.NormalizePath(p, l.NormalizePath, l.MergeSlashes)
}

// prepareRequest applies the connection manager's request header handling that happens
// before routing: x-forwarded-for (use_remote_address), x-forwarded-proto and x-request-id.
func prepareRequest(r *http.Request, l *config.Listener) {
	if l.UseRemoteAddr {
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
				r.Header.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+ip)
			} else {
				r.Header.Set("X-Forwarded-For", ip)
			}
		}
		r.Header.Set("X-Forwarded-Proto", "http")
	} else if r.Header.Get("X-Forwarded-Proto") == "" {
		r.Header.Set("X-Forwarded-Proto", "http")
	}
	if l.GenerateID && r.Header.Get("X-Request-Id") == "" {
		r.Header.Set("X-Request-Id", uuid())
	}
}

func uuid() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && headerHasToken(r.Header, "Connection", "upgrade")
}

func upgradeAllowed(r *http.Request, l *config.Listener) bool {
	t := strings.ToLower(r.Header.Get("Upgrade"))
	for _, u := range l.Upgrades {
		if u == t {
			return true
		}
	}
	return false
}

// injectFault applies the route's fault: a delay, then maybe an abort (answered here).
func (h *handler) injectFault(rw *replyWriter, r *http.Request, d route.Decision) bool {
	f := d.Fault
	if f == nil {
		return false
	}
	if f.Delays(rand.Uint64()) {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			panic(http.ErrAbortHandler)
		}
	}
	if !f.Aborts(rand.Uint64()) {
		return false
	}
	if f.AbortGRPC != nil {
		rw.local(http.StatusOK, "", func(hd http.Header) {
			hd.Set("Content-Type", "application/grpc")
			hd.Set("Grpc-Status", fmt.Sprint(*f.AbortGRPC))
			hd.Set("Grpc-Message", "fault filter abort")
		})
		return true
	}
	rw.local(f.AbortStatus, "fault filter abort", nil)
	return true
}

// replyWriter writes answers with the headers every answer of the listener carries.
type replyWriter struct {
	http.ResponseWriter
	l *config.Listener
}

// local sends a reply the gateway makes itself (Envoy's "local reply"): text/plain when
// there is a body, and the listener's server header.
func (rw *replyWriter) local(status int, body string, edit func(http.Header)) {
	hd := rw.Header()
	if body != "" {
		hd.Set("Content-Type", "text/plain")
	}
	hd.Set("Content-Length", fmt.Sprint(len(body)))
	if edit != nil {
		edit(hd)
	}
	if rw.l.ServerName != "" {
		hd.Set("Server", rw.l.ServerName)
	}
	rw.WriteHeader(status)
	_, _ = rw.Write([]byte(body))
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
