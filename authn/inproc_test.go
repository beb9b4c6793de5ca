package authn_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// inproc is identity's real server (package server, embedded memory
// store) running inside the test binary on loopback ports: the remote
// verifier's tests and the benchmarks talk to the real Verify,
// GetPublicKeys and WatchRevocations without the cost of a process. The
// scenarios the issue asks of a real identityd process are in
// integration_test.go.
type inproc struct {
	grpcAddr string
	jwksURL  string
	conn     *grpc.ClientConn
	api      identityv1.IdentityServiceClient
	store    tokenstore.Store
}

// tinyHash makes logins cheap in tests; the hash parameters travel with
// each stored hash, so identity checks them with these.
var tinyHash = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func startInproc(t testing.TB) *inproc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	store := tokenstore.NewMemory()
	cfg := server.DefaultConfig()
	cfg.LoginRatePerIP = 0
	keys, err := token.LoadOrCreate(ctx, store, token.EdDSA, cfg.TokenOptions(nil, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.New(password.WithParams(tinyHash))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cfg, server.Deps{Store: store, Keys: keys, Hasher: hasher, Limiter: ratelimit.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, glis, hlis, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("in-process identity: %v", err)
		}
	})
	p := &inproc{
		grpcAddr: glis.Addr().String(),
		jwksURL:  "http://" + hlis.Addr().String() + "/.well-known/jwks.json",
		store:    store,
	}
	p.conn = dial(t, p.grpcAddr)
	p.api = identityv1.NewIdentityServiceClient(p.conn)
	return p
}

// user creates a user and returns its password.
func (p *inproc) user(t testing.TB, name string, roles ...string) string {
	t.Helper()
	hasher, err := password.New(password.WithParams(tinyHash))
	if err != nil {
		t.Fatal(err)
	}
	pw := "pw-" + rand.Text()
	if _, err := users.New(p.store, hasher, time.Now, rand.Reader).Create(t.Context(), name, pw, roles); err != nil {
		t.Fatal(err)
	}
	return pw
}

func (p *inproc) login(t testing.TB, name, pw string) *identityv1.TokenPair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pair, err := p.api.Login(ctx, &identityv1.LoginRequest{Username: name, Password: pw})
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return pair
}
