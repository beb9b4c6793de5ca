package authn

import (
	"errors"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Domain is the ErrorInfo domain of every identity error.
const Domain = "identity"

// The contract's ErrorInfo reasons (DESIGN.md, "Errors"). A client of any
// service protected by authn sees the same reasons as a client of identity.
const (
	ReasonInvalidCredentials  = "INVALID_CREDENTIALS"
	ReasonTokenExpired        = "TOKEN_EXPIRED"
	ReasonTokenInvalid        = "TOKEN_INVALID"
	ReasonTokenRevoked        = "TOKEN_REVOKED"
	ReasonRefreshTokenInvalid = "REFRESH_TOKEN_INVALID"
	ReasonRefreshTokenReused  = "REFRESH_TOKEN_REUSED"
	ReasonInvalidRequest      = "INVALID_REQUEST"
	ReasonRateLimited         = "RATE_LIMITED"
	ReasonStoreUnavailable    = "STORE_UNAVAILABLE"
	// Beyond the contract's table: admin calls and internal failures.
	ReasonPermissionDenied    = "PERMISSION_DENIED"
	ReasonNotFound            = "NOT_FOUND"
	ReasonAlreadyExists       = "ALREADY_EXISTS"
	ReasonFailedPrecondition  = "FAILED_PRECONDITION"
	ReasonVerifierStale       = "VERIFIER_STALE"
	ReasonIdentityUnavailable = "IDENTITY_UNAVAILABLE"
	ReasonInternal            = "INTERNAL"
)

// MetadataRetryAfter is the ErrorInfo metadata key holding whole seconds to
// wait before retrying (RATE_LIMITED); the REST gateway turns it into a
// Retry-After header.
const MetadataRetryAfter = "retry_after_seconds"

// Error returns a gRPC status error with a google.rpc.ErrorInfo detail.
func Error(code codes.Code, reason, msg string) error {
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
		&errdetails.ErrorInfo{Reason: ReasonRateLimited, Domain: Domain,
			Metadata: map[string]string{MetadataRetryAfter: strconv.FormatInt(secs, 10)}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(secs) * time.Second)},
	)
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

func errorWith(code codes.Code, reason, msg string, md map[string]string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: md})
	if err != nil {
		// WithDetails only fails for a nil or unmarshalable detail.
		return status.Error(code, msg)
	}
	return st.Err()
}

// Reason returns the ErrorInfo reason of an identity error ("" if none).
func Reason(err error) string {
	info := ErrorInfo(err)
	if info == nil {
		return ""
	}
	return info.GetReason()
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
