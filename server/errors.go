package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/sessions"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// This file is the one place where errors become what a client sees: every
// gRPC status and every REST error body the server sends is built here,
// from a sentinel error, by one table (errorTable). Handlers, interceptors,
// the gateway and the HTTP layer return sentinels (the server's own below,
// and those of tokenstore, token, users, password, admin and ratelimit),
// wrapped with %w; they never pick a code, a reason or an HTTP status. The
// table is matched with errors.Is, never on an error's text.

// The server's own sentinels.
var (
	errTokenRevoked        = tokencheck.ErrRevoked
	errRefreshTokenInvalid = sessions.ErrRefreshTokenInvalid
	// errInvalidRequest: a request the handler refuses; see invalidRequest.
	errInvalidRequest = errors.New("invalid request")
	// errRateLimited: too many attempts; see rateLimitedError.
	errRateLimited = errors.New("rate limited")
	// errCSRFRejected: a call authenticated by the refresh cookie without
	// the browser header or an allowed Origin (browser.go).
	errCSRFRejected = errors.New("csrf check failed")
	// errOriginNotAllowed: a CORS preflight from an Origin not allowed.
	errOriginNotAllowed = errors.New("origin not allowed")
	// errBodyTooLarge: a REST body over the limit, declared or read (http.go).
	errBodyTooLarge = errors.New("request body too large")
	// errMalformedRequest: the gateway could not decode the request (JSON,
	// types, unknown fields, UTF-8, a path parameter).
	errMalformedRequest = errors.New("malformed request")
	// errRouteNotFound and errMethodNotAllowed: the gateway's routing.
	errRouteNotFound    = errors.New("no such path")
	errMethodNotAllowed = errors.New("method not allowed")
	// errShuttingDown: the server is stopping (watch.go, and the gateway's
	// in-process connection closing under a REST call).
	errShuttingDown = errors.New("identity is shutting down")
	// errGatewayTimeout: a REST call's own deadline (grpc-timeout header)
	// passed before the gRPC side answered.
	errGatewayTimeout = errors.New("request deadline passed")
	// errSessionNotFound: a self-service call named a session that is not
	// the caller's live one.
	errSessionNotFound = errors.New("no such session of yours (expired, revoked or not yours)")
	// errWatcherTooSlow ends a WatchRevocations stream that fell too far
	// behind the feed: the client resumes from its cursor.
	errWatcherTooSlow = errors.New("revocation stream fell behind: watch again from the last cursor")
	// errInternal: the server's own failure (a panic, an unmapped error).
	errInternal = errors.New("internal error")
)

// errorRow says what a client sees for err (and everything wrapping it).
type errorRow struct {
	err    error
	code   codes.Code
	reason identityv1.ErrorReason // ERROR_REASON_UNSPECIFIED: no ErrorInfo
	http   int                    // the REST status
	// msg is the status message. "" means the error's own text is the
	// message: a *clientError's, or the chain of an error that names only
	// what the caller sent or asked about (a username, a session id), never
	// a secret.
	msg string
}

// errorTable is the server's error contract, first match wins. Each row's
// http is runtime.HTTPStatusFromCode(code), which is how the REST gateway
// renders a status coming back from the gRPC side, except the rows marked
// "HTTP layer only": the HTTP layer raises those itself, so they never
// travel as a gRPC status. errors_test.go checks every row both ways.
var errorTable = []errorRow{
	{errInvalidRequest, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, http.StatusBadRequest, ""},
	{errRateLimited, codes.ResourceExhausted, identityv1.ErrorReason_RATE_LIMITED, http.StatusTooManyRequests, ""},
	{tokenstore.ErrUnavailable, codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE, http.StatusServiceUnavailable, "the session store is unavailable"},
	{ratelimit.ErrUnavailable, codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE, http.StatusServiceUnavailable, "the session store is unavailable"},
	{users.ErrBadCredentials, codes.Unauthenticated, identityv1.ErrorReason_INVALID_CREDENTIALS, http.StatusUnauthorized, "invalid username or password"},
	{token.ErrExpired, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_EXPIRED, http.StatusUnauthorized, "access token expired"},
	{token.ErrInvalid, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, http.StatusUnauthorized, "access token invalid"},
	{errTokenRevoked, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED, http.StatusUnauthorized, "access token revoked"},
	{tokenstore.ErrReused, codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_REUSED, http.StatusUnauthorized, "refresh token reused: the session has been revoked"},
	// A login whose user's credentials changed while it was in flight: the
	// password it checked is no longer the user's.
	{tokenstore.ErrStale, codes.Unauthenticated, identityv1.ErrorReason_INVALID_CREDENTIALS, http.StatusUnauthorized, "invalid username or password"},
	{errRefreshTokenInvalid, codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_INVALID, http.StatusUnauthorized, "refresh token invalid, expired or revoked"},
	{token.ErrSessionEnded, codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_INVALID, http.StatusUnauthorized, "refresh token invalid, expired or revoked"},
	{tokenstore.ErrTooFast, codes.ResourceExhausted, identityv1.ErrorReason_RATE_LIMITED, http.StatusTooManyRequests, "this session is refreshed too often: retry shortly"},
	{password.ErrBusy, codes.ResourceExhausted, identityv1.ErrorReason_RATE_LIMITED, http.StatusTooManyRequests, "too many logins in progress, retry shortly"},
	{users.ErrInvalidUsername, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, http.StatusBadRequest, "invalid username"},
	{users.ErrInvalidPassword, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, http.StatusBadRequest, "invalid password: 1 to 1024 bytes"},
	// The policy's error says why in words ("at least 8 characters", "too
	// common"), for the person choosing the password; it never holds the
	// password, so its text is the message.
	{users.ErrPasswordTooWeak, codes.InvalidArgument, identityv1.ErrorReason_PASSWORD_TOO_WEAK, http.StatusBadRequest, ""},
	{users.ErrInvalidRole, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, http.StatusBadRequest, "invalid role"},
	{admin.ErrInvalidSessionID, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, http.StatusBadRequest, "invalid session id"},
	// Admin errors name the user or session the admin asked about, or the
	// server's key setup; they carry no secret, so their text is the message.
	{admin.ErrNoKeyring, codes.FailedPrecondition, identityv1.ErrorReason_FAILED_PRECONDITION, http.StatusBadRequest, ""},
	{admin.ErrNoKeys, codes.FailedPrecondition, identityv1.ErrorReason_FAILED_PRECONDITION, http.StatusBadRequest, ""},
	{token.ErrKeysOnDisk, codes.FailedPrecondition, identityv1.ErrorReason_FAILED_PRECONDITION, http.StatusBadRequest, ""},
	{errSessionNotFound, codes.NotFound, identityv1.ErrorReason_NOT_FOUND, http.StatusNotFound, ""},
	{tokenstore.ErrNotFound, codes.NotFound, identityv1.ErrorReason_NOT_FOUND, http.StatusNotFound, ""},
	{tokenstore.ErrAlreadyExists, codes.AlreadyExists, identityv1.ErrorReason_ALREADY_EXISTS, http.StatusConflict, ""},
	{errCSRFRejected, codes.PermissionDenied, identityv1.ErrorReason_CSRF_REJECTED, http.StatusForbidden,
		"a call authenticated by the refresh cookie needs the " + HeaderClient + ": " + ClientBrowser + " header and an allowed Origin"},
	{errOriginNotAllowed, codes.PermissionDenied, identityv1.ErrorReason_CSRF_REJECTED, http.StatusForbidden, "origin not allowed"},
	// Raised by the gateway or in front of it, before any handler runs.
	{errMalformedRequest, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, http.StatusBadRequest, ""},
	{errRouteNotFound, codes.NotFound, identityv1.ErrorReason_INVALID_REQUEST, http.StatusNotFound, ""},
	// HTTP layer only: 405 and 413 are not what the gateway makes of the code.
	{errMethodNotAllowed, codes.Unimplemented, identityv1.ErrorReason_INVALID_REQUEST, http.StatusMethodNotAllowed, ""},
	{errBodyTooLarge, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, http.StatusRequestEntityTooLarge, ""},
	{errShuttingDown, codes.Unavailable, identityv1.ErrorReason_IDENTITY_UNAVAILABLE, http.StatusServiceUnavailable, ""},
	{errWatcherTooSlow, codes.Unavailable, identityv1.ErrorReason_IDENTITY_UNAVAILABLE, http.StatusServiceUnavailable, ""},
	{sessions.ErrTooManyWatchers, codes.ResourceExhausted, identityv1.ErrorReason_RATE_LIMITED, http.StatusTooManyRequests, "too many revocation streams open: retry later"},
	{errGatewayTimeout, codes.DeadlineExceeded, identityv1.ErrorReason_IDENTITY_UNAVAILABLE, http.StatusGatewayTimeout, "identity did not answer within the request's deadline"},
	// A store call that ran out of time is the store not answering: the
	// service fails closed, as for a store that is down.
	{context.DeadlineExceeded, codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE, http.StatusServiceUnavailable, "the session store did not answer in time"},
	// The caller has gone and reads no answer: no ErrorInfo, not logged.
	{context.Canceled, codes.Canceled, identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED, 499, "canceled"},
	{errInternal, codes.Internal, identityv1.ErrorReason_INTERNAL, http.StatusInternalServerError, "internal error"},
}

// reasonsOutsideTheTable are the ErrorReason values no row produces, and
// who does.
var reasonsOutsideTheTable = map[identityv1.ErrorReason]string{
	identityv1.ErrorReason_PERMISSION_DENIED: "authn.RequireRole (the admin role check, and services protected by authn)",
	identityv1.ErrorReason_VERIFIER_STALE:    "authn's local verifier, in other services",
}

// rowFor is err's row; an error no row matches is the server's own failure,
// whose text never reaches the client.
func rowFor(err error) *errorRow {
	for i := range errorTable {
		if errors.Is(err, errorTable[i].err) {
			return &errorTable[i]
		}
	}
	return internalRow
}

var internalRow = func() *errorRow {
	for i := range errorTable {
		if errorTable[i].err == errInternal {
			return &errorTable[i]
		}
	}
	panic("server: errorTable has no errInternal row")
}()

// statusError builds the status error of err by its row.
func (row *errorRow) statusError(err error) error {
	msg := row.msg
	if msg == "" {
		msg = err.Error()
		var cm interface{ clientMessage() string }
		if errors.As(err, &cm) {
			msg = cm.clientMessage()
		}
	}
	switch row.reason {
	case identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
		return status.Error(row.code, msg)
	case identityv1.ErrorReason_RATE_LIMITED:
		retryAfter := time.Second
		var rl interface{ RetryAfter() time.Duration }
		if errors.As(err, &rl) {
			retryAfter = rl.RetryAfter()
		}
		return authn.RateLimited(msg, retryAfter)
	}
	return authn.Error(row.code, row.reason, msg)
}

// clientError is a sentinel with a message written for the client: it says
// what was wrong with the request and holds no secret.
type clientError struct {
	sentinel error
	msg      string
}

func (e *clientError) Error() string         { return e.msg }
func (e *clientError) Unwrap() error         { return e.sentinel }
func (e *clientError) clientMessage() string { return e.msg }

// invalidRequest is a request the handler refuses (INVALID_REQUEST); msg
// says what is wrong with it.
func invalidRequest(msg string) error { return &clientError{errInvalidRequest, msg} }

// rateLimitedError asks the client to come back after retryAfter.
type rateLimitedError struct {
	msg        string
	retryAfter time.Duration
}

func (e *rateLimitedError) Error() string             { return e.msg }
func (e *rateLimitedError) RetryAfter() time.Duration { return e.retryAfter }
func (e *rateLimitedError) Unwrap() error             { return errRateLimited }
func (e *rateLimitedError) clientMessage() string     { return e.msg }

// toStatus maps err to the contract's status. A status error (already
// mapped, e.g. by authn) passes through unchanged.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return rowFor(err).statusError(err)
}

// restStatus is the status and HTTP status of a REST error: one the HTTP
// layer or the gateway raised (a sentinel, or a status without identity
// ErrorInfo), or a status the gRPC side answered, built by toStatus.
func restStatus(r *http.Request, err error) (*status.Status, int) {
	if limit, hit := bodyLimitHit(r); hit {
		// Whatever the gateway made of the cut-off body, it was too large.
		err = bodyTooLarge(limit)
	}
	var hs *runtime.HTTPStatusError
	if errors.As(err, &hs) {
		err = routeError(hs.HTTPStatus, r, hs.Err)
	}
	if st, ok := status.FromError(err); ok {
		if errorInfo(st) != nil {
			return st, runtime.HTTPStatusFromCode(st.Code())
		}
		err = foreignStatus(st)
	}
	row := rowFor(err)
	return status.Convert(row.statusError(err)), row.http
}

// foreignStatus is the sentinel for a status without identity ErrorInfo,
// which grpc-go or the gateway made, not a handler; decided by its code.
func foreignStatus(st *status.Status) error {
	switch st.Code() {
	case codes.InvalidArgument:
		// The gateway's decode errors (JSON, types, unknown fields, UTF-8,
		// path parameters): its message describes what the client sent.
		return &clientError{errMalformedRequest, "invalid request: " + st.Message()}
	case codes.Canceled:
		return context.Canceled
	case codes.Unavailable:
		// The gateway's in-process connection fails only as the server stops.
		return errShuttingDown
	case codes.DeadlineExceeded:
		return errGatewayTimeout
	}
	return errInternal
}

// routeError is the error of a request the gateway could not route,
// decided by the HTTP status the gateway chose; cause may be nil.
func routeError(httpStatus int, r *http.Request, cause error) error {
	switch httpStatus {
	case http.StatusNotFound:
		return &clientError{errRouteNotFound, "no such path: " + r.URL.Path}
	case http.StatusMethodNotAllowed:
		return &clientError{errMethodNotAllowed, "method " + r.Method + " not allowed on " + r.URL.Path}
	case http.StatusBadRequest:
		msg := "invalid request: malformed path"
		if cause != nil {
			msg = "invalid request: " + cause.Error()
		}
		return &clientError{errMalformedRequest, msg}
	}
	return errInternal
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == authn.Domain {
			return info
		}
	}
	return nil
}

// errorUnaryInterceptor maps every handler error through toStatus and logs
// the ones that are the server's fault (never with secrets: errors carry
// none by construction).
func errorUnaryInterceptor(log *failureLog) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			mapped := toStatus(err)
			log.failed(ctx, info.FullMethod, err, mapped)
			return nil, mapped
		}
		return resp, nil
	}
}

func errorStreamInterceptor(log *failureLog) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		if err != nil {
			mapped := toStatus(err)
			log.failed(ss.Context(), info.FullMethod, err, mapped)
			return mapped
		}
		return nil
	}
}

// Failure lines a second, and at once, before failureLog leaves lines out.
const (
	failureLogRate  = 10
	failureLogBurst = 20
)

// failureLog writes the "request failed" line of each call that failed by
// the server's fault (INTERNAL, UNAVAILABLE): every one while they are few,
// at most failureLogRate a second (bursts of failureLogBurst) when they are
// many. In a store outage every call fails alike, tens of thousands a
// second: a line each would write megabytes a second and spend on logging
// the CPU the calls still being served need. The next line written counts
// the lines left out (suppressed); identity_store_errors_total and
// the gRPC metrics count every call.
type failureLog struct {
	log        *slog.Logger
	lines      *rate.Limiter
	suppressed atomic.Int64
}

func newFailureLog(log *slog.Logger) *failureLog {
	return &failureLog{log: log, lines: rate.NewLimiter(failureLogRate, failureLogBurst)}
}

func (l *failureLog) failed(ctx context.Context, method string, err, mapped error) {
	switch status.Code(mapped) {
	case codes.Internal, codes.Unavailable:
	default:
		return
	}
	if !l.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	if !l.lines.Allow() {
		l.suppressed.Add(1)
		return
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("error", err.Error())}
	if n := l.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("suppressed", n))
	}
	l.log.LogAttrs(ctx, slog.LevelWarn, "request failed", attrs...)
}
