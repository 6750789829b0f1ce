package oracle_test

import (
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/kube/krt"
	"istio.io/istio/pkg/test"
	"istio.io/istio/pkg/test/util/retry"
)

// worker holds the discovery server its scenarios share. Starting a server (informers, the
// first push) costs most of a scenario's time; the scenarios of a run share their
// Kubernetes objects (tests/fidelity/base.yaml), so only the Istio configs are swapped.
type worker struct {
	t       *testing.T
	fresh   bool
	s       *xds.FakeDiscoveryServer
	scope   *scope
	kubeKey string
	applied []config.Config
}

// scope is the worker's test as Istio's fakes see it, with the cleanups of one discovery
// server kept apart: they run when the worker moves on to another server (a server holds
// informers, goroutines and their memory), not only when the whole batch ends.
type scope struct {
	*testing.T
	cleanups []func()
}

func (s *scope) Cleanup(f func()) { s.cleanups = append(s.cleanups, f) }

func (s *scope) close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = nil
	// The fake registers every krt collection it makes with the global debug handler (for
	// istiod's debug dump), which would keep each stopped server's collections alive; a fresh
	// handler lets them go (servers still running only lose their debug dump).
	krt.GlobalDebugHandler = new(krt.DebugHandler)
}

// close stops the worker's discovery server.
func (w *worker) close() {
	if w.scope != nil {
		w.scope.close()
	}
	w.s, w.scope = nil, nil
}

// server returns a discovery server holding exactly the scenario's objects.
func (w *worker) server(t *testing.T, in *input) *xds.FakeDiscoveryServer {
	if w.fresh {
		return newServer(t, in)
	}
	if w.s == nil || w.kubeKey != in.kubeKey {
		w.close()
		w.scope = &scope{T: w.t}
		w.s, w.kubeKey, w.applied = newServer(w.scope, in), in.kubeKey, in.configs
		return w.s
	}
	swapConfigs(t, w.s, w.applied, in.configs)
	w.applied = in.configs
	return w.s
}

func newServer(t test.Failer, in *input) *xds.FakeDiscoveryServer {
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		Configs:            in.configs,
		KubernetesObjects:  in.kube,
		KubeClientModifier: bundleVersions,
	})
	s.EnsureSynced(t)
	return s
}

// swapConfigs replaces the previous scenario's Istio configs with the next one's, waits
// until the VirtualService index has them (it is built asynchronously), then forces a push
// and waits for it, so the push context the proxy is set up with is the next scenario's.
func swapConfigs(t *testing.T, s *xds.FakeDiscoveryServer, prev, next []config.Config) {
	store := s.Store()
	for _, c := range prev {
		_ = store.Delete(c.GroupVersionKind, c.Name, c.Namespace, nil)
	}
	for _, c := range next {
		if _, err := store.Create(c); err != nil {
			t.Fatalf("%s %s/%s: %v", c.GroupVersionKind.Kind, c.Namespace, c.Name, err)
		}
	}
	want := map[string]time.Time{}
	for _, c := range next {
		if _, ok := c.Spec.(*networking.VirtualService); ok {
			want[c.Namespace+"/"+c.Name] = c.CreationTimestamp
		}
	}
	vsc := s.Env().VirtualServiceController
	retry.UntilOrFail(t, func() bool {
		got := vsc.MergedVirtualServices()
		if len(got) != len(want) {
			return false
		}
		for _, m := range got {
			ts, ok := want[m.Namespace+"/"+m.Name]
			if !ok || !ts.Equal(m.CreationTimestamp) {
				return false
			}
		}
		return true
	}, retry.Delay(time.Millisecond), retry.Timeout(30*time.Second))
	s.Discovery.ConfigUpdate(&model.PushRequest{Forced: true, Reason: model.NewReasonStats(model.GlobalUpdate)})
	s.EnsureSynced(t)
}
