// Package authn is what other Go services import to accept identity's
// access tokens: gRPC server interceptors that take the `authorization:
// Bearer` token, verify it with a Verifier and put the verified claims in
// the context. Failures are the identity contract's UNAUTHENTICATED errors
// with ErrorInfo reasons, so a client sees the same failure from any
// service. It does not log users in or hand out tokens.
//
// Two Verifiers come with it. Remote (NewRemote) asks identity's Verify on
// every call, optionally through a short cache. Local (NewLocal) checks the
// signature with identity's published keys, in process, and learns of
// logouts from identity's revocation stream within milliseconds; when that
// stream has been silent longer than a staleness bound it fails closed
// (UNAVAILABLE, VERIFIER_STALE) or asks identity instead: it never
// silently accepts a token it cannot check.
package authn

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
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
		return Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, "no verified access token")
	}
	if !slices.Contains(c.Roles, role) {
		return Error(codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED, "the "+role+" role is required")
	}
	return nil
}

type options struct {
	skip  func(ctx context.Context, fullMethod string) bool
	roles map[string]string
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

// WithRoles requires a role per method, checked right after the token:
// keys are full method names ("/pkg.Service/Method") or service prefixes
// ending in "/" ("/pkg.AdminService/"), values the role the caller needs
// (PERMISSION_DENIED otherwise). An exact name wins over its service's
// prefix (map a method to "" to exempt it from its service's rule).
// Methods matched by neither need only a valid token; skipped
// methods (WithSkip) are not checked at all. For rules that depend on the
// request, call RequireRole in the handler instead.
func WithRoles(roles map[string]string) Option {
	return func(o *options) {
		if o.roles == nil {
			o.roles = make(map[string]string, len(roles))
		}
		maps.Copy(o.roles, roles)
	}
}

// roleFor returns the role fullMethod needs, or "".
func (o *options) roleFor(fullMethod string) string {
	if r, ok := o.roles[fullMethod]; ok {
		return r
	}
	if i := strings.LastIndexByte(fullMethod, '/'); i > 0 {
		return o.roles[fullMethod[:i+1]]
	}
	return ""
}

func alwaysSkipped(_ context.Context, m string) bool {
	return hasServicePrefix(m, "/grpc.health.v1.Health/") ||
		hasServicePrefix(m, "/grpc.reflection.v1.ServerReflection/") ||
		hasServicePrefix(m, "/grpc.reflection.v1alpha.ServerReflection/")
}

func hasServicePrefix(m, p string) bool { return len(m) >= len(p) && m[:len(p)] == p }

func build(v Verifier, opts []Option) (*options, auth.AuthFunc, selector.Matcher) {
	o := &options{skip: alwaysSkipped}
	for _, opt := range opts {
		opt(o)
	}
	authFunc := func(ctx context.Context) (context.Context, error) {
		raw, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil || raw == "" {
			return nil, errMissingToken
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
	return o, authFunc, match
}

// checkRole enforces WithRoles on a call the token check let through.
func (o *options) checkRole(ctx context.Context, fullMethod string) error {
	role := o.roleFor(fullMethod)
	if role == "" || o.skip(ctx, fullMethod) {
		return nil
	}
	return RequireRole(ctx, role)
}

// UnaryServerInterceptor verifies the bearer token of every unary call not
// skipped by an option.
func UnaryServerInterceptor(v Verifier, opts ...Option) grpc.UnaryServerInterceptor {
	o, f, m := build(v, opts)
	check := selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(f), m)
	if len(o.roles) == 0 {
		return check
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return check(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			if err := o.checkRole(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		})
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor(v Verifier, opts ...Option) grpc.StreamServerInterceptor {
	o, f, m := build(v, opts)
	check := selector.StreamServerInterceptor(auth.StreamServerInterceptor(f), m)
	if len(o.roles) == 0 {
		return check
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return check(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			if err := o.checkRole(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return handler(srv, ss)
		})
	}
}
