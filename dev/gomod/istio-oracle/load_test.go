package oracle_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/config"
	kubelib "istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/log"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// input is what one scenario's files hold, ready for the discovery server.
type input struct {
	configs []config.Config
	kube    []runtime.Object
	// vs gives the VirtualServices by "ns/name", to read rule indexes and gateway references.
	vs map[string]*config.Config
	// rejected: objects Istio's validation refuses, "kind ns/name: reason".
	rejected []string
	// kubeKey identifies the Kubernetes objects: scenarios with the same key can share a
	// discovery server, only their Istio configs differ.
	kubeKey string
}

// scenarioSeq makes every scenario's creation times distinct from every other's, so a
// shared discovery server can tell a scenario's VirtualServices from the previous one's.
var scenarioSeq atomic.Int64

// defaultNamespace is what meshloop gives objects that name no namespace.
const defaultNamespace = "default"

// ruleNamePrefix names the unnamed http rules so that the rule index can be read back from
// the Envoy route name (Envoy route names are the VirtualService rule names).
const ruleNamePrefix = "oracle-rule-"

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

func silenceIstioLogs() {
	for _, s := range log.Scopes() {
		s.SetOutputLevel(log.NoneLevel)
	}
}

// load reads the files (directories recursively, *.yaml, *.yml, *.json) in a stable order.
// Istio kinds are validated one by one, as the admission webhook would on apply: an invalid
// object is left out and listed, the rest take part.
func load(paths []string) (*input, error) {
	files, err := expand(paths)
	if err != nil {
		return nil, err
	}
	in := &input{vs: map[string]*config.Config{}}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(scenarioSeq.Add(1)) * time.Hour)
	kube := sha256.New()
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range docSeparator.Split(string(raw), -1) {
			isKube, err := in.addDoc(f, doc, base)
			if err != nil {
				return nil, err
			}
			if isKube {
				kube.Write([]byte(doc))
			}
		}
	}
	in.kubeKey = hex.EncodeToString(kube.Sum(nil))
	in.kube = append(in.kube, gatewayDeployments(in.kube)...)
	in.kube = append(in.kube, synthesize(in.kube)...)
	return in, nil
}

func expand(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			ext := filepath.Ext(path)
			if !d.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") &&
				filepath.Base(path) != "requests.json" && filepath.Base(path) != "meshloop.yaml" && !strings.HasPrefix(filepath.Base(path), "expect") {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// addDoc sorts one YAML document into Istio configs or Kubernetes objects. Every Istio
// object gets a creation time in file order (the order meshloop applies them in, which is
// the order Istio merges VirtualServices of one host in) and the cluster domain.
func (in *input) addDoc(file, doc string, base time.Time) (kube bool, err error) {
	if strings.TrimSpace(stripComments(doc)) == "" {
		return false, nil
	}
	var tm typeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return false, fmt.Errorf("%s: %v", file, err)
	}
	if tm.Kind == "" {
		return false, nil
	}
	ns := tm.Metadata.Namespace
	if ns == "" {
		ns = defaultNamespace
	}
	if strings.HasPrefix(tm.APIVersion, "networking.istio.io/") {
		cfgs, _, err := crd.ParseInputs(doc)
		if err != nil {
			in.rejected = append(in.rejected, fmt.Sprintf("%s %s/%s: %v", tm.Kind, ns, tm.Metadata.Name, err))
			return false, nil
		}
		for i := range cfgs {
			c := cfgs[i]
			c.Namespace = ns
			c.Domain = "cluster.local"
			c.CreationTimestamp = base.Add(time.Duration(len(in.configs)) * time.Second)
			if vs, ok := c.Spec.(*networking.VirtualService); ok {
				nameRules(vs)
				in.vs[c.Namespace+"/"+c.Name] = &c
			}
			in.configs = append(in.configs, c)
		}
		return false, nil
	}
	obj, _, err := kubelib.IstioCodec.UniversalDeserializer().Decode([]byte(doc), nil, nil)
	if err != nil {
		// Kinds the codec does not know (CRDs of other projects) take no part in routing.
		return false, nil
	}
	if m, ok := obj.(interface{ GetNamespace() string }); ok && m.GetNamespace() == "" {
		if s, ok := obj.(interface{ SetNamespace(string) }); ok {
			s.SetNamespace(defaultNamespace)
		}
	}
	asApplied(obj)
	in.kube = append(in.kube, obj)
	return true, nil
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// nameRules gives every unnamed http rule the name ruleNamePrefix+index; named rules keep
// their names (ruleIndex reads both back).
func nameRules(vs *networking.VirtualService) {
	for i, h := range vs.Http {
		if h.Name == "" {
			h.Name = fmt.Sprintf("%s%d", ruleNamePrefix, i)
		}
	}
}

// ruleIndex finds the index of the http rule that produced an Envoy route named `name`
// (`rule` or `rule.match`), or -1.
func ruleIndex(vs *networking.VirtualService, name string) int {
	for i, h := range vs.Http {
		if name == h.Name {
			return i
		}
		for _, m := range h.Match {
			if m.Name != "" && name == h.Name+"."+m.Name {
				return i
			}
		}
	}
	return -1
}
