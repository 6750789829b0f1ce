package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"meshloop.dev/gateway/config"
	"meshloop.dev/gateway/proxy"
	"meshloop.dev/gateway/xds"
)

// state joins the xDS client, the proxy and the admin endpoint.
type state struct {
	p         *proxy.Proxy
	client    *xds.Client
	readyFile string
	log       *slog.Logger

	mu    sync.Mutex
	ready bool
}

func newState(p *proxy.Proxy, readyFile string, log *slog.Logger) *state {
	return &state{p: p, readyFile: readyFile, log: log}
}

// publish applies a snapshot; the first complete one, with every port bound, makes the
// gateway ready (and it stays ready, as Envoy does once initialised).
func (s *state) publish(snap *config.Snapshot) {
	s.p.Apply(snap)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready || !snap.Complete || snap.Versions.Listeners == "" || snap.Versions.Clusters == "" {
		return
	}
	bound := s.p.Bound()
	for _, addr := range bound {
		if strings.HasPrefix(addr, "error:") {
			return
		}
	}
	s.ready = true
	s.log.Info("ready", "listeners", len(snap.Listeners), "clusters", len(snap.Clusters))
	if s.readyFile != "" {
		if err := writeAtomic(s.readyFile, readyJSON(bound)); err != nil {
			s.log.Error("cannot write the ready file", "err", err)
		}
	}
}

func readyJSON(bound map[uint32]string) []byte {
	ports := map[string]string{}
	for port, addr := range bound {
		ports[fmt.Sprint(port)] = addr
	}
	b, _ := json.MarshalIndent(map[string]any{"ports": ports}, "", "  ")
	return append(b, '\n')
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (s *state) isReady() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

func (s *state) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !s.isReady() {
			http.Error(w, "no complete configuration from istiod yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.configView())
	})
	return mux
}

// configView is GET /config: what is applied, and the xDS stream's state.
func (s *state) configView() map[string]any {
	snap := s.p.Snapshot()
	out := map[string]any{"ready": s.isReady(), "xds": s.client.Status()}
	if snap == nil {
		return out
	}
	bound := s.p.Bound()
	var listeners []map[string]any
	for _, l := range snap.Listeners {
		listeners = append(listeners, map[string]any{"name": l.Name, "port": l.Port,
			"bound": bound[l.Port], "route_config": l.RouteName})
	}
	routes := map[string]json.RawMessage{}
	for name, rc := range snap.Routes {
		b, _ := protojson.Marshal(rc)
		routes[name] = b
	}
	var clusters []map[string]any
	for _, c := range snap.Clusters {
		healthy := 0
		for _, e := range c.Endpoints {
			if e.Healthy {
				healthy++
			}
		}
		clusters = append(clusters, map[string]any{"name": c.Name, "type": c.Type, "lb_policy": c.LB,
			"http2": c.HTTP2, "endpoints": len(c.Endpoints), "healthy": healthy, "addresses": c.Endpoints})
	}
	sort.Slice(clusters, func(i, j int) bool { return clusters[i]["name"].(string) < clusters[j]["name"].(string) })
	out["versions"], out["complete"] = snap.Versions, snap.Complete
	out["listeners"], out["route_configs"], out["clusters"] = listeners, routes, clusters
	return out
}
