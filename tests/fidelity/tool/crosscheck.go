package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The error findings that say a route will fail. Destination findings predict 503 (500 for
// a Gateway API backendRef) for the destination they point at; binding findings predict that
// the object never gets the requests meant for it (404 or refused). The Gateway API's binding
// findings are about one parentRef, not the route, and are not cross-checked.
var (
	destinationCodes = []string{"ML0115", "ML0116", "ML0117", "ML0118", "ML0119", "ML0122", "ML0304", "ML0402",
		"ML0605", "ML0606", "ML0607"}
	bindingCodes = []string{"ML0101", "ML0107", "ML0201"}
)

type finding struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Object   string `json:"object"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

type crossCheck struct {
	// Per kind (corpus, generated): findings the oracle confirms, refutes, or that no
	// request reached; failing destinations (503) found by a finding, or missed.
	confirmed, refuted, untested, found, missed map[string]int
	// foundWarned: failing destinations a warning (not an error) points at.
	foundWarned         map[string]int
	byCode              map[string][3]int
	refutations, misses []string
}

func newCrossCheck() *crossCheck {
	m := func() map[string]int { return map[string]int{} }
	return &crossCheck{confirmed: m(), refuted: m(), untested: m(), found: m(), missed: m(), foundWarned: m(), byCode: map[string][3]int{}}
}

func fileLine(at string) (string, int) {
	parts := strings.Split(at, ":")
	if len(parts) < 3 {
		return "", 0
	}
	n, _ := strconv.Atoi(parts[len(parts)-2])
	return strings.Join(parts[:len(parts)-2], ":"), n
}

// linked returns the index of the destination a finding points at: the last destination
// (of the VirtualService's file) that starts at or above the finding's line, a few lines up
// at most (none for a Gateway API backendRef); or a destination that went through the finding's line (a DestinationRule subset).
func linked(f finding, ds []destination) int {
	// A Gateway API backend finding is on the backendRef's own line, which is where the
	// destination starts: no lines above it.
	reach := 3
	if strings.HasPrefix(f.Code, "ML06") {
		reach = 0
	}
	best, bestLine := -1, 0
	for j, d := range ds {
		if d.At == nil {
			continue
		}
		file, line := fileLine(*d.At)
		if sameFile(file, f.File) && line <= f.Line && f.Line-line <= reach && line >= bestLine {
			best, bestLine = j, line
		}
	}
	if best >= 0 {
		return best
	}
	for j, d := range ds {
		for _, h := range d.Hops {
			if h.At == nil {
				continue
			}
			file, line := fileLine(*h.At)
			if sameFile(file, f.File) && f.Line-line >= -1 && f.Line-line <= 1 {
				return j
			}
		}
	}
	return -1
}

func sameFile(a, b string) bool {
	return a != "" && (a == b || strings.HasSuffix(a, "/"+b) || strings.HasSuffix(b, "/"+a))
}

func (cc *crossCheck) add(sc scenarioRun, ml, or []decision) {
	var fs []finding
	if sc.Check == "" || readJSON(sc.Check, &fs) != nil {
		return
	}
	for _, f := range fs {
		if f.Severity != "error" {
			continue
		}
		var verdict int // 0 confirmed, 1 refuted, 2 untested
		switch {
		case contains(destinationCodes, f.Code):
			verdict = destinationVerdict(f, ml, or)
		case contains(bindingCodes, f.Code):
			verdict = bindingVerdict(f, ml, or)
		default:
			continue
		}
		c := cc.byCode[f.Code]
		c[verdict]++
		cc.byCode[f.Code] = c
		switch verdict {
		case 0:
			cc.confirmed[sc.Kind]++
		case 1:
			cc.refuted[sc.Kind]++
			cc.refutations = append(cc.refutations, fmt.Sprintf("%s: %s %s %s:%d", sc.Name, f.Code, f.Object, f.File, f.Line))
		default:
			cc.untested[sc.Kind]++
		}
	}
	cc.recall(sc, fs, ml, or)
}

// destinationVerdict: among requests that meshloop and the oracle route alike, one whose
// destination the finding points at; the oracle confirms when that destination has no
// healthy endpoint (or no cluster).
func destinationVerdict(f finding, ml, or []decision) int {
	verdict := 2
	for i := range ml {
		if ml[i].values()["destinations.cluster"] != or[i].values()["destinations.cluster"] {
			continue
		}
		if j := linked(f, ml[i].Destinations); j >= 0 {
			if h := or[i].Destinations[j].HealthyEndpoints; h != nil && *h > 0 {
				return 1
			}
			verdict = 0
		}
	}
	return verdict
}

// bindingVerdict: the object the finding is about (a VirtualService or Gateway) must never
// be where the oracle sends a request; requests meshloop names it for (404 reasons) test it.
func bindingVerdict(f finding, ml, or []decision) int {
	kind, name, _ := strings.Cut(f.Object, " ")
	verdict := 2
	for i := range or {
		var got *string
		if kind == "Gateway" {
			got = or[i].Gateway
		} else {
			got = or[i].VirtualService
		}
		if got != nil && *got == name {
			return 1
		}
		if strings.Contains(ml[i].Detail.Reason, name) || (kind == "Gateway" && ml[i].Outcome != "routed" && or[i].Outcome != "routed") {
			verdict = 0
		}
	}
	return verdict
}

// recall: every destination the oracle gives traffic but no healthy endpoint should carry
// an error finding.
func (cc *crossCheck) recall(sc scenarioRun, fs []finding, ml, or []decision) {
	for i := range or {
		if ml[i].values()["destinations.cluster"] != or[i].values()["destinations.cluster"] {
			continue
		}
		for j, d := range or[i].Destinations {
			if d.Weight == 0 || d.HealthyEndpoints == nil || *d.HealthyEndpoints > 0 {
				continue
			}
			hit, warned := false, false
			for _, f := range fs {
				if contains(destinationCodes, f.Code) && linked(f, ml[i].Destinations) == j {
					hit = hit || f.Severity == "error"
					warned = warned || f.Severity == "warning"
				}
			}
			switch {
			case hit:
				cc.found[sc.Kind]++
			case warned:
				cc.foundWarned[sc.Kind]++
				cc.missed[sc.Kind]++
			default:
				cc.missed[sc.Kind]++
				cc.misses = append(cc.misses, fmt.Sprintf("%s #%d: %s", sc.Name, i, d.cluster()))
			}
		}
	}
}

func (cc *crossCheck) report(w io.Writer) {
	fmt.Fprintf(w, "\nfindings cross-checked against the oracle (error findings that predict 404/503):\n")
	for _, k := range []string{"corpus", "generated"} {
		c, r, u := cc.confirmed[k], cc.refuted[k], cc.untested[k]
		f, m, fw := cc.found[k], cc.missed[k], cc.foundWarned[k]
		fmt.Fprintf(w, "  %-9s precision %s (%d confirmed, %d refuted, %d not reached by a request); recall on 503 destinations %s (%d found by an error, %d missed); %s counting warnings (%d more)\n",
			k, pct(c, c+r), c, r, u, pct(f, f+m), f, m, pct(f+fw, f+m), fw)
	}
	for code, c := range cc.byCode {
		fmt.Fprintf(w, "    %s: %d confirmed, %d refuted, %d not reached\n", code, c[0], c[1], c[2])
	}
	for i, r := range cc.refutations {
		if i >= 20 {
			fmt.Fprintf(w, "    ... %d more refuted\n", len(cc.refutations)-20)
			break
		}
		fmt.Fprintf(w, "    REFUTED %s\n", r)
	}
	for i, r := range cc.misses {
		if i >= 20 {
			fmt.Fprintf(w, "    ... %d more missed\n", len(cc.misses)-20)
			break
		}
		fmt.Fprintf(w, "    MISSED (503 destination without an error finding) %s\n", r)
	}
}

func pct(a, b int) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}
