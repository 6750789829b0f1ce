package route

import (
	"slices"
)

// Attempt is the outcome of one try at an upstream, as far as retries care.
type Attempt struct {
	ConnectFailed bool   // no connection (refused, connect timeout)
	Reset         bool   // connection lost before response headers
	TimedOut      bool   // the per-try timeout fired before response headers
	Status        int    // response status when headers arrived
	GRPCStatus    string // grpc-status response header, if any
}

// RetryOn lists the retry_on conditions this package understands, with the gRPC status each
// gRPC condition stands for. Check rejects any other condition.
var RetryOn = map[string]string{
	"5xx": "", "gateway-error": "", "reset": "", "reset-before-request": "", "connect-failure": "",
	"retriable-4xx": "", "refused-stream": "", "retriable-status-codes": "",
	// Never true here: the gateway does no rate limiting and speaks no HTTP/3.
	"envoy-ratelimited": "", "http3-post-connect-failure": "",
	"cancelled": "1", "deadline-exceeded": "4", "resource-exhausted": "8", "internal": "13", "unavailable": "14",
}

// ShouldRetry says whether the policy retries after attempt a (the retry budget is the
// caller's to count against NumRetries).
func (p *RetryPolicy) ShouldRetry(a Attempt) bool {
	if p == nil {
		return false
	}
	for _, on := range p.On {
		if retryCondition(on, a, p.RetriableStatusCodes) {
			return true
		}
	}
	return false
}

func retryCondition(on string, a Attempt, codes []uint32) bool {
	noResponse := a.ConnectFailed || a.Reset || a.TimedOut
	switch on {
	case "5xx":
		return noResponse || a.Status >= 500
	case "gateway-error":
		return noResponse || a.Status == 502 || a.Status == 503 || a.Status == 504
	case "reset":
		return noResponse
	case "reset-before-request", "connect-failure":
		return a.ConnectFailed
	case "retriable-4xx":
		return a.Status == 409
	case "retriable-status-codes":
		return a.Status != 0 && slices.Contains(codes, uint32(a.Status))
	}
	if g := RetryOn[on]; g != "" {
		return a.GRPCStatus == g
	}
	return false
}
