package authn_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/examples/greeter"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testcerts"
	"github.com/identityd/identity/internal/testidentityd"
)

// A local verifier reaching identity under mTLS with authn's TLS helpers:
// keys over the JWKS (https, private CA) and revocations over gRPC, where
// the client certificate alone opens the stream (no ServiceAccount).
func TestLocalOverMTLS(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	p := testidentityd.StartInProcess(t, testidentityd.InProcessTLS(testidentityd.CertSetTLS(t, set, true)))

	creds, err := authn.TLSCredentials(set.CAFile, set.ClientCertFile, set.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	httpsTLS, err := authn.TLSConfig(set.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := authn.NewLocal(
		authn.WithJWKSURL(p.JWKSURL()),
		authn.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: httpsTLS}}),
		authn.WithRevocationsFromConn(conn),
		authn.WithReconnectBackoff(time.Millisecond, 50*time.Millisecond),
		quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady over mTLS: %v", err)
	}

	pw := testidentityd.AddUser(t, p.Store, "mona", "")
	pair := p.Login(t, "mona", pw)
	eventuallyOK(t, l, pair.GetAccessToken())
	p.Logout(t, pair)
	eventuallyFails(t, l, pair.GetAccessToken(), codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
}

func TestTLSCredentialsRefusals(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	if _, err := authn.TLSCredentials(set.CAFile, set.ClientCertFile, ""); err == nil {
		t.Error("a certificate without its key: credentials, want an error")
	}
	if _, err := authn.TLSCredentials(set.ServerKeyFile, "", ""); err == nil {
		t.Error("a CA file without a certificate: credentials, want an error")
	}

	// The system's roots (no CA file) do not know the test CA: refused.
	p := testidentityd.StartInProcess(t, testidentityd.InProcessTLS(testidentityd.CertSetTLS(t, set, false)))
	system, err := authn.TLSCredentials("", "", "")
	if err != nil {
		t.Fatal(err)
	}
	conn := testidentityd.Dial(t, p.GRPCAddr, grpc.WithTransportCredentials(system))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("system roots against a private CA: %v, want UNAVAILABLE (handshake refused)", err)
	}
}

// The example service reaches an identity with mTLS in every mode with
// its client certificate alone: no service account.
func TestGreeterOverMTLS(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	p := testidentityd.StartInProcess(t, testidentityd.InProcessTLS(testidentityd.CertSetTLS(t, set, true)))
	identityTLS, err := authn.TLSConfig(set.CAFile, set.ClientCertFile, set.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pw := testidentityd.AddUser(t, p.Store, "gail", "")
	gail := p.Login(t, "gail", pw)
	modes := map[string]greeter.Config{
		"remote":     {IdentityAddr: p.GRPCAddr, IdentityTLS: identityTLS, Mode: "remote"},
		"local-grpc": {IdentityAddr: p.GRPCAddr, IdentityTLS: identityTLS, Mode: "local"},
		"local-jwks": {IdentityAddr: p.GRPCAddr, IdentityTLS: identityTLS, Mode: "local", JWKSURL: p.JWKSURL()},
	}
	conns := map[string]*grpc.ClientConn{}
	for name, cfg := range modes {
		conns[name] = runGreeter(t, cfg)
	}
	for name, conn := range conns {
		testidentityd.Eventually(t, 10*time.Second, func() error {
			if _, err := hello(t, conn, gail.GetAccessToken()); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	p.Logout(t, gail)
	for name, conn := range conns {
		testidentityd.Eventually(t, 5*time.Second, func() error {
			_, err := hello(t, conn, gail.GetAccessToken())
			if authn.Reason(err) != identityv1.ErrorReason_TOKEN_REVOKED {
				return fmt.Errorf("%s: after logout: %v", name, err)
			}
			return nil
		})
	}
}
