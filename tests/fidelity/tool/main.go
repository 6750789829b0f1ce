// Command fidelity is the generator and the comparison of dev/fidelity.sh:
//
//	fidelity gen --out DIR --n N [--gateway-api M] --seed S
//	    writes N random Istio scenarios (routing.yaml, requests.json) and M random Gateway
//	    API ones (with a meshloop.yaml naming the Gateway; default N/4) under DIR
//	fidelity compare --runs RUNS.json [--min 99.5] [--show 20]
//	    compares meshloop's and the oracle's decisions scenario by scenario, prints the
//	    agreement per field, the disagreements (minimized to the objects involved) and the
//	    cross-check of findings; exits 1 when the corpus disagrees unexpectedly, a scenario
//	    fails to run, or a field agrees on fewer than --min percent of generated requests.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fidelity gen|compare ...")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	switch os.Args[1] {
	case "gen":
		out := fs.String("out", "", "directory to write the scenarios into")
		n := fs.Int("n", 100, "number of scenarios")
		gw := fs.Int("gateway-api", -1, "number of Gateway API scenarios (default: n/4)")
		seed := fs.Uint64("seed", 1, "seed")
		_ = fs.Parse(os.Args[2:])
		if *gw < 0 {
			*gw = *n / 4
		}
		if err := gen(*out, *n, *gw, *seed); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	case "compare":
		runs := fs.String("runs", "", "JSON list of scenario runs")
		min := fs.Float64("min", 99.5, "minimum agreement per field over generated scenarios, percent")
		show := fs.Int("show", 20, "disagreements to print in full, per kind")
		_ = fs.Parse(os.Args[2:])
		var rs []scenarioRun
		if err := readJSON(*runs, &rs); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		tallies, cc := compare(rs, os.Stdout, 0)
		ok := report(os.Stdout, tallies, *min, *show)
		cc.report(os.Stdout)
		if !ok {
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: fidelity gen|compare ...")
		os.Exit(2)
	}
}
