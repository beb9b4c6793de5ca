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
	identityv1 "github.com/identityd/identity/gen/identity/v1"
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
		reason identityv1.ErrorReason
	}{
		{"bad credentials", users.ErrBadCredentials, codes.Unauthenticated, identityv1.ErrorReason_INVALID_CREDENTIALS},
		{"expired token", wrap(token.ErrExpired), codes.Unauthenticated, identityv1.ErrorReason_TOKEN_EXPIRED},
		{"invalid token", wrap(token.ErrInvalid), codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID},
		{"revoked token", errTokenRevoked, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED},
		{"refresh invalid", errRefreshTokenInvalid, codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_INVALID},
		{"session ends this second", token.ErrSessionEnded, codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_INVALID},
		{"refresh reused", wrap(tokenstore.ErrReused), codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_REUSED},
		{"invalid request", invalidRequest("username is required"), codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST},
		{"bad username", wrap(users.ErrInvalidUsername), codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST},
		{"rate limited", &rateLimitedError{msg: "slow down", retryAfter: 3 * time.Second}, codes.ResourceExhausted, identityv1.ErrorReason_RATE_LIMITED},
		{"hasher busy", password.ErrBusy, codes.ResourceExhausted, identityv1.ErrorReason_RATE_LIMITED},
		{"store down", wrap(tokenstore.ErrUnavailable), codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE},
		{"limiter down", wrap(ratelimit.ErrUnavailable), codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE},
		{"not found (admin)", wrap(tokenstore.ErrNotFound), codes.NotFound, identityv1.ErrorReason_NOT_FOUND},
		{"exists (admin)", wrap(tokenstore.ErrAlreadyExists), codes.AlreadyExists, identityv1.ErrorReason_ALREADY_EXISTS},
		{"unexpected", errors.New("boom"), codes.Internal, identityv1.ErrorReason_INTERNAL},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, identityv1.ErrorReason_STORE_UNAVAILABLE},
	}
	for _, tc := range tests {
		got := toStatus(tc.err)
		st, _ := status.FromError(got)
		if st.Code() != tc.code || authn.Reason(got) != tc.reason {
			t.Errorf("%s: toStatus = %v / %v, want %v / %v", tc.name, st.Code(), authn.Reason(got), tc.code, tc.reason)
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
	in := authn.Error(codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED, "no")
	if got := toStatus(in); got != in {
		t.Errorf("a status error was remapped: %v", got)
	}
}
