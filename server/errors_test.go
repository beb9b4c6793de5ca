package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
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

// The contract's error table (docs/api.md, Errors), row by row,
// from the domain error a handler returns to the status a client sees.
// Written out by hand, apart from errorTable: it is the specification the
// table must meet.
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
		{"no refresh cookie", errNoRefreshCookie, codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_INVALID},
		{"session ends this second", token.ErrSessionEnded, codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_INVALID},
		{"refresh reused", wrap(tokenstore.ErrReused), codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_REUSED},
		{"invalid request", invalidRequest("username is required"), codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST},
		{"bad username", wrap(users.ErrInvalidUsername), codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST},
		{"rate limited", &rateLimitedError{msg: "slow down", retryAfter: 3 * time.Second}, codes.ResourceExhausted, identityv1.ErrorReason_RATE_LIMITED},
		{"hasher busy", password.ErrBusy, codes.ResourceExhausted, identityv1.ErrorReason_RATE_LIMITED},
		{"store down", wrap(tokenstore.ErrUnavailable), codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE},
		{"limiter down", wrap(ratelimit.ErrUnavailable), codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE},
		{"store timing out", wrap(context.DeadlineExceeded), codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE},
		{"store down, timing out", fmt.Errorf("%w: %w", tokenstore.ErrUnavailable, context.DeadlineExceeded), codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE},
		{"csrf", errCSRFRejected, codes.PermissionDenied, identityv1.ErrorReason_CSRF_REJECTED},
		{"not found (admin)", wrap(tokenstore.ErrNotFound), codes.NotFound, identityv1.ErrorReason_NOT_FOUND},
		{"exists (admin)", wrap(tokenstore.ErrAlreadyExists), codes.AlreadyExists, identityv1.ErrorReason_ALREADY_EXISTS},
		{"shutting down", fmt.Errorf("%w: watch again", errShuttingDown), codes.Unavailable, identityv1.ErrorReason_IDENTITY_UNAVAILABLE},
		{"unexpected", errors.New("boom"), codes.Internal, identityv1.ErrorReason_INTERNAL},
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
	// A request error says what was wrong, not where it was found.
	if st, _ := status.FromError(toStatus(fmt.Errorf("login: %w", invalidRequest("username is required")))); st.Message() != "username is required" {
		t.Errorf("invalid request message = %q, want the request's own description", st.Message())
	}
	// Statuses that are already mapped pass through.
	in := authn.Error(codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED, "no")
	if got := toStatus(in); got != in {
		t.Errorf("a status error was remapped: %v", got)
	}
}

// httpLayerOnly are the rows the HTTP layer raises itself: their HTTP
// status is not the one the gateway gives their code, so they must never
// be a handler's answer.
var httpLayerOnly = []error{errMethodNotAllowed, errBodyTooLarge}

// Every row of errorTable, as a gRPC status and as a REST answer.
func TestErrorTableRows(t *testing.T) {
	for _, row := range errorTable {
		t.Run(row.err.Error(), func(t *testing.T) {
			err := fmt.Errorf("context: %w", row.err)
			wantMsg := row.msg
			if wantMsg == "" {
				wantMsg = err.Error()
			}

			// gRPC.
			st, ok := status.FromError(toStatus(err))
			if !ok || st.Code() != row.code || st.Message() != wantMsg {
				t.Errorf("gRPC: %v %q, want %v %q", st.Code(), st.Message(), row.code, wantMsg)
			}
			if got := authn.Reason(st.Err()); got != row.reason {
				t.Errorf("gRPC: reason %v, want %v", got, row.reason)
			}

			// REST, raised by the HTTP layer.
			checkREST(t, "REST", restAnswer(t, err), row, wantMsg)

			// REST, answered by a gRPC handler through the gateway: the
			// gateway renders the status by its code.
			fromCode := runtime.HTTPStatusFromCode(row.code)
			if slices.Contains(httpLayerOnly, row.err) {
				if fromCode == row.http {
					t.Errorf("listed as HTTP layer only, yet HTTP %d is its code's", row.http)
				}
				return
			}
			if fromCode != row.http {
				t.Errorf("HTTP %d, but a status of code %v is rendered as %d: make the row HTTP layer only, or fix it", row.http, row.code, fromCode)
			}
			checkREST(t, "REST via gRPC", restAnswer(t, toStatus(err)), row, wantMsg)
		})
	}
}

// Every reason is produced by a row, or named as produced elsewhere.
func TestErrorTableCoversEveryReason(t *testing.T) {
	inTable := map[identityv1.ErrorReason]bool{}
	for _, row := range errorTable {
		inTable[row.reason] = true
	}
	for n := range identityv1.ErrorReason_name {
		r := identityv1.ErrorReason(n)
		if r == identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		who, outside := reasonsOutsideTheTable[r]
		switch {
		case !inTable[r] && !outside:
			t.Errorf("%v: in no row of errorTable and not in reasonsOutsideTheTable", r)
		case inTable[r] && outside:
			t.Errorf("%v: in errorTable, yet listed as produced by %s", r, who)
		}
	}
	for i, a := range errorTable {
		for _, b := range errorTable[:i] {
			if a.err == b.err {
				t.Errorf("%q has two rows: the second never matches", a.err)
			}
		}
	}
}

// A status without identity ErrorInfo reaching the REST handler was made
// by grpc-go or the gateway: it still gets the one error shape.
func TestRESTForeignStatuses(t *testing.T) {
	for _, tc := range []struct {
		err      error
		http     int
		code     codes.Code
		reason   identityv1.ErrorReason
		wantText string
	}{
		{status.Error(codes.InvalidArgument, `unknown field "extra"`), 400, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, `invalid request: unknown field "extra"`},
		{status.Error(codes.Unavailable, "transport is closing"), 503, codes.Unavailable, identityv1.ErrorReason_IDENTITY_UNAVAILABLE, "identity is shutting down"},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), 504, codes.DeadlineExceeded, identityv1.ErrorReason_IDENTITY_UNAVAILABLE, ""},
		{status.Error(codes.Internal, "grpc: error while marshaling"), 500, codes.Internal, identityv1.ErrorReason_INTERNAL, "internal error"},
		{errors.New("a plain error, e.g. from a forward-response hook"), 500, codes.Internal, identityv1.ErrorReason_INTERNAL, "internal error"},
		{&runtime.HTTPStatusError{HTTPStatus: http.StatusBadRequest, Err: errors.New("malformed path escape")}, 400, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, "invalid request: malformed path escape"},
	} {
		a := restAnswer(t, tc.err)
		if a.status != tc.http || a.code != tc.code || a.reason != tc.reason || tc.wantText != "" && a.message != tc.wantText {
			t.Errorf("%v: REST %d {code %v, reason %v, message %q}, want %d {%v, %v, %q}",
				tc.err, a.status, a.code, a.reason, a.message, tc.http, tc.code, tc.reason, tc.wantText)
		}
	}
}

type restResult struct {
	status  int
	header  http.Header
	code    codes.Code
	message string
	reason  identityv1.ErrorReason
	infos   int // identity ErrorInfo details
}

// restAnswer is what the REST error handler writes for err.
func restAnswer(t *testing.T, err error) restResult {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/login", nil)
	(&Server{}).writeError(req.Context(), nil, nil, rec, req, err)
	var body struct {
		Code    *int    `json:"code"`
		Message *string `json:"message"`
		Details []struct {
			Type   string `json:"@type"`
			Reason string `json:"reason"`
			Domain string `json:"domain"`
		} `json:"details"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Code == nil || body.Message == nil || body.Details == nil {
		t.Fatalf("REST body %q is not {code, message, details} (%v)", rec.Body, err)
	}
	r := restResult{status: rec.Code, header: rec.Header(), code: codes.Code(*body.Code), message: *body.Message}
	for _, d := range body.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" && d.Domain == authn.Domain {
			r.infos++
			r.reason = identityv1.ErrorReason(identityv1.ErrorReason_value[d.Reason])
		}
	}
	return r
}

func checkREST(t *testing.T, what string, a restResult, row errorRow, wantMsg string) {
	t.Helper()
	wantInfos := 1
	if row.reason == identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		wantInfos = 0
	}
	if a.status != row.http || a.code != row.code || a.message != wantMsg || a.infos != wantInfos || a.reason != row.reason {
		t.Errorf("%s: %d {code %v, message %q, %d ErrorInfo, reason %v}, want %d {%v, %q, %d, %v}",
			what, a.status, a.code, a.message, a.infos, a.reason, row.http, row.code, wantMsg, wantInfos, row.reason)
	}
	if got := a.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("%s: Content-Type %q", what, got)
	}
	switch row.http {
	case http.StatusUnauthorized:
		if got := a.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("%s: 401 with WWW-Authenticate %q", what, got)
		}
	case http.StatusTooManyRequests:
		if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("%s: 429 with Retry-After %q", what, a.header.Get("Retry-After"))
		}
	}
}
