package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testcerts"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// Both ports serve TLS; under mTLS the REST gateway still reaches the gRPC
// server (in process, where no client certificate is asked).
func TestTLSServesBothPorts(t *testing.T) {
	t.Parallel()
	for _, mTLS := range []bool{false, true} {
		name := map[bool]string{false: "tls", true: "mtls"}[mTLS]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			set := testcerts.NewSet(t)
			p := testidentityd.StartInProcess(t, testidentityd.InProcessTLS(testidentityd.CertSetTLS(t, set, mTLS)))
			if !strings.HasPrefix(p.BaseURL, "https://") {
				t.Fatalf("BaseURL %s, want https", p.BaseURL)
			}
			pw := testidentityd.AddUser(t, p.Store, "tina", "")

			// gRPC: health, and a login over the TLS connection.
			var pr peer.Peer
			h, err := healthpb.NewHealthClient(p.Conn).Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.Peer(&pr))
			if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("gRPC health over TLS: %v, %v", h, err)
			}
			info, ok := pr.AuthInfo.(credentials.TLSInfo)
			if !ok || info.State.Version < tls.VersionTLS12 {
				t.Fatalf("gRPC connection: %T %v, want TLS 1.2 or later", pr.AuthInfo, info.State.Version)
			}
			if got := info.State.PeerCertificates[0].SerialNumber; got.Cmp(set.Server.Leaf.SerialNumber) != 0 {
				t.Errorf("gRPC server certificate serial %s, want the configured %s", got, set.Server.Leaf.SerialNumber)
			}
			p.Login(t, "tina", pw)

			// HTTPS: /healthz and a REST login (through the gateway).
			resp, err := p.HTTP.Get(p.BaseURL + "/healthz")
			if err != nil {
				t.Fatalf("GET /healthz over TLS: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Fatalf("GET /healthz: %s, TLS %v", resp.Status, resp.TLS)
			}
			resp, err = p.HTTP.Post(p.BaseURL+"/v1/login", "application/json",
				strings.NewReader(`{"username":"tina","password":"`+pw+`"}`))
			if err != nil {
				t.Fatalf("POST /v1/login over TLS: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"access_token"`) {
				t.Fatalf("POST /v1/login: %s %s", resp.Status, body)
			}
		})
	}
}

// What a client or the server must refuse, checked at the handshake on
// both ports (the gRPC port's with an HTTP/2 client's TLS, as gRPC's).
func TestTLSRefusals(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	mtls := testidentityd.StartInProcess(t, testidentityd.InProcessTLS(testidentityd.CertSetTLS(t, set, true)))

	expiredSet := testcerts.NewSet(t)
	expired := expiredSet.CA.Server(t, testcerts.Expired())
	expired.WriteFiles(t, expiredSet.ServerCertFile, expiredSet.ServerKeyFile)
	stale := testidentityd.StartInProcess(t, testidentityd.InProcessTLS(testidentityd.CertSetTLS(t, expiredSet, false)))

	otherCA := testcerts.NewCA(t, "another CA")
	// withCert always shows c (Go's client would hold back a certificate
	// of a CA the server does not name).
	withCert := func(c *testcerts.Cert) *tls.Config {
		cfg := set.ClientConfig(t, false)
		pair := c.TLS(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		return cfg
	}
	isUnknownCA := func(err error) bool {
		var ua x509.UnknownAuthorityError
		return errors.As(err, &ua)
	}
	isExpired := func(err error) bool {
		var ci x509.CertificateInvalidError
		return errors.As(err, &ci) && ci.Reason == x509.Expired
	}
	isServerAlert := func(err error) bool { // crypto/tls's mark of an alert the server sent
		var op *net.OpError
		return errors.As(err, &op) && op.Op == "remote error"
	}
	tests := []struct {
		name    string
		addrs   []string // the ports tried
		client  *tls.Config
		refusal func(error) bool
	}{
		{"client does not trust the server's CA", []string{mtls.GRPCAddr, mtls.HTTPAddr},
			&tls.Config{RootCAs: otherCA.Pool(), Certificates: []tls.Certificate{set.Client.TLS(t)}}, isUnknownCA},
		{"server certificate expired", []string{stale.GRPCAddr, stale.HTTPAddr},
			expiredSet.ClientConfig(t, false), isExpired},
		{"no client certificate under mTLS", []string{mtls.GRPCAddr},
			set.ClientConfig(t, false), isServerAlert},
		{"client certificate expired", []string{mtls.GRPCAddr},
			withCert(set.CA.Client(t, "late-service", testcerts.Expired())), isServerAlert},
		{"client certificate of another CA", []string{mtls.GRPCAddr},
			withCert(otherCA.Client(t, "stranger")), isServerAlert},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, addr := range tc.addrs {
				_, err := testidentityd.Handshake(addr, tc.client)
				if err == nil || !tc.refusal(err) {
					t.Errorf("%s: handshake error %v (%T), want the refusal", addr, err, err)
				}
			}
			// And a gRPC client gets no answer through it.
			conn := testidentityd.Dial(t, tc.addrs[0], grpc.WithTransportCredentials(credentials.NewTLS(tc.client)))
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Errorf("gRPC health through it: %v, want UNAVAILABLE", err)
			}
		})
	}

	// The HTTP port never asks for a client certificate (browsers have none).
	if _, err := testidentityd.Handshake(mtls.HTTPAddr, set.ClientConfig(t, false)); err != nil {
		t.Errorf("HTTPS without a client certificate under mTLS: %v, want it served", err)
	}
}

// Under mTLS, a verified client certificate is a service the operator
// issued it to: it may open WatchRevocations without a token. It grants
// nothing else (AdminService still needs an admin's token), and without
// client certificates (TLS only) a tokenless watcher is UNAUTHENTICATED.
func TestWatchRevocationsWithAClientCertificate(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	mtls := testidentityd.StartInProcess(t, testidentityd.InProcessTLS(testidentityd.CertSetTLS(t, set, true)))
	plainTLS := testidentityd.StartInProcess(t, testidentityd.InProcessTLS(testidentityd.CertSetTLS(t, set, false)))

	watch := func(api identityv1.IdentityServiceClient) error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		s, err := api.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	if err := watch(mtls.API); err != nil {
		t.Errorf("WatchRevocations with a client certificate and no token: %v, want served", err)
	}
	if err := watch(plainTLS.API); status.Code(err) != codes.Unauthenticated {
		t.Errorf("WatchRevocations with neither certificate nor token: %v, want UNAUTHENTICATED", err)
	}
	// A client certificate sent to a server that asks for none is not sent
	// at all: still no identity.
	conn := testidentityd.Dial(t, plainTLS.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(set.ClientConfig(t, true))))
	if err := watch(identityv1.NewIdentityServiceClient(conn)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("WatchRevocations, TLS without client CAs, certificate offered: %v, want UNAUTHENTICATED", err)
	}
	_, err := identityv1.NewAdminServiceClient(mtls.Conn).ListUsers(t.Context(), &identityv1.ListUsersRequest{})
	if status.Code(err) != codes.Unauthenticated || authn.Reason(err) != identityv1.ErrorReason_TOKEN_INVALID {
		t.Errorf("AdminService with a client certificate and no token: %v, want UNAUTHENTICATED", err)
	}
}

// ClientCertName prefers a URI SAN, then a DNS SAN, then the CN.
func TestClientCertName(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	tests := []struct {
		name string
		cert *testcerts.Cert
		want string
	}{
		{"URI SAN", set.CA.Client(t, "cn-1", testcerts.WithURI("spiffe://example.org/greeter"), testcerts.WithDNSNames("greeter.internal")), "spiffe://example.org/greeter"},
		{"DNS SAN", set.CA.Client(t, "cn-2", testcerts.WithDNSNames("greeter.internal")), "greeter.internal"},
		{"CN", set.CA.Client(t, "greeter"), "greeter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := peer.NewContext(t.Context(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{
				VerifiedChains: [][]*x509.Certificate{{tc.cert.Leaf, set.CA.Cert}},
			}}})
			if got, ok := server.ClientCertName(ctx); !ok || got != tc.want {
				t.Errorf("ClientCertName = %q, %t; want %q", got, ok, tc.want)
			}
		})
	}
	unverified := peer.NewContext(t.Context(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{set.Client.Leaf},
	}}})
	if name, ok := server.ClientCertName(unverified); ok {
		t.Errorf("an unverified certificate gave the identity %q", name)
	}
	if name, ok := server.ClientCertName(t.Context()); ok {
		t.Errorf("no peer gave the identity %q", name)
	}
}
