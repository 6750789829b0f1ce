//go:build tools

// Package tools pins the istio.io/istio module for the two binaries built from it:
// istioctl, for dev/bench/check.sh, which compares `istioctl analyze --use-kube=false` with
// `meshloop check --offline`; and pilot-discovery (istiod), which dev/localcluster runs against
// the local cluster's API server (`start --istio`).
package tools

import (
	_ "istio.io/istio/istioctl/cmd/istioctl"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
