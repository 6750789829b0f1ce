package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// scenarioRun is one scenario of a comparison, as dev/fidelity.sh lays it out.
type scenarioRun struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"` // corpus or generated
	Files    []string `json:"files"`
	Oracle   string   `json:"oracle"`
	Meshloop string   `json:"meshloop"`
	Check    string   `json:"check"`
	Expect   string   `json:"expect"`
}

// decision holds the fields both tools print for one request.
type decision struct {
	Request        map[string]any `json:"request"`
	Outcome        string         `json:"outcome"`
	Status         *int           `json:"status"`
	Gateway        *string        `json:"gateway"`
	Listener       *string        `json:"listener"`
	ServerPort     *int           `json:"server_port"`
	VirtualService *string        `json:"virtual_service"`
	Rule           *int           `json:"rule"`
	Destinations   []destination  `json:"destinations"`
	Detail         struct {
		Reason string `json:"reason"`
	} `json:"detail"`
}

type destination struct {
	Host             string  `json:"host"`
	Subset           *string `json:"subset"`
	Port             *int    `json:"port"`
	Weight           float64 `json:"weight"`
	HealthyEndpoints *int    `json:"healthy_endpoints"`
	FailsWith        *string `json:"fails_with"`
	At               *string `json:"at"`
	Hops             []struct {
		At *string `json:"at"`
	} `json:"hops"`
}

// expected is one entry of a corpus scenario's expect.json: a difference meshloop makes on
// purpose.
type expected struct {
	Request int      `json:"request"`
	Fields  []string `json:"fields"`
	Reason  string   `json:"reason"`
}

var fields = []string{"outcome", "status", "gateway", "listener", "server_port", "virtual_service", "rule",
	"destinations", "destinations.cluster", "destinations.weight", "destinations.healthy_endpoints"}

func show[T any](p *T) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

func (d destination) cluster() string {
	return fmt.Sprintf("%s|%s|%s", d.Host, show(d.Subset), show(d.Port))
}

func list(ds []destination, f func(destination) string) string {
	var out []string
	for _, d := range ds {
		out = append(out, f(d))
	}
	return "[" + strings.Join(out, " ") + "]"
}

// values renders each compared field of a decision.
func (d decision) values() map[string]string {
	w := func(x destination) string { return fmt.Sprintf("%.2f", math.Round(x.Weight*100)/100) }
	c := func(x destination) string { return x.cluster() }
	h := func(x destination) string { return show(x.HealthyEndpoints) }
	all := func(x destination) string { return c(x) + "@" + w(x) + "/" + h(x) }
	return map[string]string{
		"outcome":                        d.Outcome,
		"status":                         show(d.Status),
		"gateway":                        show(d.Gateway),
		"listener":                       show(d.Listener),
		"server_port":                    show(d.ServerPort),
		"virtual_service":                show(d.VirtualService),
		"rule":                           show(d.Rule),
		"destinations":                   list(d.Destinations, all),
		"destinations.cluster":           list(d.Destinations, c),
		"destinations.weight":            list(d.Destinations, w),
		"destinations.healthy_endpoints": list(d.Destinations, h),
	}
}

type disagreement struct {
	sc       scenarioRun
	req      int
	request  map[string]any
	fields   []string
	ml, or   map[string]string
	expected string
}

type tally struct {
	requests  int
	agree     map[string]int
	scenarios int
	errors    []string
	diffs     []disagreement
}

func newTally() *tally { return &tally{agree: map[string]int{}} }

func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// compare reads every scenario's two outputs and tallies agreement per field.
func compare(runs []scenarioRun, w io.Writer, verbose int) (map[string]*tally, *crossCheck) {
	tallies := map[string]*tally{"corpus": newTally(), "generated": newTally()}
	cc := newCrossCheck()
	for _, sc := range runs {
		t := tallies[sc.Kind]
		t.scenarios++
		var ml, or []decision
		if err := readJSON(sc.Meshloop, &ml); err != nil {
			t.errors = append(t.errors, fmt.Sprintf("%s: meshloop: %v", sc.Name, err))
			continue
		}
		if err := readJSON(sc.Oracle, &or); err != nil {
			var e struct{ Error string }
			_ = readJSON(sc.Oracle, &e)
			t.errors = append(t.errors, fmt.Sprintf("%s: oracle: %v %s", sc.Name, err, e.Error))
			continue
		}
		if len(ml) != len(or) {
			t.errors = append(t.errors, fmt.Sprintf("%s: %d decisions from meshloop, %d from the oracle", sc.Name, len(ml), len(or)))
			continue
		}
		var exp []expected
		if sc.Expect != "" {
			if err := readJSON(sc.Expect, &exp); err != nil {
				t.errors = append(t.errors, fmt.Sprintf("%s: %v", sc.Expect, err))
			}
		}
		for i := range ml {
			t.requests++
			nameRefused(&ml[i], &or[i])
			mv, ov := ml[i].values(), or[i].values()
			var diff []string
			for _, f := range fields {
				if mv[f] == ov[f] {
					t.agree[f]++
				} else {
					diff = append(diff, f)
				}
			}
			if len(diff) > 0 {
				t.diffs = append(t.diffs, disagreement{sc: sc, req: i, request: or[i].Request, fields: diff, ml: mv, or: ov, expected: expectedReason(exp, i, diff)})
			}
		}
		cc.add(sc, ml, or)
	}
	return tallies, cc
}

// nameRefused: istiod writes a backendRef it refuses (to another namespace without a
// ReferenceGrant) as an unnamed cluster (host "", port 0), where meshloop names the backend
// it refused and says it fails with 500; both send nothing there. The oracle's destination takes the
// refused backend's name when meshloop's at the same place fails with no endpoints.
func nameRefused(ml, or *decision) {
	if len(ml.Destinations) != len(or.Destinations) {
		return
	}
	for i := range or.Destinations {
		o, m := &or.Destinations[i], ml.Destinations[i]
		refused := m.FailsWith != nil && strings.HasPrefix(*m.FailsWith, "500") &&
			m.HealthyEndpoints != nil && *m.HealthyEndpoints == 0
		if o.Host == "" && o.Port != nil && *o.Port == 0 && refused {
			o.Host, o.Port = m.Host, m.Port
		}
	}
}

func expectedReason(exp []expected, req int, diff []string) string {
	for _, e := range exp {
		if e.Request != req && e.Request != -1 {
			continue
		}
		covered := true
		for _, f := range diff {
			if !contains(e.Fields, f) && !contains(e.Fields, strings.Split(f, ".")[0]) {
				covered = false
			}
		}
		if covered {
			return e.Reason
		}
	}
	return ""
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// report prints the agreement table and the disagreements; it returns false when the
// corpus has an unexpected disagreement or an error, or a generated field is under min.
func report(w io.Writer, tallies map[string]*tally, min float64, show int) bool {
	ok := true
	for _, kind := range []string{"corpus", "generated"} {
		t := tallies[kind]
		if t.scenarios == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: %d scenarios, %d requests\n", kind, t.scenarios, t.requests)
		for _, f := range fields {
			pct := 100 * float64(t.agree[f]) / math.Max(1, float64(t.requests))
			fmt.Fprintf(w, "  %-32s %6.2f%% (%d/%d)\n", f, pct, t.agree[f], t.requests)
			if kind == "generated" && pct < min {
				ok = false
			}
		}
		var exp, unexp []disagreement
		for _, d := range t.diffs {
			if d.expected != "" {
				exp = append(exp, d)
			} else {
				unexp = append(unexp, d)
			}
		}
		outcomes := 0
		for _, d := range unexp {
			if contains(d.fields, "outcome") {
				outcomes++
			}
		}
		fmt.Fprintf(w, "  disagreements: %d unexpected (%d on the outcome), %d expected\n", len(unexp), outcomes, len(exp))
		for _, e := range t.errors {
			fmt.Fprintf(w, "  ERROR %s\n", e)
			ok = false
		}
		if kind == "corpus" && len(unexp) > 0 {
			ok = false
		}
		for _, d := range exp {
			fmt.Fprintf(w, "  expected %s #%d %s: %s\n", d.sc.Name, d.req, strings.Join(d.fields, ","), d.expected)
		}
		sort.SliceStable(unexp, func(i, j int) bool {
			return contains(unexp[i].fields, "outcome") && !contains(unexp[j].fields, "outcome")
		})
		for i, d := range unexp {
			if i >= show {
				fmt.Fprintf(w, "  ... %d more\n", len(unexp)-show)
				break
			}
			printDisagreement(w, d)
		}
	}
	return ok
}

func printDisagreement(w io.Writer, d disagreement) {
	req, _ := json.Marshal(d.request)
	fmt.Fprintf(w, "\n  DIFF %s request #%d %s\n", d.sc.Name, d.req, req)
	for _, f := range d.fields {
		fmt.Fprintf(w, "    %-32s meshloop %s | istio %s\n", f, d.ml[f], d.or[f])
	}
	fmt.Fprintf(w, "    files: %s\n", strings.Join(d.sc.Files, " "))
	for _, doc := range relevantDocs(d) {
		fmt.Fprintf(w, "    | %s\n", strings.ReplaceAll(strings.TrimSpace(doc), "\n", "\n    | "))
	}
}

// relevantDocs minimizes what a disagreement shows: of the scenario's own routing files,
// only the documents either side's decision names (Gateway, VirtualService) and the
// DestinationRules (the workloads of base.yaml are the same for every scenario).
func relevantDocs(d disagreement) []string {
	names := map[string]bool{}
	for _, v := range []map[string]string{d.ml, d.or} {
		for _, f := range []string{"gateway", "virtual_service"} {
			if v[f] != "null" {
				names[v[f]] = true
			}
		}
	}
	var out []string
	for _, f := range d.sc.Files {
		if strings.HasSuffix(f, "base.yaml") {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, doc := range strings.Split(string(raw), "\n---") {
			ns, name := docName(doc)
			if names[ns+"/"+name] || strings.Contains(doc, "kind: DestinationRule") || len(names) == 0 {
				out = append(out, doc)
			}
		}
	}
	return out
}

func docName(doc string) (string, string) {
	var ns, name string
	for _, l := range strings.Split(doc, "\n") {
		if i := strings.Index(l, "name: "); i >= 0 && name == "" && strings.Contains(l, "metadata") {
			rest := l[i+6:]
			name = strings.TrimSpace(strings.Split(rest, ",")[0])
			if j := strings.Index(l, "namespace: "); j >= 0 {
				ns = strings.TrimSpace(strings.TrimRight(l[j+11:], "} "))
			}
		}
	}
	return ns, strings.Trim(name, "{} ")
}
