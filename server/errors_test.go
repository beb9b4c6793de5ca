package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// The contract's error table (DESIGN.md, "Errors"), row by row, from the
// domain error a handler returns to the status a client sees.
func TestToStatusFollowsTheContract(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("context: %w", err) }
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
	}{
		{"bad credentials", users.ErrBadCredentials, codes.Unauthenticated, authn.ReasonInvalidCredentials},
		{"expired token", wrap(token.ErrExpired), codes.Unauthenticated, authn.ReasonTokenExpired},
		{"invalid token", wrap(token.ErrInvalid), codes.Unauthenticated, authn.ReasonTokenInvalid},
		{"revoked token", errTokenRevoked, codes.Unauthenticated, authn.ReasonTokenRevoked},
		{"refresh invalid", errRefreshTokenInvalid, codes.Unauthenticated, authn.ReasonRefreshTokenInvalid},
		{"session ends this second", token.ErrSessionEnded, codes.Unauthenticated, authn.ReasonRefreshTokenInvalid},
		{"refresh reused", wrap(tokenstore.ErrReused), codes.Unauthenticated, authn.ReasonRefreshTokenReused},
		{"invalid request", invalidRequest("username is required"), codes.InvalidArgument, authn.ReasonInvalidRequest},
		{"bad username", wrap(users.ErrInvalidUsername), codes.InvalidArgument, authn.ReasonInvalidRequest},
		{"rate limited", &rateLimitedError{msg: "slow down", retryAfter: 3 * time.Second}, codes.ResourceExhausted, authn.ReasonRateLimited},
		{"hasher busy", password.ErrBusy, codes.ResourceExhausted, authn.ReasonRateLimited},
		{"store down", wrap(tokenstore.ErrUnavailable), codes.Unavailable, authn.ReasonStoreUnavailable},
		{"limiter down", wrap(ratelimit.ErrUnavailable), codes.Unavailable, authn.ReasonStoreUnavailable},
		{"not found (admin)", wrap(tokenstore.ErrNotFound), codes.NotFound, authn.ReasonNotFound},
		{"exists (admin)", wrap(tokenstore.ErrAlreadyExists), codes.AlreadyExists, authn.ReasonAlreadyExists},
		{"unexpected", errors.New("boom"), codes.Internal, authn.ReasonInternal},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, authn.ReasonStoreUnavailable},
	}
	for _, tc := range tests {
		got := toStatus(tc.err)
		st, _ := status.FromError(got)
		if st.Code() != tc.code || authn.Reason(got) != tc.reason {
			t.Errorf("%s: toStatus = %v / %q, want %v / %q", tc.name, st.Code(), authn.Reason(got), tc.code, tc.reason)
		}
	}
	// A rate-limit status carries the delay for the gateway's Retry-After.
	info := authn.ErrorInfo(toStatus(&rateLimitedError{msg: "slow", retryAfter: 2500 * time.Millisecond}))
	if info.GetMetadata()[authn.MetadataRetryAfter] != "3" {
		t.Errorf("retry_after_seconds = %q, want 3 (rounded up)", info.GetMetadata()[authn.MetadataRetryAfter])
	}
	// An unexpected error's text never reaches the client.
	if st, _ := status.FromError(toStatus(errors.New("redis password=hunter2"))); st.Message() != "internal error" {
		t.Errorf("internal error message = %q, want a generic one", st.Message())
	}
	// Statuses that are already mapped pass through.
	in := authn.Error(codes.PermissionDenied, authn.ReasonPermissionDenied, "no")
	if got := toStatus(in); got != in {
		t.Errorf("a status error was remapped: %v", got)
	}
}
