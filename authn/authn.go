// Package authn is what other Go services import to accept identity's
// access tokens: gRPC server interceptors that take the `authorization:
// Bearer` token, verify it with a Verifier and put the verified claims in
// the context. Failures are the identity contract's UNAUTHENTICATED errors
// with ErrorInfo reasons, so a client sees the same failure from any
// service. It does not log users in or hand out tokens.
package authn

import (
	"context"
	"slices"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/identityd/identity/token"
)

// Claims are the verified facts about the caller.
type Claims = token.Claims

// Verifier checks an access token. It returns the claims, or an error that
// carries the contract's code and reason (use Error to build one).
type Verifier interface {
	Verify(ctx context.Context, accessToken string) (*Claims, error)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, accessToken string) (*Claims, error)

func (f VerifierFunc) Verify(ctx context.Context, t string) (*Claims, error) { return f(ctx, t) }

type claimsKey struct{}

// WithClaims returns ctx carrying c (for tests and for in-process callers).
func WithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the claims the interceptor verified.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// RequireRole returns PERMISSION_DENIED unless the verified caller in ctx
// has role; UNAUTHENTICATED if ctx carries no verified caller.
func RequireRole(ctx context.Context, role string) error {
	c, ok := ClaimsFromContext(ctx)
	if !ok {
		return Error(codes.Unauthenticated, ReasonTokenInvalid, "no verified access token")
	}
	if !slices.Contains(c.Roles, role) {
		return Error(codes.PermissionDenied, ReasonPermissionDenied, "the "+role+" role is required")
	}
	return nil
}

type options struct {
	skip func(ctx context.Context, fullMethod string) bool
}

// Option configures the interceptors.
type Option func(*options)

// WithSkip lists full method names ("/pkg.Service/Method") that need no
// token. The gRPC health and reflection services are always skipped.
func WithSkip(fullMethods ...string) Option {
	return func(o *options) {
		prev := o.skip
		o.skip = func(ctx context.Context, m string) bool {
			return slices.Contains(fullMethods, m) || prev(ctx, m)
		}
	}
}

// WithSkipFunc skips the methods for which f returns true.
func WithSkipFunc(f func(ctx context.Context, fullMethod string) bool) Option {
	return func(o *options) {
		prev := o.skip
		o.skip = func(ctx context.Context, m string) bool { return f(ctx, m) || prev(ctx, m) }
	}
}

func alwaysSkipped(_ context.Context, m string) bool {
	return hasServicePrefix(m, "/grpc.health.v1.Health/") ||
		hasServicePrefix(m, "/grpc.reflection.v1.ServerReflection/") ||
		hasServicePrefix(m, "/grpc.reflection.v1alpha.ServerReflection/")
}

func hasServicePrefix(m, p string) bool { return len(m) >= len(p) && m[:len(p)] == p }

func build(v Verifier, opts []Option) (auth.AuthFunc, selector.Matcher) {
	o := &options{skip: alwaysSkipped}
	for _, opt := range opts {
		opt(o)
	}
	authFunc := func(ctx context.Context) (context.Context, error) {
		raw, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil || raw == "" {
			return nil, Error(codes.Unauthenticated, ReasonTokenInvalid, "missing bearer access token")
		}
		c, err := v.Verify(ctx, raw)
		if err != nil {
			return nil, err
		}
		return WithClaims(ctx, c), nil
	}
	match := selector.MatchFunc(func(ctx context.Context, cm interceptors.CallMeta) bool {
		return !o.skip(ctx, cm.FullMethod())
	})
	return authFunc, match
}

// UnaryServerInterceptor verifies the bearer token of every unary call not
// skipped by an option.
func UnaryServerInterceptor(v Verifier, opts ...Option) grpc.UnaryServerInterceptor {
	f, m := build(v, opts)
	return selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(f), m)
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor(v Verifier, opts ...Option) grpc.StreamServerInterceptor {
	f, m := build(v, opts)
	return selector.StreamServerInterceptor(auth.StreamServerInterceptor(f), m)
}
