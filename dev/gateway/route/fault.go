package route

import (
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// FaultFilter is the name under which istiod puts fault injection in typed_per_filter_config.
const FaultFilter = "envoy.filters.http.fault"

// Fault is the fault injection of a route: a delay and/or an abort, each for a share of the
// requests (in millionths).
type Fault struct {
	Delay           time.Duration
	DelayPerMillion uint32
	AbortStatus     int     // HTTP status of an abort (0: no HTTP abort)
	AbortGRPC       *uint32 // gRPC status of an abort, answered with HTTP 200 and grpc-status
	AbortPerMillion uint32
}

// Delays says whether a request whose random number is r is delayed (Envoy: r modulo the
// denominator below the numerator).
func (f *Fault) Delays(r uint64) bool {
	return f != nil && f.Delay > 0 && r%1_000_000 < uint64(f.DelayPerMillion)
}

// Aborts says whether a request whose random number is r is aborted.
func (f *Fault) Aborts(r uint64) bool {
	return f != nil && (f.AbortStatus != 0 || f.AbortGRPC != nil) && r%1_000_000 < uint64(f.AbortPerMillion)
}

// faultFor returns the most specific fault configuration: the route's, else its virtual host's.
func faultFor(r *routev3.Route, vh *routev3.VirtualHost) *Fault {
	a, ok := r.GetTypedPerFilterConfig()[FaultFilter]
	if !ok {
		a, ok = vh.GetTypedPerFilterConfig()[FaultFilter]
	}
	if !ok {
		return nil
	}
	hf, err := faultConfig(a)
	if err != nil || hf == nil {
		return nil // Check rejects a configuration that does not decode
	}
	f := &Fault{}
	if d := hf.GetDelay(); d != nil {
		f.Delay = d.GetFixedDelay().AsDuration()
		f.DelayPerMillion = perMillion(d.GetPercentage())
	}
	if ab := hf.GetAbort(); ab != nil {
		f.AbortPerMillion = perMillion(ab.GetPercentage())
		switch e := ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			f.AbortStatus = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			s := e.GrpcStatus
			f.AbortGRPC = &s
		}
	}
	return f
}

// faultConfig decodes an HTTPFault, bare or wrapped in a route FilterConfig (nil when the
// wrapper disables the filter for this route).
func faultConfig(a *anypb.Any) (*faultv3.HTTPFault, error) {
	var fc routev3.FilterConfig
	if a.MessageIs(&fc) {
		if err := a.UnmarshalTo(&fc); err != nil {
			return nil, err
		}
		if fc.GetDisabled() {
			return nil, nil
		}
		a = fc.GetConfig()
	}
	var hf faultv3.HTTPFault
	if err := a.UnmarshalTo(&hf); err != nil {
		return nil, err
	}
	return &hf, nil
}

// perMillion converts a FractionalPercent to millionths (unset is 0%, as in Envoy).
func perMillion(p *typev3.FractionalPercent) uint32 {
	n := uint64(p.GetNumerator())
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return uint32(min(n, 1_000_000))
}
