// Command load measures the gateway's data path: requests per second and latency
// percentiles with N concurrent keep-alive connections on loopback, through a proxy serving
// a configuration shaped like istiod's for the sample chart (a 90/10 weighted route to two
// app versions), and, as the anchor in the same run, straight to the same upstreams.
//
//	go run ./cmd/load [-c 64] [-d 10s]
//
// Everything runs in this one process (upstreams, proxy, clients), so the numbers are a
// record of the stand-in's cost on this machine, not a benchmark of Envoy.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"meshloop.dev/gateway/config"
	"meshloop.dev/gateway/proxy"
)

func main() {
	conns := flag.Int("c", 64, "concurrent connections")
	dur := flag.Duration("d", 10*time.Second, "duration of each run")
	flag.Parse()
	v1, v2 := upstream("v1"), upstream("v2")
	p := proxy.New("127.0.0.1", map[uint32]uint32{80: 0}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer p.Close()
	p.Apply(snapshot(v1, v2))
	gw := p.Bound()[80]
	fmt.Printf("%d connections, %s per run, GOMAXPROCS=%d\n", *conns, *dur, runtime.GOMAXPROCS(0))
	for _, run := range []struct{ name, addr string }{{"direct to the upstream (anchor)", v1}, {"through dev/gateway", gw}} {
		r := measure(run.addr, *conns, *dur)
		fmt.Printf("%-32s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n", run.name, r.rps, ms(r.p50), ms(r.p99), r.errors)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// upstream starts an app version that answers a short body, like dev/goapp's /fortune.
func upstream(name string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from "+name+"\n")
	}))
	return ln.Addr().String()
}

func snapshot(v1, v2 string) *config.Snapshot {
	a := &routev3.RouteAction{Timeout: durationpb.New(0), ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
		WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
			{Name: "outbound|80|v1|goapp.dev.svc.cluster.local", Weight: wrapperspb.UInt32(90)},
			{Name: "outbound|80|v2|goapp.dev.svc.cluster.local", Weight: wrapperspb.UInt32(10)}}}}}
	rc := &routev3.RouteConfiguration{Name: "http.80", IgnorePortInHostMatching: true,
		VirtualHosts: []*routev3.VirtualHost{{Name: "goapp.dev:80", Domains: []string{"goapp.dev"}, Routes: []*routev3.Route{
			{Name: "fortune", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/fortune"}},
				Action: &routev3.Route_Route{Route: a}},
			{Name: "default", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: a}}}}}}
	cl := func(name, addr string) *config.Cluster {
		return &config.Cluster{Name: name, Type: "EDS", LB: "LEAST_REQUEST", ConnectTimeout: 10 * time.Second,
			PanicPercent: 50, Endpoints: []config.Endpoint{{Address: addr, Healthy: true, Weight: 1}}}
	}
	return &config.Snapshot{Complete: true, Routes: map[string]*routev3.RouteConfiguration{"http.80": rc},
		Listeners: []*config.Listener{{Name: "0.0.0.0_80", Port: 80, RouteName: "http.80", ServerName: "istio-envoy",
			ServerOverwrite: true, NormalizePath: true, UseRemoteAddr: true, GenerateID: true, FaultFilter: true}},
		Clusters: map[string]*config.Cluster{
			"outbound|80|v1|goapp.dev.svc.cluster.local": cl("outbound|80|v1|goapp.dev.svc.cluster.local", v1),
			"outbound|80|v2|goapp.dev.svc.cluster.local": cl("outbound|80|v2|goapp.dev.svc.cluster.local", v2)}}
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
}

// measure runs conns clients, each on its own keep-alive connection, for d.
func measure(addr string, conns int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
			var mine []time.Duration
			bad := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequest("GET", "http://"+addr+"/fortune", nil)
				req.Host = "goapp.dev"
				resp, err := c.Do(req)
				if err != nil {
					bad++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat, errs = append(lat, mine...), errs+bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	if len(lat) == 0 {
		return result{errors: errs}
	}
	return result{rps: float64(len(lat)) / elapsed.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], errors: errs}
}
