package route

import (
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// AppendMode is how a header addition treats an existing header of that name.
type AppendMode int

const (
	AppendOrAdd       AppendMode = iota // APPEND_IF_EXISTS_OR_ADD (istiod's `add`)
	AddIfAbsent                         // ADD_IF_ABSENT
	OverwriteOrAdd                      // OVERWRITE_IF_EXISTS_OR_ADD (istiod's `set`)
	OverwriteIfExists                   // OVERWRITE_IF_EXISTS
)

// HeaderAdd is one header to add.
type HeaderAdd struct {
	Name, Value string
	Mode        AppendMode
	KeepEmpty   bool // add even when Value is empty (Envoy skips empty values otherwise)
}

// HeaderChanges is one level's (weighted cluster, route, virtual host or route
// configuration) header_to_remove and headers_to_add; removals come first, as in Envoy.
type HeaderChanges struct {
	Remove []string
	Add    []HeaderAdd
}

// Apply changes h: removals first, then additions in order.
func (c HeaderChanges) Apply(h http.Header) {
	for _, name := range c.Remove {
		h.Del(name)
	}
	for _, a := range c.Add {
		if a.Value == "" && !a.KeepEmpty {
			continue
		}
		_, exists := h[http.CanonicalHeaderKey(a.Name)]
		switch a.Mode {
		case AppendOrAdd:
			h.Add(a.Name, a.Value)
		case AddIfAbsent:
			if !exists {
				h.Add(a.Name, a.Value)
			}
		case OverwriteOrAdd:
			h.Set(a.Name, a.Value)
		case OverwriteIfExists:
			if exists {
				h.Set(a.Name, a.Value)
			}
		}
	}
}

// ApplyRequestHeaders applies the picked cluster's request header changes, then the
// decision's (route, virtual host, route configuration), as Envoy does before forwarding.
func (d Decision) ApplyRequestHeaders(h http.Header, picked Cluster) {
	picked.RequestHeaders.Apply(h)
	for _, c := range d.RequestHeaders {
		c.Apply(h)
	}
}

// ApplyResponseHeaders applies the picked cluster's response header changes, then the
// decision's; picked is the zero Cluster for a redirect or direct response.
func (d Decision) ApplyResponseHeaders(h http.Header, picked Cluster) {
	picked.ResponseHeaders.Apply(h)
	for _, c := range d.ResponseHeaders {
		c.Apply(h)
	}
}

type requestMutator interface {
	GetRequestHeadersToAdd() []*corev3.HeaderValueOption
	GetRequestHeadersToRemove() []string
}

type responseMutator interface {
	GetResponseHeadersToAdd() []*corev3.HeaderValueOption
	GetResponseHeadersToRemove() []string
}

func requestChanges(m requestMutator) HeaderChanges {
	return HeaderChanges{Remove: m.GetRequestHeadersToRemove(), Add: adds(m.GetRequestHeadersToAdd())}
}

func responseChanges(m responseMutator) HeaderChanges {
	return HeaderChanges{Remove: m.GetResponseHeadersToRemove(), Add: adds(m.GetResponseHeadersToAdd())}
}

// levelChanges orders the route, virtual host and route configuration levels: by default
// the least specific level is applied last (so its `set` wins), unless
// most_specific_header_mutations_wins.
func levelChanges(mostSpecificWins bool, route, vh, rc HeaderChanges) []HeaderChanges {
	if mostSpecificWins {
		return []HeaderChanges{rc, vh, route}
	}
	return []HeaderChanges{route, vh, rc}
}

func adds(opts []*corev3.HeaderValueOption) []HeaderAdd {
	var out []HeaderAdd
	for _, o := range opts {
		a := HeaderAdd{Name: o.GetHeader().GetKey(), Value: headerText(o.GetHeader()), KeepEmpty: o.GetKeepEmptyValue()}
		switch {
		case o.GetAppend() != nil && o.GetAppend().GetValue():
			a.Mode = AppendOrAdd
		case o.GetAppend() != nil:
			a.Mode = OverwriteOrAdd
		default:
			a.Mode = AppendMode(o.GetAppendAction())
		}
		out = append(out, a)
	}
	return out
}

// headerText is a header value with Envoy's `%%` escape undone (Check rejects other `%`
// commands, which Envoy would expand).
func headerText(h *corev3.HeaderValue) string {
	v := h.GetValue()
	if v == "" {
		v = string(h.GetRawValue())
	}
	return strings.ReplaceAll(v, "%%", "%")
}
