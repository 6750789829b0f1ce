package xds

import "testing"

// The node is what pilot-agent's bootstrap would give the gateway Pod's Envoy.
func TestNode(t *testing.T) {
	labels, err := ParseLabels("istio=ingress,app=istio-ingress")
	if err != nil {
		t.Fatal(err)
	}
	n := Identity{Pod: "istio-ingress-7d9f", Namespace: "istio-ingress", IP: "10.250.0.2", Labels: labels}.Node()
	if n.GetId() != "router~10.250.0.2~istio-ingress-7d9f.istio-ingress~istio-ingress.svc.cluster.local" {
		t.Fatalf("id %q", n.GetId())
	}
	md := n.GetMetadata().GetFields()
	for k, want := range map[string]string{"NAMESPACE": "istio-ingress", "INSTANCE_IPS": "10.250.0.2", "ISTIO_VERSION": IstioVersion,
		"CLUSTER_ID": "Kubernetes", "WORKLOAD_NAME": "istio-ingress", "NAME": "istio-ingress-7d9f"} {
		if got := md[k].GetStringValue(); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := md["LABELS"].GetStructValue().GetFields()["istio"].GetStringValue(); got != "ingress" {
		t.Errorf("LABELS.istio = %q", got)
	}
	if _, err := ParseLabels("istio"); err == nil {
		t.Error("a label without = was accepted")
	}
}
