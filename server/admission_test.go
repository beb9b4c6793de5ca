package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
)

// A login refused by the hasher's admission (every worker busy, expected
// wait over the budget) is RATE_LIMITED with the expected wait as its
// RetryInfo and Retry-After, in whole seconds, rounded up.
func TestHasherRefusalCarriesTheExpectedWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		wait time.Duration
		want time.Duration
		hdr  string
	}{
		{2500 * time.Millisecond, 3 * time.Second, "3"},
		{1200 * time.Millisecond, 2 * time.Second, "2"},
		{40 * time.Millisecond, time.Second, "1"}, // at least a second
	} {
		err := &password.BusyError{Wait: tc.wait}
		st := status.Convert(toStatus(err))
		var delay time.Duration
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				delay = ri.GetRetryDelay().AsDuration()
			}
		}
		if st.Code() != codes.ResourceExhausted || errorInfo(st).GetReason() != identityv1.ErrorReason_RATE_LIMITED.String() || delay != tc.want {
			t.Errorf("wait %v: %v %v, RetryInfo %v; want RESOURCE_EXHAUSTED RATE_LIMITED, %v", tc.wait, st.Code(), errorInfo(st).GetReason(), delay, tc.want)
		}
		w := httptest.NewRecorder()
		(&Server{}).writeError(t.Context(), nil, nil, w, httptest.NewRequest(http.MethodPost, "/v1/login", nil), err)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != tc.hdr {
			t.Errorf("wait %v: REST %d Retry-After %q, want 429 %q", tc.wait, w.Code, w.Header().Get("Retry-After"), tc.hdr)
		}
	}
}
