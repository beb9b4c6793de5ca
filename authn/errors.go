package authn

import (
	"errors"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// Domain is the ErrorInfo domain of every identity error.
const Domain = "identity"

// MetadataRetryAfter is the ErrorInfo metadata key holding whole seconds to
// wait before retrying (RATE_LIMITED); the REST gateway turns it into a
// Retry-After header.
const MetadataRetryAfter = "retry_after_seconds"

// Error returns a gRPC status error with a google.rpc.ErrorInfo detail of
// the identity domain and reason. The reasons are identity.v1.ErrorReason,
// so a client of any service protected by authn sees the same reasons as a
// client of identity.
func Error(code codes.Code, reason identityv1.ErrorReason, msg string) error {
	return errorWith(code, reason, msg, nil)
}

// RateLimited returns RESOURCE_EXHAUSTED / RATE_LIMITED with a RetryInfo
// detail and the retry delay in ErrorInfo metadata.
func RateLimited(msg string, retryAfter time.Duration) error {
	secs := int64((retryAfter + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	st := status.New(codes.ResourceExhausted, msg)
	st, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: identityv1.ErrorReason_RATE_LIMITED.String(), Domain: Domain,
			Metadata: map[string]string{MetadataRetryAfter: strconv.FormatInt(secs, 10)}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(secs) * time.Second)},
	)
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

func errorWith(code codes.Code, reason identityv1.ErrorReason, msg string, md map[string]string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason.String(), Domain: Domain, Metadata: md})
	if err != nil {
		// WithDetails only fails for a nil or unmarshalable detail.
		return status.Error(code, msg)
	}
	return st.Err()
}

// Reason returns the ErrorInfo reason of an identity error:
// ERROR_REASON_UNSPECIFIED when err carries no identity ErrorInfo, or one
// whose reason this version does not know (a newer server's).
func Reason(err error) identityv1.ErrorReason {
	info := ErrorInfo(err)
	if info == nil {
		return identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	return identityv1.ErrorReason(identityv1.ErrorReason_value[info.GetReason()])
}

// ErrorInfo returns the identity ErrorInfo detail of err, or nil.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return nil
	}
	for _, d := range se.GRPCStatus().Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info
		}
	}
	return nil
}
