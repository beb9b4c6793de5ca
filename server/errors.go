package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// This file is the one place where domain errors become gRPC statuses with
// ErrorInfo reasons. Handlers return domain errors (sentinels below and
// those of tokenstore, token, users, password); they never pick a code.

var (
	errTokenRevoked        = errors.New("access token revoked")
	errRefreshTokenInvalid = errors.New("refresh token invalid")
)

// invalidRequestError is a request the contract rejects as INVALID_REQUEST.
type invalidRequestError struct{ msg string }

func (e *invalidRequestError) Error() string { return e.msg }

func invalidRequest(msg string) error { return &invalidRequestError{msg} }

// rateLimitedError asks the client to come back after retryAfter.
type rateLimitedError struct {
	msg        string
	retryAfter time.Duration
}

func (e *rateLimitedError) Error() string { return e.msg }

// toStatus maps err to the contract's status. A status error (already
// mapped, e.g. by authn) passes through unchanged.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var inv *invalidRequestError
	var rl *rateLimitedError
	switch {
	case errors.As(err, &inv):
		return authn.Error(codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, inv.msg)
	case errors.As(err, &rl):
		return authn.RateLimited(rl.msg, rl.retryAfter)
	case errors.Is(err, tokenstore.ErrUnavailable), errors.Is(err, ratelimit.ErrUnavailable):
		return authn.Error(codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE, "the session store is unavailable")
	case errors.Is(err, users.ErrBadCredentials):
		return authn.Error(codes.Unauthenticated, identityv1.ErrorReason_INVALID_CREDENTIALS, "invalid username or password")
	case errors.Is(err, token.ErrExpired):
		return authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_EXPIRED, "access token expired")
	case errors.Is(err, token.ErrInvalid):
		return authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, "access token invalid")
	case errors.Is(err, errTokenRevoked):
		return authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED, "access token revoked")
	case errors.Is(err, tokenstore.ErrReused):
		return authn.Error(codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_REUSED, "refresh token reused: the session has been revoked")
	case errors.Is(err, errRefreshTokenInvalid), errors.Is(err, token.ErrSessionEnded):
		return authn.Error(codes.Unauthenticated, identityv1.ErrorReason_REFRESH_TOKEN_INVALID, "refresh token invalid, expired or revoked")
	case errors.Is(err, password.ErrBusy):
		return authn.RateLimited("too many logins in progress, retry shortly", time.Second)
	case errors.Is(err, users.ErrInvalidUsername):
		return authn.Error(codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, "invalid username")
	case errors.Is(err, users.ErrInvalidPassword):
		return authn.Error(codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, "invalid password: 1 to 1024 bytes")
	case errors.Is(err, users.ErrInvalidRole):
		return authn.Error(codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, "invalid role")
	case errors.Is(err, admin.ErrInvalidSessionID):
		return authn.Error(codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, "invalid session id")
	case errors.Is(err, admin.ErrNoKeyring), errors.Is(err, admin.ErrNoKeys), errors.Is(err, token.ErrKeysOnDisk):
		return authn.Error(codes.FailedPrecondition, identityv1.ErrorReason_FAILED_PRECONDITION, err.Error())
	// Admin errors name the user or session the admin asked about; they
	// carry no secret, so their text is the message.
	case errors.Is(err, tokenstore.ErrNotFound):
		return authn.Error(codes.NotFound, identityv1.ErrorReason_NOT_FOUND, err.Error())
	case errors.Is(err, tokenstore.ErrAlreadyExists):
		return authn.Error(codes.AlreadyExists, identityv1.ErrorReason_ALREADY_EXISTS, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return authn.Error(codes.DeadlineExceeded, identityv1.ErrorReason_STORE_UNAVAILABLE, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	}
	return authn.Error(codes.Internal, identityv1.ErrorReason_INTERNAL, "internal error")
}

// errorUnaryInterceptor maps every handler error through toStatus and logs
// the ones that are the server's fault (never with secrets: errors carry
// none by construction).
func errorUnaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			mapped := toStatus(err)
			logInternal(ctx, log, info.FullMethod, err, mapped)
			return nil, mapped
		}
		return resp, nil
	}
}

func errorStreamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		if err != nil {
			mapped := toStatus(err)
			logInternal(ss.Context(), log, info.FullMethod, err, mapped)
			return mapped
		}
		return nil
	}
}

func logInternal(ctx context.Context, log *slog.Logger, method string, err, mapped error) {
	switch status.Code(mapped) {
	case codes.Internal, codes.Unavailable:
		log.LogAttrs(ctx, slog.LevelWarn, "request failed", slog.String("method", method), slog.String("error", err.Error()))
	}
}
