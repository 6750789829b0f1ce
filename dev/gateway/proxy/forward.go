package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"meshloop.dev/gateway/config"
	"meshloop.dev/gateway/route"
)

// retryBodyLimit: a request body up to this size is kept so the request can be retried;
// a larger one is streamed and the request is not retried (Envoy: the buffer limit).
const retryBodyLimit = 1 << 20

// Envoy's default retry back-off: jittered, from 25 ms doubling up to 250 ms.
const (
	retryBase = 25 * time.Millisecond
	retryMax  = 250 * time.Millisecond
)

// Bodies of Envoy's local replies for upstream failures.
const (
	noHealthyUpstream = "no healthy upstream"
	upstreamTimeout   = "upstream request timeout"
	connectFailure    = "remote connection failure, transport failure reason: delayed connect error: Connection refused"
	tlsFailure        = "remote connection failure, transport failure reason: TLS (istio mTLS) to this endpoint is not implemented by this gateway"
	resetFailure      = "connection termination"
)

// try is one attempt at one endpoint.
type try struct {
	resp    *http.Response
	outcome route.Attempt
	reason  string        // reset reason for a reply when no response arrived
	elapsed time.Duration // request sent → response headers
	done    func()        // releases the attempt (per-try timer, load counter)
}

// forward sends the request to the decision's cluster, with retries and timeouts, and
// relays the answer.
func (p *Proxy) forward(rw *replyWriter, r *http.Request, req route.Request, d route.Decision, snap *config.Snapshot) {
	picked, _ := d.Pick(rand.Uint64())
	c := snap.Clusters[picked.Name]
	if c == nil {
		rw.local(d.ClusterNotFoundStatus, "", nil) // Envoy: NC, cluster not found
		return
	}
	eps := candidates(c)
	if len(eps) == 0 {
		rw.local(http.StatusServiceUnavailable, noHealthyUpstream, nil) // Envoy: UH
		return
	}
	if isUpgrade(r) {
		p.upgrade(rw, r, d, picked, c, eps)
		return
	}
	body, replayable, err := readBody(r)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	ctx := r.Context()
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	hdr := upstreamHeaders(r, req, d, picked, rw.l)
	t := p.attempts(ctx, r, d, picked, c, eps, hdr, body, replayable)
	defer t.done()
	if t.resp == nil {
		p.failReply(rw, ctx, t)
		return
	}
	relay(rw, t, d, picked)
}

// attempts tries endpoints until an attempt is not retried, and returns the last one.
func (p *Proxy) attempts(ctx context.Context, r *http.Request, d route.Decision, picked route.Cluster,
	c *config.Cluster, eps []config.Endpoint, hdr http.Header, body []byte, replayable bool,
) try {
	exclude := map[string]bool{}
	budget := uint32(0)
	if d.Retry != nil && replayable {
		budget = d.Retry.NumRetries
	}
	for n := 1; ; n++ {
		ep, _ := p.balancer.pick(c, eps, exclude)
		t := p.attempt(ctx, r, d, picked, c, ep, hdr, body, n)
		if uint32(n) > budget || ctx.Err() != nil || !d.Retry.ShouldRetry(t.outcome) {
			return t
		}
		if t.resp != nil {
			_ = t.resp.Body.Close()
		}
		t.done()
		if d.Retry.OtherHosts {
			exclude[ep.Address] = true
		}
		wait := min(retryBase<<(n-1), retryMax)
		select {
		case <-time.After(rand.N(wait)):
		case <-ctx.Done():
			return try{outcome: route.Attempt{TimedOut: true}, done: func() {}}
		}
	}
}

// attempt sends one request to ep.
func (p *Proxy) attempt(ctx context.Context, r *http.Request, d route.Decision, picked route.Cluster,
	c *config.Cluster, ep config.Endpoint, hdr http.Header, body []byte, n int,
) try {
	if ep.TLS {
		return try{outcome: route.Attempt{ConnectFailed: true}, reason: tlsFailure, done: func() {}}
	}
	tctx, cancel := ctx, context.CancelFunc(func() {})
	if d.Retry != nil && d.Retry.PerTryTimeout > 0 {
		tctx, cancel = context.WithTimeout(ctx, d.Retry.PerTryTimeout)
	}
	out, err := http.NewRequestWithContext(tctx, r.Method, "http://"+ep.Address+d.Path, bodyReader(r, body))
	if err != nil {
		cancel()
		return try{outcome: route.Attempt{Reset: true}, reason: resetFailure, done: func() {}}
	}
	out.Header = hdr.Clone()
	if d.AttemptCount {
		out.Header.Set("X-Envoy-Attempt-Count", strconv.Itoa(n))
	}
	out.Host = d.AuthorityFor(picked)
	out.ContentLength = r.ContentLength
	release := p.balancer.track(c.Name, ep.Address)
	start := time.Now()
	resp, err := p.pools.get(c).RoundTrip(out)
	t := try{resp: resp, elapsed: time.Since(start)}
	t.done = func() { cancel(); release() }
	if err != nil {
		t.resp = nil
		t.outcome, t.reason = classify(err, ctx, tctx)
		return t
	}
	t.outcome = route.Attempt{Status: resp.StatusCode, GRPCStatus: resp.Header.Get("Grpc-Status")}
	return t
}

// classify names why an attempt got no response: the route timeout, the per-try timeout,
// a failed connection, or a connection lost before the response headers.
func classify(err error, rctx, tctx context.Context) (route.Attempt, string) {
	switch {
	case rctx.Err() != nil || tctx.Err() != nil:
		return route.Attempt{TimedOut: true}, upstreamTimeout
	case isDialError(err):
		return route.Attempt{ConnectFailed: true}, connectFailure
	}
	return route.Attempt{Reset: true}, resetFailure
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// failReply answers when the last attempt got no response: 504 when a timeout fired,
// else 503 with Envoy's "upstream connect error" text.
func (p *Proxy) failReply(rw *replyWriter, ctx context.Context, t try) {
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		panic(http.ErrAbortHandler) // the client went away
	}
	if t.outcome.TimedOut {
		rw.local(http.StatusGatewayTimeout, upstreamTimeout, nil)
		return
	}
	rw.local(http.StatusServiceUnavailable,
		"upstream connect error or disconnect/reset before headers. reset reason: "+t.reason, nil)
}

// readBody keeps a body of up to retryBodyLimit bytes; replayable is false for a larger one,
// whose start is kept in body and whose rest is still to be read from r.Body.
func readBody(r *http.Request) (body []byte, replayable bool, err error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true, nil
	}
	body, err = io.ReadAll(io.LimitReader(r.Body, retryBodyLimit+1))
	if err != nil {
		return nil, false, err
	}
	return body, len(body) <= retryBodyLimit, nil
}

func bodyReader(r *http.Request, body []byte) io.Reader {
	if len(body) > retryBodyLimit {
		return io.MultiReader(bytes.NewReader(body), r.Body)
	}
	if body == nil {
		return http.NoBody
	}
	return bytes.NewReader(body)
}

// hopByHop are the headers of one connection, never forwarded.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func stripHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range splitTokens(v) {
			h.Del(name)
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// upstreamHeaders builds the request headers sent upstream: the client's, without
// hop-by-hop headers, with the route's changes and Envoy's x-envoy-* headers.
func upstreamHeaders(r *http.Request, req route.Request, d route.Decision, picked route.Cluster, l *config.Listener) http.Header {
	h := r.Header.Clone()
	stripHopByHop(h)
	d.ApplyRequestHeaders(h, picked)
	if !l.SuppressEnvoyHd {
		if d.PathRewritten {
			h.Set("X-Envoy-Original-Path", req.Path)
		}
		if d.Timeout > 0 {
			h.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(d.Timeout.Milliseconds(), 10))
		}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // send none rather than Go's default
	}
	return h
}

// relay copies the upstream answer to the client, with the route's response header
// changes, the server header and x-envoy-upstream-service-time.
func relay(rw *replyWriter, t try, d route.Decision, picked route.Cluster) {
	defer t.resp.Body.Close()
	hd := rw.Header()
	for k, vs := range t.resp.Header {
		hd[k] = vs
	}
	stripHopByHop(hd)
	d.ApplyResponseHeaders(hd, picked)
	if !rw.l.SuppressEnvoyHd {
		hd.Set("X-Envoy-Upstream-Service-Time", strconv.FormatInt(t.elapsed.Milliseconds(), 10))
	}
	if rw.l.ServerName != "" && (rw.l.ServerOverwrite || hd.Get("Server") == "") {
		hd.Set("Server", rw.l.ServerName)
	}
	rw.WriteHeader(t.resp.StatusCode)
	if err := copyFlushing(rw, t.resp.Body); err != nil {
		// Envoy resets the client stream when the upstream fails (or the route timeout
		// fires) in the middle of a response.
		panic(http.ErrAbortHandler)
	}
}

// copyFlushing copies a body, flushing after every read so streamed answers stream.
func copyFlushing(w http.ResponseWriter, body io.Reader) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("upstream body: %w", err)
		}
	}
}
