package authn_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/examples/greeter"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// byName is a Verifier for interceptor tests: the token is the username;
// "admin" has the admin role, "revoked" is revoked, other names are valid
// users without roles, and "" never reaches it.
var byName = authn.VerifierFunc(func(_ context.Context, tok string) (*authn.Claims, error) {
	switch tok {
	case "revoked":
		return nil, authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED, "access token revoked")
	case "admin":
		return &authn.Claims{Subject: "u_admin", Username: "admin", Roles: []string{"admin"}, SessionID: "s-admin"}, nil
	}
	return &authn.Claims{Subject: "u_" + tok, Username: tok, SessionID: "s-" + tok}, nil
})

func TestUnaryInterceptor(t *testing.T) {
	t.Parallel()
	opts := []authn.Option{
		authn.WithSkip("/pkg.Public/Ping"),
		authn.WithRoles(map[string]string{
			"/pkg.Admin/":           "admin",
			"/pkg.Admin/Stats":      "", // exempt from its service's rule
			"/pkg.Shop/DeleteOrder": "admin",
		}),
	}
	ic := authn.UnaryServerInterceptor(byName, opts...)
	for _, tc := range []struct {
		name, method, auth string
		code               codes.Code
		reason             identityv1.ErrorReason // unused when code is OK
		user               string                 // the caller the handler sees; "" if it runs unauthenticated
	}{
		{"valid token", "/pkg.Shop/GetOrder", "Bearer bob", codes.OK, 0, "bob"},
		{"scheme in any case", "/pkg.Shop/GetOrder", "bearer bob", codes.OK, 0, "bob"},
		{"no token", "/pkg.Shop/GetOrder", "", codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, ""},
		{"not a bearer token", "/pkg.Shop/GetOrder", "Basic Ym9iOnB3", codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, ""},
		{"empty bearer", "/pkg.Shop/GetOrder", "Bearer ", codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, ""},
		{"verifier's error passes through", "/pkg.Shop/GetOrder", "Bearer revoked", codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED, ""},
		{"skipped method", "/pkg.Public/Ping", "", codes.OK, 0, ""},
		{"health always skipped", "/grpc.health.v1.Health/Check", "", codes.OK, 0, ""},
		{"reflection always skipped", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", codes.OK, 0, ""},
		{"role by method: denied", "/pkg.Shop/DeleteOrder", "Bearer bob", codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED, ""},
		{"role by method: granted", "/pkg.Shop/DeleteOrder", "Bearer admin", codes.OK, 0, "admin"},
		{"role by service: denied", "/pkg.Admin/Purge", "Bearer bob", codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED, ""},
		{"role by service: granted", "/pkg.Admin/Purge", "Bearer admin", codes.OK, 0, "admin"},
		{"exempt method", "/pkg.Admin/Stats", "Bearer bob", codes.OK, 0, "bob"},
		{"token checked before role", "/pkg.Admin/Purge", "", codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, ""},
		{"prefix is not a service match", "/pkg.AdminX/Purge", "Bearer bob", codes.OK, 0, "bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.auth != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", tc.auth))
			}
			ran, user := false, ""
			_, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tc.method}, func(ctx context.Context, _ any) (any, error) {
				ran = true
				if c, ok := authn.ClaimsFromContext(ctx); ok {
					user = c.Username
				}
				return nil, nil
			})
			if tc.code == codes.OK {
				if err != nil || !ran {
					t.Fatalf("err = %v, handler ran: %v; want it to run", err, ran)
				}
				if user != tc.user {
					t.Fatalf("handler saw caller %q, want %q", user, tc.user)
				}
				return
			}
			if ran {
				t.Fatal("the handler ran")
			}
			wantStatus(t, err, tc.code, tc.reason)
		})
	}
}

func TestRequireRole(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	wantStatus(t, authn.RequireRole(ctx, "admin"), codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)
	ctx = authn.WithClaims(ctx, &authn.Claims{Username: "bob", Roles: []string{"ops"}})
	if err := authn.RequireRole(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, authn.RequireRole(ctx, "admin"), codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED)
}

// The example service, with its interceptors on a real gRPC server: unary
// and stream calls, roles, and the health service without a token.
func TestGreeterInterceptors(t *testing.T) {
	t.Parallel()
	conn := serveGreeter(t, byName)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	if got, err := greeter.Hello(greeter.WithToken(ctx, "bob"), conn); err != nil || got != "hello, bob" {
		t.Fatalf("Hello = %q, %v", got, err)
	}
	got, err := greeter.HelloStream(greeter.WithToken(ctx, "bob"), conn)
	if err != nil || !slices.Equal(got, []string{"hello #1, bob", "hello #2, bob", "hello #3, bob"}) {
		t.Fatalf("HelloStream = %q, %v", got, err)
	}
	_, err = greeter.HelloStream(ctx, conn)
	wantStatus(t, err, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)
	_, err = greeter.Hello(greeter.WithToken(ctx, "revoked"), conn)
	wantStatus(t, err, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
	_, err = greeter.AdminHello(greeter.WithToken(ctx, "bob"), conn)
	wantStatus(t, err, codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED)
	if got, err := greeter.AdminHello(greeter.WithToken(ctx, "admin"), conn); err != nil || !strings.Contains(got, "admin") {
		t.Fatalf("AdminHello as admin = %q, %v", got, err)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a token = %v, %v", h, err)
	}
}

// Close ends every goroutine a verifier started; nothing runs on behind
// the caller's back. Not parallel: it counts goroutines of the whole
// binary, which only sequential tests leave quiet.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	if g := authnGoroutines(); len(g) > 0 {
		t.Fatalf("authn goroutines before the test:\n%s", strings.Join(g, "\n\n"))
	}
	for range 5 {
		l, err := authn.NewLocal(authn.WithKeysFromConn(f.conn), authn.WithRemoteFallback(f.conn), quiet(t))
		if err != nil {
			t.Fatal(err)
		}
		r := mustRemote(t, f.conn, authn.WithCache(10, time.Second), authn.WithRevocationWatch(), quiet(t))
		heartbeatUntilReady(t, f, l)
		verifyOK(t, l, f.issue(t, "s1"), "s1")
		l.Close()
		r.Close()
		l.Close() // idempotent
		if g := authnGoroutines(); len(g) > 0 {
			t.Fatalf("goroutines left after Close:\n%s", strings.Join(g, "\n\n"))
		}
	}
}
