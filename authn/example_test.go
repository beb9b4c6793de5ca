package authn_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// registerMyService stands for the generated Register…Server call of the
// service being protected.
func registerMyService(*grpc.Server) {}

// Protect a gRPC service with local verification: keys and revocations
// come from identity, every call is checked in process.
func Example() {
	identity, err := grpc.NewClient("127.0.0.1:9090", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	v, err := authn.NewLocal(authn.WithKeysFromConn(identity))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(authn.UnaryServerInterceptor(v, authn.WithSkip("/my.v1.Public/Ping"))),
		grpc.ChainStreamInterceptor(authn.StreamServerInterceptor(v)),
	)
	registerMyService(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:9190")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve(lis))
}

// Remote mode: identity's Verify answers every call (here behind a short
// cache that revocation events empty at once).
func ExampleNewRemote() {
	identity, err := grpc.NewClient("127.0.0.1:9090", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	v, err := authn.NewRemote(identity, authn.WithCache(10_000, 30*time.Second), authn.WithRevocationWatch())
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(authn.UnaryServerInterceptor(v)))
	registerMyService(srv)
}

// Local mode with the keys from the JWKS document, the revocations over
// gRPC, and identity's Verify as the fallback while the revocation stream
// is stale (instead of failing closed).
func ExampleNewLocal() {
	identity, err := grpc.NewClient("127.0.0.1:9090", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	v, err := authn.NewLocal(
		authn.WithJWKSURL("http://127.0.0.1:8080/.well-known/jwks.json"),
		authn.WithRevocationsFromConn(identity),
		authn.WithIssuer("identity"), authn.WithAudience("identity"), // identityd's --issuer, --audience
		authn.WithStaleness(5*time.Second),
		authn.WithRemoteFallback(identity),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	// Optional: serve only once the keys and the revocations are in.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		log.Print(err) // calls fail closed (or fall back) until it is ready
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(authn.UnaryServerInterceptor(v)))
	registerMyService(srv)
}

func ExampleUnaryServerInterceptor() {
	v := authn.VerifierFunc(func(ctx context.Context, tok string) (*authn.Claims, error) {
		return &authn.Claims{Username: "alice"}, nil // use NewLocal or NewRemote
	})
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(
		authn.UnaryServerInterceptor(v,
			authn.WithSkip("/my.v1.Shop/ListProducts"), // public; health and reflection always are
			authn.WithRoles(map[string]string{"/my.v1.Admin/": "admin"}),
		),
	))
	registerMyService(srv)
}

func ExampleStreamServerInterceptor() {
	v := authn.VerifierFunc(func(ctx context.Context, tok string) (*authn.Claims, error) {
		return &authn.Claims{Username: "alice"}, nil // use NewLocal or NewRemote
	})
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(authn.UnaryServerInterceptor(v)),
		grpc.ChainStreamInterceptor(authn.StreamServerInterceptor(v)),
	)
	registerMyService(srv)
}

// Per-method roles, checked by the interceptor right after the token.
func ExampleWithRoles() {
	ic := authn.UnaryServerInterceptor(
		authn.VerifierFunc(func(context.Context, string) (*authn.Claims, error) {
			return &authn.Claims{Username: "bob", Roles: []string{"support"}}, nil
		}),
		authn.WithRoles(map[string]string{
			"/my.v1.Admin/":           "admin",   // the whole service
			"/my.v1.Admin/ListUsers":  "support", // this method: another role
			"/my.v1.Shop/CancelOrder": "support",
		}),
	)
	for _, method := range []string{"/my.v1.Admin/DeleteUser", "/my.v1.Admin/ListUsers", "/my.v1.Shop/GetOrder"} {
		// What a gRPC server puts in the context of a call with a token.
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer any"))
		_, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return "ok", nil })
		if err != nil {
			fmt.Println(method, authn.Reason(err))
		} else {
			fmt.Println(method, "ok")
		}
	}
	// Output:
	// /my.v1.Admin/DeleteUser PERMISSION_DENIED
	// /my.v1.Admin/ListUsers ok
	// /my.v1.Shop/GetOrder ok
}

// In a handler: who is calling, and a role check that depends on the
// request.
func ExampleClaimsFromContext() {
	handler := func(ctx context.Context, orderOwner string) error {
		c, _ := authn.ClaimsFromContext(ctx)
		if c.Subject != orderOwner {
			return authn.RequireRole(ctx, "support")
		}
		return nil
	}
	ctx := authn.WithClaims(context.Background(), &authn.Claims{Subject: "u_1", Username: "alice"})
	fmt.Println(handler(ctx, "u_1"))
	fmt.Println(authn.Reason(handler(ctx, "u_2")))
	// Output:
	// <nil>
	// PERMISSION_DENIED
}

func ExampleRequireRole() {
	ctx := authn.WithClaims(context.Background(), &authn.Claims{Username: "bob", Roles: []string{"reader"}})
	fmt.Println(authn.RequireRole(ctx, "reader"))
	fmt.Println(authn.RequireRole(ctx, "admin"))
	fmt.Println(authn.Reason(authn.RequireRole(context.Background(), "reader")))
	// Output:
	// <nil>
	// rpc error: code = PermissionDenied desc = the admin role is required
	// TOKEN_INVALID
}

// A Verifier of one's own (here: accepting one fixed token, as a test
// double might), with the contract's errors.
func ExampleVerifierFunc() {
	v := authn.VerifierFunc(func(_ context.Context, tok string) (*authn.Claims, error) {
		if tok != "let-me-in" {
			return nil, authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, "access token invalid")
		}
		return &authn.Claims{Subject: "u_1", Username: "tester"}, nil
	})
	c, err := v.Verify(context.Background(), "let-me-in")
	fmt.Println(c.Username, err)
	_, err = v.Verify(context.Background(), "guess")
	fmt.Println(authn.Reason(err))
	// Output:
	// tester <nil>
	// TOKEN_INVALID
}

// A client of a protected service tells the failures apart by reason.
func ExampleReason() {
	err := authn.Error(codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE, "cannot check the token")
	switch authn.Reason(err) {
	case identityv1.ErrorReason_TOKEN_EXPIRED:
		fmt.Println("refresh the access token and retry")
	case identityv1.ErrorReason_TOKEN_REVOKED, identityv1.ErrorReason_TOKEN_INVALID:
		fmt.Println("log in again")
	case identityv1.ErrorReason_VERIFIER_STALE, identityv1.ErrorReason_IDENTITY_UNAVAILABLE:
		fmt.Println("retry later")
	}
	// Output: retry later
}

// Reach identity over TLS: its CA, and the client certificate it asks for
// when it requires them (mTLS). Under mTLS that certificate also opens the
// revocation stream, so no ServiceAccount is needed.
func ExampleTLSCredentials() {
	creds, err := authn.TLSCredentials("/etc/greeter/identity-ca.pem", "/etc/greeter/client.pem", "/etc/greeter/client-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	identity, err := grpc.NewClient("identity.internal:9090", grpc.WithTransportCredentials(creds))
	if err != nil {
		log.Fatal(err)
	}
	v, err := authn.NewLocal(authn.WithKeysFromConn(identity))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
}

// The JWKS over https from a private CA: the same CA file, in an HTTP
// client.
func ExampleTLSConfig() {
	tlsConfig, err := authn.TLSConfig("/etc/greeter/identity-ca.pem", "", "")
	if err != nil {
		log.Fatal(err)
	}
	identity, err := grpc.NewClient("identity.internal:9090", grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		log.Fatal(err)
	}
	v, err := authn.NewLocal(
		authn.WithJWKSURL("https://identity.internal:8080/.well-known/jwks.json"),
		authn.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}),
		authn.WithRevocationsFromConn(identity),
		// No client certificate here: the revocation stream needs the
		// service's own account.
		authn.WithWatchCredentials(authn.NewServiceAccount(identity, "greeter", os.Getenv("GREETER_SERVICE_PASSWORD"))),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
}
