package oracle_test

import (
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// synthesize plays the Kubernetes controllers the fake discovery server does not run: each
// Deployment's replicas become Ready Pods, each Service with a selector gets a ClusterIP and
// EndpointSlices, as the EndpointSlice controller would write them (ports named like the
// Service's ports, named target ports resolved per Pod, a Pod without the port left out of
// that port's slice).
func synthesize(objs []runtime.Object) []runtime.Object {
	var pods []*corev1.Pod
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	var out []runtime.Object
	for _, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		n := int32(1)
		if d.Spec.Replicas != nil {
			n = *d.Spec.Replicas
		}
		for i := int32(0); i < n; i++ {
			p := readyPod(d, i, len(pods))
			pods = append(pods, p)
			out = append(out, p)
		}
	}
	svcIP := 0
	for _, o := range objs {
		s, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		svcIP++
		if s.Spec.ClusterIP == "" {
			s.Spec.ClusterIP = fmt.Sprintf("10.96.%d.%d", svcIP/250, svcIP%250+1)
		}
		if len(s.Spec.Selector) > 0 {
			out = append(out, endpointSlices(s, pods)...)
		}
	}
	return out
}

func readyPod(d *appsv1.Deployment, i int32, seq int) *corev1.Pod {
	ip := fmt.Sprintf("10.244.%d.%d", seq/250, seq%250+2)
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        fmt.Sprintf("%s-%d", d.Name, i),
			Namespace:   d.Namespace,
			Labels:      d.Spec.Template.Labels,
			Annotations: d.Spec.Template.Annotations,
		},
		Spec: *d.Spec.Template.Spec.DeepCopy(),
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      ip,
			PodIPs:     []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// endpointSlices groups the Service's ready Pods by their resolved port list, one slice
// per group (the EndpointSlice controller does the same).
func endpointSlices(s *corev1.Service, pods []*corev1.Pod) []runtime.Object {
	groups := map[string][]discoveryv1.EndpointPort{}
	members := map[string][]discoveryv1.Endpoint{}
	for _, p := range pods {
		if p.Namespace != s.Namespace || p.Status.PodIP == "" || !selects(s.Spec.Selector, p.Labels) {
			continue
		}
		ports := endpointPorts(s, p)
		key := fmt.Sprint(portKey(ports))
		groups[key] = ports
		ready := podReady(p)
		members[key] = append(members[key], discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: p.Name, Namespace: p.Namespace},
		})
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []runtime.Object
	for i, k := range keys {
		out = append(out, &discoveryv1.EndpointSlice{
			TypeMeta: metav1.TypeMeta{Kind: "EndpointSlice", APIVersion: "discovery.k8s.io/v1"},
			ObjectMeta: metav1.ObjectMeta{
				Name:      fmt.Sprintf("%s-oracle-%d", s.Name, i),
				Namespace: s.Namespace,
				Labels:    map[string]string{discoveryv1.LabelServiceName: s.Name},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   members[k],
			Ports:       groups[k],
		})
	}
	return out
}

func endpointPorts(s *corev1.Service, p *corev1.Pod) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, sp := range s.Spec.Ports {
		port, ok := targetPort(sp, p)
		if !ok {
			continue
		}
		name, proto := sp.Name, sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		out = append(out, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto, AppProtocol: sp.AppProtocol})
	}
	return out
}

// targetPort resolves a Service port's target on one Pod: a number as is (default: the
// port), a name through the Pod's container ports.
func targetPort(sp corev1.ServicePort, p *corev1.Pod) (int32, bool) {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal, true
	default:
		return sp.Port, true
	}
}

func portKey(ports []discoveryv1.EndpointPort) []string {
	var k []string
	for _, p := range ports {
		k = append(k, fmt.Sprintf("%s=%d", *p.Name, *p.Port))
	}
	return k
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
