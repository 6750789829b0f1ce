package route

import (
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// istiod's translation of `fault: {delay: {fixedDelay: 2s, percentage: 50}, abort: {httpStatus: 503, percentage: 10}}`.
func istioFault() *faultv3.HTTPFault {
	return &faultv3.HTTPFault{
		Delay: &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(2 * time.Second)},
			Percentage:         &typev3.FractionalPercent{Numerator: 500000, Denominator: typev3.FractionalPercent_MILLION},
		},
		Abort: &faultv3.FaultAbort{
			ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: 503},
			Percentage: &typev3.FractionalPercent{Numerator: 10, Denominator: typev3.FractionalPercent_HUNDRED},
		},
	}
}

func TestDecideFault(t *testing.T) {
	r := action(prefix("/"), toCluster("c"))
	r.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: mustAny(t, istioFault())}
	f := decide(r, get("/")).Fault
	if f == nil || f.Delay != 2*time.Second || f.DelayPerMillion != 500000 || f.AbortStatus != 503 || f.AbortPerMillion != 100000 {
		t.Fatalf("%+v", f)
	}
	// Envoy: the request is affected when its random number modulo the denominator is
	// below the numerator.
	if !f.Delays(499999) || f.Delays(500000) || !f.Aborts(99999) || f.Aborts(100000) || !f.Aborts(1_099_999) {
		t.Error("percentages applied wrongly")
	}
	if decide(action(prefix("/"), toCluster("c")), get("/")).Fault != nil {
		t.Error("no fault configured: want nil")
	}
}

func TestDecideFaultGRPCAbortAndWrapper(t *testing.T) {
	hf := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14},
		Percentage: &typev3.FractionalPercent{Numerator: 100}}}
	r := action(prefix("/"), toCluster("c"))
	r.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: mustAny(t, &routev3.FilterConfig{Config: mustAny(t, hf)})}
	f := decide(r, get("/")).Fault
	if f == nil || f.AbortGRPC == nil || *f.AbortGRPC != 14 || !f.Aborts(0) {
		t.Fatalf("%+v", f)
	}
	r.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: mustAny(t, &routev3.FilterConfig{Config: mustAny(t, hf), Disabled: true})}
	if f := decide(r, get("/")).Fault; f != nil {
		t.Fatalf("disabled: %+v", f)
	}
}
