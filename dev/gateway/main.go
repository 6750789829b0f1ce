// Command gateway stands in for the Istio ingress gateway's Envoy where Envoy cannot run:
// it connects to istiod's xDS as the gateway Pod, and serves HTTP on the listeners istiod
// gives it, routing as Envoy does for what istiod generates (see package route). It is not
// Envoy: what it implements and what it rejects (NACKs) is listed in README.md.
//
//	gateway --xds 127.0.0.1:15010 --pod istio-ingress-0 --ip 10.250.0.2 \
//	        [--namespace istio-ingress] [--labels istio=ingress,app=istio-ingress] \
//	        [--bind 0.0.0.0] [--port-map 80=18080] [--admin 127.0.0.1:15000] [--ready-file F]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"meshloop.dev/gateway/proxy"
	"meshloop.dev/gateway/xds"
)

type options struct {
	xdsAddr, admin, bind, readyFile string
	id                              xds.Identity
	portMap                         map[uint32]uint32
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var o options
	var labels, portMap string
	fs.StringVar(&o.xdsAddr, "xds", "", "istiod's plaintext xDS address, host:port (required)")
	fs.StringVar(&o.id.Pod, "pod", "", "name of the gateway Pod this process poses as (required)")
	fs.StringVar(&o.id.Namespace, "namespace", "istio-ingress", "namespace of the gateway Pod")
	fs.StringVar(&o.id.IP, "ip", "", "IP address of the gateway Pod (required)")
	fs.StringVar(&labels, "labels", "istio=ingress,app=istio-ingress", "labels of the gateway Pod, k=v,k=v")
	fs.StringVar(&o.bind, "bind", "0.0.0.0", "address the listener ports bind on")
	fs.StringVar(&portMap, "port-map", "", "listener port to local port, e.g. 80=18080,443=18443")
	fs.StringVar(&o.admin, "admin", "", "admin address (GET /ready, GET /config), e.g. 127.0.0.1:15000")
	fs.StringVar(&o.readyFile, "ready-file", "", "file written (atomically) once the first configuration is served")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for name, v := range map[string]string{"--xds": o.xdsAddr, "--pod": o.id.Pod, "--ip": o.id.IP} {
		if v == "" {
			return o, fmt.Errorf("%s is required", name)
		}
	}
	if net.ParseIP(o.id.IP) == nil {
		return o, fmt.Errorf("--ip %q: not an IP address", o.id.IP)
	}
	var err error
	if o.id.Labels, err = xds.ParseLabels(labels); err != nil {
		return o, fmt.Errorf("--labels: %v", err)
	}
	if o.portMap, err = proxy.ParsePortMap(portMap); err != nil {
		return o, fmt.Errorf("--port-map: %v", err)
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("gateway stopped", "err", err)
		os.Exit(1)
	}
}

// run serves until ctx ends: the xDS client feeds the proxy; the admin server reports.
func run(ctx context.Context, o options, log *slog.Logger) error {
	p := proxy.New(o.bind, o.portMap, log)
	defer p.Close()
	st := newState(p, o.readyFile, log)
	client := xds.New(o.xdsAddr, o.id.Node(), st.publish, log)
	st.client = client
	if o.admin != "" {
		ln, err := net.Listen("tcp", o.admin)
		if err != nil {
			return fmt.Errorf("--admin: %w", err)
		}
		srv := &http.Server{Handler: st.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("admin listening", "addr", ln.Addr().String())
	}
	return client.Run(ctx)
}
