// Package oracle_test is the differential oracle for `meshloop explain`: Istio's own config
// generator (the in-memory discovery server of pilot/test/xds, the code istiod runs) translates
// the routing files into the gateway's xDS, and the requests are decided over that xDS with
// Envoy's route semantics (meshloop.dev/gateway/route, the same matcher dev/gateway serves
// live traffic with).
//
// It is a test binary because Istio's simulation takes a *testing.T. dev/oracle builds it once
// and runs it with ORACLE_BATCH naming a JSON file: a list of scenarios, each
// {"name", "files": [paths], "requests": path, "out": path}. ORACLE_WORKERS workers (default:
// GOMAXPROCS) take scenarios in turn, each as a subtest; a worker keeps one discovery server
// while the scenarios' Kubernetes objects stay the same and swaps only the Istio configs,
// and stops it for a new one when they change (Gateway API objects are Kubernetes objects,
// so every Gateway API scenario has a server of its own) (ORACLE_FRESH=1: a new server for every scenario; ORACLE_DUMP=1 also writes the route
// configurations Istio generated next to each "out", as "out".routes.json). A scenario's decisions are written to
// "out" as a JSON array, or {"error": ...} when the scenario could not run.
package oracle_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
)

// scenario is one entry of ORACLE_BATCH.
type scenario struct {
	Name     string   `json:"name"`
	Files    []string `json:"files"`
	Requests string   `json:"requests"`
	Out      string   `json:"out"`
	// Ingress is the gateway Service as `namespace/name` (meshloop's `ingress` setting);
	// default istio-ingress/istio-ingress.
	Ingress string `json:"ingress,omitempty"`
	// Gateway is the Gateway API Gateway the requests arrive at, `namespace/name`
	// (meshloop's `ingress.gateway`); it takes the place of Ingress.
	Gateway string `json:"gateway,omitempty"`
}

// result is what a scenario's "out" file holds when the scenario could not run.
type result struct {
	Error string `json:"error,omitempty"`
	// Rejected lists the objects Istio's validation refuses (the webhook would reject them
	// on apply), as "kind ns/name: reason"; they take no part in the translation.
	Rejected []string `json:"rejected,omitempty"`
}

func TestOracle(t *testing.T) {
	batch := os.Getenv("ORACLE_BATCH")
	if batch == "" {
		t.Skip("ORACLE_BATCH not set (run through dev/oracle)")
	}
	raw, err := os.ReadFile(batch)
	if err != nil {
		t.Fatal(err)
	}
	var scenarios []scenario
	if err := json.Unmarshal(raw, &scenarios); err != nil {
		t.Fatalf("%s: %v", batch, err)
	}
	silenceIstioLogs()
	work := make(chan scenario)
	go func() {
		for _, sc := range scenarios {
			work <- sc
		}
		close(work)
	}()
	workers := runtime.GOMAXPROCS(0)
	if n, err := strconv.Atoi(os.Getenv("ORACLE_WORKERS")); err == nil && n > 0 {
		workers = n
	}
	for i := range workers {
		t.Run(fmt.Sprintf("worker-%d", i), func(t *testing.T) {
			t.Parallel()
			w := &worker{t: t, fresh: os.Getenv("ORACLE_FRESH") != ""}
			for sc := range work {
				t.Run(sc.Name, func(t *testing.T) { runScenario(t, w, sc) })
			}
			w.close()
		})
	}
}

// runScenario decides every request of one scenario and writes the decisions; whatever
// stops it (a t.Fatal inside Istio's code, a panic) is written as the scenario's error.
func runScenario(t *testing.T, w *worker, sc scenario) {
	done := false
	var rejected []string
	defer func() {
		if done {
			return
		}
		msg := "scenario stopped (see the test log)"
		if r := recover(); r != nil {
			msg = fmt.Sprintf("panic: %v\n%s", r, debug.Stack())
		}
		writeJSON(t, sc.Out, result{Error: msg, Rejected: rejected})
		if msg != "scenario stopped (see the test log)" {
			t.Error(msg)
		}
	}()
	reqs, err := readRequests(sc.Requests)
	if err != nil {
		writeJSON(t, sc.Out, result{Error: err.Error()})
		done = true
		return
	}
	in, err := load(sc.Files)
	if err != nil {
		writeJSON(t, sc.Out, result{Error: err.Error()})
		done = true
		return
	}
	rejected = in.rejected
	env := newEnv(t, w.server(t, in), in, sc)
	out := make([]Decision, 0, len(reqs))
	for _, rq := range reqs {
		out = append(out, env.decide(rq))
	}
	writeJSON(t, sc.Out, out)
	if os.Getenv("ORACLE_DUMP") != "" {
		dumpRoutes(t, sc.Out+".routes.json", env)
	}
	if len(in.rejected) > 0 {
		writeJSON(t, sc.Out+".rejected", result{Rejected: in.rejected})
	}
	done = true
}

// dumpRoutes writes the gateway's route configurations as Istio generated them (Envoy's
// JSON), for reading a decision by hand.
func dumpRoutes(t *testing.T, path string, e *env) {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(e.rds)) {
		raw, err := protojson.Marshal(e.rds[name])
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readRequests(path string) ([]Request, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reqs []Request
	if err := json.Unmarshal(raw, &reqs); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	for i := range reqs {
		reqs[i].fillDefaults()
	}
	return reqs, nil
}

func writeJSON(t *testing.T, path string, v any) {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
