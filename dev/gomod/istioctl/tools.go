//go:build tools

// Package tools pins istioctl (from the istio.io/istio module) for dev/bench/check.sh, which
// compares `istioctl analyze --use-kube=false` with `meshloop check --offline`.
package tools

import _ "istio.io/istio/istioctl/cmd/istioctl"
